"""A Seafile library built from, or restored to, a real folder.

Works with any store that has ``write``/``read``/``exists`` (:class:`ObjectStore`),
one per object kind, looked up as ``stores[ObjKind.BLOCK]`` etc.  Objects are
laid out as Seafile (repo version 1) would: fixed-size blocks, zlib-JSON fs
objects, one commit.  Nothing here prints or logs.
"""

from __future__ import annotations

import os
import stat
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Protocol, Union

from .errors import CorruptObject
from .formats import (
    DIR_MODE,
    FILE_MODE,
    Commit,
    Dirent,
    FsObject,
    SeafDir,
    SeafFile,
    block_id,
    decode_commit,
    decode_fs,
    encode_commit,
    encode_dir,
    encode_file,
    verify_object,
)
from .ids import EMPTY_ID, ObjKind, check_obj_id, check_repo_id
from .streams import read_full

__all__ = [
    "DEFAULT_BLOCK_SIZE",
    "ObjectStore",
    "Stores",
    "import_folder",
    "restore_folder",
    "walk",
]

DEFAULT_BLOCK_SIZE = 8 * 1024 * 1024
"""Seafile's default maximum block size (8 MiB)."""

StrPath = Union[str, "os.PathLike[str]"]


class ObjectStore(Protocol):
    """The store interface this module needs (one store per object kind)."""

    def write(self, repo_id: str, obj_id: str, data: bytes) -> None:
        """Store ``data`` as object ``obj_id`` of ``repo_id``."""

    def read(self, repo_id: str, obj_id: str) -> bytes:
        """The stored bytes of an object."""

    def exists(self, repo_id: str, obj_id: str) -> bool:
        """Whether the object is stored."""


class Stores(Protocol):
    """The three stores, indexed by kind (a ``dict[ObjKind, store]`` fits)."""

    def __getitem__(self, kind: ObjKind, /) -> ObjectStore: ...


# --------------------------------------------------------------------------- import


class _Writer:
    """Writes each object once, skipping objects the store already has."""

    def __init__(self, stores: Stores, repo_id: str) -> None:
        self.stores = stores
        self.repo_id = repo_id
        self.seen: set[tuple[ObjKind, str]] = set()

    def put(self, kind: ObjKind, obj_id: str, data: bytes) -> None:
        if (kind, obj_id) in self.seen:
            return
        store = self.stores[kind]
        if not store.exists(self.repo_id, obj_id):
            store.write(self.repo_id, obj_id, data)
        self.seen.add((kind, obj_id))


def _check_name(path: str, name: str) -> None:
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError(f"{os.path.join(path, name)!r}: name is not valid UTF-8") from None


def _import_file(writer: _Writer, path: str, block_size: int) -> tuple[str, int]:
    block_ids: list[str] = []
    size = 0
    with open(path, "rb") as fh:
        while True:
            data = read_full(fh, block_size)
            if not data:
                break
            bid = block_id(data)
            writer.put(ObjKind.BLOCK, bid, data)
            block_ids.append(bid)
            size += len(data)
    file_id, stored = encode_file(SeafFile(block_ids=block_ids, size=size))
    if file_id != EMPTY_ID:
        writer.put(ObjKind.FS, file_id, stored)
    return file_id, size


def _import_dir(writer: _Writer, path: str, block_size: int, modifier: str) -> str:
    with os.scandir(path) as it:
        entries = sorted(it, key=lambda e: e.name)
    dirents = []
    for entry in entries:
        _check_name(path, entry.name)
        st = entry.stat(follow_symlinks=False)
        if stat.S_ISDIR(st.st_mode):
            sub_id = _import_dir(writer, entry.path, block_size, modifier)
            dirents.append(Dirent(sub_id, DIR_MODE, int(st.st_mtime), entry.name))
        elif stat.S_ISREG(st.st_mode):
            file_id, size = _import_file(writer, entry.path, block_size)
            dirents.append(Dirent(file_id, FILE_MODE, int(st.st_mtime), entry.name, modifier, size))
        # symlinks, sockets, fifos and devices are not part of a library
    dir_id, stored = encode_dir(SeafDir(dirents=dirents))
    if dir_id != EMPTY_ID:
        writer.put(ObjKind.FS, dir_id, stored)
    return dir_id


