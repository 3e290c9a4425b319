"""The S3 driver: boto3, SigV2/SigV4, path-style or virtual-hosted, SSE-C.

Keys are ``<key_prefix><repo_id>/<obj_id>`` (Seafile's layout: no two-char split,
one bucket per kind).  botocore errors are translated here, in
:func:`_translate`, and nowhere else.

Importing boto3 and building a client costs about 0.3 s of CPU, so the boto3
client is made on first use, and the open-time bucket check goes through the
lean SigV4 client (:mod:`objstore.drivers.lean`) where the configuration allows:
a process that only checks, lists and moves single objects never loads boto3.
"""

from __future__ import annotations

import base64
import builtins
import functools
import hashlib
import io
import logging
import os
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from typing import TYPE_CHECKING, Any, BinaryIO, NoReturn, TypeVar
from urllib.parse import urlsplit, urlunsplit

import botocore.exceptions as bexc

from ..config import S3Config
from ..errors import (
    AuthError,
    BackendUnavailable,
    BucketNotFound,
    EncryptionKeyError,
    NotFound,
    ObjStoreError,
    PermissionDenied,
)
from ..ids import ObjectInfo, ObjKind, is_obj_id, is_repo_id
from ..streams import read_full
from .base import Driver, Properties

if TYPE_CHECKING:
    import boto3

    from .lean import LeanS3

log = logging.getLogger("objstore.s3")

T = TypeVar("T")

_session_lock = threading.Lock()
_session: boto3.session.Session | None = None


def _shared_session() -> boto3.session.Session:
    """One boto3 session for every client (call with ``_session_lock`` held): a new
    session parses botocore's endpoint and service JSON again, about 0.3 s per
    client.  Credentials are passed per client, so nothing else is shared."""
    global _session
    if _session is None:
        import boto3

        _session = boto3.session.Session()
    return _session


_AUTH_CODES = {
    "InvalidAccessKeyId", "SignatureDoesNotMatch", "ExpiredToken", "InvalidToken",
    "TokenRefreshRequired", "InvalidSecurity", "AuthorizationHeaderMalformed",
    "RequestTimeTooSkewed", "InvalidClientTokenId", "MissingSecurityHeader",
}  # fmt: skip
_NOT_FOUND_CODES = {"NoSuchKey", "404", "NotFound"}
_SSE_HINTS = ("encrypt", "customer", "sse", "key md5", "key-md5", "algorithm")


class _Truncated(Exception):
    """A GET body shorter than its Content-Length."""


@functools.cache
def _stream_errors() -> tuple[type[BaseException], ...]:
    """What reading a GET body can raise (urllib3 is loaded with the boto3 client)."""
    import urllib3

    return (
        _Truncated,
        bexc.ResponseStreamingError,
        bexc.IncompleteReadError,
        bexc.ReadTimeoutError,
        bexc.ConnectionClosedError,
        urllib3.exceptions.HTTPError,
        OSError,
    )


class ServerSideCopyUnsupported(ObjStoreError):
    """The server refused a server-side copy that a GET+PUT can replace."""


def _sse_args(key: str | None, prefix: str = "") -> dict[str, str]:
    if key is None:
        return {}
    return {f"{prefix}SSECustomerAlgorithm": "AES256", f"{prefix}SSECustomerKey": key}


def _md5_b64(data: bytes) -> str:
    return base64.b64encode(hashlib.md5(data).digest()).decode("ascii")


def _sigv2_path_fix(request: Any, **_: Any) -> None:
    """boto/boto3#4433: SigV2 signs bucket-level path-style requests as ``/bucket/``
    but sends ``/bucket``; send exactly the path that is signed."""
    auth_path = getattr(request, "auth_path", None)
    if not auth_path or not auth_path.endswith("/"):
        return
    parts = urlsplit(request.url)
    if parts.path == auth_path[:-1]:
        request.url = urlunsplit(parts._replace(path=auth_path))


