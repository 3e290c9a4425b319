"""S3 request signing: SigV4 and SigV2, and where the credentials come from.

Pure functions over a request's parts (method, path as sent, query, headers),
checked against AWS's published examples and against botocore's signers on the
same requests (``tests/test_s3sign.py``).  The SigV4 signing key is derived once
per day.  Credentials are explicit (``key_id``/``key``) or come from botocore's
credential chain (environment, shared files, instance and task roles), the one
thing objstore still takes from botocore: re-implementing the chain's sources and
refresh rules would be a second, worse copy of it.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from email.utils import formatdate
from typing import Any
from urllib.parse import quote

UNSIGNED_PAYLOAD = "UNSIGNED-PAYLOAD"
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()

_UNSIGNED_HEADERS = frozenset({"user-agent", "expect", "x-amzn-trace-id", "authorization"})
"""Headers never signed (a proxy or the transport may change them)."""

SIGV2_SUBRESOURCES = frozenset({
    "accelerate", "acl", "analytics", "cors", "defaultObjectAcl", "delete", "inventory",
    "lifecycle", "location", "logging", "metrics", "notification", "object-lock",
    "partNumber", "policy", "replication", "requestPayment", "restore", "select",
    "select-type", "storageClass", "tagging", "torrent", "uploadId", "uploads", "versionId",
    "versioning", "versions", "website", "response-content-type", "response-content-language",
    "response-expires", "response-cache-control", "response-content-disposition",
    "response-content-encoding",
})  # fmt: skip
"""Query parameters that are part of SigV2's canonical resource (as botocore's list)."""


@dataclass(frozen=True)
class Credentials:
    access_key: str
    secret_key: str
    token: str | None = None

    def __repr__(self) -> str:
        return f"Credentials({self.access_key!r}, '***')"


class CredentialSource:
    """Where a driver's credentials come from: fixed, or botocore's chain
    (resolved on first use, refreshed by botocore when they expire)."""

    def __init__(self, fixed: Credentials | None) -> None:
        self._fixed = fixed
        self._chain: Any = None
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"CredentialSource({'fixed' if self._fixed else 'chain'})"

    @property
    def from_chain(self) -> bool:
        return self._fixed is None

    def get(self) -> Credentials | None:
        """The credentials to sign with now; None when the chain finds none."""
        if self._fixed is not None:
            return self._fixed
        if self._chain is None:
            with self._lock:
                if self._chain is None:
                    import botocore.session

                    self._chain = botocore.session.get_session().get_credentials() or False
        if not self._chain:
            return None
        frozen = self._chain.get_frozen_credentials()
        return Credentials(frozen.access_key, frozen.secret_key, frozen.token)


def uri_encode(text: str, *, keep_slash: bool) -> str:
    """AWS's URI encoding: every byte but ``A-Za-z0-9-_.~`` (and ``/``) as %XX."""
    return quote(text, safe="/-_.~" if keep_slash else "-_.~")


Query = Iterable[tuple[str, "str | None"]]
"""Query parameters; a value of None is a bare flag (``?uploads``)."""


def _encoded(params: Query) -> list[tuple[str, str | None]]:
    return sorted(
        ((uri_encode(k, keep_slash=False), None if v is None else uri_encode(v, keep_slash=False))
         for k, v in params),
        key=lambda kv: (kv[0], kv[1] or ""),
    )  # fmt: skip


def canonical_query(params: Query) -> str:
    """The query string as SigV4 signs it: encoded, sorted, every name with ``=``."""
    return "&".join(f"{k}={v or ''}" for k, v in _encoded(params))


def query_string(params: Query) -> str:
    """The query string as sent: the canonical one, with bare flags (as botocore sends)."""
    return "&".join(k if v is None else f"{k}={v}" for k, v in _encoded(params))


def _trim(value: str) -> str:
    return " ".join(value.split()) if "  " in value or "\t" in value else value.strip()


class SigV4:
    """AWS Signature Version 4 for one region and service."""

    def __init__(self, region: str, service: str = "s3") -> None:
        self.region = region
        self.service = service
        self._keys: dict[tuple[str, str], bytes] = {}

    def _signing_key(self, secret: str, date: str) -> bytes:
        key = self._keys.get((secret, date))
        if key is None:
            key = hmac.new(("AWS4" + secret).encode(), date.encode(), hashlib.sha256).digest()
            for part in (self.region, self.service, "aws4_request"):
                key = hmac.new(key, part.encode(), hashlib.sha256).digest()
            self._keys = {(secret, date): key}  # one day's key at a time
        return key

    def authorization(
        self,
        creds: Credentials,
        method: str,
        path: str,
        query: str,
        headers: Mapping[str, str],
        payload_hash: str,
        amz_date: str,
    ) -> str:
        """The ``Authorization`` value for a request: ``path`` and ``query`` exactly
        as sent (encoded; query canonical), ``headers`` with lower-case names,
        including ``host`` and ``x-amz-date`` (= ``amz_date``); every header but
        :data:`_UNSIGNED_HEADERS` is signed."""
        names = sorted(n for n in headers if n not in _UNSIGNED_HEADERS)
        signed = ";".join(names)
        canonical = "\n".join(
            (method, path, query, *(f"{n}:{_trim(headers[n])}" for n in names), "", signed,
             payload_hash)
        )  # fmt: skip
        date = amz_date[:8]
        scope = f"{date}/{self.region}/{self.service}/aws4_request"
        to_sign = (
            f"AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n"
            f"{hashlib.sha256(canonical.encode()).hexdigest()}"
        )
        key = self._signing_key(creds.secret_key, date)
        signature = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
        return (
            f"AWS4-HMAC-SHA256 Credential={creds.access_key}/{scope}, "
            f"SignedHeaders={signed}, Signature={signature}"
        )


class SigV2:
    """AWS Signature Version 2 (HMAC-SHA1), for the servers that need it."""

    @staticmethod
    def date(now: float | None = None) -> str:
        """A ``Date`` header value."""
        return formatdate(now, usegmt=True)

    @staticmethod
    def canonical_resource(bucket_path: str, query: Query) -> str:
        """``/bucket/key`` (encoded, as sent) plus the sub-resources in the query
        (decoded values; bare flags without ``=``), sorted by name."""
        subs = sorted((k, v) for k, v in query if k in SIGV2_SUBRESOURCES)
        if not subs:
            return bucket_path
        return bucket_path + "?" + "&".join(k if v is None else f"{k}={v}" for k, v in subs)

    def authorization(
        self, creds: Credentials, method: str, resource: str, headers: Mapping[str, str]
    ) -> str:
        """The ``Authorization`` value: ``resource`` from :meth:`canonical_resource`,
        ``headers`` with lower-case names (``date`` or ``x-amz-date`` among them)."""
        amz = sorted((n, _trim(v)) for n, v in headers.items() if n.startswith("x-amz-"))
        date = "" if "x-amz-date" in headers else headers.get("date", "")
        to_sign = "\n".join(
            (method, headers.get("content-md5", ""), headers.get("content-type", ""), date,
             *(f"{n}:{v}" for n, v in amz), resource)
        )  # fmt: skip
        digest = hmac.new(creds.secret_key.encode(), to_sign.encode(), hashlib.sha1).digest()
        return f"AWS {creds.access_key}:{base64.b64encode(digest).decode('ascii')}"
