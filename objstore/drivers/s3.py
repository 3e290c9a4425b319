"""The S3 driver: SigV4 or SigV2, path-style or virtual-hosted, HTTP or HTTPS,
SSE-C customer keys, proxies; one request path for every operation.

Keys are ``<key_prefix><repo_id>/<obj_id>`` (Seafile's layout: no two-char split,
one bucket per kind).  Each operation is a :class:`_Op` value (method, key,
query, headers, body, what its answer must be); :meth:`S3Driver._send` signs it
(:mod:`.s3sign`), sends it over the pooled transport (:mod:`.http11`), retries
it under the one :class:`~objstore.retry.RetryPolicy`, and turns any failure into
:mod:`objstore.errors` through :func:`error_for`, the one table.  SSE-C headers
are built in :func:`sse_headers` and nowhere else.  botocore is loaded only when
the credentials come from its chain (no ``key_id``/``key``).
"""

from __future__ import annotations

import base64
import builtins
import hashlib
import importlib.util
import io
import logging
import os
import re
import ssl
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any, BinaryIO, TypeVar

from ..config import S3Config
from ..errors import (
    AuthError,
    BackendUnavailable,
    BucketNotFound,
    ConfigError,
    EncryptionKeyError,
    NotFound,
    ObjStoreError,
    PermissionDenied,
    ServerSideCopyUnsupported,
)
from ..ids import ObjectInfo, ObjKind
from ..retry import RetryPolicy
from ..streams import read_full
from . import s3xml
from .base import Driver, Properties
from .http11 import (
    BodyTooLarge,
    Connection,
    DeadlineExceeded,
    Endpoint,
    Pool,
    ProtocolError,
    Proxy,
    ProxyError,
    Response,
    basic_auth,
    environment_proxy,
)
from .s3sign import (
    UNSIGNED_PAYLOAD,
    Credentials,
    CredentialSource,
    SigV2,
    SigV4,
    canonical_query,
    query_string,
    uri_encode,
)

log = logging.getLogger("objstore.s3")

T = TypeVar("T")

ERROR_BODY_MAX = 64 * 1024
"""Error answers are read up to this size (the rest is dropped with the connection)."""
LIST_BODY_MAX = 16 * 1024 * 1024
SMALL_BODY_MAX = 1024 * 1024
"""Answers that carry only a small result document (PUT, COPY, multipart)."""
PAGE_SIZE = 1000
MAX_EMPTY_PAGES = 100
"""Truncated listing pages without keys in a row before the listing is refused."""

_AUTH_CODES = {
    "InvalidAccessKeyId", "SignatureDoesNotMatch", "ExpiredToken", "InvalidToken",
    "TokenRefreshRequired", "InvalidSecurity", "AuthorizationHeaderMalformed",
    "RequestTimeTooSkewed", "InvalidClientTokenId", "MissingSecurityHeader",
}  # fmt: skip
_NOT_FOUND_CODES = {"NoSuchKey", "NotFound"}
_RETRY_CODES = {
    "InternalError", "ServiceUnavailable", "SlowDown", "RequestTimeout", "Throttling",
    "ThrottlingException", "RequestLimitExceeded", "RequestThrottled", "TooManyRequests",
}  # fmt: skip
_SSC_REFUSED = {"NotImplemented", "InvalidRequest", "InvalidArgument"}
_SSE_HINTS = ("encrypt", "customer", "sse", "key md5", "key-md5", "algorithm")
_ADDRESS_RE = re.compile(
    r"([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})/([0-9a-f]{40})\Z"
)
_USER_AGENT = "objstore"


def sse_headers(key: str | None, *, copy_source: bool = False) -> dict[str, str]:
    """The SSE-C headers for ``key`` (none without a key); ``copy_source``: the
    headers naming the key of a copy's source."""
    if key is None:
        return {}
    raw = key.encode("utf-8")
    head = f"x-amz-{'copy-source-' if copy_source else ''}server-side-encryption-customer-"
    return {
        f"{head}algorithm": "AES256",
        f"{head}key": base64.b64encode(raw).decode("ascii"),
        f"{head}key-md5": base64.b64encode(hashlib.md5(raw).digest()).decode("ascii"),
    }


def _md5_b64(data: bytes) -> str:
    return base64.b64encode(hashlib.md5(data).digest()).decode("ascii")


# --------------------------------------------------------------------------- operations


@dataclass
class _Op:
    """One S3 request, described once: the driver signs, sends and checks it."""

    method: str
    key: str | None
    """The object key; None for the bucket itself."""
    what: str
    """How errors name the request (``GET <key>``); never a secret."""
    query: list[tuple[str, str | None]] = field(default_factory=list)
    """Parameters; None is a bare flag (``?uploads``)."""
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    sse: bool = False
    """Send this driver's SSE-C headers."""
    max_body: int = SMALL_BODY_MAX
    data: bool = False
    """The answer's body is object data (never read as an error document)."""
    result: tuple[str, ...] = ()
    """The root elements a 200's body may have (a result document nothing else
    parses; empty: the caller parses the body, or it carries nothing)."""
    ok: tuple[int, ...] = (200,)


