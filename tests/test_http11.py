"""The S3 transport's HTTP/1.1 connection against a scripted server on loopback:
every answer shape S3 servers send (Content-Length, chunked, to EOF, HTTP/1.0,
1xx, HEAD), keep-alive reuse only when nothing is left unread, strict framing,
body caps and the request deadline.  The driver against hostile servers is in
test_hostile_s3.py; interop with real S3 servers in test_s3_driver.py and
test_conformance.py."""

from __future__ import annotations

import os
import socket
import ssl
import struct
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from objstore.drivers import http11
from objstore.drivers.http11 import (
    BodyTooLarge,
    Connection,
    DeadlineExceeded,
    Endpoint,
    ProtocolError,
    Response,
    tcp_progress,
)


def connect(port: int) -> Connection:
    return Connection(Endpoint("http", "127.0.0.1", port, None, None, 5.0, 5.0))


def ask(
    conn: Connection,
    method: str,
    target: str,
    headers: dict[str, str] | None = None,
    body: bytes = b"",
    *,
    cap: int = 64 << 20,
    timeout: float = 10.0,
) -> Response:
    """One request and its whole answer."""
    deadline = time.monotonic() + timeout
    status, reason, head = conn.open_request(method, target, headers or {}, body, deadline=deadline)
    data = conn.read_body(method, status, head, max_body=cap, deadline=deadline)
    return Response(status, reason, head, data)


class ScriptedServer:
    """Answers the n-th request with ``answers[n]`` (raw bytes); an answer ending
    in ``CLOSE`` closes the connection after it is sent; one ending in ``TRICKLE``
    is sent a byte every 0.2 s."""

    CLOSE = b"<close>"
    TRICKLE = b"<trickle>"

    def __init__(self, answers: Sequence[bytes]) -> None:
        self.answers = list(answers)
        self.requests: list[bytes] = []
        self.connections = 0
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _read_request(self, conn: socket.socket, buf: bytes) -> tuple[bytes, bytes] | None:
        while b"\r\n\r\n" not in buf:
            chunk = conn.recv(65536)
            if not chunk:
                return None
            buf += chunk
        head, _, rest = buf.partition(b"\r\n\r\n")
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        while len(rest) < length:
            rest += conn.recv(65536)
        return head + b"\r\n\r\n" + rest[:length], rest[length:]

    def _serve(self) -> None:
        while self.answers:
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            self.connections += 1
            with conn:
                buf = b""
                while self.answers:
                    got = self._read_request(conn, buf)
                    if got is None:
                        break
                    request, buf = got
                    self.requests.append(request)
                    answer = self.answers.pop(0)
                    close = answer.endswith(self.CLOSE)
                    answer = answer.removesuffix(self.CLOSE)
                    try:
                        if answer.endswith(self.TRICKLE):
                            for i in range(len(answer) - len(self.TRICKLE)):
                                conn.sendall(answer[i : i + 1])
                                time.sleep(0.2)
                        else:
                            conn.sendall(answer)
                    except OSError:
                        break
                    if close:
                        break

    def close(self) -> None:
        self._listener.close()
        self._thread.join(5)


@pytest.fixture
def serve() -> Iterator[Any]:
    servers: list[ScriptedServer] = []

    def start(*answers: bytes) -> tuple[ScriptedServer, Connection]:
        server = ScriptedServer(answers)
        servers.append(server)
        return server, connect(server.port)

    yield start
    for server in servers:
        server.close()


def test_keep_alive_and_exact_request_bytes(serve: Any) -> None:
    server, conn = serve(
        b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nETag: a\r\n\r\nhello",
        b"HTTP/1.1 404 Not Found\r\nContent-Length: 3\r\n\r\nnop",
    )
    first = ask(conn, "PUT", "/b/k", {"host": "h", "content-length": "4"}, b"data")
    assert conn.reusable()
    second = ask(conn, "GET", "/b/k?x=1", {"host": "h"})
    conn.close()
    assert (first.status, first.reason, first.body) == (200, "OK", b"hello")
    assert first.header("etag") == "a"
    assert (second.status, second.reason, second.body) == (404, "Not Found", b"nop")
    assert server.connections == 1
    assert server.requests == [
        b"PUT /b/k HTTP/1.1\r\nhost: h\r\ncontent-length: 4\r\n\r\ndata",
        b"GET /b/k?x=1 HTTP/1.1\r\nhost: h\r\n\r\n",
    ]


