"""The filesystem driver: Seafile's on-disk layout, atomic writes.

Layout: ``<dir>/storage/<kind>/<repo_id>/<obj_id[:2]>/<obj_id[2:]>``.  A write goes
to a temp file in the target directory (a name no listing accepts), is fsynced,
then renamed over the target; the directory is fsynced too.  Ids arrive validated
(see :mod:`objstore.ids`), so a path can never leave the storage directory.
"""

from __future__ import annotations

import errno
import os
import re
import shutil
import uuid
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import BinaryIO, NoReturn

from ..errors import BackendUnavailable, NotFound, PermissionDenied, StorageFull
from ..ids import ObjectInfo, ObjKind, is_repo_id
from .base import Driver, Properties

_REST_RE = re.compile(r"[0-9a-f]{38}\Z")
_PREFIX_RE = re.compile(r"[0-9a-f]{2}\Z")
_CHUNK = 1024 * 1024
_O_READ = os.O_RDONLY | getattr(os, "O_CLOEXEC", 0)


def _raise_os_error(exc: OSError, what: str) -> NoReturn:
    """Translate an OSError at the driver's edge (one table)."""
    if isinstance(exc, FileNotFoundError):
        raise NotFound(f"{what}: not found") from exc
    code = exc.errno
    if code in (errno.ENOSPC, errno.EDQUOT):
        raise StorageFull(f"{what}: no space left on device") from exc
    if code in (errno.EACCES, errno.EPERM, errno.EROFS):
        raise PermissionDenied(f"{what}: {exc.strerror}") from exc
    raise BackendUnavailable(f"{what}: {exc.strerror or exc}") from exc


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _sorted_names(path: str, accept: Callable[[str], object]) -> list[str]:
    """The accepted names in a directory, sorted; none if it does not exist."""
    try:
        return sorted(n for n in os.listdir(path) if accept(n))
    except FileNotFoundError:
        return []
    except OSError as exc:
        _raise_os_error(exc, f"listing {path}")