@dataclass(frozen=True)
class _Answer:
    """What :func:`error_for` reads of an error answer."""

    status: int
    code: str
    message: str
    location: str | None = None


def error_for(
    op: _Op,
    answer: _Answer,
    *,
    where: str,
    bucket: str,
    host: str,
    has_key: bool,
    credentials_verified: bool,
) -> ObjStoreError:
    """The one table from an S3 error answer to an objstore error.

    ``credentials_verified``: a request with these credentials has succeeded, so
    a 403 is about this object or key, not about the credentials."""
    status, code = answer.status, answer.code
    label = f"{where} {op.what}"
    text = f"{code} {answer.message}".lower()
    on_object = op.key is not None
    if code == "NoSuchBucket":
        return BucketNotFound(f"bucket {bucket!r} does not exist on {host}")
    if code in _NOT_FOUND_CODES or (status == 404 and code not in ("NoSuchUpload",)):
        return NotFound(f"{label}: not found")
    if code in _AUTH_CODES:
        return AuthError(f"{label}: credentials rejected ({code})")
    if status == 407:
        return AuthError(f"{label}: the proxy rejected proxy_user/proxy_password (407)")
    if "x-amz-copy-source" in op.headers and (code in _SSC_REFUSED or status == 501):
        return ServerSideCopyUnsupported(f"{label}: server-side copy refused ({code or status})")
    if 300 <= status < 400:
        target = f" to {answer.location[:120]}" if answer.location else ""
        return BackendUnavailable(
            f"{label}: the server redirects{target} ({status} {code}); check host, "
            "aws_region and path_style_request",
            retryable=False,
        )
    if status == 400 and any(h in text for h in _SSE_HINTS):
        if not has_key:
            return EncryptionKeyError(
                f"{label}: the object is encrypted with SSE-C but no sse_c_key is set"
            )
        return EncryptionKeyError(
            f"{label}: SSE-C key not accepted ({code}); the object may have been "
            "stored without SSE-C"
        )
    if status == 400 and not has_key and on_object and op.method == "HEAD":
        # HEAD answers carry no body: a bare 400 on an object asks for the key
        return EncryptionKeyError(
            f"{label}: the object seems encrypted with SSE-C but no sse_c_key is set"
        )
    if status in (400, 403) and has_key and on_object and credentials_verified:
        return EncryptionKeyError(
            f"{label}: the SSE-C key does not match the one the object was written with"
        )
    if status == 403 or code == "AccessDenied":
        if credentials_verified:
            return PermissionDenied(f"{label}: access denied ({code or status})")
        return AuthError(f"{label}: credentials rejected ({code or status})")
    retryable = status >= 500 or status == 429 or code in _RETRY_CODES
    detail = f"{status} {code} {answer.message}".strip()
    return BackendUnavailable(f"{label}: {detail}", retryable=retryable)


def _transport_error(op: _Op, where: str, exc: BaseException) -> ObjStoreError:
    """A failure below HTTP (connection, TLS, framing, deadline) as an objstore error."""
    label = f"{where} {op.what}"
    if isinstance(exc, BodyTooLarge):
        hint = " (raise max_object_size)" if op.data else ""
        return BackendUnavailable(f"{label}: {exc}{hint}", retryable=False)
    if isinstance(exc, ProxyError):
        if exc.status in (401, 407):
            return AuthError(f"{label}: the proxy rejected proxy_user/proxy_password ({exc})")
        return BackendUnavailable(f"{label}: {exc}")
    if isinstance(exc, ssl.SSLCertVerificationError):
        return BackendUnavailable(
            f"{label}: TLS certificate not trusted ({exc.verify_message}); set ca_file or "
            "ca_path (or AWS_CA_BUNDLE, or ca_bundle in the AWS config file)",
            retryable=False,
        )
    if isinstance(exc, DeadlineExceeded):
        return BackendUnavailable(f"{label}: {exc} (request_timeout)")
    reason = str(exc).strip() or type(exc).__name__
    return BackendUnavailable(f"{label}: {type(exc).__name__}: {reason[:200]}")


# --------------------------------------------------------------------------- TLS


def _default_ca_bundle() -> str | None:
    """The CA bundle boto3 uses by default: certifi's if installed, else botocore's."""
    for name, file in (("certifi", "cacert.pem"), ("botocore", "cacert.pem")):
        spec = importlib.util.find_spec(name)
        if spec is not None and spec.origin:
            path = os.path.join(os.path.dirname(spec.origin), file)
            if os.path.isfile(path):
                return path
    return None


def _pem_directory(path: str) -> str:
    """Every PEM certificate in a directory, concatenated (hashed links or not)."""
    pems = []
    for name in sorted(os.listdir(path)):
        full = os.path.join(path, name)
        if os.path.isfile(full):
            with open(full, "rb") as fh:
                data = fh.read()
            if b"-----BEGIN CERTIFICATE-----" in data:
                pems.append(data.decode("ascii", "replace").strip())
    if not pems:
        raise ConfigError(f"{path}: no PEM certificates in the directory", option="ca_path")
    return "\n".join(pems) + "\n"


