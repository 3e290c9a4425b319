"""Progress reporting: a small protocol the engine calls, and three ways to show it.

The library never prints: long operations take a ``progress`` argument that
defaults to :class:`NullProgress`.  Callers (the CLI, the demo) choose
:class:`TqdmProgress` (a bar per step and kind) or :class:`LogProgress` (a log
line every few seconds, for non-interactive runs).
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from typing import IO, Any, Protocol

__all__ = ["LogProgress", "NullProgress", "Progress", "TqdmProgress", "format_bytes"]


class Progress(Protocol):
    """What a long operation reports.  ``start`` opens a step (``phase`` is e.g.
    ``plan``, ``copy``, ``verify``; ``total`` may be 0 when unknown); ``update``
    gives the running totals of that step (absolute, at most a few times per
    second, from any thread); ``end`` closes it.  Warnings go to logging."""

    def start(self, phase: str, kind: str, total: int, total_bytes: int) -> None: ...

    def update(self, done: int, done_bytes: int) -> None: ...

    def end(self, complete: bool = True) -> None: ...


class NullProgress:
    """Shows nothing (the default)."""

    def start(self, phase: str, kind: str, total: int, total_bytes: int) -> None:
        pass

    def update(self, done: int, done_bytes: int) -> None:
        pass

    def end(self, complete: bool = True) -> None:
        pass


def format_bytes(n: float) -> str:
    """``1.5 MB`` style (powers of 1000, like the rates)."""
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"  # pragma: no cover


def _eta(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


class _Step:
    def __init__(self, phase: str, kind: str, total: int, total_bytes: int) -> None:
        self.phase, self.kind, self.total, self.total_bytes = phase, kind, total, total_bytes
        self.started = time.monotonic()
        self.done = self.done_bytes = 0

    def rates(self) -> tuple[float, float, float]:
        """(objects/s, bytes/s, elapsed)."""
        elapsed = max(time.monotonic() - self.started, 1e-6)
        return self.done / elapsed, self.done_bytes / elapsed, elapsed

    def line(self) -> str:
        ops, bps, elapsed = self.rates()
        count = f"{self.done}/{self.total}" if self.total else f"{self.done}"
        text = f"{self.phase} {self.kind}: {count} objects"
        if self.total:
            text += f" ({100 * self.done / self.total:.0f}%)"
        text += f", {format_bytes(self.done_bytes)}"
        if self.total_bytes:
            text += f"/{format_bytes(self.total_bytes)}"
        text += f", {ops:.0f} obj/s, {format_bytes(bps)}/s"
        if self.total and self.done and ops > 0:
            text += f", ETA {_eta(max(self.total - self.done, 0) / ops)}"
        else:
            text += f", {_eta(elapsed)} elapsed"
        return text


class LogProgress:
    """A log line per step start, every ``interval`` seconds, and per step end
    (logger ``objstore.progress``, level INFO)."""

    def __init__(self, interval: float = 10.0, logger: logging.Logger | None = None) -> None:
        self.interval = interval
        self.log = logger or logging.getLogger("objstore.progress")
        self._step: _Step | None = None
        self._last = 0.0
        self._lock = threading.Lock()

    def start(self, phase: str, kind: str, total: int, total_bytes: int) -> None:
        self._step = _Step(phase, kind, total, total_bytes)
        self._last = time.monotonic()
        if total:
            self.log.info("%s %s: %d objects, %s", phase, kind, total, format_bytes(total_bytes))

    def update(self, done: int, done_bytes: int) -> None:
        step = self._step
        if step is None:
            return
        step.done, step.done_bytes = done, done_bytes
        now = time.monotonic()
        with self._lock:
            if now - self._last < self.interval:
                return
            self._last = now
        self.log.info("%s", step.line())

    def end(self, complete: bool = True) -> None:
        step, self._step = self._step, None
        if step is not None and (step.done or step.total or not complete):
            ops, bps, elapsed = step.rates()
            self.log.info(
                "%s %s %s: %d objects, %s in %.1fs (%.0f obj/s, %s/s)",
                step.phase,
                step.kind,
                "done" if complete else "stopped before the end",
                step.done,
                format_bytes(step.done_bytes),
                elapsed,
                ops,
                format_bytes(bps),
            )


class TqdmProgress:
    """A tqdm bar per step and kind: done/total objects, objects/s and ETA from tqdm,
    bytes and MB/s in the postfix.  Writes to ``file`` (default stderr)."""

    def __init__(self, file: IO[str] | None = None, **tqdm_args: Any) -> None:
        self.file = file
        self.tqdm_args = tqdm_args
        self._bar: Any = None
        self._step: _Step | None = None
        self._lock = threading.Lock()

    def start(self, phase: str, kind: str, total: int, total_bytes: int) -> None:
        from tqdm import tqdm

        self._step = _Step(phase, kind, total, total_bytes)
        args: dict[str, Any] = {
            "desc": f"{phase} {kind}",
            "total": total or None,
            "unit": " obj",
            "dynamic_ncols": True,
            "file": self.file if self.file is not None else sys.stderr,
            "smoothing": 0.1,
            "mininterval": 0.25,
            "leave": True,
        }
        args.update(self.tqdm_args)
        self._bar = tqdm(**args)

    def update(self, done: int, done_bytes: int) -> None:
        with self._lock:
            bar, step = self._bar, self._step
            if bar is None or step is None:
                return
            step.done, step.done_bytes = done, done_bytes
            _, bps, _ = step.rates()
            bar.set_postfix_str(f"{format_bytes(done_bytes)}, {format_bytes(bps)}/s", refresh=False)
            bar.update(done - bar.n)

    def end(self, complete: bool = True) -> None:
        with self._lock:
            if self._bar is not None:
                if not complete:
                    self._bar.set_description_str(f"{self._bar.desc} (stopped)", refresh=False)
                self._bar.close()
            self._bar = self._step = None