class FsDriver(Driver):
    """Objects of one kind under ``<data_dir>/storage/<kind>``."""

    properties = Properties(max_connections=16, server_side_copy=True, atomic_replace=True)

    def __init__(
        self, data_dir: str | os.PathLike[str], kind: ObjKind, *, fsync: bool = True
    ) -> None:
        self.kind = kind
        self.root = Path(data_dir) / "storage" / kind.value
        self._root = str(self.root)
        self.fsync = fsync

    def __repr__(self) -> str:
        return f"FsDriver({str(self.root)!r})"

    @property
    def identity(self) -> str:
        return f"file://{self.root.resolve()}"

    def _file(self, repo_id: str, obj_id: str) -> str:
        """The one place mapping an address to a file."""
        return f"{self._root}/{repo_id}/{obj_id[:2]}/{obj_id[2:]}"

    def path(self, repo_id: str, obj_id: str) -> Path:
        """The file of an address."""
        return Path(self._file(repo_id, obj_id))

    def _what(self, repo_id: str, obj_id: str) -> str:
        return f"{self.kind.value} object {repo_id}/{obj_id}"

    def check(self) -> None:
        """The data directory must exist (``storage/<kind>`` is created on first write):
        a typo in ``dir`` must not look like an empty store.  NotFound otherwise."""
        data_dir = self.root.parent.parent
        if not data_dir.is_dir():
            raise NotFound(f"directory {data_dir} does not exist")
        if self.root.exists() and not self.root.is_dir():
            raise NotFound(f"{self.root} is not a directory")

    def get(self, repo_id: str, obj_id: str) -> bytes:
        # os-level calls: each call that releases the GIL costs a thread switch
        # under a busy worker pool, and open()+read() makes seven of them
        try:
            fd = os.open(self._file(repo_id, obj_id), _O_READ)
            try:
                size = os.fstat(fd).st_size
                data = os.read(fd, size + 1)
                if len(data) != size:  # changed since fstat: read on to the end
                    chunks = [data]
                    while chunk := os.read(fd, _CHUNK):
                        chunks.append(chunk)
                    data = b"".join(chunks)
                return data
            finally:
                os.close(fd)
        except OSError as exc:
            _raise_os_error(exc, self._what(repo_id, obj_id))

    def open_read(self, repo_id: str, obj_id: str) -> BinaryIO:
        try:
            return open(self.path(repo_id, obj_id), "rb")
        except OSError as exc:
            _raise_os_error(exc, self._what(repo_id, obj_id))

    def head(self, repo_id: str, obj_id: str) -> ObjectInfo:
        try:
            size = self.path(repo_id, obj_id).stat().st_size
        except OSError as exc:
            _raise_os_error(exc, self._what(repo_id, obj_id))
        return ObjectInfo(repo_id, obj_id, size)

    def put(self, repo_id: str, obj_id: str, data: bytes) -> None:
        self._write(repo_id, obj_id, lambda fh: fh.write(data))

    def put_stream(self, repo_id: str, obj_id: str, fileobj: BinaryIO) -> None:
        self._write(repo_id, obj_id, lambda fh: shutil.copyfileobj(fileobj, fh, _CHUNK))

    def _write(self, repo_id: str, obj_id: str, fill: object) -> None:
        target = self.path(repo_id, obj_id)
        tmp = target.parent / f".{target.name}.{uuid.uuid4().hex}.tmp"
        what = self._what(repo_id, obj_id)
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            try:
                with open(tmp, "xb") as fh:
                    fill(fh)  # type: ignore[operator]
                    fh.flush()
                    if self.fsync:
                        os.fsync(fh.fileno())
                os.replace(tmp, target)
            except BaseException:
                tmp.unlink(missing_ok=True)
                raise
            if self.fsync:
                _fsync_dir(target.parent)
        except OSError as exc:
            _raise_os_error(exc, what)

    def delete(self, repo_id: str, obj_id: str) -> None:
        try:
            self.path(repo_id, obj_id).unlink()
        except FileNotFoundError:
            pass
        except OSError as exc:
            _raise_os_error(exc, self._what(repo_id, obj_id))

    def copy(self, src_repo_id: str, dst_repo_id: str, obj_id: str) -> None:
        """Hard-link where possible (objects are immutable and replaced by rename)."""
        src = self.path(src_repo_id, obj_id)
        dst = self.path(dst_repo_id, obj_id)
        tmp = dst.parent / f".{dst.name}.{uuid.uuid4().hex}.tmp"
        try:
            dst.parent.mkdir(parents=True, exist_ok=True)
            try:
                os.link(src, tmp)
            except FileNotFoundError:
                raise
            except OSError:
                with open(src, "rb") as fh:
                    self.put_stream(dst_repo_id, obj_id, fh)
                return
            os.replace(tmp, dst)
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            _raise_os_error(exc, self._what(src_repo_id, obj_id))

    def list(self, repo_id: str | None = None) -> Iterator[ObjectInfo]:
        """Sorted by (repo_id, obj_id), one directory at a time.  An object deleted
        while its directory is listed is left out; nothing else is."""
        if repo_id is not None:
            yield from self._objects([repo_id])
        else:
            yield from self.list_prefix("")

    def list_prefix(self, prefix: str) -> Iterator[ObjectInfo]:
        """As :meth:`list`, reading only the repo directories whose names start
        with ``prefix``."""
        accept = (lambda n: n.startswith(prefix) and is_repo_id(n)) if prefix else is_repo_id
        yield from self._objects(_sorted_names(str(self.root), accept))

    def _objects(self, repos: Iterable[str]) -> Iterator[ObjectInfo]:
        """The objects of these repos (sorted names), in order."""
        root = str(self.root)
        for repo in repos:
            repo_dir = os.path.join(root, repo)
            for prefix in _sorted_names(repo_dir, _PREFIX_RE.match):
                prefix_dir = os.path.join(repo_dir, prefix)
                try:
                    with os.scandir(prefix_dir) as it:
                        entries = [(e.name, e) for e in it if _REST_RE.match(e.name)]
                except FileNotFoundError:
                    continue
                except OSError as exc:
                    _raise_os_error(exc, f"listing {prefix_dir}")
                entries.sort()
                for name, entry in entries:
                    try:
                        if not entry.is_file(follow_symlinks=False):
                            continue
                        size = entry.stat(follow_symlinks=False).st_size
                    except FileNotFoundError:
                        continue
                    except OSError as exc:
                        _raise_os_error(exc, f"listing {prefix_dir}")
                    yield ObjectInfo(repo, prefix + name, size)

    def remove_repo(self, repo_id: str) -> None:
        try:
            shutil.rmtree(self.root / repo_id)
        except FileNotFoundError:
            pass
        except OSError as exc:
            _raise_os_error(exc, f"removing repo {repo_id}")