def _profile_ca_bundle(env: Mapping[str, str]) -> tuple[str, str, str] | None:
    """The ``ca_bundle`` of the active profile in the AWS config file, found as
    boto3 finds it (botocore's own loader; the file ``AWS_CONFIG_FILE``, else
    ``~/.aws/config``; the profile ``AWS_DEFAULT_PROFILE``, else ``AWS_PROFILE``,
    else ``default``): (file, section, value), or None when there is none.  A
    file botocore cannot parse is a ConfigError (as it is to boto3)."""
    path = os.path.expanduser(os.path.expandvars(env.get("AWS_CONFIG_FILE") or "~/.aws/config"))
    if not os.path.isfile(path):
        return None
    from botocore.configloader import load_config
    from botocore.exceptions import BotoCoreError

    try:
        profiles = load_config(path).get("profiles", {})
    except BotoCoreError:  # its message may quote a line of the file: a secret, perhaps
        raise ConfigError("not an AWS config file botocore can parse", file=path) from None
    name = env.get("AWS_DEFAULT_PROFILE") or env.get("AWS_PROFILE") or "default"
    bundle = profiles.get(name, {}).get("ca_bundle")
    section = name if name == "default" else f"profile {name}"
    return (path, section, bundle) if bundle else None


def tls_context(cfg: S3Config, env: Mapping[str, str] | None = None) -> ssl.SSLContext:
    """The TLS context of an HTTPS endpoint, with the trust boto3 would use:
    ``ca_file``, else the certificates in ``ca_path`` (hashed or not), else
    ``AWS_CA_BUNDLE``, else the ``ca_bundle`` of the AWS config file's active
    profile, else boto3's default bundle.  ``verify_ssl = false`` turns checks
    off."""
    from urllib3.util.ssl_ import create_urllib3_context

    env = os.environ if env is None else env
    ctx = create_urllib3_context()
    if not cfg.verify_ssl:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        return ctx
    ctx.check_hostname = True
    option, source = "ca_file", cfg.ca_file
    where: dict[str, str] = {}  # another file's setting: that file and section
    try:
        if cfg.ca_file:
            ctx.load_verify_locations(cafile=cfg.ca_file)
        elif cfg.ca_path:
            option, source = "ca_path", cfg.ca_path
            ctx.load_verify_locations(cadata=_pem_directory(cfg.ca_path))
        elif env.get("AWS_CA_BUNDLE"):
            option, source = "AWS_CA_BUNDLE", env["AWS_CA_BUNDLE"]
            ctx.load_verify_locations(cafile=env["AWS_CA_BUNDLE"])
        elif (profile := _profile_ca_bundle(env)) is not None:
            where["file"], where["section"], source = profile
            option = "ca_bundle"
            ctx.load_verify_locations(cafile=source)
        else:
            bundle = _default_ca_bundle()
            if bundle is None:
                ctx.load_default_certs()
            else:
                ctx.load_verify_locations(cafile=bundle)
    except (OSError, ssl.SSLError, ValueError) as exc:
        raise ConfigError(
            f"cannot load CA certificates from {source}: {getattr(exc, 'strerror', None) or exc}",
            option=option,
            **where,
        ) from None
    return ctx


# --------------------------------------------------------------------------- the driver