def import_folder(
    stores: Stores,
    repo_id: str,
    folder: StrPath,
    *,
    block_size: int = DEFAULT_BLOCK_SIZE,
    repo_name: str | None = None,
    creator_name: str = "objstore",
    description: str = "Imported folder",
    ctime: int | None = None,
    parent_id: str | None = None,
) -> str:
    """Store ``folder`` as a new commit of library ``repo_id``; return the commit id.

    Walks the folder in name order, taking regular files and directories (symlinks
    and special files are skipped).  Files are cut into blocks of ``block_size``
    bytes (the last one shorter); empty files and dirs get EMPTY_ID and are not
    stored; objects the store already has are not written again.  Dirent modes are
    ``S_IFREG|0644`` and ``S_IFDIR``, mtimes whole seconds, the modifier is
    ``creator_name``.  ``repo_name`` defaults to the folder's name, ``ctime`` to
    now.  ValueError for a name that is not valid UTF-8 (Seafile cannot store it).
    """
    check_repo_id(repo_id)
    if parent_id is not None:
        check_obj_id(parent_id)
    if block_size <= 0:
        raise ValueError("block_size must be positive")
    top = os.fspath(folder)
    if not os.path.isdir(top):
        raise NotADirectoryError(f"{top!r} is not a directory")
    writer = _Writer(stores, repo_id)
    root_id = _import_dir(writer, top, block_size, creator_name)
    commit = Commit.create(
        repo_id=repo_id,
        root_id=root_id,
        ctime=int(time.time()) if ctime is None else ctime,
        creator_name=creator_name,
        description=description,
        parent_id=parent_id,
        repo_name=Path(top).resolve().name if repo_name is None else repo_name,
        version=1,
    )
    commit_id, stored = encode_commit(commit)
    writer.put(ObjKind.COMMIT, commit_id, stored)
    return commit_id


# --------------------------------------------------------------------------- reading


class _Reader:
    """Reads and verifies objects of one library."""

    def __init__(self, stores: Stores, repo_id: str) -> None:
        self.stores = stores
        self.repo_id = check_repo_id(repo_id)

    def read(self, kind: ObjKind, obj_id: str) -> bytes:
        data = self.stores[kind].read(self.repo_id, obj_id)
        verify_object(kind, obj_id, data)
        return data

    def commit(self, commit_id: str) -> Commit:
        check_obj_id(commit_id)
        return decode_commit(self.read(ObjKind.COMMIT, commit_id))

    def fs(self, obj_id: str) -> FsObject:
        return decode_fs(self.read(ObjKind.FS, obj_id))

    def dir(self, dir_id: str) -> list[Dirent]:
        """The entries of a dir, by ascending name; checks the names are safe."""
        if dir_id == EMPTY_ID:
            return []
        obj = self.fs(dir_id)
        if not isinstance(obj, SeafDir):
            raise CorruptObject(f"corrupt fs object {dir_id}: expected a dir, found a file")
        names = set()
        for dirent in obj.dirents:
            name = dirent.name
            if not name or name in (".", "..") or "/" in name or "\x00" in name or name in names:
                raise CorruptObject(f"corrupt fs object {dir_id}: unsafe or duplicate entry name")
            names.add(name)
        return sorted(obj.dirents, key=lambda d: d.name.encode("utf-8", "surrogateescape"))

    def file(self, file_id: str) -> SeafFile:
        if file_id == EMPTY_ID:
            return SeafFile(block_ids=[], size=0)
        obj = self.fs(file_id)
        if not isinstance(obj, SeafFile):
            raise CorruptObject(f"corrupt fs object {file_id}: expected a file, found a dir")
        return obj


