"""A scripted S3 endpoint on loopback, for the answers real servers seldom give.

:class:`HostileS3` accepts connections on 127.0.0.1, reads each request (request
line, headers, a body by Content-Length or chunked), records it in
``server.requests`` and answers with what the test's ``script(request)``
returns:

* ``bytes``: sent as they are (anything at all: a second answer, garbage, a
  lying Content-Length); then the next request is read from the same connection;
* :class:`Trickle`: bytes sent one at a time, ``interval`` seconds apart (after a
  first burst, e.g. the status line and headers);
* ``HANG``: the request is read and never answered;
* ``CLOSE``: the connection is closed at once;
* a callable ``answer(sock, stopping)``: writes what it likes (e.g. an endless
  body) until it returns or ``stopping`` is set.

After anything but ``bytes`` the connection is closed.  ``None`` means "answer
as a plain S3 server would" (:func:`s3_default`: the bucket check and listings
see an empty bucket, PUTs and multipart uploads succeed, GET/HEAD find nothing).

It has the attributes of the real test servers that ``helpers.s3_section``
reads (host, http_port, access_key, secret_key), and ``close()`` leaves no
thread behind.  Responses are built by hand (:func:`answer`), never by
http.server, so that every byte is the test's choice.
"""

from __future__ import annotations

import contextlib
import hashlib
import socket
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Union
from urllib.parse import parse_qsl, unquote, urlsplit
from xml.sax.saxutils import escape

from .servers import LOOPBACK

_MAX_HEAD = 1024 * 1024


