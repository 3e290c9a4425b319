"""The driver interface every backend (and every wrapper, such as the cache) implements.

Drivers receive ids that :mod:`objstore.ids` already validated; they map them to
a path or key in exactly one place and translate their library's errors into
:mod:`objstore.errors` at their edge.
"""

from __future__ import annotations

import abc
import io
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import BinaryIO

from ..errors import NotFound
from ..ids import ObjectInfo, ObjKind


@dataclass(frozen=True)
class Properties:
    """What a driver can do; callers size their concurrency from it.
    ``multipart_threshold``: objects larger than this are written in parts by
    :meth:`Driver.put_stream` (None: always in one piece)."""

    max_connections: int = 16
    server_side_copy: bool = False
    atomic_replace: bool = True
    multipart_threshold: int | None = None


class Driver(abc.ABC):
    """Stores the objects of one kind.  Objects are immutable bytes addressed by
    ``(repo_id, obj_id)``."""

    kind: ObjKind
    properties: Properties = Properties()

    @property
    @abc.abstractmethod
    def identity(self) -> str:
        """A stable, secret-free name of the storage location (``s3://host/bucket/prefix``,
        ``file:///dir``).  Two drivers with the same identity see the same objects."""

    @property
    def cache_identity(self) -> str:
        """``identity`` plus whatever changes what reads return (an SSE-C key
        fingerprint); caches namespace their keys by it."""
        return self.identity

    @property
    def backend(self) -> Driver:
        """The innermost driver: wrappers (such as the cache) return their inner's."""
        return self

    @property
    def endpoint(self) -> str:
        """The server this driver talks to (``https://host:port``), or its
        ``identity`` for local storage: drivers with one endpoint share its
        abilities (a server that refuses server-side copy refuses it for all)."""
        return self.identity

    @property
    def encryption(self) -> str | None:
        """A secret-free fingerprint of the encryption applied to what this driver
        writes (``sse-c:<fingerprint>``), None for none.  Two drivers with one
        identity and different encryption see the same objects differently
        encrypted (a key rotation in place)."""
        return None

    def check(self) -> None:  # noqa: B027 - optional hook
        """Raise if the storage location is unusable (BucketNotFound, AuthError,
        NotFound for a missing directory); called once when a store is opened."""

    def matches_encryption(self, repo_id: str, obj_id: str) -> bool:
        """Whether the stored object is encrypted the way this driver writes new
        ones (with its key, or not at all).  NotFound if missing."""
        self.head(repo_id, obj_id)
        return True

    def can_copy_from(self, source: Driver) -> bool:
        """Whether :meth:`copy_from` can copy from ``source`` server-side."""
        return False

    def stats(self) -> dict[str, int] | None:
        """Counters of a wrapper that keeps them (the cache), else None."""
        return None

    @abc.abstractmethod
    def get(self, repo_id: str, obj_id: str) -> bytes:
        """The stored bytes, exactly as written.  NotFound if missing."""

    @abc.abstractmethod
    def put(self, repo_id: str, obj_id: str, data: bytes) -> None:
        """Store ``data`` atomically: no reader ever sees a partial object."""

    @abc.abstractmethod
    def head(self, repo_id: str, obj_id: str) -> ObjectInfo:
        """Size of a stored object.  NotFound if missing."""

    @abc.abstractmethod
    def delete(self, repo_id: str, obj_id: str) -> None:
        """Remove an object; deleting a missing object is not an error."""

    @abc.abstractmethod
    def list(self, repo_id: str | None = None) -> Iterator[ObjectInfo]:
        """Every object (of one repo, if given), sorted by ``(repo_id, obj_id)``,
        streamed: memory does not grow with the number of objects.  Entries whose
        names are not valid ids are skipped."""

    def list_prefix(self, prefix: str) -> Iterator[ObjectInfo]:
        """Every object whose repo id starts with ``prefix`` (lowercase hex digits;
        ``""`` for all), sorted and streamed as :meth:`list`.  Drivers override it
        to read only the matching libraries (S3: a listing with that key prefix;
        fs: only the matching repo directories); this default filters :meth:`list`."""
        return (info for info in self.list() if info.repo_id.startswith(prefix))

    def exists(self, repo_id: str, obj_id: str) -> bool:
        """False only when the object is missing; other errors propagate."""
        try:
            self.head(repo_id, obj_id)
        except NotFound:
            return False
        return True

    def copy(self, src_repo_id: str, dst_repo_id: str, obj_id: str) -> None:
        """Copy an object to another repo in the same store (server-side where possible)."""
        self.put(dst_repo_id, obj_id, self.get(src_repo_id, obj_id))

    def copy_from(self, source: Driver, repo_id: str, obj_id: str) -> bool:
        """Copy one object from another driver without moving its bytes through
        this process, if this driver can.  Returns False when it cannot (the
        caller then reads and writes); raises ServerSideCopyUnsupported when the
        server refuses."""
        return False

    def open_read(self, repo_id: str, obj_id: str) -> BinaryIO:
        """A readable binary file object streaming the object.  NotFound if missing."""
        return io.BytesIO(self.get(repo_id, obj_id))

    def put_stream(self, repo_id: str, obj_id: str, fileobj: BinaryIO) -> None:
        """Store what ``fileobj`` yields until EOF, atomically."""
        self.put(repo_id, obj_id, fileobj.read())

    def get_many(self, repo_id: str, obj_ids: Iterable[str]) -> dict[str, bytes]:
        """Read several objects concurrently.  NotFound if any is missing."""
        ids = list(dict.fromkeys(obj_ids))
        if len(ids) <= 1:
            return {i: self.get(repo_id, i) for i in ids}
        workers = max(1, min(len(ids), self.properties.max_connections))
        with ThreadPoolExecutor(max_workers=workers) as pool:
            datas = list(pool.map(lambda i: self.get(repo_id, i), ids))
        return dict(zip(ids, datas))

    def remove_repo(self, repo_id: str) -> None:
        """Delete every object of one repo."""
        for info in self.list(repo_id):
            self.delete(info.repo_id, info.obj_id)

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections and pools.  The driver is unusable afterwards."""

    def __enter__(self) -> Driver:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class WrappingDriver(Driver):
    """A driver in front of another (``inner``): every method is forwarded, so a
    wrapper overrides only what it changes and never hides what the backend can do."""

    def __init__(self, inner: Driver) -> None:
        self.inner = inner
        self.kind = inner.kind
        self.properties = inner.properties

    @property
    def identity(self) -> str:
        return self.inner.identity

    @property
    def cache_identity(self) -> str:
        return self.inner.cache_identity

    @property
    def backend(self) -> Driver:
        return self.inner.backend

    @property
    def endpoint(self) -> str:
        return self.inner.endpoint

    @property
    def encryption(self) -> str | None:
        return self.inner.encryption

    def check(self) -> None:
        self.inner.check()

    def matches_encryption(self, repo_id: str, obj_id: str) -> bool:
        return self.inner.matches_encryption(repo_id, obj_id)

    def can_copy_from(self, source: Driver) -> bool:
        return self.inner.can_copy_from(source)

    def stats(self) -> dict[str, int] | None:
        return self.inner.stats()

    def get(self, repo_id: str, obj_id: str) -> bytes:
        return self.inner.get(repo_id, obj_id)

    def put(self, repo_id: str, obj_id: str, data: bytes) -> None:
        self.inner.put(repo_id, obj_id, data)

    def head(self, repo_id: str, obj_id: str) -> ObjectInfo:
        return self.inner.head(repo_id, obj_id)

    def delete(self, repo_id: str, obj_id: str) -> None:
        self.inner.delete(repo_id, obj_id)

    def list(self, repo_id: str | None = None) -> Iterator[ObjectInfo]:
        return self.inner.list(repo_id)

    def list_prefix(self, prefix: str) -> Iterator[ObjectInfo]:
        return self.inner.list_prefix(prefix)

    def exists(self, repo_id: str, obj_id: str) -> bool:
        return self.inner.exists(repo_id, obj_id)

    def copy(self, src_repo_id: str, dst_repo_id: str, obj_id: str) -> None:
        self.inner.copy(src_repo_id, dst_repo_id, obj_id)

    def copy_from(self, source: Driver, repo_id: str, obj_id: str) -> bool:
        return self.inner.copy_from(source, repo_id, obj_id)

    def open_read(self, repo_id: str, obj_id: str) -> BinaryIO:
        return self.inner.open_read(repo_id, obj_id)

    def put_stream(self, repo_id: str, obj_id: str, fileobj: BinaryIO) -> None:
        self.inner.put_stream(repo_id, obj_id, fileobj)

    def get_many(self, repo_id: str, obj_ids: Iterable[str]) -> dict[str, bytes]:
        return self.inner.get_many(repo_id, obj_ids)

    def remove_repo(self, repo_id: str) -> None:
        self.inner.remove_repo(repo_id)

    def close(self) -> None:
        self.inner.close()
