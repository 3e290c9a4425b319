"""The S3 driver's HTTP/1.1 transport: a pool of kept-alive connections to one
server, direct or through a proxy, over TLS where asked, with a deadline on every
request and a cap on every body.

Why framing by hand: measured in one run on SeaweedFS (``scripts/bench
transport``), a urllib3 pool costs several times this module's CPU per small
request (http.client parses each answer's headers with the email package), and
the migration's speed goal is set by that cost.  Everything else comes from
well-kept code: TLS contexts from urllib3 (as boto3 builds them), proxy rules
from the standard library (as boto3 reads them), TLS inside a TLS proxy from
urllib3's ``SSLTransport``.

It reads strictly and fails closed (:class:`ProtocolError`): a status line
``HTTP/1.0`` or ``HTTP/1.1``; at most :data:`MAX_HEADERS` header lines of at most
:data:`MAX_LINE` bytes; a Content-Length of ASCII digits (repeated values must
agree); ``Transfer-Encoding: chunked`` and nothing else, never together with a
Content-Length; bodies no larger than the caller's cap (checked before reading);
interim 1xx answers skipped (a few at most).  A connection is reused only when
its answer ended exactly where the server stopped sending: anything left unread,
already buffered or arriving later, closes it.  A request that passes its
deadline has its socket shut down by a watchdog thread, so a server that
trickles bytes cannot hold a request longer than the deadline.

On Linux the sockets block without a timeout and the same watchdog also ends a
request whose connection moved no byte either way (the kernel's TCP_INFO
counters: bytes the server acknowledged, bytes it sent) for ``read_timeout``:
a socket timeout makes CPython poll before every read and write, and each such
call hands the GIL to another thread (3% of an HTTPS migration's client CPU).
"""

from __future__ import annotations

import base64
import contextlib
import io
import os
import re
import select
import socket
import ssl
import struct
import threading
import time
import urllib.request
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit

MAX_LINE = 64 * 1024
"""The longest status, header, chunk-size or trailer line read."""
MAX_HEADERS = 100
MAX_INTERIM = 8
"""Interim (1xx) answers skipped before the real one."""
_JOIN_BODY = 256 * 1024
"""Bodies up to this size go out in the same ``sendall`` as the headers."""
_BUFFER = 64 * 1024
_TCP_INFO = getattr(socket, "TCP_INFO", None)
_TCP_INFO_BYTES = 136
"""``struct tcp_info`` up to ``tcpi_bytes_acked`` and ``tcpi_bytes_received``
(offset 120; Linux 4.1 and later)."""
_TCP_ESTABLISHED = 1
"""``tcpi_state`` (the first byte of ``struct tcp_info``) of an open connection."""
_SO_MEMINFO = 55
"""Linux 4.6 and later: ``SK_MEMINFO_*`` counters; the first, ``rmem_alloc``, is
the memory held by the socket's receive queue (0: nothing unread)."""

_STATUS_RE = re.compile(rb"HTTP/1\.([01]) ([0-9]{3})(?: ([^\r\n]*))?\r?\n\Z")
_HEADER_BLOCK_RE = re.compile(r"(?:[!#$%&'*+.^_`|~0-9A-Za-z-]+:[^\r\n]*\r?\n)*")
"""Header lines, each ``token: value`` (no folding, no bare CR)."""
_DIGITS_RE = re.compile(r"[0-9]{1,19}\Z")
_CHUNK_RE = re.compile(rb"([0-9A-Fa-f]{1,15})[ \t]*(?:;[^\r\n]*)?\r?\n\Z")


class ProtocolError(Exception):
    """The answer is not HTTP/1.1 as this transport reads it, or the connection
    failed or ended before the answer did."""


class BodyTooLarge(ProtocolError):
    """The answer's body is larger than the caller's cap."""


class DeadlineExceeded(ProtocolError):
    """The request did not finish within its deadline."""


