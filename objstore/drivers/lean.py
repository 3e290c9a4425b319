"""A lean SigV4 client for the per-object S3 requests of a migration (PUT, GET,
server-side CopyObject, the HEAD that tells which SSE-C key an object has), for
listings (ListObjectsV2), and for the S3 driver's open-time bucket check.

botocore spends about 2 ms of CPU per request on a small machine (event hooks,
endpoint rules, user-agent assembly, parameter handling) and about 0.1 ms per
listed key (its XML parser), and importing it with a client costs about 0.3 s;
a migration of millions of objects is bound by exactly that, and a re-run that
finds nothing to do by the import.  This client signs and sends one request in
about 0.2 ms over a pool of kept-alive connections (:mod:`.http11`), and parses a
listing page in one regular-expression pass (ElementTree when a page does not
have the usual shape).

It covers only what a migration needs, for configurations it fully understands
(SigV4, explicit key_id/key, no proxy; path-style or virtual-hosted; HTTP or
HTTPS with the configured CA; SSE-C; storage class); :func:`lean_client` returns
None otherwise and the driver (boto3) is used.  It borrows from the driver the
one key mapping (``driver.key``) and the one error table (``driver._translate``),
so errors are the same objstore errors either way.  Everything else (multipart,
streaming reads, deletes, the file server's own requests) stays with boto3.

Payloads are sent as ``UNSIGNED-PAYLOAD`` with a signed ``Content-MD5``: the
server checks the body against the MD5, and the MD5 cannot be changed without
breaking the signature.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import html
import re
import ssl
import threading
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote, unquote, urlsplit

from botocore.exceptions import ClientError

from ..config import S3Config
from ..errors import BackendUnavailable
from ..ids import ObjectInfo
from .http11 import Connection, ProtocolError, Response

_UNSIGNED = "UNSIGNED-PAYLOAD"
_CODE_RE = re.compile(rb"<Code>([^<]{1,100})</Code>")
_MESSAGE_RE = re.compile(rb"<Message>([^<]{0,300})</Message>")
_PAIR_RE = re.compile(rb"<Key>([^<]*)</Key>.*?<Size>(\d+)</Size>", re.S)
_TOKEN_RE = re.compile(rb"<NextContinuationToken>([^<]+)</NextContinuationToken>")
# <repo_id>/<obj_id> after the key prefix: the ids.py rules in one match
_ADDRESS_RE = re.compile(
    r"([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})/([0-9a-f]{40})\Z"
)


def _sse_headers(cfg: S3Config, prefix: str) -> dict[str, str]:
    """The SSE-C headers for ``cfg``'s key (``prefix="copy-source-"`` for a copy's source)."""
    if cfg.sse_c_key is None:
        return {}
    raw = cfg.sse_c_key.reveal().encode("utf-8")
    head = f"x-amz-{prefix}server-side-encryption-customer-"
    return {
        f"{head}algorithm": "AES256",
        f"{head}key": base64.b64encode(raw).decode(),
        f"{head}key-md5": base64.b64encode(hashlib.md5(raw).digest()).decode(),
    }


def lean_client(driver: Any, pool_size: int) -> LeanS3 | None:
    """A lean client for ``driver`` (an S3Driver), or None when its configuration
    needs boto3 (SigV2, credential chain, proxy)."""
    cfg = getattr(driver, "cfg", None)
    if not isinstance(cfg, S3Config):
        return None
    if not cfg.use_v4_signature or not (cfg.key_id and cfg.key) or cfg.proxy_host:
        return None
    return LeanS3(driver, cfg, pool_size)


def _query(params: dict[str, str]) -> str:
    """A query string in SigV4's canonical form (sorted, percent-encoded)."""
    return "&".join(f"{k}={quote(v, safe='-_.~')}" for k, v in sorted(params.items()))


def _page_entries(body: bytes) -> list[tuple[str, int]]:
    """(key, size) of each ``<Contents>`` of a ListObjectsV2 page, in order: one
    regex pass, or ElementTree when the page does not have the usual shape (Key
    before Size in every entry)."""
    pairs = _PAIR_RE.findall(body)
    if len(pairs) == body.count(b"<Contents>"):
        return [
            (html.unescape(k.decode("utf-8")) if b"&" in k else k.decode("utf-8"), int(n))
            for k, n in pairs
        ]
    root = ET.fromstring(body)
    ns = root.tag[: root.tag.index("}") + 1] if root.tag.startswith("{") else ""
    return [
        (item.findtext(f"{ns}Key") or "", int(item.findtext(f"{ns}Size") or 0))
        for item in root.iterfind(f"{ns}Contents")
    ]