def test_chunked_body_with_extensions_and_trailers(serve: Any) -> None:
    _, conn = serve(
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"5;ext=1\r\nhello\r\n1\r\n \r\n5\r\nworld\r\n0\r\nX-Trailer: t\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
    )
    assert ask(conn, "GET", "/").body == b"hello world"
    assert ask(conn, "GET", "/").body == b"ok"  # the same connection, in step
    conn.close()


def test_body_to_eof_and_connection_close(serve: Any) -> None:
    server, conn = serve(
        b"HTTP/1.1 200 OK\r\n\r\nuntil the end" + ScriptedServer.CLOSE,
        b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok"
        + ScriptedServer.CLOSE,
        b"HTTP/1.0 200 OK\r\nContent-Length: 3\r\n\r\n1.0" + ScriptedServer.CLOSE,
        b"HTTP/1.1 204 No Content\r\n\r\n",
    )
    assert ask(conn, "GET", "/").body == b"until the end"
    assert not conn.is_open
    assert ask(conn, "GET", "/").body == b"ok"
    assert not conn.is_open
    assert ask(conn, "GET", "/").body == b"1.0"
    assert not conn.is_open
    fourth = ask(conn, "DELETE", "/")
    assert (fourth.status, fourth.body, conn.is_open) == (204, b"", True)
    conn.close()
    assert server.connections == 4


def test_interim_answers_and_head(serve: Any) -> None:
    server, conn = serve(
        b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
        b"HTTP/1.1 200 OK\r\nContent-Length: 1234\r\nSet-Cookie: a\r\nSet-Cookie: b\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nz",
    )
    assert ask(conn, "PUT", "/", {"content-length": "1"}, b"x").body == b"ok"
    head = ask(conn, "HEAD", "/")
    assert (head.body, head.header("content-length")) == (b"", "1234")
    assert head.header("set-cookie") == "a, b"
    assert conn.reusable()
    assert ask(conn, "GET", "/").body == b"z"  # HEAD left nothing unread
    conn.close()
    assert server.connections == 1


def test_large_bodies_both_ways(serve: Any) -> None:
    big = os.urandom(3 * 1024 * 1024 + 17)
    server, conn = serve(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(big) + big)
    resp = ask(conn, "PUT", "/", {"content-length": str(len(big))}, big)
    conn.close()
    assert resp.body == big
    assert server.requests[0].endswith(b"\r\n\r\n" + big)


@pytest.mark.parametrize(
    "answer",
    [
        b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort" + ScriptedServer.CLOSE,
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
        b"SSH-2.0-OpenSSH_9.2\r\n\r\n",
        b"HTTP/1.1 2000 OK\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nno colon here\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n" + ScriptedServer.CLOSE,
        "HTTP/1.1 200 OK\r\nContent-Length: ²\r\n\r\n".encode(),
        b"HTTP/1.1 200 OK\r\nContent-Length: 1, 2\r\n\r\nx",
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nxyz",
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nX: " + b"a" * 70000 + b"\r\n\r\n",
        b"HTTP/1.1 200 OK\r\n" + b"X: y\r\n" * 101 + b"\r\n",
        b"HTTP/1.1 200 OK\r\n folded: header\r\n\r\n",
        b"HTTP/1.1 100 Continue\r\n\r\n" * 9 + b"HTTP/1.1 200 OK\r\n\r\n",
        b"HTTP/1.1 101 Switching Protocols\r\n\r\n",
        b"HTTP/2 200\r\n\r\n",
        b"hello world, no status line\r\n" + ScriptedServer.CLOSE,
    ],
    ids=[
        "truncated",
        "bad-chunk",
        "bad-length",
        "not-http",
        "bad-code",
        "bad-header",
        "cut-head",
        "non-ascii-length",
        "two-lengths-in-one",
        "two-length-headers",
        "length-and-chunked",
        "gzip-encoding",
        "long-header",
        "too-many-headers",
        "folded-header",
        "endless-100",
        "switching-protocols",
        "http2",
        "http09",
    ],
)
def test_broken_answers_raise_and_close(serve: Any, answer: bytes) -> None:
    _, conn = serve(answer)
    with pytest.raises(ProtocolError):
        ask(conn, "GET", "/")
    assert not conn.is_open  # closed: the next request opens a new connection