def tcp_progress(sock: socket.socket) -> int | None:
    """Bytes the peer acknowledged plus bytes received on ``sock`` so far (from
    the kernel; they grow while either side moves data, whether or not the
    application has read it); None where the system does not tell."""
    if _TCP_INFO is None:
        return None
    try:
        info = sock.getsockopt(socket.IPPROTO_TCP, _TCP_INFO, _TCP_INFO_BYTES)
    except OSError:
        return None
    if len(info) < _TCP_INFO_BYTES:
        return None
    acked, received = struct.unpack_from("=QQ", info, 120)
    return int(acked + received)


def tcp_clean(sock: socket.socket) -> bool | None:
    """Whether the kernel holds nothing unread on ``sock`` and the peer has not
    closed or reset it (None where the system does not tell).  Unlike ``poll``,
    ``getsockopt`` keeps the GIL, so asking costs no thread switch."""
    if _TCP_INFO is None:
        return None
    try:
        state = sock.getsockopt(socket.IPPROTO_TCP, _TCP_INFO, 8)
        meminfo = sock.getsockopt(socket.SOL_SOCKET, _SO_MEMINFO, 4)
    except OSError:
        return None
    if len(state) < 1 or len(meminfo) < 4:
        return None
    return state[0] == _TCP_ESTABLISHED and meminfo == b"\0\0\0\0"


class ProxyError(ProtocolError):
    """The proxy refused the tunnel (``status``: its answer, 407 = authentication)."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


# --------------------------------------------------------------------------- proxies


@dataclass(frozen=True)
class Proxy:
    """An HTTP(S) proxy.  ``authorization`` is the ``Proxy-Authorization`` value
    (a secret: never in reprs or messages)."""

    scheme: str
    host: str
    port: int
    authorization: str | None = None

    def __repr__(self) -> str:
        return f"Proxy({self.scheme}://{self.host}:{self.port})"

    @classmethod
    def from_url(cls, url: str) -> Proxy:
        """A proxy URL as boto3 reads it: no scheme means ``http://``; user and
        password (percent-decoded) become Basic authentication."""
        if not url.startswith(("http:", "https:")):
            url = "http:" + url if url.startswith("//") else "http://" + url
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("a proxy must be http://host[:port] or https://host[:port]")
        port = parts.port or (443 if parts.scheme == "https" else 80)
        auth = None
        if parts.username is not None and parts.password is not None:
            auth = basic_auth(unquote(parts.username), unquote(parts.password))
        return cls(parts.scheme, parts.hostname, port, auth)


def basic_auth(user: str, password: str) -> str:
    """A ``Basic`` authorization value."""
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode("ascii")


def environment_proxy(scheme: str, host: str, port: int) -> Proxy | None:
    """The proxy the environment names for ``scheme://host:port``, by the rules
    boto3 applies (the standard library's ``getproxies``/``proxy_bypass``:
    ``HTTP_PROXY``, ``HTTPS_PROXY``, ``NO_PROXY``, lower case first)."""
    netloc = f"{host}:{port}"
    try:
        if urllib.request.proxy_bypass(netloc):
            return None
    except (TypeError, OSError):
        pass
    url = urllib.request.getproxies().get(scheme)
    return Proxy.from_url(url) if url else None


# --------------------------------------------------------------------------- deadlines


class _Watchdog:
    """Shuts down the socket of every armed connection whose deadline has passed
    or which moved no byte for its ``read_timeout`` (see
    :meth:`Connection.stalled`), so a blocked read or write returns at once.  One
    daemon thread per process, started on first use, checking a few times per
    second.  A connection is expired under the lock that disarming takes, so a
    request that has just finished (or the next one on the same connection) is
    never cut."""

    TICK = 0.2

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._armed: dict[int, tuple[float, Connection]] = {}
        self._thread: threading.Thread | None = None

    def arm(self, conn: Connection, deadline: float) -> None:
        with self._lock:
            self._armed[id(conn)] = (deadline, conn)
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="objstore-http-deadlines", daemon=True
                )
                self._thread.start()

    def disarm(self, conn: Connection) -> None:
        with self._lock:
            self._armed.pop(id(conn), None)

    def _run(self) -> None:
        while True:
            time.sleep(self.TICK)
            now = time.monotonic()
            with self._lock:
                armed = list(self._armed.values())
            # the kernel is asked outside the lock; only a connection still armed
            # by the same request (the same entry) is expired
            stalled = {id(c) for d, c in armed if d > now and c.stalled(now)}
            with self._lock:
                for entry in armed:
                    deadline, conn = entry
                    key = id(conn)
                    if self._armed.get(key) is not entry:
                        continue
                    if deadline <= now:
                        conn.expire("deadline")
                    elif key in stalled:
                        conn.expire("read_timeout")
                    else:
                        continue
                    del self._armed[key]

    def _after_fork(self) -> None:
        self._lock = threading.Lock()
        self._armed = {}
        self._thread = None


_watchdog = _Watchdog()
os.register_at_fork(after_in_child=_watchdog._after_fork)


# --------------------------------------------------------------------------- connections


@dataclass(frozen=True)
class Endpoint:
    """Where a pool connects: ``scheme://host:port`` (TLS with ``tls``), perhaps
    through ``proxy``; ``connect_timeout`` bounds the TCP and TLS handshakes,
    ``read_timeout`` each wait for the server."""

    scheme: str
    host: str
    port: int
    tls: ssl.SSLContext | None
    proxy: Proxy | None
    connect_timeout: float
    read_timeout: float

    @property
    def forwarding(self) -> bool:
        """Plain HTTP through a proxy: requests carry absolute URLs (no tunnel)."""
        return self.proxy is not None and self.scheme == "http"

    @property
    def origin(self) -> str:
        default = 443 if self.scheme == "https" else 80
        port = "" if self.port == default else f":{self.port}"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}{port}"


class _CountingReader(io.RawIOBase):
    """The socket as a raw stream, counting the bytes received (so the bytes a
    buffered reader holds beyond an answer can be told)."""

    def __init__(self, sock: Any) -> None:
        self._sock = sock
        self.received = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        n: int = self._sock.recv_into(buffer)
        self.received += n
        return n


@dataclass
class Response:
    status: int
    reason: str
    headers: dict[str, str]
    """Lower-case names; a repeated header's values joined with ", "."""
    body: bytes

    def header(self, name: str) -> str | None:
        return self.headers.get(name)