@dataclass(frozen=True)
class Request:
    """One request as received (``path`` unquoted, header names lower-case)."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body_size: int

    @property
    def bucket(self) -> str:
        return self.path.lstrip("/").split("/", 1)[0]

    @property
    def key(self) -> str:
        """The object key ("" for a bucket-level request)."""
        parts = self.path.lstrip("/").split("/", 1)
        return parts[1] if len(parts) == 2 else ""

    @property
    def is_bucket_check(self) -> bool:
        """The open-time probe: HEAD on the bucket, or a listing of at most one key."""
        if self.key:
            return False
        return self.method == "HEAD" or (self.method == "GET" and self.query.get("max-keys") == "1")

    @property
    def is_listing(self) -> bool:
        """A ListObjects request other than the bucket check."""
        return (
            self.method == "GET" and not self.key and "uploads" not in self.query
        ) and not self.is_bucket_check


@dataclass(frozen=True)
class Trickle:
    """Send the first ``burst`` bytes of ``data`` at once, then the rest one byte
    at a time, ``interval`` seconds apart."""

    data: bytes
    interval: float = 0.5
    burst: int = 0


class _Marker:
    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return self.name


HANG = _Marker("HANG")
CLOSE = _Marker("CLOSE")

Writer = Callable[[socket.socket, threading.Event], None]
Answer = Union[bytes, Trickle, _Marker, Writer]
Script = Callable[[Request], Union[Answer, None]]

# --------------------------------------------------------------------------- answers

_REASONS = {200: "OK", 204: "No Content", 301: "Moved Permanently", 307: "Temporary Redirect",
            404: "Not Found", 500: "Internal Server Error"}  # fmt: skip


def answer(
    status: int,
    body: bytes = b"",
    headers: Iterable[tuple[str, str]] = (),
    *,
    content_length: bool = True,
) -> bytes:
    """A complete HTTP/1.1 answer; a Content-Length of ``body`` unless told otherwise."""
    lines = [f"HTTP/1.1 {status} {_REASONS.get(status, 'Whatever')}"]
    lines += [f"{name}: {value}" for name, value in headers]
    if content_length:
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def xml(body: str) -> bytes:
    return b'<?xml version="1.0" encoding="UTF-8"?>\n' + body.encode()


def error_body(code: str, message: str = "scripted error") -> bytes:
    return xml(f"<Error><Code>{code}</Code><Message>{message}</Message></Error>")


def error(status: int, code: str, message: str = "scripted error") -> bytes:
    """An S3 error answer."""
    return answer(status, error_body(code, message), [("Content-Type", "application/xml")])


def contents(key: str, size: str | None = "1") -> str:
    """One ``<Contents>`` entry (``size=None``: without ``<Size>``; any text otherwise)."""
    size_xml = "" if size is None else f"<Size>{size}</Size>"
    return (
        f"<Contents><Key>{escape(key)}</Key><LastModified>2024-01-01T00:00:00.000Z"
        f"</LastModified><ETag>&quot;0&quot;</ETag>{size_xml}"
        "<StorageClass>STANDARD</StorageClass></Contents>"
    )


def list_body(
    entries: Iterable[str], *, truncated: bool = False, token: str | None = None, head: str = ""
) -> bytes:
    """A ListObjectsV2 result document (``entries`` from :func:`contents`)."""
    parts = [
        f'{head}<ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">',
        "<Name>bucket</Name><Prefix></Prefix><MaxKeys>1000</MaxKeys>",
        f"<IsTruncated>{'true' if truncated else 'false'}</IsTruncated>",
    ]
    if token is not None:
        parts.append(f"<NextContinuationToken>{escape(token)}</NextContinuationToken>")
    parts.extend(entries)
    parts.append("</ListBucketResult>")
    return xml("".join(parts))


def list_page(
    entries: Iterable[str], *, truncated: bool = False, token: str | None = None
) -> bytes:
    """A ListObjectsV2 answer."""
    body = list_body(entries, truncated=truncated, token=token)
    return answer(200, body, [("Content-Type", "application/xml")])


def _result(root: str, inner: str = "") -> bytes:
    """A 200 answer carrying the XML document ``<root>inner</root>``."""
    return answer(200, xml(f"<{root}>{inner}</{root}>"), [("Content-Type", "application/xml")])


def s3_default(req: Request) -> bytes:
    """What a plain S3 server with empty buckets answers."""
    if not req.key:
        if req.method == "HEAD":
            return answer(200)
        if req.method == "GET":
            return list_page([])
        if req.method == "POST" and "delete" in req.query:
            return _result("DeleteResult")
        return error(405, "MethodNotAllowed")
    etag = [("ETag", f'"{hashlib.md5(req.path.encode()).hexdigest()}"')]
    where = f"<Bucket>{req.bucket}</Bucket><Key>{escape(req.key)}</Key>"
    if req.method == "POST" and "uploads" in req.query:
        return _result("InitiateMultipartUploadResult", f"{where}<UploadId>upload-1</UploadId>")
    if req.method == "POST" and "uploadId" in req.query:
        return _result("CompleteMultipartUploadResult", f"{where}<ETag>&quot;0-1&quot;</ETag>")
    if req.method == "PUT" and "x-amz-copy-source" in req.headers:
        return _result(
            "CopyObjectResult",
            "<LastModified>2024-01-01T00:00:00.000Z</LastModified><ETag>&quot;0&quot;</ETag>",
        )
    if req.method == "PUT":
        return answer(200, headers=etag)
    if req.method == "DELETE":
        return answer(204, content_length=False)
    if req.method == "HEAD":
        return answer(404, content_length=False)
    return error(404, "NoSuchKey")


# --------------------------------------------------------------------------- server


class _Closed(Exception):
    """The client closed the connection (or the server is stopping)."""


class _Reader:
    """Reads requests from one (blocking) connection."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buf = b""

    def _more(self) -> None:
        data = self.sock.recv(65536)
        if not data:
            raise _Closed()
        self.buf += data

    def until(self, sep: bytes) -> bytes:
        while sep not in self.buf:
            if len(self.buf) > _MAX_HEAD:
                raise _Closed()
            self._more()
        data, self.buf = self.buf.split(sep, 1)
        return data

    def skip(self, n: int) -> int:
        """Consume ``n`` bytes (not kept); returns ``n``."""
        left = n
        while left:
            if not self.buf:
                self._more()
            take = min(left, len(self.buf))
            self.buf = self.buf[take:]
            left -= take
        return n


def _read_request(rd: _Reader) -> Request:
    head = rd.until(b"\r\n\r\n").decode("latin-1")
    request_line, *header_lines = head.split("\r\n")
    method, target, _version = request_line.split(" ", 2)
    headers: dict[str, str] = {}
    for line in header_lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    if headers.get("expect", "").lower() == "100-continue":
        rd.sock.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
    size = 0
    if "chunked" in headers.get("transfer-encoding", "").lower():
        while True:
            n = int(rd.until(b"\r\n").split(b";")[0], 16)
            size += rd.skip(n)
            rd.until(b"\r\n")
            if n == 0:
                break
    else:
        size = rd.skip(int(headers.get("content-length", "0")))
    url = urlsplit(target)
    query = dict(parse_qsl(url.query, keep_blank_values=True))
    return Request(method, unquote(url.path), query, headers, size)