class S3Driver(Driver):
    """Objects of one kind in one bucket (optionally under ``key_prefix``)."""

    def __init__(self, cfg: S3Config, kind: ObjKind) -> None:
        self.cfg = cfg
        self.kind = kind
        self.bucket = cfg.bucket
        self.prefix = cfg.key_prefix
        self._sse_key = cfg.sse_c_key.reveal() if cfg.sse_c_key else None
        self._sse = sse_headers(self._sse_key)
        self.properties = Properties(
            max_connections=cfg.max_connections,
            server_side_copy=True,
            atomic_replace=True,
            multipart_threshold=cfg.multipart_threshold,
        )
        self.retry = RetryPolicy(cfg.max_retries)
        fixed = None
        if cfg.key_id and cfg.key:
            token = cfg.session_token.reveal() if cfg.session_token else None
            fixed = Credentials(cfg.key_id, cfg.key.reveal(), token)
        self._credentials = CredentialSource(fixed)
        self._v4 = SigV4(cfg.aws_region) if cfg.use_v4_signature else None
        self._v2 = SigV2()
        scheme = "https" if cfg.use_https or cfg.host is None else "http"
        if cfg.host:
            host, port = _split_host(cfg.host)
            netloc = cfg.host
        else:  # AWS
            host, port, netloc = f"s3.{cfg.aws_region}.amazonaws.com", None, None
        port = port or (443 if scheme == "https" else 80)
        netloc = netloc or host
        if cfg.path_style_request:
            self._connect_host, self._host_header = host, netloc
            self._object_base = f"/{uri_encode(self.bucket, keep_slash=False)}/"
        else:
            self._connect_host = f"{self.bucket}.{host}"
            self._host_header = f"{self.bucket}.{netloc}"
            self._object_base = "/"
        self._scheme, self._port = scheme, port
        self._endpoint = f"{scheme}://{netloc}"
        self._bucket_path = self._object_base  # path-style: /bucket/ (what SigV2 signs)
        self._v2_base = "" if cfg.path_style_request else f"/{self.bucket}"
        self._pool: Pool | None = None
        self._pool_lock = threading.Lock()
        self._credentials_verified = False

    def __repr__(self) -> str:
        return f"S3Driver({self.identity!r}, sse_c={self._sse_key is not None})"

    # ------------------------------------------------------------ identity

    @property
    def identity(self) -> str:
        return f"s3://{self.cfg.host or 'aws'}/{self.bucket}/{self.prefix}"

    @property
    def encryption(self) -> str | None:
        fingerprint = self._key_fingerprint()
        return None if fingerprint is None else f"sse-c:{fingerprint}"

    @property
    def cache_identity(self) -> str:
        fingerprint = self._key_fingerprint()
        return self.identity if fingerprint is None else f"{self.identity}#sse-c={fingerprint}"

    def _key_fingerprint(self) -> str | None:
        if self._sse_key is None:
            return None
        return hashlib.sha256(b"objstore-sse-c:" + self._sse_key.encode()).hexdigest()[:12]

    @property
    def endpoint(self) -> str:
        return self._endpoint

    def key(self, repo_id: str, obj_id: str) -> str:
        """The one place mapping an address to an S3 key."""
        return f"{self.prefix}{repo_id}/{obj_id}"

    def close(self) -> None:
        with self._pool_lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.close()

    # ------------------------------------------------------------ the request path

    @property
    def pool(self) -> Pool:
        """The connection pool, made on first use (it needs the TLS context)."""
        if self._pool is None:
            with self._pool_lock:
                if self._pool is None:
                    cfg = self.cfg
                    tls = tls_context(cfg) if self._scheme == "https" else None
                    endpoint = Endpoint(
                        self._scheme, self._connect_host, self._port, tls, self._proxy(),
                        cfg.connect_timeout, cfg.read_timeout,
                    )  # fmt: skip
                    self._pool = Pool(endpoint, cfg.max_connections)
        return self._pool

    def _proxy(self) -> Proxy | None:
        """``proxy_host`` from the configuration, else the environment's proxy for
        this endpoint (``HTTP_PROXY``/``HTTPS_PROXY``/``NO_PROXY``, as boto3)."""
        cfg = self.cfg
        if cfg.proxy_host:
            auth = None
            if cfg.proxy_user and cfg.proxy_password:
                auth = basic_auth(cfg.proxy_user, cfg.proxy_password.reveal())
            port = cfg.proxy_port or (443 if cfg.proxy_scheme == "https" else 80)
            return Proxy(cfg.proxy_scheme, cfg.proxy_host, port, auth)
        try:
            return environment_proxy(self._scheme, self._connect_host, self._port)
        except ValueError as exc:
            raise ConfigError(f"the environment's proxy setting is unusable: {exc}") from None

    def _path(self, op: _Op) -> str:
        if op.key is None:
            return self._bucket_path
        return self._object_base + uri_encode(op.key, keep_slash=True)

    def _signed_headers(self, op: _Op, path: str, query: str) -> dict[str, str]:
        creds = self._credentials.get()
        if creds is None:
            raise AuthError(
                f"{self.identity}: no credentials found (key_id/key, or the default chain: "
                "environment, shared files, instance or task role)"
            )
        headers = {"host": self._host_header, **op.headers}
        if op.body or op.method in ("PUT", "POST"):
            headers["content-length"] = str(len(op.body))
        if op.sse:
            headers.update(self._sse)
        if creds.token:
            headers["x-amz-security-token"] = creds.token
        if self._v4 is not None:
            amz_date = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
            headers["x-amz-date"] = amz_date
            headers["x-amz-content-sha256"] = UNSIGNED_PAYLOAD
            headers["authorization"] = self._v4.authorization(
                creds, op.method, path, query, headers, UNSIGNED_PAYLOAD, amz_date
            )
        else:
            headers["date"] = self._v2.date()
            resource = self._v2.canonical_resource(self._v2_base + path, op.query)
            headers["authorization"] = self._v2.authorization(creds, op.method, resource, headers)
        headers["user-agent"] = _USER_AGENT
        return headers

    def _send(self, op: _Op) -> Response:
        """Send ``op`` under the retry policy; its answer, or the objstore error."""
        return self.retry.call(lambda: self._attempt(op), what=op.what)

    def _attempt(self, op: _Op) -> Response:
        """One attempt: send ``op``, read its whole answer, check it."""

        def whole(conn: Connection, target: str, headers: dict[str, str], deadline: float
                  ) -> Response:  # fmt: skip
            resp = conn.request(op.method, target, headers, op.body, max_body=op.max_body,
                                max_error_body=ERROR_BODY_MAX, deadline=deadline)  # fmt: skip
            self.pool.give(conn)
            return resp

        return self._checked(op, self._exchange(op, whole))

    def _open(self, op: _Op) -> tuple[Connection, int, str, dict[str, str], float]:
        """Send ``op`` and read the head of its answer: the connection (holding
        the body), status, reason, headers and the request's deadline."""

        def head(conn: Connection, target: str, headers: dict[str, str], deadline: float
                 ) -> tuple[Connection, int, str, dict[str, str], float]:  # fmt: skip
            status, reason, fields = conn.open_request(
                op.method, target, headers, op.body, deadline=deadline
            )
            return conn, status, reason, fields, deadline

        return self._exchange(op, head)

    def _exchange(self, op: _Op, send: Callable[[Connection, str, dict[str, str], float], T]) -> T:
        """Sign ``op`` and ``send`` it on a pooled connection (with the target,
        the signed headers and the deadline).  A kept-alive connection that the
        server had closed is replaced once; other failures are objstore errors."""
        path = self._path(op)
        query = canonical_query(op.query) if op.query else ""
        sent = query_string(op.query) if op.query else ""
        target = f"{path}?{sent}" if sent else path
        for fresh in (False, True):
            conn, reused = self.pool.take()
            headers = self._signed_headers(op, path, query)
            try:
                result = send(conn, target, headers, time.monotonic() + self.cfg.request_timeout)
            except (OSError, ProtocolError, ValueError) as exc:
                stale = reused and not conn.answered and not isinstance(exc, DeadlineExceeded)
                if stale and not fresh:
                    continue
                raise _transport_error(op, self.identity, exc) from None
            if log.isEnabledFor(logging.DEBUG):
                log.debug("%s %s", op.method, target)
            return result
        raise AssertionError("unreachable")  # pragma: no cover

    def _checked(self, op: _Op, resp: Response) -> Response:
        """The answer if it is what ``op`` expects, else the mapped error."""
        if resp.status in op.ok:
            if 200 <= resp.status < 300 and not op.data:
                err = s3xml.parse_error(resp.body) if resp.body else None
                if err is not None:  # a failure inside a 200 (COPY, multipart complete)
                    raise self._error(op, _Answer(resp.status, err.code, err.message))
                if op.result and resp.status == 200:
                    try:
                        s3xml.check_result(resp.body, op.result)
                    except s3xml.MalformedXML as exc:
                        raise BackendUnavailable(
                            f"{self.identity} {op.what}: malformed answer ({exc})"
                        ) from None
            self._credentials_verified = True
            return resp
        err = s3xml.parse_error(resp.body) if resp.body else None
        answer = _Answer(
            resp.status,
            err.code if err else "",
            err.message if err else resp.reason[:200],
            resp.header("location"),
        )
        raise self._error(op, answer)

    def _error(self, op: _Op, answer: _Answer) -> ObjStoreError:
        if answer.status == 403 and not self._credentials_verified and op.key is not None:
            self._credentials_verified = self._credentials_work()
        return error_for(
            op, answer, where=self.identity, bucket=self.bucket, host=self.cfg.host or "AWS",
            has_key=self._sse_key is not None,
            credentials_verified=self._credentials_verified,
        )  # fmt: skip

    def _credentials_work(self) -> bool:
        """Whether a bucket-level request with these credentials succeeds (tells a
        wrong SSE-C key or a refused object from refused credentials)."""
        try:
            self._attempt(self._list_op(self.prefix, max_keys=1))
        except ObjStoreError:
            return False
        return True

    # ------------------------------------------------------------ checks

    def check(self) -> None:
        """The bucket exists and the credentials can list it: else BucketNotFound,
        AuthError, or BackendUnavailable after retries."""
        try:
            self._send(self._list_op(self.prefix, max_keys=1))
        except PermissionDenied as exc:
            raise AuthError(f"{exc}; check key_id and key") from None

    # ------------------------------------------------------------ objects

    def get(self, repo_id: str, obj_id: str) -> bytes:
        key = self.key(repo_id, obj_id)
        op = _Op("GET", key, f"GET {key}", sse=True, data=True, max_body=self.cfg.max_object_size)
        return self._send(op).body

    def head(self, repo_id: str, obj_id: str) -> ObjectInfo:
        key = self.key(repo_id, obj_id)
        resp = self._send(_Op("HEAD", key, f"HEAD {key}", sse=True))
        return ObjectInfo(repo_id, obj_id, _content_length(resp, self.identity, key))

    def matches_encryption(self, repo_id: str, obj_id: str) -> bool:
        """From one HEAD with this driver's key: the key fingerprint the server
        returns, or the refusal of our key (another key, or a key that was needed)."""
        key = self.key(repo_id, obj_id)
        op = _Op("HEAD", key, f"HEAD {key}", sse=True, ok=(200, 400, 403))
        resp = self._send(op)
        if resp.status == 403 and self._sse_key is None:
            raise self._error(op, _Answer(403, "", resp.reason))
        if resp.status != 200:
            return False  # a key was needed, or ours is not the object's
        if self._sse_key is None:
            return not resp.header("x-amz-server-side-encryption-customer-algorithm")
        ours = self._sse["x-amz-server-side-encryption-customer-key-md5"]
        return ours in (resp.header("x-amz-server-side-encryption-customer-key-md5") or "")

    def put(self, repo_id: str, obj_id: str, data: bytes) -> None:
        if len(data) > self.cfg.multipart_threshold:
            self.put_stream(repo_id, obj_id, io.BytesIO(data))
            return
        self._put_one(self.key(repo_id, obj_id), data)

    def _put_one(self, key: str, data: bytes) -> None:
        self._send(_Op("PUT", key, f"PUT {key}", headers=self._write_headers(data), body=data,
                       sse=True))  # fmt: skip

    def _write_headers(self, data: bytes) -> dict[str, str]:
        headers = {"content-md5": _md5_b64(data)}
        if self.cfg.storage_class:
            headers["x-amz-storage-class"] = self.cfg.storage_class
        return headers

    def delete(self, repo_id: str, obj_id: str) -> None:
        key = self.key(repo_id, obj_id)
        self._send(_Op("DELETE", key, f"DELETE {key}", ok=(200, 204, 404)))

    def open_read(self, repo_id: str, obj_id: str) -> BinaryIO:
        stream = _ObjectStream(self, self.key(repo_id, obj_id))
        return io.BufferedReader(stream, 1024 * 1024)  # type: ignore[return-value]

    # ------------------------------------------------------------ multipart

    def put_stream(self, repo_id: str, obj_id: str, fileobj: BinaryIO) -> None:
        """Single PUT below ``multipart_threshold``, else a multipart upload that is
        aborted on any failure (including KeyboardInterrupt)."""
        key = self.key(repo_id, obj_id)
        first = read_full(fileobj, self.cfg.multipart_threshold + 1)
        if len(first) <= self.cfg.multipart_threshold:
            self._put_one(key, first)
            return
        self._multipart(key, first, fileobj)

    def _multipart(self, key: str, first: bytes, rest: BinaryIO) -> None:
        what = f"multipart PUT {key}"
        headers = {"x-amz-storage-class": self.cfg.storage_class} if self.cfg.storage_class else {}
        resp = self._send(_Op("POST", key, what, query=[("uploads", None)], headers=headers,
                              sse=True))  # fmt: skip
        try:
            upload_id = s3xml.parse_upload_id(resp.body)
        except s3xml.MalformedXML as exc:
            raise BackendUnavailable(f"{self.identity} {what}: malformed answer ({exc})") from None
        chunk = self.cfg.multipart_chunksize
        window = self.cfg.multipart_concurrency
        parts: list[tuple[int, str]] = []
        total = 0
        try:
            with ThreadPoolExecutor(max_workers=window, thread_name_prefix="objstore-mpu") as pool:
                pending: dict[Future[tuple[int, str]], int] = {}
                stream = _Chain(first, rest)
                number = 0
                while True:
                    data = stream.read(chunk)
                    if not data and number > 0:
                        break
                    number += 1
                    total += len(data)
                    pending[pool.submit(self._upload_part, key, upload_id, number, data)] = number
                    if len(pending) >= window:
                        done, _ = wait(pending, return_when=FIRST_EXCEPTION)
                        for fut in done:
                            parts.append(fut.result())
                            del pending[fut]
                    if len(data) < chunk:
                        break
                for fut in list(pending):
                    parts.append(fut.result())
            parts.sort()
            self._complete(key, upload_id, parts, total)
        except BaseException:
            self._abort(key, upload_id)
            raise

    def _upload_part(self, key: str, upload_id: str, number: int, data: bytes) -> tuple[int, str]:
        op = _Op(
            "PUT", key, f"upload part {number} of {key}",
            query=[("partNumber", str(number)), ("uploadId", upload_id)],
            headers={"content-md5": _md5_b64(data)}, body=data, sse=True,
        )  # fmt: skip
        etag = self._send(op).header("etag")
        if not etag:
            raise BackendUnavailable(f"{self.identity} {op.what}: the answer has no ETag")
        return number, etag

    def _complete(self, key: str, upload_id: str, parts: list[tuple[int, str]], size: int) -> None:
        body = s3xml.complete_multipart(parts)
        op = _Op(
            "POST", key, f"complete multipart PUT {key}", query=[("uploadId", upload_id)],
            headers={"content-md5": _md5_b64(body)}, body=body,
            result=("CompleteMultipartUploadResult",),
        )  # fmt: skip
        op.ok = (200, 404)
        tries = 0

        def attempt() -> None:
            nonlocal tries
            tries += 1
            resp = self._attempt(op)
            if resp.status == 200:
                return
            # 404 NoSuchUpload: fine if an earlier attempt completed it after all
            repo_id, obj_id = key[len(self.prefix) :].split("/", 1)
            if tries > 1 and self.head(repo_id, obj_id).size == size:
                return
            err = s3xml.parse_error(resp.body)
            raise self._error(op, _Answer(404, err.code if err else "", err.message if err else ""))

        self.retry.call(attempt, what=op.what)

    def _abort(self, key: str, upload_id: str) -> None:
        op = _Op("DELETE", key, f"abort multipart PUT {key}", query=[("uploadId", upload_id)],
                 ok=(200, 204, 404))  # fmt: skip
        try:
            self._send(op)
        except ObjStoreError:
            log.warning("could not abort the multipart upload of %s in %s", key, self.bucket)

    # ------------------------------------------------------------ listing

    def _list_op(self, prefix: str, token: str | None = None, max_keys: int = PAGE_SIZE) -> _Op:
        query: list[tuple[str, str | None]] = [
            ("list-type", "2"), ("encoding-type", "url"), ("max-keys", str(max_keys)),
            ("prefix", prefix),
        ]  # fmt: skip
        if token is not None:
            query.append(("continuation-token", token))
        return _Op("GET", None, f"LIST {prefix}", query=query, max_body=LIST_BODY_MAX)

    def list(self, repo_id: str | None = None) -> Iterator[ObjectInfo]:
        return self._list(self.prefix + (f"{repo_id}/" if repo_id else ""))

    def list_prefix(self, prefix: str) -> Iterator[ObjectInfo]:
        """One listing of the keys starting with ``<key_prefix><prefix>``."""
        return self._list(self.prefix + prefix)

    def _list(self, prefix: str) -> Iterator[ObjectInfo]:
        """Every object under the key ``prefix``, sorted, a page at a time.  The
        server must end the listing: a continuation token seen before, a truncated
        page without a token, keys out of order or outside the prefix, or a long
        run of empty pages are errors (BackendUnavailable), never a loop."""
        where = f"{self.identity} LIST {prefix}"
        cut = len(self.prefix)
        seen: set[str] = set()
        token: str | None = None
        last = ""
        empty = 0
        while True:
            resp = self._send(self._list_op(prefix, token))
            try:
                page = s3xml.parse_list_page(resp.body)
            except s3xml.MalformedXML as exc:
                raise BackendUnavailable(f"{where}: malformed listing ({exc})") from None
            for key, size, etag in page.entries:
                if not key.startswith(prefix):
                    raise BackendUnavailable(
                        f"{where}: the server listed {key[:80]!r}, outside the prefix",
                        retryable=False,
                    )
                if key <= last:
                    raise BackendUnavailable(
                        f"{where}: the server returned keys out of order "
                        f"({last[:80]!r} then {key[:80]!r})",
                        retryable=False,
                    )
                last = key
                m = _ADDRESS_RE.match(key, cut)
                if m is not None:
                    yield ObjectInfo(m.group(1), m.group(2), size, etag)
            if not page.truncated:
                return
            if not page.token:
                raise BackendUnavailable(
                    f"{where}: a truncated page without a continuation token", retryable=False
                )
            if page.token in seen:
                raise BackendUnavailable(
                    f"{where}: the server repeated a continuation token", retryable=False
                )
            seen.add(page.token)
            empty = 0 if page.entries else empty + 1
            if empty > MAX_EMPTY_PAGES:
                raise BackendUnavailable(
                    f"{where}: {empty} truncated pages without keys in a row", retryable=False
                )
            token = page.token

    def remove_repo(self, repo_id: str) -> None:
        batch: builtins.list[str] = []
        for info in self.list(repo_id):
            batch.append(self.key(info.repo_id, info.obj_id))
            if len(batch) == 1000:
                self._delete_batch(batch)
                batch = []
        if batch:
            self._delete_batch(batch)

    def _delete_batch(self, keys: builtins.list[str]) -> None:
        body = s3xml.delete_objects(keys)
        op = _Op("POST", None, f"DELETE {len(keys)} keys", query=[("delete", None)],
                 headers={"content-md5": _md5_b64(body)}, body=body)  # fmt: skip
        resp = self._send(op)
        try:
            errors = s3xml.parse_delete_errors(resp.body)
        except s3xml.MalformedXML as exc:
            raise BackendUnavailable(f"{self.identity} {op.what}: malformed ({exc})") from None
        if errors:
            raise BackendUnavailable(
                f"{self.identity}: {len(errors)} deletes failed, e.g. {errors[0].code}"
            )

    # ------------------------------------------------------------ copies

    def _copy(self, source: S3Driver, src_key: str, key: str) -> None:
        # Onto itself (SSE-C re-keying in place), SeaweedFS refuses the COPY directive
        # even though the encryption changes; REPLACE is accepted everywhere (objects
        # carry no user metadata to keep).
        same = (source.bucket, src_key) == (self.bucket, key)
        headers = {
            "x-amz-copy-source": uri_encode(f"/{source.bucket}/{src_key}", keep_slash=True),
            "x-amz-metadata-directive": "REPLACE" if same else "COPY",
            **sse_headers(source._sse_key, copy_source=True),
        }
        if self.cfg.storage_class:
            headers["x-amz-storage-class"] = self.cfg.storage_class
        self._send(_Op("PUT", key, f"COPY {source.bucket}/{src_key} -> {key}", headers=headers,
                       sse=True, result=("CopyObjectResult",)))  # fmt: skip

    def copy(self, src_repo_id: str, dst_repo_id: str, obj_id: str) -> None:
        try:
            self._copy(self, self.key(src_repo_id, obj_id), self.key(dst_repo_id, obj_id))
        except ServerSideCopyUnsupported:
            super().copy(src_repo_id, dst_repo_id, obj_id)

    def can_copy_from(self, source: Driver) -> bool:
        """Same endpoint and the same credentials: this driver's requests can read
        the source's bucket."""
        other = source.backend
        if not isinstance(other, S3Driver):
            return False
        a, b = self.cfg, other.cfg
        return (self.endpoint, a.key_id, a.key, a.aws_region, a.use_v4_signature) == (
            other.endpoint, b.key_id, b.key, b.aws_region, b.use_v4_signature,
        )  # fmt: skip

    def copy_from(self, source: Driver, repo_id: str, obj_id: str) -> bool:
        """CopyObject from another bucket (or key) on the same endpoint and account,
        re-encrypting from the source's SSE-C key (or none) to ours (or none).
        Raises ServerSideCopyUnsupported when the server refuses."""
        other = source.backend
        if not isinstance(other, S3Driver) or not self.can_copy_from(other):
            return False
        self._copy(other, other.key(repo_id, obj_id), self.key(repo_id, obj_id))
        return True


