"""The one retry policy: how many attempts, how long to wait between them, and
what is worth another attempt.

An error is retried when it says so (``ObjStoreError.retryable``: the backend
could not be reached, answered 5xx, 429 or SlowDown, reset the connection before
answering, cut a body short, or missed the request deadline).  Everything else
(missing objects, bad credentials, wrong keys, malformed ids, corrupt data) fails
at once.  Waits grow exponentially with jitter: attempt ``n`` (n >= 1) waits
between half and all of ``min(max_delay, base_delay * 2 ** (n - 1))``.

The S3 driver applies it to each request; the migration engine does not retry on
top (so ``max_retries`` means the same everywhere); the cache's circuit breaker
uses its waits for the probes of a cache that went down.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from .errors import ObjStoreError

T = TypeVar("T")

log = logging.getLogger("objstore.retry")


def is_retryable(exc: BaseException) -> bool:
    """The one rule for what another attempt may fix."""
    return isinstance(exc, ObjStoreError) and exc.retryable


@dataclass(frozen=True)
class RetryPolicy:
    max_retries: int = 5
    """Attempts after the first (``max_retries = 0``: one attempt)."""
    base_delay: float = 0.2
    max_delay: float = 10.0

    def delay(self, retry: int) -> float:
        """Seconds to wait before retry number ``retry`` (1, 2, ...)."""
        ceiling = min(self.max_delay, self.base_delay * 2 ** min(retry - 1, 30))
        return float(ceiling * (0.5 + random.random() / 2))

    @property
    def max_total_delay(self) -> float:
        """The longest the waits of one operation can add up to."""
        return float(
            sum(
                min(self.max_delay, self.base_delay * 2 ** min(n - 1, 30))
                for n in range(1, self.max_retries + 1)
            )
        )

    def call(
        self,
        attempt: Callable[[], T],
        *,
        what: str = "",
        cancel: threading.Event | None = None,
    ) -> T:
        """Run ``attempt`` until it succeeds, fails with an error that is not
        retryable, or ``max_retries`` retries are spent (then its last error is
        raised).  Waits end early when ``cancel`` is set (the last error is raised)."""
        retry = 0
        while True:
            try:
                return attempt()
            except ObjStoreError as exc:
                exc.attempts = retry + 1
                if not exc.retryable or retry >= self.max_retries:
                    raise
                retry += 1
                wait = self.delay(retry)
                log.debug("%s: %s; retry %d of %d in %.2f s", what, exc, retry,
                          self.max_retries, wait)  # fmt: skip
                if cancel is not None:
                    if cancel.wait(wait):
                        raise
                else:
                    time.sleep(wait)