class _Guard:
    """Ends a step of a request: disarms the watchdog; on any error closes the
    connection, and reports a failure the watchdog caused as DeadlineExceeded."""

    __slots__ = ("conn",)

    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: object, exc: BaseException | None, tb: object) -> None:
        conn = self.conn
        _watchdog.disarm(conn)
        if exc is not None:
            conn.close()
            if conn.expired and isinstance(exc, (OSError, ProtocolError, ValueError)):
                if conn.expired == "read_timeout":
                    raise TimeoutError(
                        f"no byte moved for {conn.endpoint.read_timeout:g} s (read_timeout)"
                    ) from None
                raise DeadlineExceeded("no complete answer within the request deadline") from None


class Connection:
    """One connection to an endpoint, opened on first use; one request at a time."""

    def __init__(self, endpoint: Endpoint) -> None:
        self.endpoint = endpoint
        self._sock: Any = None
        self._outer: socket.socket | None = None
        self._raw: _CountingReader | None = None
        self._fp: io.BufferedReader | None = None
        self._consumed = 0
        self.expired: str | None = None
        """Why the watchdog ended the current step: "deadline" or "read_timeout"."""
        self._watch_idle = False
        """The watchdog enforces ``read_timeout`` (the socket blocks without a timeout)."""
        self._progress = -1
        self._progress_at = 0.0
        self._poll: select.poll | None = None
        self._guard = _Guard(self)
        self.answered = False
        """Whether the last request got at least a status line back (a request
        that failed before that may be sent again on a fresh connection)."""

    # ------------------------------------------------------------ life cycle

    @property
    def is_open(self) -> bool:
        return self._sock is not None

    def close(self) -> None:
        sock, outer, fp = self._sock, self._outer, self._fp
        self._sock = self._outer = self._fp = self._raw = self._poll = None
        if fp is not None:
            fp.close()
        for s in (sock, outer):
            if s is not None:
                with contextlib.suppress(OSError):
                    s.close()

    def expire(self, why: str) -> None:
        """Called by the watchdog: end whatever the connection is blocked in
        (``why``: "deadline" or "read_timeout")."""
        self.expired = why
        outer = self._outer
        if outer is not None:
            with contextlib.suppress(OSError):  # below TLS: safe from another thread
                socket.socket.shutdown(outer, socket.SHUT_RDWR)

    def stalled(self, now: float) -> bool:
        """Called by the watchdog: whether no byte moved either way for
        ``read_timeout`` (False where the socket's own timeout does that)."""
        outer = self._outer
        if not self._watch_idle or outer is None:
            return False
        progress = tcp_progress(outer)
        if progress is None:
            return False
        if progress != self._progress:
            self._progress, self._progress_at = progress, now
            return False
        return now - self._progress_at >= self.endpoint.read_timeout

    def reusable(self, *, poll: bool = True) -> bool:
        """Open, nothing unread, and (``poll``) nothing arrived since: no data, no EOF."""
        if self._sock is None or self._raw is None or self._raw.received != self._consumed:
            return False
        if self._poll is None or not poll:
            return True  # a tunnelled socket: the leftover count above is all we have
        assert self._outer is not None
        clean = tcp_clean(self._outer)
        return clean if clean is not None else not self._poll.poll(0)

    def _open(self) -> None:
        ep = self.endpoint
        proxy = ep.proxy
        host, port = (proxy.host, proxy.port) if proxy is not None else (ep.host, ep.port)
        self._watch_idle = False
        sock: Any = socket.create_connection((host, port), ep.connect_timeout)
        self._outer = sock  # from now on the watchdog can end the handshakes too
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if proxy is not None and proxy.scheme == "https":
                sock = _proxy_tls(ep).wrap_socket(sock, server_hostname=proxy.host)
            if proxy is not None and ep.scheme == "https":
                self._tunnel(sock)
            if ep.scheme == "https":
                assert ep.tls is not None
                if isinstance(sock, ssl.SSLSocket):  # TLS inside the proxy's TLS
                    from urllib3.util.ssltransport import SSLTransport

                    inner = SSLTransport(sock, ep.tls, server_hostname=ep.host)
                    self._set_read_timeout(sock)
                    self._attach(inner, sock, pollable=False)
                    return
                sock = ep.tls.wrap_socket(sock, server_hostname=ep.host)
            self._set_read_timeout(sock)
        except BaseException:
            sock.close()
            self._outer = None
            raise
        self._attach(sock, sock, pollable=True)

    def _set_read_timeout(self, sock: socket.socket) -> None:
        """``read_timeout`` by the watchdog where the kernel reports progress (the
        socket then blocks without a timeout), else by the socket itself."""
        self._watch_idle = tcp_progress(sock) is not None
        sock.settimeout(None if self._watch_idle else self.endpoint.read_timeout)

    def _attach(self, sock: Any, outer: socket.socket, *, pollable: bool) -> None:
        """Read and write through ``sock``; ``outer`` is the socket to shut down
        on expiry and to poll (when ``pollable``) for data left unread."""
        self._sock = sock
        self._outer = outer
        self._raw = _CountingReader(sock)
        self._fp = io.BufferedReader(self._raw, _BUFFER)
        self._consumed = 0
        self._poll = None
        if pollable:
            self._poll = select.poll()
            self._poll.register(outer, select.POLLIN | select.POLLPRI)

    def _tunnel(self, sock: socket.socket) -> None:
        """CONNECT through the proxy (connected on ``sock``) to the endpoint."""
        ep = self.endpoint
        assert ep.proxy is not None
        target = f"{ep.host}:{ep.port}" if ":" not in ep.host else f"[{ep.host}]:{ep.port}"
        lines = [f"CONNECT {target} HTTP/1.1", f"Host: {target}"]
        if ep.proxy.authorization:
            lines.append(f"Proxy-Authorization: {ep.proxy.authorization}")
        self._attach(sock, sock, pollable=False)
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
        status, reason, _ = self._read_head()
        if status != 200:
            raise ProxyError(f"the proxy refused the tunnel: {status} {reason[:80]}", status)
        if self._raw is None or self._raw.received != self._consumed:
            raise ProtocolError("the proxy sent data after accepting the tunnel")
        self._sock = self._raw = self._fp = None

    # ------------------------------------------------------------ requests

    def request(
        self,
        method: str,
        target: str,
        headers: Mapping[str, str],
        body: bytes,
        *,
        max_body: int,
        max_error_body: int,
        deadline: float,
    ) -> Response:
        """:meth:`open_request` and :meth:`read_body` in one step: the whole
        answer, its body capped at ``max_body`` (2xx) or ``max_error_body``."""
        with self._deadline(deadline):
            self._send(method, target, headers, body)
            status, reason, head = self._read_final_head()
            cap = max_body if 200 <= status < 300 else max_error_body
            return Response(status, reason, head, self._read_body(method, status, head, cap))

    def open_request(
        self,
        method: str,
        target: str,
        headers: Mapping[str, str],
        body: bytes,
        *,
        deadline: float,
    ) -> tuple[int, str, dict[str, str]]:
        """Send one request (``headers`` as given, in order) and read the head of
        its answer by ``deadline`` (monotonic time; else DeadlineExceeded); then
        read the body with :meth:`read_body` or :meth:`read_exact`.  Any error
        closes the connection."""
        with self._deadline(deadline):
            self._send(method, target, headers, body)
            return self._read_final_head()

    def read_body(
        self, method: str, status: int, headers: dict[str, str], *, max_body: int, deadline: float
    ) -> bytes:
        """The whole body of the answer whose head :meth:`open_request` returned:
        at most ``max_body`` bytes (else BodyTooLarge, checked before reading when
        the length is declared)."""
        with self._deadline(deadline):
            return self._read_body(method, status, headers, max_body)

    def read_exact(self, n: int, *, deadline: float) -> bytes:
        """``n`` more bytes of a body of known length (ProtocolError if the
        connection ends first)."""
        with self._deadline(deadline):
            return self._read_exact(n)

    def _deadline(self, deadline: float) -> _Guard:
        """Arm the watchdog for one step of a request (see :class:`_Guard`)."""
        self.expired = None
        self._progress = -1  # the watchdog's first look starts the idle clock
        _watchdog.arm(self, deadline)
        return self._guard

    def _send(self, method: str, target: str, headers: Mapping[str, str], body: bytes) -> None:
        self.answered = False
        if self._sock is None:
            self._open()
            if self.expired:  # the deadline passed while connecting
                raise DeadlineExceeded("the connection was not ready within the request deadline")
        ep = self.endpoint
        if ep.forwarding:
            target = ep.origin + target
        lines = [f"{method} {target} HTTP/1.1\r\n"]
        lines.extend(f"{k}: {v}\r\n" for k, v in headers.items())
        if ep.forwarding and ep.proxy is not None and ep.proxy.authorization:
            lines.append(f"Proxy-Authorization: {ep.proxy.authorization}\r\n")
        lines.append("\r\n")
        data = "".join(lines).encode("latin-1")
        if body and len(body) <= _JOIN_BODY:
            self._sock.sendall(data + body)
        else:
            self._sock.sendall(data)
            if body:
                self._sock.sendall(body)

    # ------------------------------------------------------------ reading

    def _line(self) -> bytes:
        assert self._fp is not None
        line = self._fp.readline(MAX_LINE + 1)
        self._consumed += len(line)
        if not line.endswith(b"\n"):
            if len(line) > MAX_LINE:
                raise ProtocolError("a line of the answer is too long")
            raise ProtocolError("the server closed the connection before the answer ended")
        return line

    def _read_head(self) -> tuple[int, str, dict[str, str]]:
        """The status line and headers of one answer.  The usual case (the whole
        head already buffered, CRLF line ends, every line well-formed) is parsed
        in two regular-expression passes; anything else line by line."""
        assert self._fp is not None
        buffered = self._fp.peek(MAX_LINE)
        end = buffered.find(b"\r\n\r\n")
        if end < 0:
            return self._parse_head(self._line(), None)
        head = self._fp.read(end + 4)
        self._consumed += len(head)
        eol = head.find(b"\n") + 1
        text = head[eol : end + 2].decode("latin-1")
        if not _HEADER_BLOCK_RE.fullmatch(text):
            return self._parse_head(head[:eol], iter(head[eol:].splitlines(keepends=True)))
        pairs = [line.partition(":")[::2] for line in text[:-2].split("\r\n")] if text else []
        return self._parse_head(head[:eol], None, pairs)

    def _parse_head(
        self,
        status_line: bytes,
        lines: Iterator[bytes] | None,
        pairs: list[tuple[str, str]] | None = None,
    ) -> tuple[int, str, dict[str, str]]:
        """Parse a head: from ``pairs`` already split, else from ``lines`` (or
        the connection when None) up to the blank line."""
        m = _STATUS_RE.match(status_line)
        if m is None:
            raise ProtocolError("the answer does not start with an HTTP/1.x status line")
        status, reason = int(m.group(2)), (m.group(3) or b"").decode("latin-1")
        if pairs is None:
            pairs = []
            for _ in range(MAX_HEADERS + 1):
                line = next(lines, b"\r\n") if lines is not None else self._line()
                if line in (b"\r\n", b"\n"):
                    break
                text = line.decode("latin-1")
                if not _HEADER_BLOCK_RE.fullmatch(text):
                    raise ProtocolError(f"malformed header line {text.rstrip()[:60]!r}")
                pairs.append(text.rstrip("\r\n").partition(":")[::2])
        if len(pairs) > MAX_HEADERS:
            raise ProtocolError(f"more than {MAX_HEADERS} header lines")
        headers: dict[str, str] = {}
        for name, value in pairs:
            name, value = name.lower(), value.strip(" \t")
            headers[name] = f"{headers[name]}, {value}" if name in headers else value
        if m.group(1) == b"0" and "keep-alive" not in headers.get("connection", ""):
            headers["connection"] = "close"
        return status, reason, headers

    def _read_final_head(self) -> tuple[int, str, dict[str, str]]:
        for _ in range(MAX_INTERIM + 1):
            status, reason, headers = self._read_head()
            self.answered = True
            if status == 101:
                raise ProtocolError("the server switched protocols")
            if not 100 <= status < 200:
                return status, reason, headers
        raise ProtocolError("too many interim (1xx) answers")

    def _read_exact(self, n: int) -> bytes:
        assert self._fp is not None
        data = self._fp.read(n)
        self._consumed += len(data)
        if len(data) != n:
            raise ProtocolError(f"the connection ended after {len(data)} of {n} body bytes")
        return data

    def _read_body(self, method: str, status: int, headers: dict[str, str], cap: int) -> bytes:
        framing = body_framing(method, status, headers)
        if framing == NO_BODY:
            data = b""
        elif framing == CHUNKED:
            data = self._read_chunked(cap)
        elif framing >= 0:
            if framing > cap:
                raise BodyTooLarge(f"the answer's body is {framing} bytes, more than {cap}")
            data = self._read_exact(framing)
        else:  # UNTIL_CLOSE
            assert self._fp is not None
            data = self._fp.read(cap + 1)
            self._consumed += len(data)
            if len(data) > cap:
                raise BodyTooLarge(f"the answer's body is more than {cap} bytes")
            self.close()
            return data
        if "close" in headers.get("connection", "").lower():
            self.close()
        return data

    def _read_chunked(self, cap: int) -> bytes:
        out = bytearray()
        while True:
            m = _CHUNK_RE.match(self._line())
            if m is None:
                raise ProtocolError("malformed chunk size line")
            size = int(m.group(1), 16)
            if size == 0:
                for _ in range(MAX_HEADERS + 1):  # trailers, up to the blank line
                    if self._line() in (b"\r\n", b"\n"):
                        return bytes(out)
                raise ProtocolError("too many trailer lines")
            if len(out) + size > cap:
                raise BodyTooLarge(f"the answer's chunked body is more than {cap} bytes")
            out += self._read_exact(size)
            if self._line() not in (b"\r\n", b"\n"):
                raise ProtocolError("a chunk is not followed by CRLF")