class LeanS3:
    """Single-object requests and listings, signed with SigV4, for one bucket."""

    page_size = 1000
    """Keys per listing request (S3's maximum)."""

    def __init__(self, driver: Any, cfg: S3Config, pool_size: int) -> None:
        self.driver = driver
        self.cfg = cfg
        self.bucket = cfg.bucket
        if cfg.host:
            parts = urlsplit(f"{'https' if cfg.use_https else 'http'}://{cfg.host}")
            self.https = cfg.use_https
            base_host, port = parts.hostname or "", parts.port
            netloc = cfg.host
        else:  # AWS
            self.https = True
            base_host, port = f"s3.{cfg.aws_region}.amazonaws.com", None
            netloc = base_host
        if cfg.path_style_request:
            self.connect_host, self.host_header = base_host, netloc
            self._path_prefix = f"/{quote(self.bucket, safe='')}/"
            self._bucket_path = self._path_prefix[:-1]
        else:
            self.connect_host, self.host_header = (
                f"{self.bucket}.{base_host}",
                f"{self.bucket}.{netloc}",
            )
            self._path_prefix = self._bucket_path = "/"
        self.port = port or (443 if self.https else 80)
        self._context: ssl.SSLContext | None = None
        if self.https:
            ctx = ssl.create_default_context(cafile=cfg.ca_file, capath=cfg.ca_path)
            if not cfg.verify_ssl:
                ctx.check_hostname = False
                ctx.verify_mode = ssl.CERT_NONE
            self._context = ctx
        self._timeout = max(cfg.connect_timeout, cfg.read_timeout)
        self._access = cfg.key_id or ""
        self._secret = cfg.key.reveal() if cfg.key else ""
        self._token = cfg.session_token.reveal() if cfg.session_token else None
        self._region = cfg.aws_region
        self._keys: dict[str, bytes] = {}
        self._sse = _sse_headers(cfg, "")
        self._idle: list[Connection] = []
        self._max_idle = pool_size
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"LeanS3({self.driver.identity!r})"

    # ------------------------------------------------------------ signing

    def _signing_key(self, date: str) -> bytes:
        key = self._keys.get(date)
        if key is None:
            key = hmac.new(("AWS4" + self._secret).encode(), date.encode(), hashlib.sha256).digest()
            for part in (self._region, "s3", "aws4_request"):
                key = hmac.new(key, part.encode(), hashlib.sha256).digest()
            self._keys = {date: key}
        return key

    def _headers(
        self, method: str, path: str, extra: dict[str, str], query: str = "", *, sse: bool = True
    ) -> dict[str, str]:
        """The signed headers of one request (``sse``: with this bucket's SSE-C key)."""
        amz_date = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        date = amz_date[:8]
        headers = {
            "host": self.host_header,
            "x-amz-content-sha256": _UNSIGNED,
            "x-amz-date": amz_date,
            **(self._sse if sse else {}),
            **extra,
        }
        if self._token:
            headers["x-amz-security-token"] = self._token
        names = sorted(headers)
        signed = ";".join(names)
        canonical = "\n".join(
            (method, path, query, *(f"{n}:{headers[n]}" for n in names), "", signed, _UNSIGNED)
        )
        scope = f"{date}/{self._region}/s3/aws4_request"
        to_sign = (
            f"AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n"
            f"{hashlib.sha256(canonical.encode()).hexdigest()}"
        )
        signature = hmac.new(self._signing_key(date), to_sign.encode(), hashlib.sha256).hexdigest()
        headers["authorization"] = (
            f"AWS4-HMAC-SHA256 Credential={self._access}/{scope}, "
            f"SignedHeaders={signed}, Signature={signature}"
        )
        headers["user-agent"] = "objstore"
        return headers

    # ------------------------------------------------------------ transport

    def _connect(self) -> Connection:
        return Connection(self.connect_host, self.port, self._timeout, self._context)

    def _request(
        self,
        method: str,
        key: str | None,
        body: bytes | None,
        extra: dict[str, str],
        what: str,
        query: str = "",
    ) -> Response:
        """One request (``key=None``: the bucket itself), on a pooled connection;
        a kept-alive connection the server closed meanwhile is replaced once."""
        path = self._bucket_path if key is None else self._path_prefix + quote(key, safe="/-_.~")
        url = f"{path}?{query}" if query else path
        for attempt in (1, 2):
            with self._lock:
                conn = self._idle.pop() if self._idle else None
            reused = conn is not None
            if conn is None:
                conn = self._connect()
            # SSE-C headers belong to object requests only, not to listings
            headers = self._headers(method, path, extra, query, sse=key is not None)
            try:
                resp = conn.request(method, url, headers, body)
            except (OSError, ProtocolError) as exc:
                if reused and attempt == 1:
                    continue  # a kept-alive connection the server had closed: once more
                raise BackendUnavailable(
                    f"{self.driver.identity} {what}: {type(exc).__name__}: {exc}"
                ) from None
            if not resp.will_close:
                with self._lock:
                    if len(self._idle) < self._max_idle:
                        self._idle.append(conn)
                        conn = None
                if conn is not None:
                    conn.close()
            return resp
        raise AssertionError("unreachable")  # pragma: no cover

    @staticmethod
    def _client_error(resp: Response, op: str, status: int | None = None) -> ClientError:
        """An error answer as botocore's ClientError, which the driver's tables read
        (``status`` overrides the answer's, for an error inside a 200)."""
        status = status or resp.status
        code_m = _CODE_RE.search(resp.body)
        msg_m = _MESSAGE_RE.search(resp.body)
        code = code_m.group(1).decode("utf-8", "replace") if code_m else str(status)
        message = msg_m.group(1).decode("utf-8", "replace") if msg_m else (resp.reason or "")
        response: Any = {
            "Error": {"Code": code, "Message": message},
            "ResponseMetadata": {"HTTPStatusCode": status},
        }
        return ClientError(response, op)

    def _fail(self, resp: Response, op: str, what: str, status: int | None = None) -> None:
        """Hand the error to the driver's one translation table."""
        self.driver._translate(self._client_error(resp, op, status), what)

    def list_one(self) -> None:
        """List at most one key under the key prefix: the driver's bucket and
        credential probe.  An unreachable server or a 5xx is retried with back-off
        (``max_retries``, as boto3 would), then BackendUnavailable; another error
        answer raises botocore's ClientError for the driver to read."""
        query = _query({"list-type": "2", "max-keys": "1", "prefix": self.cfg.key_prefix})
        what = f"LIST {self.cfg.key_prefix}"
        for attempt in range(self.cfg.max_retries + 1):
            last = attempt == self.cfg.max_retries
            try:
                resp = self._request("GET", None, None, {}, what, query)
            except BackendUnavailable:
                if last:
                    raise
            else:
                if resp.status == 200:
                    return
                if resp.status < 500 or last:
                    raise self._client_error(resp, "ListObjectsV2")
            time.sleep(min(0.1 * 2**attempt, 2.0))

    # ------------------------------------------------------------ objects

    def put(self, repo_id: str, obj_id: str, data: bytes) -> None:
        """PUT one object (single request; callers keep large ones for the driver's
        multipart upload), with Content-MD5."""
        key = self.driver.key(repo_id, obj_id)
        extra = {
            "content-md5": base64.b64encode(hashlib.md5(data).digest()).decode(),
            "content-length": str(len(data)),
        }
        if self.cfg.storage_class:
            extra["x-amz-storage-class"] = self.cfg.storage_class
        what = f"PUT {key}"
        resp = self._request("PUT", key, data, extra, what)
        if resp.status != 200:
            self._fail(resp, "PutObject", what)

    def get(self, repo_id: str, obj_id: str) -> bytes:
        """The object's bytes (NotFound, EncryptionKeyError... as the driver raises;
        a body cut short is BackendUnavailable, from the connection)."""
        key = self.driver.key(repo_id, obj_id)
        what = f"GET {key}"
        resp = self._request("GET", key, None, {}, what)
        if resp.status != 200:
            self._fail(resp, "GetObject", what)
        return resp.body

    def stored_with_own_key(self, repo_id: str, obj_id: str) -> bool:
        """As the driver's ``stored_with_own_key``: whether the object is stored with
        this client's SSE-C key (or without SSE-C when it has none), from a HEAD
        and the key fingerprint the server returns.  NotFound if missing."""
        key = self.driver.key(repo_id, obj_id)
        what = f"HEAD {key}"
        resp = self._request("HEAD", key, None, {}, what)
        if resp.status == 400 or (resp.status == 403 and self._sse):
            return False  # a key was needed, or ours is not the object's
        if resp.status != 200:
            self._fail(resp, "HeadObject", what)
        if not self._sse:
            return not resp.getheader("x-amz-server-side-encryption-customer-algorithm")
        ours = self._sse["x-amz-server-side-encryption-customer-key-md5"]
        return ours in (resp.getheader("x-amz-server-side-encryption-customer-key-md5") or "")

    def copy_from(self, source: Any, repo_id: str, obj_id: str) -> bool:
        """As the driver's ``copy_from``: CopyObject from ``source`` (an S3Driver on the
        same endpoint and account, which the caller checked) re-encrypting from its
        SSE-C key (or none) to ours (or none).  ServerSideCopyUnsupported when the
        server refuses; other errors as the driver raises them."""
        from ..drivers.s3 import ServerSideCopyUnsupported

        src_key = source.key(repo_id, obj_id)
        key = self.driver.key(repo_id, obj_id)
        same = (source.bucket, src_key) == (self.bucket, key)
        extra = {
            "x-amz-copy-source": quote(f"{source.bucket}/{src_key}", safe="/-_.~"),
            # onto itself (re-keying in place) SeaweedFS refuses COPY; see S3Driver._copy
            "x-amz-metadata-directive": "REPLACE" if same else "COPY",
            "content-length": "0",
            **_sse_headers(source.cfg, "copy-source-"),
        }
        if self.cfg.storage_class:
            extra["x-amz-storage-class"] = self.cfg.storage_class
        what = f"COPY {source.bucket}/{src_key} -> {key}"
        resp = self._request("PUT", key, b"", extra, what)
        if resp.status == 200 and b"<Error>" not in resp.body:  # a copy can fail inside a 200
            return True
        code_m = _CODE_RE.search(resp.body)
        code = code_m.group(1).decode("utf-8", "replace") if code_m else str(resp.status)
        if code in ("NotImplemented", "InvalidRequest", "InvalidArgument") or resp.status == 501:
            raise ServerSideCopyUnsupported(
                f"{self.driver.identity}: server-side copy refused ({code})"
            )
        self._fail(resp, "CopyObject", what, 500 if resp.status == 200 else None)
        return False  # pragma: no cover - _fail raises

    def list(self, repo_id: str | None = None) -> Iterator[ObjectInfo]:
        """As the driver's ``list``: every object (of one repo), sorted by
        (repo_id, obj_id), streamed a page (``page_size`` keys) at a time; names
        that are not valid ids are skipped."""
        base = self.cfg.key_prefix
        prefix = base + (f"{repo_id}/" if repo_id else "")
        cut = len(base)
        token: str | None = None
        last = ""
        what = f"LIST {prefix}"
        while True:
            params = {
                "encoding-type": "url",
                "list-type": "2",
                "max-keys": str(self.page_size),
                "prefix": prefix,
            }
            if token is not None:
                params["continuation-token"] = token
            resp = self._request("GET", None, None, {}, what, _query(params))
            if resp.status != 200:
                self._fail(resp, "ListObjectsV2", what)
            body = resp.body
            url_encoded = b"<EncodingType>url</EncodingType>" in body
            for key, size in _page_entries(body):
                if url_encoded and "%" in key:
                    key = unquote(key)
                if key <= last:
                    raise BackendUnavailable(
                        f"{self.driver.identity}: the server returned keys out of order "
                        f"({last!r} then {key!r})"
                    )
                last = key
                m = _ADDRESS_RE.match(key, cut)
                if m is not None:
                    yield ObjectInfo(m.group(1), m.group(2), size)
            token_m = _TOKEN_RE.search(body)
            if b"<IsTruncated>true</IsTruncated>" not in body or token_m is None:
                return
            token = html.unescape(token_m.group(1).decode("utf-8"))

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()
