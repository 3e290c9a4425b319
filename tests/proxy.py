"""A small TCP proxy on loopback that injects network faults between a client and
a server: delays, connections cut mid-body, refused connections."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from dataclasses import dataclass


@dataclass
class Fault:
    """What the proxy does to the next connections.

    ``mode``: ``pass``; ``delay`` (wait ``delay`` s before the first response
    byte); ``cut_response`` (forward ``after`` response bytes, then reset);
    ``cut_request`` (forward ``after`` request bytes, then reset); ``refuse``
    (reset at once).  ``count``: how many connections get the fault (None =
    all); after that, connections pass.
    """

    mode: str = "pass"
    after: int = 0
    delay: float = 0.0
    count: int | None = None


class FaultProxy:
    """Forwards 127.0.0.1:<port> to ``upstream``; ``set(Fault(...))`` changes behaviour."""

    def __init__(self, upstream_port: int, upstream_host: str = "127.0.0.1") -> None:
        self.upstream = (upstream_host, upstream_port)
        self._fault = Fault()
        self._lock = threading.Lock()
        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(64)
        self.port: int = self._sock.getsockname()[1]
        self.connections = 0
        self.faulted = 0
        self._closed = False
        self._conns: set[socket.socket] = set()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def set(self, fault: Fault) -> None:
        """Apply ``fault`` from now on; open connections are closed so that
        clients reconnect and meet it."""
        with self._lock:
            self._fault = fault
            conns, self._conns = self._conns, set()
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
            with contextlib.suppress(OSError):
                conn.close()

    def _next_fault(self) -> Fault:
        with self._lock:
            self.connections += 1
            fault = self._fault
            if fault.mode == "pass":
                return fault
            if fault.count is not None:
                if fault.count <= 0:
                    return Fault()
                fault.count -= 1
            self.faulted += 1
            return fault

    def _serve(self) -> None:
        while not self._closed:
            try:
                client, _ = self._sock.accept()
            except OSError:
                return
            fault = self._next_fault()
            threading.Thread(target=self._handle, args=(client, fault), daemon=True).start()

    @staticmethod
    def _reset(sock: socket.socket) -> None:
        with contextlib.suppress(OSError):
            sock.setsockopt(
                socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00"
            )
        with contextlib.suppress(OSError):
            sock.close()

    def _handle(self, client: socket.socket, fault: Fault) -> None:
        if fault.mode == "refuse":
            self._reset(client)
            return
        try:
            upstream = socket.create_connection(self.upstream, timeout=10)
        except OSError:
            self._reset(client)
            return
        with self._lock:
            self._conns.update((client, upstream))
        up = threading.Thread(
            target=self._pump,
            args=(client, upstream, fault if fault.mode == "cut_request" else None, 0.0),
        )
        up.daemon = True
        up.start()
        delay = fault.delay if fault.mode == "delay" else 0.0
        self._pump(upstream, client, fault if fault.mode == "cut_response" else None, delay)
        up.join(30)

    def _pump(
        self, src: socket.socket, dst: socket.socket, cut: Fault | None, delay: float
    ) -> None:
        sent = 0
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    with contextlib.suppress(OSError):
                        dst.shutdown(socket.SHUT_WR)
                    return
                if delay:
                    time.sleep(delay)
                    delay = 0.0
                if cut is not None and sent + len(data) > cut.after:
                    dst.sendall(data[: max(0, cut.after - sent)])
                    self._reset(dst)
                    self._reset(src)
                    return
                dst.sendall(data)
                sent += len(data)
        except OSError:
            self._reset(dst)
            self._reset(src)

    def close(self) -> None:
        self._closed = True
        with contextlib.suppress(OSError):
            self._sock.close()
        for conn in list(self._conns):
            with contextlib.suppress(OSError):
                conn.close()
