"""Shared limits for the workers of one migration: bandwidth and bytes in memory."""

from __future__ import annotations

import threading
import time


class Cancelled(BaseException):
    """Raised inside a worker when the migration is being stopped (Ctrl-C, fatal
    error).  A BaseException, so drivers abort what they were doing (multipart
    uploads) and no ``except Exception`` mistakes it for an object failure."""


class TokenBucket:
    """``rate`` bytes per second across every thread that calls :meth:`consume`.

    Each call takes its bytes at once (the bucket may go into debt) and sleeps until
    the debt is paid, so the long-run rate never exceeds ``rate`` and at most
    ``burst`` bytes go out ahead of it.  Sleeps end early (raising Cancelled) when
    ``cancel`` is set.
    """

    def __init__(self, rate: int, cancel: threading.Event, burst: int | None = None) -> None:
        if rate <= 0:
            raise ValueError("rate must be positive")
        self.rate = float(rate)
        self.burst = float(burst if burst is not None else max(64 * 1024, rate // 4))
        self._tokens = self.burst
        self._stamp = time.monotonic()
        self._lock = threading.Lock()
        self._cancel = cancel

    def consume(self, nbytes: int) -> None:
        """Take ``nbytes``; return when they fit within the rate."""
        if nbytes <= 0:
            return
        with self._lock:
            now = time.monotonic()
            self._tokens = min(self.burst, self._tokens + (now - self._stamp) * self.rate)
            self._stamp = now
            self._tokens -= nbytes
            wait = -self._tokens / self.rate if self._tokens < 0 else 0.0
        if wait > 0 and self._cancel.wait(wait):
            raise Cancelled()


class ByteBudget:
    """At most ``limit`` bytes of objects held at once.  An object larger than the
    whole budget waits until it can have all of it (so it runs alone)."""

    def __init__(self, limit: int, cancel: threading.Event) -> None:
        self.limit = limit
        self._used = 0
        self._cond = threading.Condition()
        self._cancel = cancel

    def acquire(self, nbytes: int) -> int:
        """Reserve ``nbytes`` (capped at the limit); returns what to release later."""
        need = min(max(nbytes, 0), self.limit)
        with self._cond:
            while self._used + need > self.limit:
                if self._cancel.is_set():
                    raise Cancelled()
                self._cond.wait(0.2)
            self._used += need
        return need

    def release(self, nbytes: int) -> None:
        with self._cond:
            self._used -= nbytes
            self._cond.notify_all()
