"""Streaming comparison of two sorted listings (a merge join).

Both sides yield :class:`~objstore.ids.ObjectInfo` sorted by ``(repo_id, obj_id)``
(the :meth:`Driver.list` contract), so one pass over each, holding one entry per
side, says what is missing, different or extra: memory does not grow with the
number of objects.
"""

from __future__ import annotations

import queue
import re
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import Union

from ..drivers.base import Driver
from ..errors import ObjStoreError
from ..ids import ObjectInfo
from .shards import in_shard, shard_prefixes

MISSING = 0
"""In the source only: to copy."""
MISMATCH = 1
"""In both, sizes (or MD5 ETags) disagree: to copy again."""
PRESENT = 2
"""In both with matching sizes: nothing to do."""
EXTRA = 3
"""In the destination only (reported, never deleted)."""

SizeCheck = Callable[[int, int], bool]


class ListingOrderError(ObjStoreError):
    """A listing was not sorted by (repo_id, obj_id); a merge join over it would lie."""


def same_size(src: int, dst: int) -> bool:
    return src == dst


def _unsorted(side: str, info: ObjectInfo, last: ObjectInfo) -> ListingOrderError:
    return ListingOrderError(
        f"the {side} listing is not sorted: {info.repo_id}/{info.obj_id} "
        f"after {last.repo_id}/{last.obj_id}"
    )


def merge_join(
    src: Iterable[ObjectInfo],
    dst: Iterable[ObjectInfo],
    sizes_match: SizeCheck = same_size,
    etags: bool = False,
) -> Iterator[tuple[int, ObjectInfo]]:
    """Yield ``(state, info)`` for every object of either side, in order.

    ``state`` is MISSING, MISMATCH or PRESENT with the source's entry, or EXTRA
    with the destination's.  ``sizes_match(src_size, dst_size)`` decides PRESENT
    vs MISMATCH; with ``etags`` (both sides store the same bytes), two ETags that
    are both plain MD5s must also agree (a same-size object with other content is
    found without reading it).  ListingOrderError if either side is out of order
    (checked as the join goes: the join's own comparisons already order each pair).
    """
    si = iter(src)
    di = iter(dst)
    s = next(si, None)
    d = next(di, None)
    while s is not None and d is not None:
        if s.repo_id == d.repo_id:
            so, do = s.obj_id, d.obj_id
            if so == do:
                same = sizes_match(s.size, d.size)
                if same and etags and s.etag != d.etag and is_md5(s.etag) and is_md5(d.etag):
                    same = False
                yield (PRESENT if same else MISMATCH), s
                s, d = _advance(si, s, "source"), _advance(di, d, "destination")
            elif so < do:
                yield MISSING, s
                s = _advance(si, s, "source")
            else:
                yield EXTRA, d
                d = _advance(di, d, "destination")
        elif s.repo_id < d.repo_id:
            yield MISSING, s
            s = _advance(si, s, "source")
        else:
            yield EXTRA, d
            d = _advance(di, d, "destination")
    while s is not None:
        yield MISSING, s
        s = _advance(si, s, "source")
    while d is not None:
        yield EXTRA, d
        d = _advance(di, d, "destination")


_MD5_RE = re.compile(r"[0-9a-f]{32}\Z")


def is_md5(etag: str | None) -> bool:
    """An ETag that is the MD5 of the object's bytes (single-part, unencrypted)."""
    return etag is not None and _MD5_RE.match(etag) is not None


def _advance(it: Iterator[ObjectInfo], last: ObjectInfo, side: str) -> ObjectInfo | None:
    """The next entry, which must sort after ``last``."""
    info = next(it, None)
    if info is not None and (
        info.repo_id < last.repo_id or (info.repo_id == last.repo_id and info.obj_id <= last.obj_id)
    ):
        raise _unsorted(side, info, last)
    return info


# --------------------------------------------------------------------------- scope


def scoped_listing(
    driver: Driver, repos: Iterable[str] | None = None, shard: tuple[int, int] | None = None
) -> Iterator[ObjectInfo]:
    """One sorted stream over the objects in scope: the given libraries (each listed
    by itself, in sorted order; with a shard, only those in it), else the hex
    prefixes of the shard listed one after the other (sorted and disjoint, so the
    stream stays sorted), else everything."""
    if repos is not None:
        for repo in sorted(repos):
            if in_shard(repo, shard):
                yield from driver.list(repo)
    elif shard is not None:
        for prefix in shard_prefixes(*shard):
            yield from driver.list_prefix(prefix)
    else:
        yield from driver.list()


# --------------------------------------------------------------------------- read-ahead

_END = object()
_Chunk = Union[list[ObjectInfo], BaseException, object]


class Prefetch(Iterator[ObjectInfo]):
    """Iterate a listing in a background thread, ``chunk`` entries at a time, at
    most ``depth`` chunks ahead, so two listings (and the copying) overlap.

    Errors of the listing are raised by ``__next__``.  ``close()`` stops the thread.
    """

    def __init__(
        self,
        items: Iterable[ObjectInfo],
        *,
        chunk: int = 1000,
        depth: int = 4,
        name: str = "listing",
    ) -> None:
        self._items = items
        self._chunk = chunk
        self._queue: queue.Queue[_Chunk] = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._buffer: list[ObjectInfo] = []
        self._pos = 0
        self._done = False
        self._exited = threading.Event()
        threading.Thread(target=self._run, name=f"objstore-{name}", daemon=True).start()

    def _put(self, item: _Chunk) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.2)
                return True
            except queue.Full:
                continue
        return False

    def _run(self) -> None:
        batch: list[ObjectInfo] = []
        try:
            for info in self._items:
                batch.append(info)
                if len(batch) >= self._chunk:
                    if not self._put(batch):
                        return
                    batch = []
            if batch and not self._put(batch):
                return
            self._put(_END)
        except BaseException as exc:  # handed to the consumer, raised there
            self._put(exc)
        finally:
            close = getattr(self._items, "close", None)
            if callable(close):
                close()
            self._exited.set()

    def __next__(self) -> ObjectInfo:
        if self._pos < len(self._buffer):
            info = self._buffer[self._pos]
            self._pos += 1
            return info
        if self._done:
            raise StopIteration
        item = self._queue.get()
        if item is _END:
            self._done = True
            raise StopIteration
        if isinstance(item, BaseException):
            self._done = True
            raise item
        assert isinstance(item, list)
        self._buffer, self._pos = item, 1
        first: ObjectInfo = item[0]
        return first

    def close(self) -> None:
        """Stop reading ahead (the listing thread ends within a fraction of a second)."""
        self._stop.set()
        self._done = True
        self._buffer, self._pos = [], 0
        while True:
            try:
                self._queue.get_nowait()
            except queue.Empty:
                break
        self._exited.wait(5)  # not Thread.join: see engine._Pool