def _split_host(host: str) -> tuple[str, int | None]:
    """``host[:port]`` / ``[v6]:port`` into the name to connect to and the port."""
    if host.startswith("["):
        name, _, rest = host[1:].partition("]")
        return name, int(rest[1:]) if rest.startswith(":") else None
    name, sep, port = host.rpartition(":")
    return (name, int(port)) if sep else (host, None)


def _content_length(resp: Response, where: str, key: str) -> int:
    value = resp.header("content-length") or ""
    if not re.fullmatch(r"[0-9]{1,19}", value):
        raise BackendUnavailable(f"{where} HEAD {key}: the answer has no usable Content-Length")
    return int(value)


class _ObjectStream(io.RawIOBase):
    """An object's body, read as it arrives; a body cut short is resumed with a
    ranged GET from where it stopped (under the retry policy).  Each read must
    complete within ``request_timeout``."""

    def __init__(self, driver: S3Driver, key: str) -> None:
        self._driver = driver
        self._key = key
        self._op = _Op("GET", key, f"GET {key}", sse=True, data=True,
                       max_body=driver.cfg.max_object_size)  # fmt: skip
        self._pos = 0
        self._size = -1
        self._etag: str | None = None
        self._conn: Connection | None = None
        self._buffered: memoryview | None = None  # a chunked body read whole
        driver.retry.call(self._open, what=self._op.what)

    def readable(self) -> bool:
        return True

    def _open(self) -> None:
        """(Re)start the GET at the current position; its head, or the error."""
        d, op = self._driver, self._op
        op.headers = {}
        if self._pos:
            op.headers["range"] = f"bytes={self._pos}-"
            if self._etag:
                op.headers["if-match"] = self._etag
        op.ok = (206,) if self._pos else (200,)
        conn, status, reason, head, deadline = d._open(op)
        length = head.get("content-length")
        if status not in op.ok or length is None or not re.fullmatch(r"[0-9]{1,19}", length):
            # an error answer, or a body of unknown length: read it whole
            cap = op.max_body if status in op.ok else ERROR_BODY_MAX
            try:
                body = conn.read_body("GET", status, head, max_body=cap, deadline=deadline)
            except (OSError, ProtocolError, ValueError) as exc:
                raise _transport_error(op, d.identity, exc) from None
            d.pool.give(conn)
            d._checked(op, Response(status, reason, head, body))
            self._buffered = memoryview(body)
            self._size = self._pos + len(body)
            return
        if self._size < 0:
            self._size = int(length)
            self._etag = head.get("etag")
        elif self._pos + int(length) != self._size:
            conn.close()
            raise BackendUnavailable(f"{d.identity} {op.what}: the resumed body has another size")
        self._conn = conn

    def readinto(self, buffer: Any) -> int:
        if self._buffered is not None:
            n = min(len(buffer), len(self._buffered))
            buffer[:n] = self._buffered[:n]
            self._buffered = self._buffered[n:]
            self._pos += n
            return n
        left = self._size - self._pos
        if left <= 0:
            return 0
        n = min(len(buffer), left)
        data = self._driver.retry.call(lambda: self._read(n), what=self._op.what)
        buffer[: len(data)] = data
        self._pos += len(data)
        if self._pos == self._size and self._conn is not None:
            self._driver.pool.give(self._conn)
            self._conn = None
        return len(data)

    def _read(self, n: int) -> bytes:
        if self._conn is None:
            self._open()
            if self._buffered is not None:
                return self._take_buffered(n)
        assert self._conn is not None
        deadline = time.monotonic() + self._driver.cfg.request_timeout
        try:
            return self._conn.read_exact(n, deadline=deadline)
        except (OSError, ProtocolError, ValueError) as exc:
            self._conn = None  # closed by the connection
            raise _transport_error(self._op, self._driver.identity, exc) from None

    def _take_buffered(self, n: int) -> bytes:
        assert self._buffered is not None
        data = bytes(self._buffered[:n])
        self._buffered = self._buffered[n:]
        return data

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
        super().close()


class _Chain:
    """``head`` bytes followed by the rest of ``tail``, read in whole chunks."""

    def __init__(self, head: bytes, tail: BinaryIO) -> None:
        self._head = head
        self._tail = tail

    def read(self, n: int) -> bytes:
        if self._head:
            out, self._head = self._head[:n], self._head[n:]
            if len(out) < n:
                out += read_full(self._tail, n - len(out))
            return out
        return read_full(self._tail, n)