def test_anything_left_unread_makes_the_connection_unusable(serve: Any) -> None:
    """A second answer glued to the first, or a body sent with HEAD or 204, must
    never be read as the answer to the next request."""
    for first in (
        b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello",  # answered to HEAD
        b"HTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\nhello",
    ):
        _, conn = serve(first)
        method = "HEAD" if b"hello" in first and b"204" not in first else "DELETE"
        resp = ask(conn, method, "/")
        assert resp.body == b""
        deadline = time.monotonic() + 5
        while conn.reusable() and time.monotonic() < deadline:  # bytes may arrive later
            time.sleep(0.01)
        assert not conn.reusable()
        conn.close()


@pytest.mark.parametrize(
    "answer",
    [
        b"HTTP/1.1 200 OK\r\nContent-Length: 1000000000000000\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        + b"10000\r\n"
        + b"x" * 0x10000
        + b"\r\n"
        + b"fffffffffffff\r\n",
        b"HTTP/1.1 200 OK\r\n\r\n" + b"y" * 300_000 + ScriptedServer.CLOSE,
    ],
    ids=["huge-length", "endless-chunked", "to-eof"],
)
def test_bodies_over_the_cap_raise_before_growing(serve: Any, answer: bytes) -> None:
    _, conn = serve(answer)
    with pytest.raises(BodyTooLarge):
        ask(conn, "GET", "/", cap=200_000)
    assert not conn.is_open


@pytest.mark.timeout(30)
@pytest.mark.parametrize(
    "answer",
    [
        b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n" + b"z" * 100 + ScriptedServer.TRICKLE,
        b"HTTP/1.1 200 OK\r\nX-Slow: " + b"s" * 60 + b"\r\n\r\n" + ScriptedServer.TRICKLE,
    ],
    ids=["body", "head"],
)
def test_a_trickling_server_meets_the_deadline(serve: Any, answer: bytes) -> None:
    _, conn = serve(answer)  # 20 s of trickle: only the 2 s deadline can end it sooner
    with pytest.raises(DeadlineExceeded):
        ask(conn, "GET", "/", timeout=2.0)
    assert not conn.is_open


class SilentServer:
    """Accepts connections (TLS with ``ca``), reads nothing (``drain``: reads and
    discards everything) and never answers."""

    def __init__(self, *, drain: bool, ca: Any = None) -> None:
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._tls = None
        if ca is not None:
            self._tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            self._tls.load_cert_chain(ca.cert_file, ca.key_file)
        self._drain = drain
        self._held: list[socket.socket] = []
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        try:
            conn, _ = self._listener.accept()
            if self._tls is not None:
                conn = self._tls.wrap_socket(conn, server_side=True)
            self._held.append(conn)
            while self._drain and conn.recv(65536):
                pass
        except OSError:
            return

    def close(self) -> None:
        self._listener.close()
        for conn in self._held:
            conn.close()
        self._thread.join(5)


def _tls_endpoint(port: int, ca: Any, read_timeout: float) -> Endpoint:
    ctx = ssl.create_default_context(cafile=str(ca.ca_file))
    return Endpoint("https", "127.0.0.1", port, ctx, None, 5.0, read_timeout)


@pytest.mark.timeout(30)
@pytest.mark.parametrize("scheme", ["http", "https"])
@pytest.mark.parametrize("stall", ["answer", "body"])
def test_read_timeout_ends_a_wait_for_the_server(tmp_path: Path, scheme: str, stall: str) -> None:
    """A server that never answers ("answer": it reads the request) or never reads
    ("body": an upload larger than the socket buffers) is given up after
    ``read_timeout`` (1 s), long before the 20 s deadline: where the socket blocks
    without a timeout, the watchdog sees no byte move either way."""
    from .servers import TestCA

    ca = TestCA(tmp_path / "ca") if scheme == "https" else None
    server = SilentServer(drain=stall == "answer", ca=ca)
    try:
        endpoint = (
            _tls_endpoint(server.port, ca, 1.0)
            if ca is not None
            else Endpoint("http", "127.0.0.1", server.port, None, None, 5.0, 1.0)
        )
        conn = Connection(endpoint)
        body = os.urandom(64 << 20) if stall == "body" else b""
        with pytest.raises(TimeoutError, match="read_timeout"):  # not the 20 s deadline
            ask(conn, "PUT", "/k", {"content-length": str(len(body))}, body, timeout=20.0)
        assert not conn.is_open
    finally:
        server.close()
        if ca is not None:
            ca.close()