class HostileS3:
    """The scripted endpoint: ``with HostileS3(script) as server: ...``."""

    access_key = "AKIDHOSTILE"
    secret_key = "hostile-secret-key"
    host = LOOPBACK
    https_port = None
    ca_file = None

    def __init__(self, script: Script = lambda req: None) -> None:
        self.script = script
        self.requests: list[Request] = []
        self.errors: list[Exception] = []
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self._conns: set[socket.socket] = set()
        self._threads: list[threading.Thread] = []
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.bind((self.host, 0))
        self._listener.listen(128)
        self._listener.settimeout(0.1)
        self.http_port: int = self._listener.getsockname()[1]
        self._acceptor = threading.Thread(target=self._accept_loop, name="hostile-accept")
        self._acceptor.start()

    def __enter__(self) -> HostileS3:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def seen(self, pred: Callable[[Request], bool]) -> list[Request]:
        """The requests received so far that match ``pred``."""
        with self._lock:
            return [r for r in self.requests if pred(r)]

    def _accept_loop(self) -> None:
        while not self._stopping.is_set():
            try:
                sock, _ = self._listener.accept()
            except socket.timeout:
                continue
            sock.settimeout(None)
            thread = threading.Thread(target=self._serve, args=(sock,), name="hostile-conn")
            with self._lock:
                self._conns.add(sock)
                self._threads.append(thread)
            thread.start()
        self._listener.close()

    def _serve(self, sock: socket.socket) -> None:
        rd = _Reader(sock)
        try:
            while not self._stopping.is_set():
                req = _read_request(rd)
                with self._lock:
                    self.requests.append(req)
                reply = self.script(req)
                if reply is None:
                    reply = s3_default(req)
                if isinstance(reply, bytes):
                    sock.sendall(reply)
                    continue  # keep-alive: the next request on this connection
                if isinstance(reply, Trickle):
                    sock.sendall(reply.data[: reply.burst])
                    for i in range(reply.burst, len(reply.data)):
                        if self._stopping.wait(reply.interval):
                            break
                        sock.sendall(reply.data[i : i + 1])
                elif reply is HANG:
                    _wait_for_client(sock)
                elif callable(reply):
                    reply(sock, self._stopping)
                return  # CLOSE, and after anything but plain bytes
        except (_Closed, OSError):
            return
        except Exception as exc:  # a broken script: reported by close()
            with self._lock:
                self.errors.append(exc)
        finally:
            with self._lock:
                self._conns.discard(sock)
            with contextlib.suppress(OSError):
                sock.close()

    def close(self) -> None:
        """Stop accepting, end every connection and join every thread."""
        self._stopping.set()
        self._acceptor.join(10)
        with self._lock:
            conns, threads = list(self._conns), list(self._threads)
        for sock in conns:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)  # wakes a blocked recv or sendall
        deadline = time.monotonic() + 10
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        alive = [t.name for t in [self._acceptor, *threads] if t.is_alive()]
        if alive:
            raise RuntimeError(f"HostileS3: threads still running after close: {alive}")
        if self.errors:
            raise RuntimeError(f"HostileS3: the script failed: {self.errors[0]!r}")


def _wait_for_client(sock: socket.socket) -> None:
    """Send nothing until the client closes the connection (or the server stops)."""
    while sock.recv(65536):
        pass


def then_close(data: bytes) -> Writer:
    """An answer writer: ``data``, then the connection is closed (a body "to EOF")."""
    return lambda sock, stopping: sock.sendall(data)


def then_hang(data: bytes) -> Writer:
    """An answer writer: ``data``, then nothing more, the connection left open."""

    def write(sock: socket.socket, stopping: threading.Event) -> None:
        sock.sendall(data)
        _wait_for_client(sock)

    return write


def endless(head: bytes, chunk: bytes) -> Writer:
    """An answer writer: ``head``, then ``chunk`` again and again until stopped."""

    def write(sock: socket.socket, stopping: threading.Event) -> None:
        sock.sendall(head)
        while not stopping.is_set():
            sock.sendall(chunk)  # blocks while the client does not read

    return write