def walk(
    stores: Stores, repo_id: str, commit_id: str, *, unique: bool = False
) -> Iterator[tuple[str, ObjKind, str]]:
    """Yield ``(path, kind, obj_id)`` for every object the commit references:
    the commit itself and the root dir (path ``"/"``), each dir and file object
    (``"/a/b"``), and each block of a file (with the file's path).

    Commit and fs objects are read and verified (CorruptObject); blocks are listed,
    not read.  EMPTY_ID objects are not listed (they are never stored).  An object
    referenced from several places is listed each time unless ``unique``, which
    lists every object once and does not descend into a dir twice.
    """
    reader = _Reader(stores, repo_id)
    commit = reader.commit(commit_id)
    seen: set[tuple[ObjKind, str]] = set()

    def first(kind: ObjKind, obj_id: str) -> bool:
        if not unique:
            return True
        if (kind, obj_id) in seen:
            return False
        seen.add((kind, obj_id))
        return True

    def walk_dir(path: str, dir_id: str) -> Iterator[tuple[str, ObjKind, str]]:
        yield path, ObjKind.FS, dir_id
        for dirent in reader.dir(dir_id):
            child = path.rstrip("/") + "/" + dirent.name
            if dirent.id == EMPTY_ID or not first(ObjKind.FS, dirent.id):
                continue
            if dirent.is_dir:
                yield from walk_dir(child, dirent.id)
            elif dirent.is_file:
                yield child, ObjKind.FS, dirent.id
                for bid in reader.file(dirent.id).block_ids:
                    if first(ObjKind.BLOCK, bid):
                        yield child, ObjKind.BLOCK, bid

    yield "/", ObjKind.COMMIT, commit_id
    if commit.root_id != EMPTY_ID and first(ObjKind.FS, commit.root_id):
        yield from walk_dir("/", commit.root_id)


# --------------------------------------------------------------------------- restore


def _add_exec_bits(path: Path) -> None:
    mode = path.stat().st_mode
    path.chmod(mode | ((mode & 0o444) >> 2))


def _restore_file(reader: _Reader, dirent: Dirent, target: Path) -> None:
    seafile = reader.file(dirent.id)
    written = 0
    try:
        with open(target, "xb") as fh:
            for bid in seafile.block_ids:
                data = reader.read(ObjKind.BLOCK, bid)
                fh.write(data)
                written += len(data)
        if written != seafile.size:
            raise CorruptObject(
                f"corrupt fs object {dirent.id}: its blocks hold {written} bytes, "
                f"it records {seafile.size}"
            )
    except BaseException:
        target.unlink(missing_ok=True)
        raise
    if dirent.mode & 0o100:
        _add_exec_bits(target)
    if dirent.mtime > 0:
        os.utime(target, (dirent.mtime, dirent.mtime))


def _restore_dir(reader: _Reader, dir_id: str, target: Path) -> None:
    for dirent in reader.dir(dir_id):
        child = target / dirent.name
        if dirent.is_dir:
            child.mkdir()
            _restore_dir(reader, dirent.id, child)
            if dirent.mtime > 0:
                os.utime(child, (dirent.mtime, dirent.mtime))
        elif dirent.is_file:
            _restore_file(reader, dirent, child)


def restore_folder(stores: Stores, repo_id: str, commit_id: str, dest: StrPath) -> None:
    """Rebuild the commit's tree under ``dest`` (created if missing, else it must be
    empty): directories, and files byte for byte with their mtimes.

    Every object is verified as it is read (CorruptObject; a file whose blocks do
    not add up to its size is corrupt and is removed).  Encrypted libraries are
    refused with ValueError: their blocks need the library password.
    """
    reader = _Reader(stores, repo_id)
    commit = reader.commit(commit_id)
    if commit.encrypted:
        raise ValueError("the library is encrypted; restoring it needs its password")
    target = Path(dest)
    target.mkdir(parents=True, exist_ok=True)
    if any(target.iterdir()):
        raise FileExistsError(f"{os.fspath(target)!r} is not empty")
    _restore_dir(reader, commit.root_id, target)
