"""A minimal HTTP/1.1 client connection, for the lean S3 client.

``http.client`` parses every answer's headers with the email package and writes
a request's headers and body in separate calls: for the small requests of a
migration that is about half of the client's CPU per object.  This connection
writes a request with one ``sendall`` (two for a large body) and reads the
status line and headers by hand, through a buffered reader that reads each
body straight into the bytes object it returns (no second copy of a block).

It reads what S3 servers send: bodies of a Content-Length, chunked bodies, bodies
that end with the connection (neither given), ``Connection: close``, HTTP/1.0
answers, interim 1xx answers (skipped) and HEAD answers (no body).  It sends
exactly the headers it is given (the caller signs them), so a request with a
body must carry its ``content-length``.
"""

from __future__ import annotations

import socket
import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from typing import BinaryIO

_MAX_LINE = 64 * 1024
"""The longest status, header or chunk-size line read."""
_MAX_HEADERS = 200
_JOIN_BODY = 256 * 1024
"""Bodies up to this size go out in the same ``sendall`` as the headers."""


class ProtocolError(Exception):
    """The answer is not HTTP/1.x as this client reads it, or the connection
    ended before the answer did."""


@dataclass
class Response:
    status: int
    reason: str
    headers: dict[str, str]
    """Lower-case names; a repeated header's values joined with ", "."""
    body: bytes
    will_close: bool
    """The server ends the connection after this answer (it is closed already)."""

    def getheader(self, name: str) -> str | None:
        return self.headers.get(name.lower())


class Connection:
    """One kept-alive connection to ``host:port`` (TLS with ``context``, checked
    against ``host``), opened on the first request.  One request at a time."""

    def __init__(
        self, host: str, port: int, timeout: float, context: ssl.SSLContext | None = None
    ) -> None:
        self.host = host
        self.port = port
        self.timeout = timeout
        self.context = context
        self._sock: socket.socket | None = None
        self._fp: BinaryIO | None = None

    def close(self) -> None:
        fp, sock, self._fp, self._sock = self._fp, self._sock, None, None
        if fp is not None:
            fp.close()
        if sock is not None:
            sock.close()

    def _open(self) -> socket.socket:
        sock = socket.create_connection((self.host, self.port), self.timeout)
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if self.context is not None:
                sock = self.context.wrap_socket(sock, server_hostname=self.host)
        except BaseException:
            sock.close()
            raise
        # bodies are read straight into the bytes object returned (no copy)
        self._sock, self._fp = sock, sock.makefile("rb")
        return sock

    def request(
        self, method: str, target: str, headers: Mapping[str, str], body: bytes | None = None
    ) -> Response:
        """Send one request and read its whole answer.  OSError or ProtocolError
        when the connection fails (then it is closed; the caller may open anew)."""
        try:
            sock = self._sock or self._open()
            head = "".join(
                [f"{method} {target} HTTP/1.1\r\n", *(f"{k}: {v}\r\n" for k, v in headers.items())]
            )
            data = (head + "\r\n").encode("latin-1")
            if body and len(body) <= _JOIN_BODY:
                sock.sendall(data + body)
            else:
                sock.sendall(data)
                if body:
                    sock.sendall(body)
            return self._read_response(method)
        except BaseException:
            self.close()
            raise

    # ------------------------------------------------------------ reading

    def _read_line(self) -> bytes:
        """One line without its CRLF."""
        assert self._fp is not None
        line = self._fp.readline(_MAX_LINE + 1)
        if not line.endswith(b"\n"):
            if len(line) > _MAX_LINE:
                raise ProtocolError("line too long")
            raise ProtocolError("the server closed the connection")
        return line.rstrip(b"\r\n")

    def _read_head(self) -> tuple[str, int, str, dict[str, str]]:
        status_line = self._read_line().decode("latin-1")
        version, _, rest = status_line.partition(" ")
        code, _, reason = rest.partition(" ")
        if not version.startswith("HTTP/1.") or len(code) != 3 or not code.isdigit():
            raise ProtocolError(f"bad status line {status_line[:80]!r}")
        headers: dict[str, str] = {}
        for _ in range(_MAX_HEADERS):
            line = self._read_line().decode("latin-1")
            if not line:
                return version, int(code), reason, headers
            name, sep, value = line.partition(":")
            if not sep:
                raise ProtocolError(f"bad header line {line[:80]!r}")
            name, value = name.strip().lower(), value.strip()
            headers[name] = f"{headers[name]}, {value}" if name in headers else value
        raise ProtocolError("too many headers")

    def _read_exact(self, n: int) -> bytes:
        assert self._fp is not None
        data = self._fp.read(n)
        if len(data) != n:
            raise ProtocolError(f"the server closed the connection after {len(data)} of {n} bytes")
        return data

    def _read_chunked(self) -> bytes:
        parts: list[bytes] = []
        while True:
            size_text = self._read_line().split(b";", 1)[0].strip()
            try:
                size = int(size_text, 16)
            except ValueError:
                raise ProtocolError(f"bad chunk size {size_text[:20]!r}") from None
            if size == 0:
                while self._read_line():  # trailers, up to the blank line
                    pass
                return b"".join(parts)
            parts.append(self._read_exact(size))
            if self._read_line():
                raise ProtocolError("chunk not followed by CRLF")

    def _read_response(self, method: str) -> Response:
        version, status, reason, headers = self._read_head()
        while 100 <= status < 200:  # interim answers (100 Continue...) carry no body
            version, status, reason, headers = self._read_head()
        connection = headers.get("connection", "").lower()
        will_close = "close" in connection or (
            version == "HTTP/1.0" and "keep-alive" not in connection
        )
        if method == "HEAD" or status in (204, 304):
            body = b""
        elif "chunked" in headers.get("transfer-encoding", "").lower():
            body = self._read_chunked()
        elif "content-length" in headers:
            length = headers["content-length"]
            if not length.isdigit():
                raise ProtocolError(f"bad content-length {length[:20]!r}")
            body = self._read_exact(int(length))
        else:
            assert self._fp is not None
            body = self._fp.read()  # the body ends with the connection
            will_close = True
        if will_close:
            self.close()
        return Response(status, reason, headers, body, will_close)
