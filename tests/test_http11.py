"""The lean client's HTTP/1.1 connection against a scripted server on loopback:
every answer shape S3 servers send (Content-Length, chunked, to EOF, HTTP/1.0,
1xx, HEAD), keep-alive reuse, and broken answers.  Interop with real S3 servers
is in test_migrate_lean.py and test_conformance.py."""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Iterator, Sequence
from typing import Any

import pytest

from objstore.drivers.http11 import Connection, ProtocolError


class ScriptedServer:
    """Answers the n-th request with ``answers[n]`` (raw bytes); an answer ending
    in ``CLOSE`` closes the connection after it is sent."""

    CLOSE = b"<close>"

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
                    conn.sendall(answer.removesuffix(self.CLOSE))
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
        return server, Connection("127.0.0.1", server.port, timeout=5)

    yield start
    for server in servers:
        server.close()


def test_keep_alive_and_exact_request_bytes(serve: Any) -> None:
    server, conn = serve(
        b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nETag: a\r\n\r\nhello",
        b"HTTP/1.1 404 Not Found\r\nContent-Length: 3\r\n\r\nnop",
    )
    first = conn.request("PUT", "/b/k", {"host": "h", "content-length": "4"}, b"data")
    second = conn.request("GET", "/b/k?x=1", {"host": "h"})
    conn.close()
    assert (first.status, first.reason, first.body, first.will_close) == (
        200,
        "OK",
        b"hello",
        False,
    )
    assert first.getheader("ETAG") == "a"
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
    assert conn.request("GET", "/", {}).body == b"hello world"
    assert conn.request("GET", "/", {}).body == b"ok"  # the same connection, in step
    conn.close()


def test_body_to_eof_and_connection_close(serve: Any) -> None:
    server, conn = serve(
        b"HTTP/1.1 200 OK\r\n\r\nuntil the end" + ScriptedServer.CLOSE,
        b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok"
        + ScriptedServer.CLOSE,
        b"HTTP/1.0 200 OK\r\nContent-Length: 3\r\n\r\n1.0" + ScriptedServer.CLOSE,
        b"HTTP/1.1 204 No Content\r\n\r\n",
    )
    first = conn.request("GET", "/", {})
    assert (first.body, first.will_close) == (b"until the end", True)
    second = conn.request("GET", "/", {})
    assert (second.body, second.will_close) == (b"ok", True)
    third = conn.request("GET", "/", {})
    assert (third.body, third.will_close) == (b"1.0", True)
    fourth = conn.request("DELETE", "/", {})
    assert (fourth.status, fourth.body, fourth.will_close) == (204, b"", False)
    conn.close()
    assert server.connections == 4


def test_interim_answers_and_head(serve: Any) -> None:
    server, conn = serve(
        b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
        b"HTTP/1.1 200 OK\r\nContent-Length: 1234\r\nSet-Cookie: a\r\nSet-Cookie: b\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nz",
    )
    assert conn.request("PUT", "/", {"content-length": "1"}, b"x").body == b"ok"
    head = conn.request("HEAD", "/", {})
    assert (head.body, head.getheader("content-length")) == (b"", "1234")
    assert head.getheader("set-cookie") == "a, b"
    assert conn.request("GET", "/", {}).body == b"z"  # HEAD left nothing unread
    conn.close()
    assert server.connections == 1


def test_large_bodies_both_ways(serve: Any) -> None:
    big = os.urandom(3 * 1024 * 1024 + 17)
    server, conn = serve(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(big) + big)
    resp = conn.request("PUT", "/", {"content-length": str(len(big))}, big)
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
    ],
    ids=["truncated", "bad-chunk", "bad-length", "not-http", "bad-code", "bad-header", "cut-head"],
)
def test_broken_answers_raise_and_close(serve: Any, answer: bytes) -> None:
    _, conn = serve(answer)
    with pytest.raises(ProtocolError):
        conn.request("GET", "/", {})
    assert conn._sock is None  # closed: the next request opens a new connection


def test_refused_connection_is_an_os_error() -> None:
    with socket.create_server(("127.0.0.1", 0)) as s:
        port = s.getsockname()[1]
    with pytest.raises(OSError):
        Connection("127.0.0.1", port, timeout=5).request("GET", "/", {})
