"""The public store API: one :class:`ObjectStore` per kind, grouped in :class:`Stores`.

An ObjectStore validates every id at the edge and delegates to a driver stack
built by :func:`build_driver` (the one factory: driver, then wrappers such as the
cache).  It keeps bytes and knows nothing of Seafile's formats.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Iterator, Mapping
from typing import BinaryIO

from .config import (
    BackendConfig,
    CacheConfig,
    FsConfig,
    S3Config,
    StoreConfig,
    config_from_env,
    load_config,
)
from .drivers.base import Driver
from .drivers.fs import FsDriver
from .errors import (
    AuthError,
    BackendUnavailable,
    BucketNotFound,
    ConfigError,
    NotFound,
    PermissionDenied,
)
from .ids import ObjectInfo, ObjKind, check_obj_id, check_repo_id, check_repo_prefix

log = logging.getLogger("objstore")


def _check_data(data: object) -> bytes:
    if isinstance(data, (bytes, bytearray, memoryview)):
        return bytes(data)
    raise TypeError(f"data must be bytes, not {type(data).__name__}")


class ObjectStore:
    """The objects of one kind.  Every method validates its ids first (InvalidId)."""

    def __init__(self, driver: Driver) -> None:
        self.driver = driver
        self.kind = driver.kind

    def __repr__(self) -> str:
        return f"ObjectStore({self.kind.name}, {self.driver!r})"

    def write(self, repo_id: str, obj_id: str, data: bytes) -> None:
        """Store ``data`` atomically: no reader ever sees a partial object."""
        self.driver.put(check_repo_id(repo_id), check_obj_id(obj_id), _check_data(data))

    def read(self, repo_id: str, obj_id: str) -> bytes:
        """The stored bytes, exactly as written.  NotFound if missing."""
        return self.driver.get(check_repo_id(repo_id), check_obj_id(obj_id))

    def exists(self, repo_id: str, obj_id: str) -> bool:
        """False only when the object is missing; outages and auth errors raise."""
        return self.driver.exists(check_repo_id(repo_id), check_obj_id(obj_id))

    def stat(self, repo_id: str, obj_id: str) -> ObjectInfo:
        """repo_id, obj_id and size.  NotFound if missing."""
        return self.driver.head(check_repo_id(repo_id), check_obj_id(obj_id))

    def delete(self, repo_id: str, obj_id: str) -> None:
        """Remove an object; deleting a missing object is not an error."""
        self.driver.delete(check_repo_id(repo_id), check_obj_id(obj_id))

    def list(self, repo_id: str | None = None) -> Iterator[ObjectInfo]:
        """All objects (of one repo, if given), sorted by (repo_id, obj_id), streamed."""
        return self.driver.list(None if repo_id is None else check_repo_id(repo_id))

    def list_prefix(self, prefix: str) -> Iterator[ObjectInfo]:
        """The objects whose repo id starts with ``prefix`` (up to 8 lowercase hex
        digits), sorted as :meth:`list`; only those libraries are read."""
        return self.driver.list_prefix(check_repo_prefix(prefix))

    def read_many(self, repo_id: str, obj_ids: Iterable[str]) -> dict[str, bytes]:
        """Several objects of one repo, read concurrently.  NotFound if any is missing."""
        ids = [check_obj_id(i) for i in obj_ids]
        return self.driver.get_many(check_repo_id(repo_id), ids)

    def copy(self, src_repo_id: str, dst_repo_id: str, obj_id: str) -> None:
        """Copy an object into another repo of this store (server-side where possible)."""
        self.driver.copy(
            check_repo_id(src_repo_id), check_repo_id(dst_repo_id), check_obj_id(obj_id)
        )

    def remove_repo(self, repo_id: str) -> None:
        """Delete every object of one repo."""
        self.driver.remove_repo(check_repo_id(repo_id))

    def open_read(self, repo_id: str, obj_id: str) -> BinaryIO:
        """A binary file object streaming the object (for large blocks).  Close it."""
        return self.driver.open_read(check_repo_id(repo_id), check_obj_id(obj_id))

    def write_from(self, repo_id: str, obj_id: str, fileobj: BinaryIO) -> None:
        """Store what ``fileobj`` yields until EOF, atomically (multipart above a threshold)."""
        self.driver.put_stream(check_repo_id(repo_id), check_obj_id(obj_id), fileobj)

    def close(self) -> None:
        self.driver.close()


def build_driver(backend: BackendConfig, kind: ObjKind, cache: CacheConfig | None = None) -> Driver:
    """The one factory: the backend driver, wrapped by the cache where configured."""
    driver: Driver
    if isinstance(backend, FsConfig):
        driver = FsDriver(backend.dir, kind)
    elif isinstance(backend, S3Config):
        from .drivers.s3 import S3Driver

        driver = S3Driver(backend, kind)
    else:  # pragma: no cover - config only builds the two
        raise TypeError(f"unknown backend config {type(backend).__name__}")
    if cache is not None and kind in cache.kinds:
        from .cache import CachedDriver

        driver = CachedDriver.create(driver, cache)
    return driver


class Stores(Mapping[ObjKind, ObjectStore]):
    """The three stores of one configuration; ``stores[ObjKind.BLOCK]`` or ``stores.block``."""

    def __init__(self, config: StoreConfig, stores: Mapping[ObjKind, ObjectStore]) -> None:
        self.config = config
        self._stores = dict(stores)

    @property
    def commit(self) -> ObjectStore:
        return self._stores[ObjKind.COMMIT]

    @property
    def fs(self) -> ObjectStore:
        return self._stores[ObjKind.FS]

    @property
    def block(self) -> ObjectStore:
        return self._stores[ObjKind.BLOCK]

    def __getitem__(self, kind: ObjKind) -> ObjectStore:
        return self._stores[kind]

    def __iter__(self) -> Iterator[ObjKind]:
        return iter(self._stores)

    def __len__(self) -> int:
        return len(self._stores)

    def __repr__(self) -> str:
        return f"Stores({self.config.source!r})"

    def cache_stats(self) -> dict[str, dict[str, int]]:
        """Per kind: hits, misses, errors, bytes (empty for kinds without a cache)."""
        out: dict[str, dict[str, int]] = {}
        for kind, store in self._stores.items():
            stats = store.driver.stats()
            if stats is not None:
                out[kind.name.lower()] = stats
        return out

    def close(self) -> None:
        """Release connections and pools of every store."""
        for store in self._stores.values():
            store.close()

    def __enter__(self) -> Stores:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _check_fs_access(config: StoreConfig, kind: ObjKind, backend: FsConfig) -> None:
    """The data dir, and every directory on the way to it, can be entered:
    PermissionDenied naming the directory and where it was configured otherwise."""
    path = backend.dir
    try:
        path.stat()
        enterable = not path.is_dir() or os.access(path, os.R_OK | os.X_OK)
    except PermissionError as exc:
        where, enterable = exc.filename or path, False
    except OSError:
        return  # missing, or not a directory: the driver's check says so
    else:
        where = path
    if not enterable:
        raise PermissionDenied(
            f"{config.origins.get(kind, config.source)}: cannot enter {where} "
            f"(permission denied), so the {kind.value} objects under {path} cannot be read"
        )


def _check_backend(config: StoreConfig, kind: ObjKind, driver: Driver) -> None:
    """Bucket exists, credentials work, directory exists and can be entered: else an
    error naming the section (or the variable) and the directory."""
    backend = config.backends[kind]
    if isinstance(backend, FsConfig):
        _check_fs_access(config, kind, backend)
    section = kind.section
    try:
        driver.check()
    except BucketNotFound as exc:
        raise BucketNotFound(
            exc.reason, file=config.source, section=section, option="bucket"
        ) from None
    except ConfigError as exc:
        if exc.file is not None:  # another file's setting (the AWS config file's ca_bundle)
            raise
        raise ConfigError(
            exc.reason, file=config.source, section=section, option=exc.option
        ) from None
    except AuthError as exc:
        raise AuthError(f"{config.source} [{section}]: {exc}") from None
    except BackendUnavailable as exc:
        raise BackendUnavailable(
            f"{config.source} [{section}] {driver.endpoint}: {exc}", retryable=exc.retryable
        ) from None
    except NotFound as exc:
        raise ConfigError(str(exc), file=config.source, section=section, option="dir") from None


def open_config(config: StoreConfig, *, check: bool = True) -> Stores:
    """Build the stores of an already loaded configuration; with ``check``, each
    backend is checked (see :func:`open_stores`)."""
    built: dict[ObjKind, ObjectStore] = {}
    try:
        for kind in ObjKind:
            backend = config.backends[kind]
            driver = build_driver(backend, kind, config.cache)
            built[kind] = ObjectStore(driver)
            if check:
                _check_backend(config, kind, driver)
    except BaseException:
        for store in built.values():
            store.close()
        raise
    return Stores(config, built)


def open_stores(
    path: str | os.PathLike[str] | None = None, *, data_dir: str | os.PathLike[str] | None = None,
    check: bool = True, env: Mapping[str, str] | None = None,
) -> Stores:  # fmt: skip
    """Open the commit, fs and block stores of a seafile.conf (a file, or a directory
    holding one), with the environment applied as Seafile applies it (see
    :func:`objstore.load_config`).  With ``path=None``, the environment alone is read
    (``SEAF_SERVER_STORAGE_TYPE``, ``S3_*``...).  With ``check`` (default), each
    bucket must exist and accept the credentials, and each fs data dir must exist.
    Which source each kind and the cache came from is logged (INFO) and kept in
    ``stores.config.origins`` / ``cache_origin``.
    """
    if path is None:
        config = config_from_env(env, data_dir=data_dir)
    else:
        config = load_config(path, data_dir=data_dir, env=env)
    for line in config.describe():
        log.info("%s: %s", config.source, line)
    return open_config(config, check=check)