NO_BODY = -3
CHUNKED = -2
UNTIL_CLOSE = -1


def body_framing(method: str, status: int, headers: Mapping[str, str]) -> int:
    """How an answer's body is framed: its length, or NO_BODY, CHUNKED,
    UNTIL_CLOSE (the body ends with the connection).  ProtocolError for framing
    this transport refuses."""
    if method == "HEAD" or status in (204, 304) or 100 <= status < 200:
        return NO_BODY
    te = headers.get("transfer-encoding")
    cl = headers.get("content-length")
    if te is not None:
        if te.strip().lower() != "chunked":
            raise ProtocolError(f"unsupported transfer-encoding {te[:40]!r}")
        if cl is not None:
            raise ProtocolError("both transfer-encoding and content-length")
        return CHUNKED
    if cl is None:
        return UNTIL_CLOSE
    values = {v.strip() for v in cl.split(",")}
    if len(values) != 1:
        raise ProtocolError("conflicting content-length values")
    value = values.pop()
    if not _DIGITS_RE.match(value):
        raise ProtocolError(f"malformed content-length {value[:20]!r}")
    return int(value)


def _proxy_tls(ep: Endpoint) -> ssl.SSLContext:
    """The TLS context for an https:// proxy: the endpoint's (same CAs), or a
    default one when the endpoint itself is plain HTTP."""
    if ep.tls is not None:
        return ep.tls
    from urllib3.util.ssl_ import create_urllib3_context

    ctx = create_urllib3_context()
    ctx.check_hostname = True
    ctx.load_default_certs()
    return ctx


# --------------------------------------------------------------------------- pool


class Pool:
    """Kept-alive connections to one endpoint, at most ``size`` kept idle."""

    def __init__(self, endpoint: Endpoint, size: int) -> None:
        self.endpoint = endpoint
        self._size = size
        self._idle: list[Connection] = []
        self._lock = threading.Lock()

    def take(self) -> tuple[Connection, bool]:
        """An idle connection that is still clean, or a new one (not yet opened);
        the flag says whether it was reused."""
        while True:
            with self._lock:
                conn = self._idle.pop() if self._idle else None
            if conn is None:
                return Connection(self.endpoint), False
            if conn.reusable():
                return conn, True
            conn.close()

    def give(self, conn: Connection) -> None:
        """Return a connection after a complete answer; kept only if nothing is
        left unread (what arrives later is seen by :meth:`take`)."""
        if conn.reusable(poll=False):
            with self._lock:
                if len(self._idle) < self._size:
                    self._idle.append(conn)
                    return
        conn.close()

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()