class _Reader(io.RawIOBase):
    """A readable stream over a GET body; errors are translated while reading."""

    def __init__(self, body: Any, translate: Callable[[Exception], NoReturn]) -> None:
        self._body = body
        self._translate = translate

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        try:
            chunk = self._body.read(len(buffer))
        except (bexc.BotoCoreError, OSError) as exc:
            self._translate(exc)
        buffer[: len(chunk)] = chunk
        return len(chunk)

    def close(self) -> None:
        if not self.closed:
            self._body.close()
        super().close()


class S3Driver(Driver):
    """Objects of one kind in one bucket (optionally under ``key_prefix``)."""

    def __init__(self, cfg: S3Config, kind: ObjKind, *, lean: bool = True) -> None:
        """``lean=False``: every request goes through boto3 (see :attr:`lean`)."""
        self.cfg = cfg
        self.kind = kind
        self.bucket = cfg.bucket
        self.prefix = cfg.key_prefix
        self._sse_key = cfg.sse_c_key.reveal() if cfg.sse_c_key else None
        self.properties = Properties(
            max_connections=cfg.max_connections, server_side_copy=True, atomic_replace=True
        )
        self._bundle: str | None = None
        self._use_lean = lean
        self._client: Any = None
        self._lean: LeanS3 | None = None
        self._lazy_lock = threading.Lock()

    def __repr__(self) -> str:
        return f"S3Driver({self.identity!r}, sse_c={self._sse_key is not None})"

    # ------------------------------------------------------------ setup

    def _verify(self) -> bool | str:
        cfg = self.cfg
        if not cfg.verify_ssl:
            return False
        if cfg.ca_file:
            return cfg.ca_file
        if cfg.ca_path:
            # botocore takes a bundle file, not a directory: concatenate the PEMs.
            fd, self._bundle = tempfile.mkstemp(prefix="objstore-ca-", suffix=".pem")
            with os.fdopen(fd, "wb") as out:
                for name in sorted(os.listdir(cfg.ca_path)):
                    path = os.path.join(cfg.ca_path, name)
                    if os.path.isfile(path):
                        with open(path, "rb") as fh:
                            data = fh.read()
                        if b"-----BEGIN CERTIFICATE-----" in data:
                            out.write(data.rstrip() + b"\n")
            return self._bundle
        return True

    @property
    def client(self) -> Any:
        """The boto3 client, made on first use."""
        if self._client is None:
            with self._lazy_lock:
                if self._client is None:
                    self._client = self._make_client()
        return self._client

    @property
    def lean(self) -> LeanS3 | None:
        """The lean SigV4 client for this bucket (made on first use, pooled to
        ``max_connections``), or None where the configuration needs boto3 (SigV2,
        the credential chain, a proxy) or the driver was made with ``lean=False``."""
        if not self._use_lean:
            return None
        if self._lean is None:
            from .lean import lean_client

            with self._lazy_lock:
                if self._lean is None:
                    self._lean = lean_client(self, self.cfg.max_connections)
                    self._use_lean = self._lean is not None
        return self._lean

    def _make_client(self) -> Any:
        from botocore.config import Config

        cfg = self.cfg
        proxies = None
        if cfg.proxy_host:
            auth = ""
            if cfg.proxy_user and cfg.proxy_password:
                auth = f"{cfg.proxy_user}:{cfg.proxy_password.reveal()}@"
            port = f":{cfg.proxy_port}" if cfg.proxy_port else ""
            url = f"{cfg.proxy_scheme}://{auth}{cfg.proxy_host}{port}"
            proxies = {"http": url, "https": url}
        config = Config(
            region_name=cfg.aws_region,
            signature_version="s3v4" if cfg.use_v4_signature else "s3",
            s3={"addressing_style": "path" if cfg.path_style_request else "virtual"},
            retries={"total_max_attempts": cfg.max_retries + 1, "mode": "standard"},
            max_pool_connections=cfg.max_connections,
            connect_timeout=cfg.connect_timeout,
            read_timeout=cfg.read_timeout,
            proxies=proxies,
            tcp_keepalive=True,
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
        )
        creds: dict[str, Any] = {}
        if cfg.key_id and cfg.key:
            creds = {
                "aws_access_key_id": cfg.key_id,
                "aws_secret_access_key": cfg.key.reveal(),
                "aws_session_token": cfg.session_token.reveal() if cfg.session_token else None,
            }
        with _session_lock:
            client = _shared_session().client(
                "s3",
                endpoint_url=cfg.endpoint_url,
                use_ssl=cfg.use_https or cfg.host is None,
                verify=self._verify(),
                config=config,
                **creds,
            )
        if not cfg.use_v4_signature:
            client.meta.events.register_last("before-sign.s3", _sigv2_path_fix)
        return client

    @property
    def identity(self) -> str:
        return f"s3://{self.cfg.host or 'aws'}/{self.bucket}/{self.prefix}"

    @property
    def cache_identity(self) -> str:
        if self._sse_key is None:
            return self.identity
        fingerprint = hashlib.sha256(b"objstore-sse-c:" + self._sse_key.encode()).hexdigest()[:12]
        return f"{self.identity}#sse-c={fingerprint}"

    def same_account(self, other: S3Driver) -> bool:
        """True when ``other`` lives on the same endpoint with the same credentials,
        so this driver's client can read its buckets."""
        a, b = self.cfg, other.cfg
        return (a.endpoint_url, a.key_id, a.key, a.aws_region) == (
            b.endpoint_url, b.key_id, b.key, b.aws_region,
        )  # fmt: skip

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
        if self._lean is not None:
            self._lean.close()
        if self._bundle:
            os.unlink(self._bundle)
            self._bundle = None

    # ------------------------------------------------------------ errors

    def _translate(self, exc: Exception, what: str = "", *, sse_key: str | None = "") -> NoReturn:
        """The one table mapping botocore errors to objstore errors."""
        where = f"{self.identity}{(' ' + what) if what else ''}"
        key = self._sse_key if sse_key == "" else sse_key
        if isinstance(exc, ObjStoreError):
            raise exc
        if isinstance(exc, bexc.ClientError):
            err = exc.response.get("Error", {})
            code = str(err.get("Code", ""))
            message = str(err.get("Message", ""))[:200]
            status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
            text = f"{code} {message}".lower()
            if code == "NoSuchBucket":
                raise BucketNotFound(
                    f"bucket {self.bucket!r} does not exist on {self.cfg.host or 'AWS'}"
                ) from None
            if code in _NOT_FOUND_CODES or (status == 404 and code != "NoSuchUpload"):
                raise NotFound(f"{where}: not found") from None
            if code in _AUTH_CODES:
                raise AuthError(f"{where}: credentials rejected ({code})") from None
            if status == 400 and any(h in text for h in _SSE_HINTS):
                if key is None:
                    raise EncryptionKeyError(
                        f"{where}: the object is encrypted with SSE-C but no sse_c_key is set"
                    ) from None
                raise EncryptionKeyError(
                    f"{where}: SSE-C key not accepted ({code}); the object may have been "
                    "stored without SSE-C"
                ) from None
            if status == 400 and key is None and what and code in ("400", "InvalidArgument"):
                # HEAD has no body: a bare 400 on an object is SeaweedFS/AWS asking for the key.
                raise EncryptionKeyError(
                    f"{where}: the object seems encrypted with SSE-C but no sse_c_key is set"
                ) from None
            if status in (400, 403) and key is not None and what and self._credentials_ok():
                raise EncryptionKeyError(
                    f"{where}: the SSE-C key does not match the one the object was written with"
                ) from None
            if status == 403 or code == "AccessDenied":
                if self._credentials_ok():
                    raise PermissionDenied(f"{where}: access denied ({code or status})") from None
                raise AuthError(f"{where}: credentials rejected ({code or status})") from None
            raise BackendUnavailable(f"{where}: {code or status} {message}".rstrip()) from None
        if isinstance(exc, bexc.NoCredentialsError):
            raise AuthError(
                f"{where}: no credentials found (key_id/key or the default chain)"
            ) from None
        if isinstance(exc, (bexc.BotoCoreError, OSError)):
            raise BackendUnavailable(f"{where}: {type(exc).__name__}: {exc}") from None
        raise exc

    def _list_one(self) -> None:
        """A bucket-level request: list at most one key under the prefix (through the
        lean client where it fits).  An error answer raises botocore's ClientError."""
        lean = self.lean
        if lean is not None:
            lean.list_one()
        else:
            self.client.list_objects_v2(Bucket=self.bucket, MaxKeys=1, Prefix=self.prefix)

    def _credentials_ok(self) -> bool:
        """Whether a bucket-level request succeeds (tells a bad key from bad credentials)."""
        try:
            self._list_one()
        except Exception:
            return False
        return True

    def _call(self, what: str, fn: Callable[..., T], **kwargs: Any) -> T:
        try:
            return fn(**kwargs)
        except Exception as exc:
            self._translate(exc, what)

    def key(self, repo_id: str, obj_id: str) -> str:
        """The one place mapping an address to an S3 key."""
        return f"{self.prefix}{repo_id}/{obj_id}"

    # ------------------------------------------------------------ checks

    def check(self) -> None:
        """The bucket exists and the credentials can list it; else BucketNotFound/AuthError."""
        try:
            self._list_one()
        except bexc.ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            if code in ("AccessDenied", "403") or code in _AUTH_CODES:
                raise AuthError(
                    f"{self.identity}: credentials rejected ({code}); check key_id and key"
                ) from None
            self._translate(exc, "")
        except Exception as exc:
            self._translate(exc, "")

    # ------------------------------------------------------------ objects

    def get(self, repo_id: str, obj_id: str) -> bytes:
        """GET the object.  A body cut mid-stream is retried (botocore retries only
        the request, not the body) with backoff, then BackendUnavailable."""
        key = self.key(repo_id, obj_id)
        what = f"GET {key}"
        stream_errors = _stream_errors()
        for attempt in range(self.cfg.max_retries + 1):
            resp = self._call(
                what,
                self.client.get_object,
                Bucket=self.bucket,
                Key=key,
                **_sse_args(self._sse_key),
            )
            try:
                with resp["Body"] as body:
                    data: bytes = body.read()
                length = resp.get("ContentLength")
                if length is not None and length != len(data):
                    raise _Truncated(f"truncated body ({len(data)} of {length} bytes)")
                return data
            except stream_errors as exc:
                if attempt == self.cfg.max_retries:
                    raise BackendUnavailable(
                        f"{self.identity} {what}: {type(exc).__name__} after {attempt + 1} attempts"
                    ) from None
                time.sleep(min(0.1 * 2**attempt, 2.0))
        raise AssertionError("unreachable")

    def open_read(self, repo_id: str, obj_id: str) -> BinaryIO:
        what = f"GET {self.key(repo_id, obj_id)}"
        resp = self._call(
            what, self.client.get_object, Bucket=self.bucket, Key=self.key(repo_id, obj_id),
            **_sse_args(self._sse_key),
        )  # fmt: skip
        raw = _Reader(resp["Body"], lambda exc: self._translate(exc, what))
        return io.BufferedReader(raw, buffer_size=1024 * 1024)  # type: ignore[return-value]

    def head(self, repo_id: str, obj_id: str) -> ObjectInfo:
        resp = self._call(
            f"HEAD {self.key(repo_id, obj_id)}", self.client.head_object,
            Bucket=self.bucket, Key=self.key(repo_id, obj_id), **_sse_args(self._sse_key),
        )  # fmt: skip
        return ObjectInfo(repo_id, obj_id, int(resp["ContentLength"]))

    def _put_args(self) -> dict[str, Any]:
        args: dict[str, Any] = dict(_sse_args(self._sse_key))
        if self.cfg.storage_class:
            args["StorageClass"] = self.cfg.storage_class
        return args

    def put(self, repo_id: str, obj_id: str, data: bytes) -> None:
        if len(data) > self.cfg.multipart_threshold:
            self.put_stream(repo_id, obj_id, io.BytesIO(data))
            return
        self._call(
            f"PUT {self.key(repo_id, obj_id)}", self.client.put_object,
            Bucket=self.bucket, Key=self.key(repo_id, obj_id), Body=data,
            ContentMD5=_md5_b64(data), ContentLength=len(data), **self._put_args(),
        )  # fmt: skip

    def put_stream(self, repo_id: str, obj_id: str, fileobj: BinaryIO) -> None:
        """Single PUT below ``multipart_threshold``, else a multipart upload that is
        aborted on any failure (including KeyboardInterrupt)."""
        first = read_full(fileobj, self.cfg.multipart_threshold + 1)
        if len(first) <= self.cfg.multipart_threshold:
            self._call(
                f"PUT {self.key(repo_id, obj_id)}", self.client.put_object,
                Bucket=self.bucket, Key=self.key(repo_id, obj_id), Body=first,
                ContentMD5=_md5_b64(first), ContentLength=len(first), **self._put_args(),
            )  # fmt: skip
            return
        self._multipart(repo_id, obj_id, io.BufferedReader(_Chain(first, fileobj)))

    def _multipart(self, repo_id: str, obj_id: str, stream: BinaryIO) -> None:
        key = self.key(repo_id, obj_id)
        what = f"multipart PUT {key}"
        upload = self._call(
            what, self.client.create_multipart_upload, Bucket=self.bucket, Key=key,
            **self._put_args(),
        )  # fmt: skip
        upload_id = upload["UploadId"]
        chunk = self.cfg.multipart_chunksize
        window = self.cfg.multipart_concurrency
        parts: list[dict[str, Any]] = []
        try:
            with ThreadPoolExecutor(max_workers=window, thread_name_prefix="objstore-mpu") as pool:
                pending: dict[Future[dict[str, Any]], int] = {}
                number = 0
                while True:
                    data = read_full(stream, chunk)
                    if not data and number > 0:
                        break
                    number += 1
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
            parts.sort(key=lambda p: int(p["PartNumber"]))
            self._call(
                what, self.client.complete_multipart_upload, Bucket=self.bucket, Key=key,
                UploadId=upload_id, MultipartUpload={"Parts": parts},
            )  # fmt: skip
        except BaseException:
            self._abort(key, upload_id)
            raise

    def _upload_part(self, key: str, upload_id: str, number: int, data: bytes) -> dict[str, Any]:
        resp = self._call(
            f"upload part {number} of {key}", self.client.upload_part, Bucket=self.bucket,
            Key=key, UploadId=upload_id, PartNumber=number, Body=data,
            ContentMD5=_md5_b64(data), ContentLength=len(data), **_sse_args(self._sse_key),
        )  # fmt: skip
        return {"PartNumber": number, "ETag": resp["ETag"]}

    def _abort(self, key: str, upload_id: str) -> None:
        try:
            self.client.abort_multipart_upload(Bucket=self.bucket, Key=key, UploadId=upload_id)
        except Exception:
            log.warning("could not abort multipart upload of %s in %s", key, self.bucket)

    def delete(self, repo_id: str, obj_id: str) -> None:
        key = self.key(repo_id, obj_id)
        try:
            self.client.delete_object(Bucket=self.bucket, Key=key)
        except bexc.ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in _NOT_FOUND_CODES:
                return
            self._translate(exc, f"DELETE {key}")
        except Exception as exc:
            self._translate(exc, f"DELETE {key}")

    def list(self, repo_id: str | None = None) -> Iterator[ObjectInfo]:
        prefix = self.prefix + (f"{repo_id}/" if repo_id else "")
        paginator = self.client.get_paginator("list_objects_v2")
        last = ""
        cut = len(self.prefix)
        try:
            for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix):
                for item in page.get("Contents", ()):
                    key = item["Key"]
                    if key <= last:
                        raise BackendUnavailable(
                            f"{self.identity}: the server returned keys out of order "
                            f"({last!r} then {key!r})"
                        )
                    last = key
                    repo, sep, obj = key[cut:].partition("/")
                    if sep and is_repo_id(repo) and is_obj_id(obj):
                        yield ObjectInfo(repo, obj, int(item["Size"]))
        except Exception as exc:
            self._translate(exc, f"LIST {prefix}")

    def _copy(self, src_bucket: str, src_key: str, src_sse: str | None, key: str) -> None:
        # Onto itself (SSE-C re-keying in place), SeaweedFS refuses the COPY directive
        # even though the encryption changes; REPLACE is accepted everywhere (objects
        # carry no user metadata to keep).
        same = (src_bucket, src_key) == (self.bucket, key)
        try:
            self.client.copy_object(
                Bucket=self.bucket, Key=key, CopySource={"Bucket": src_bucket, "Key": src_key},
                MetadataDirective="REPLACE" if same else "COPY",
                **_sse_args(src_sse, "CopySource"), **self._put_args(),
            )  # fmt: skip
        except bexc.ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
            if code in ("NotImplemented", "InvalidRequest", "InvalidArgument") or status == 501:
                raise ServerSideCopyUnsupported(
                    f"{self.identity}: server-side copy refused ({code or status})"
                ) from None
            self._translate(exc, f"COPY {src_bucket}/{src_key} -> {key}", sse_key=src_sse)
        except Exception as exc:
            self._translate(exc, f"COPY {src_bucket}/{src_key} -> {key}")

    def copy(self, src_repo_id: str, dst_repo_id: str, obj_id: str) -> None:
        try:
            self._copy(
                self.bucket, self.key(src_repo_id, obj_id), self._sse_key,
                self.key(dst_repo_id, obj_id),
            )  # fmt: skip
        except ServerSideCopyUnsupported:
            super().copy(src_repo_id, dst_repo_id, obj_id)

    def copy_from(self, source: Driver, repo_id: str, obj_id: str) -> bool:
        """CopyObject from another bucket (or key) on the same endpoint and account,
        re-encrypting from the source's SSE-C key (or none) to ours (or none).
        Raises ServerSideCopyUnsupported when the server refuses."""
        source = source.backend
        if not isinstance(source, S3Driver) or not self.same_account(source):
            return False
        self._copy(source.bucket, source.key(repo_id, obj_id), source._sse_key,
                   self.key(repo_id, obj_id))  # fmt: skip
        return True

    def stored_with_own_key(self, repo_id: str, obj_id: str) -> bool:
        """Whether the object is stored as this driver writes it: SSE-C encrypted with
        this driver's key, or not SSE-C encrypted when the driver has no key.  False
        for another key (or none).  NotFound if missing.  (A HEAD alone cannot tell:
        some servers answer a HEAD carrying a key for a plaintext object.)"""
        key = self.key(repo_id, obj_id)
        try:
            resp = self.client.head_object(Bucket=self.bucket, Key=key, **_sse_args(self._sse_key))
        except bexc.ClientError as exc:
            status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
            if status == 400 or (status == 403 and self._sse_key is not None):
                return False  # a key was needed, or ours is not the object's
            self._translate(exc, f"HEAD {key}")
        except Exception as exc:
            self._translate(exc, f"HEAD {key}")
        if self._sse_key is None:
            return not resp.get("SSECustomerAlgorithm")
        return _md5_b64(self._sse_key.encode("utf-8")) in str(resp.get("SSECustomerKeyMD5", ""))

    def remove_repo(self, repo_id: str) -> None:
        batch: list[dict[str, str]] = []
        for info in self.list(repo_id):
            batch.append({"Key": self.key(info.repo_id, info.obj_id)})
            if len(batch) == 1000:
                self._delete_batch(batch)
                batch = []
        if batch:
            self._delete_batch(batch)

    def _delete_batch(self, batch: builtins.list[dict[str, str]]) -> None:
        resp = self._call(
            "DELETE batch", self.client.delete_objects, Bucket=self.bucket,
            Delete={"Objects": batch, "Quiet": True},
        )  # fmt: skip
        errors = resp.get("Errors") or []
        if errors:
            raise BackendUnavailable(
                f"{self.identity}: {len(errors)} deletes failed, e.g. {errors[0].get('Code')}"
            )


class _Chain(io.RawIOBase):
    """``head`` bytes followed by the rest of ``tail``."""

    def __init__(self, head: bytes, tail: BinaryIO) -> None:
        self._head = memoryview(head)
        self._tail = tail
        self._lock = threading.Lock()

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        with self._lock:
            if self._head:
                n = min(len(buffer), len(self._head))
                buffer[:n] = self._head[:n]
                self._head = self._head[n:]
                return n
            data = self._tail.read(len(buffer))
            buffer[: len(data)] = data
            return len(data)