@pytest.mark.timeout(30)
def test_progress_keeps_a_slow_answer_alive_until_the_deadline() -> None:
    """A byte every 0.2 s is progress: a 1 s ``read_timeout`` does not end the
    request, its 3 s deadline does."""
    server = ScriptedServer(
        [b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n" + b"z" * 100 + ScriptedServer.TRICKLE]
    )
    try:
        conn = Connection(Endpoint("http", "127.0.0.1", server.port, None, None, 5.0, 1.0))
        with pytest.raises(DeadlineExceeded):  # not TimeoutError: read_timeout never fired
            ask(conn, "GET", "/", timeout=3.0)
    finally:
        server.close()


def test_the_kernel_reports_progress_on_linux() -> None:
    """The watchdog's read timeout rests on TCP_INFO (Linux); elsewhere the socket's
    own timeout applies and this check does not."""
    if not hasattr(socket, "TCP_INFO"):
        pytest.skip("no TCP_INFO on this system: read_timeout is the socket's timeout")
    with socket.create_server(("127.0.0.1", 0)) as listener:
        client = socket.create_connection(listener.getsockname())
        peer, _ = listener.accept()
        with client, peer:
            before = tcp_progress(client)
            assert before is not None
            client.sendall(b"x" * 1000)
            peer.sendall(b"y" * 500)
            deadline = time.monotonic() + 5
            while tcp_progress(client) != before + 1500 and time.monotonic() < deadline:
                time.sleep(0.01)
            assert tcp_progress(client) == before + 1500


class _NoPoll:
    def poll(self, timeout: float) -> list[Any]:
        raise AssertionError("poll() called: the kernel's counters should have answered")


@pytest.mark.parametrize("check", ["kernel counters", "poll"])
@pytest.mark.parametrize("after", ["bytes", "close", "reset"])
def test_what_arrives_after_an_answer_makes_the_connection_unusable(
    monkeypatch: pytest.MonkeyPatch, check: str, after: str
) -> None:
    """Bytes, a close or a reset that reach the kernel after a complete answer
    (nothing left in the reader's buffer) are seen before the connection is
    reused: on Linux from TCP_INFO and SO_MEMINFO (getsockopt, which keeps the
    GIL), elsewhere by poll."""
    if check == "poll":
        monkeypatch.setattr(http11, "_TCP_INFO", None)
    elif not hasattr(socket, "TCP_INFO"):
        pytest.skip("no TCP_INFO on this system: poll is the check")
    with socket.create_server(("127.0.0.1", 0)) as listener:
        conn = connect(listener.getsockname()[1])
        answered: list[socket.socket] = []

        def answer() -> None:
            peer, _ = listener.accept()
            peer.recv(65536)
            peer.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
            answered.append(peer)

        server = threading.Thread(target=answer)
        server.start()
        assert ask(conn, "GET", "/").body == b"ok"
        server.join(10)
        peer = answered[0]
        if check != "poll":
            conn._poll = _NoPoll()  # type: ignore[assignment]
        assert conn.reusable()
        if after == "bytes":
            peer.sendall(b"HTTP/1.1 500 Late\r\n")
        elif after == "reset":
            peer.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        if after != "bytes":
            peer.close()
        deadline = time.monotonic() + 5
        while conn.reusable() and time.monotonic() < deadline:  # loopback delivers at once
            time.sleep(0.01)
        assert not conn.reusable()
        conn.close()
        peer.close()


def test_refused_connection_is_an_os_error() -> None:
    with socket.create_server(("127.0.0.1", 0)) as s:
        port = s.getsockname()[1]
    with pytest.raises(OSError):
        ask(connect(port), "GET", "/")
