"""A library imported from a folder and restored from an in-memory store."""

from __future__ import annotations

import filecmp
import hashlib
import os
import stat
import zlib
from pathlib import Path

import pytest

from objstore.errors import CorruptObject
from objstore.formats import (
    DIR_MODE,
    FILE_MODE,
    Commit,
    SeafDir,
    SeafFile,
    decode_commit,
    decode_fs,
    encode_commit,
    verify_object,
)
from objstore.ids import EMPTY_ID, ObjKind
from objstore.library import ObjectStore, Stores, import_folder, restore_folder, walk

REPO_ID = "1b4e28ba-2fa1-11d2-883f-0016d3cca427"
BLOCK = 64  # small block size for tests


class DictStore:
    """In-memory store with the write/read/exists interface."""

    def __init__(self) -> None:
        self.objects: dict[tuple[str, str], bytes] = {}
        self.writes = 0

    def write(self, repo_id: str, obj_id: str, data: bytes) -> None:
        self.writes += 1
        self.objects[(repo_id, obj_id)] = bytes(data)

    def read(self, repo_id: str, obj_id: str) -> bytes:
        return self.objects[(repo_id, obj_id)]

    def exists(self, repo_id: str, obj_id: str) -> bool:
        return (repo_id, obj_id) in self.objects


def make_stores() -> dict[ObjKind, DictStore]:
    return {kind: DictStore() for kind in ObjKind}


def build_tree(root: Path) -> None:
    (root / "docs" / "deep" / "deeper").mkdir(parents=True)
    (root / "empty-dir").mkdir()
    (root / "docs" / "deep" / "deeper" / "leaf.txt").write_text("leaf\n")
    (root / "docs" / "empty.txt").write_bytes(b"")
    (root / "top-empty").write_bytes(b"")
    (root / "exact.bin").write_bytes(bytes(range(BLOCK)))
    (root / "plus-one.bin").write_bytes(bytes(range(BLOCK)) + b"!")
    (root / "big.bin").write_bytes(os.urandom(BLOCK * 5 + 7))
    (root / "dup-a.bin").write_bytes(b"same content" * 20)
    (root / "docs" / "dup-b.bin").write_bytes(b"same content" * 20)
    (root / "\u00e9t\u00e9 \u65e5\u672c.txt").write_text("unicode name\n")
    (root / "UPPER").write_text("case\n")
    (root / "tool.sh").write_text("#!/bin/sh\n")
    (root / "tool.sh").chmod(0o755)


def assert_same_tree(left: Path, right: Path) -> None:
    cmp = filecmp.dircmp(left, right)

    def check(c: filecmp.dircmp[str]) -> None:
        assert not c.left_only and not c.right_only and not c.funny_files, (
            c.left_only,
            c.right_only,
        )
        _, mismatch, errors = filecmp.cmpfiles(c.left, c.right, c.common_files, shallow=False)
        assert not mismatch and not errors
        for sub in c.subdirs.values():
            check(sub)

    check(cmp)


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    root = tmp_path / "src"
    root.mkdir()
    build_tree(root)
    return root


def test_import_and_restore_round_trip(tree: Path, tmp_path: Path) -> None:
    fakes = make_stores()
    stores: Stores = fakes  # the fakes satisfy the protocols (checked by mypy)
    block_store: ObjectStore = fakes[ObjKind.BLOCK]
    assert block_store is stores[ObjKind.BLOCK]
    commit_id = import_folder(stores, REPO_ID, tree, block_size=BLOCK, ctime=1700000000)
    dest = tmp_path / "restored"
    restore_folder(stores, REPO_ID, commit_id, dest)
    assert_same_tree(tree, dest)
    for path in tree.rglob("*"):
        twin = dest / path.relative_to(tree)
        assert twin.stat().st_mtime == int(path.stat().st_mtime)
    assert os.access(dest / "tool.sh", os.X_OK) is False  # modes are S_IFREG|0644


def test_objects_are_laid_out_as_seafile_does(tree: Path) -> None:
    stores = make_stores()
    commit_id = import_folder(
        stores,
        REPO_ID,
        tree,
        block_size=BLOCK,
        ctime=1700000000,
        creator_name="alice@example.com",
        description="Imported",
        repo_name="My Lib",
    )
    commit = decode_commit(stores[ObjKind.COMMIT].read(REPO_ID, commit_id))
    assert commit == Commit.create(
        repo_id=REPO_ID,
        root_id=commit.root_id,
        ctime=1700000000,
        creator_name="alice@example.com",
        description="Imported",
        repo_name="My Lib",
    )
    root = decode_fs(stores[ObjKind.FS].read(REPO_ID, commit.root_id))
    assert isinstance(root, SeafDir)
    names = [d.name for d in root.dirents]
    assert names == sorted(names, key=str.encode, reverse=True)
    by_name = {d.name: d for d in root.dirents}
    assert "link" not in by_name
    assert by_name["empty-dir"].id == EMPTY_ID and by_name["empty-dir"].mode == DIR_MODE
    assert by_name["top-empty"].id == EMPTY_ID and by_name["top-empty"].size == 0
    assert by_name["tool.sh"].mode == FILE_MODE == stat.S_IFREG | 0o644
    assert by_name["UPPER"].modifier == "alice@example.com"

    def blocks_of(name: str) -> list[bytes]:
        obj = decode_fs(stores[ObjKind.FS].read(REPO_ID, by_name[name].id))
        assert isinstance(obj, SeafFile) and obj.size == by_name[name].size
        return [stores[ObjKind.BLOCK].read(REPO_ID, b) for b in obj.block_ids]

    assert [len(b) for b in blocks_of("exact.bin")] == [BLOCK]
    assert [len(b) for b in blocks_of("plus-one.bin")] == [BLOCK, 1]
    assert [len(b) for b in blocks_of("big.bin")] == [BLOCK] * 5 + [7]
    # EMPTY_ID is never stored, every stored object verifies.
    for kind, store in stores.items():
        assert (REPO_ID, EMPTY_ID) not in store.objects
        for (_, obj_id), data in store.objects.items():
            verify_object(kind, obj_id, data)


def test_walk_lists_exactly_the_stored_objects(tree: Path) -> None:
    stores = make_stores()
    commit_id = import_folder(stores, REPO_ID, tree, block_size=BLOCK, ctime=1)
    listed = list(walk(stores, REPO_ID, commit_id))
    assert listed[0] == ("/", ObjKind.COMMIT, commit_id)
    assert listed[1][:2] == ("/", ObjKind.FS)
    stored = {(kind, obj_id) for kind, s in stores.items() for (_, obj_id) in s.objects}
    assert {(kind, obj_id) for _, kind, obj_id in listed} == stored
    paths = {path for path, kind, _ in listed if kind is ObjKind.BLOCK}
    assert "/docs/dup-b.bin" in paths and "/dup-a.bin" in paths
    assert "/docs/deep/deeper/leaf.txt" in {p for p, _, _ in listed}
    unique = list(walk(stores, REPO_ID, commit_id, unique=True))
    assert len({(k, o) for _, k, o in unique}) == len(unique) == len(stored)


def test_identical_content_is_stored_once(tree: Path) -> None:
    stores = make_stores()
    commit_id = import_folder(stores, REPO_ID, tree, block_size=BLOCK, ctime=1)
    writes = {kind: store.writes for kind, store in stores.items()}
    assert writes[ObjKind.BLOCK] == len(stores[ObjKind.BLOCK].objects)
    # A second import of the same tree writes nothing new and gives the same commit.
    assert import_folder(stores, REPO_ID, tree, block_size=BLOCK, ctime=1) == commit_id
    assert {kind: store.writes for kind, store in stores.items()} == writes


def test_symlinks_and_special_files_are_skipped(tree: Path, tmp_path: Path) -> None:
    (tree / "link").symlink_to(tree / "UPPER")
    (tree / "dirlink").symlink_to(tree / "docs")
    os.mkfifo(tree / "fifo")
    stores = make_stores()
    commit_id = import_folder(stores, REPO_ID, tree, block_size=BLOCK, ctime=1)
    dest = tmp_path / "out"
    restore_folder(stores, REPO_ID, commit_id, dest)
    assert not (dest / "link").exists() and not (dest / "fifo").exists()
    assert not (dest / "dirlink").exists()
    for name in ("link", "dirlink", "fifo"):
        (tree / name).unlink()
    assert_same_tree(tree, dest)


def test_empty_folder(tmp_path: Path) -> None:
    src = tmp_path / "empty"
    src.mkdir()
    stores = make_stores()
    commit_id = import_folder(stores, REPO_ID, src, ctime=1)
    commit = decode_commit(stores[ObjKind.COMMIT].read(REPO_ID, commit_id))
    assert commit.root_id == EMPTY_ID and commit.repo_name == "empty"
    assert not stores[ObjKind.FS].objects and not stores[ObjKind.BLOCK].objects
    assert list(walk(stores, REPO_ID, commit_id)) == [("/", ObjKind.COMMIT, commit_id)]
    restore_folder(stores, REPO_ID, commit_id, tmp_path / "out")
    assert list((tmp_path / "out").iterdir()) == []


def test_corrupt_block_is_detected_on_restore(tree: Path, tmp_path: Path) -> None:
    stores = make_stores()
    commit_id = import_folder(stores, REPO_ID, tree, block_size=BLOCK, ctime=1)
    key = next(iter(stores[ObjKind.BLOCK].objects))
    data = bytearray(stores[ObjKind.BLOCK].objects[key])
    data[0] ^= 0xFF
    stores[ObjKind.BLOCK].objects[key] = bytes(data)
    with pytest.raises(CorruptObject, match=key[1]):
        restore_folder(stores, REPO_ID, commit_id, tmp_path / "out")


def test_corrupt_fs_object_is_detected_on_walk(tree: Path) -> None:
    stores = make_stores()
    commit_id = import_folder(stores, REPO_ID, tree, block_size=BLOCK, ctime=1)
    fs_objects = stores[ObjKind.FS].objects
    key = next(iter(fs_objects))
    fs_objects[key] = fs_objects[key][:-1]
    with pytest.raises(CorruptObject, match=key[1]):
        list(walk(stores, REPO_ID, commit_id))


def test_restore_refuses_unsafe_names(tmp_path: Path) -> None:
    # A (validly hashed) dir object naming "../x" must not write outside dest.
    text = (
        b'{"dirents": [{"id": "0000000000000000000000000000000000000000", "mode": 33188, '
        b'"modifier": "", "mtime": 1, "name": "../x", "size": 0}], "type": 3, "version": 1}'
    )
    dir_id = hashlib.sha1(text).hexdigest()
    stores = make_stores()
    stores[ObjKind.FS].write(REPO_ID, dir_id, zlib.compress(text))
    commit_id, data = encode_commit(Commit.create(repo_id=REPO_ID, root_id=dir_id, ctime=1))
    stores[ObjKind.COMMIT].write(REPO_ID, commit_id, data)
    with pytest.raises(CorruptObject, match="unsafe"):
        restore_folder(stores, REPO_ID, commit_id, tmp_path / "out" / "inner")
    assert not (tmp_path / "out" / "x").exists()


def test_restore_needs_an_empty_destination(tree: Path, tmp_path: Path) -> None:
    stores = make_stores()
    commit_id = import_folder(stores, REPO_ID, tree, block_size=BLOCK, ctime=1)
    dest = tmp_path / "busy"
    dest.mkdir()
    (dest / "x").write_text("x")
    with pytest.raises(FileExistsError):
        restore_folder(stores, REPO_ID, commit_id, dest)


def test_invalid_arguments(tree: Path) -> None:
    stores = make_stores()
    with pytest.raises(ValueError):
        import_folder(stores, "not-a-uuid", tree)
    with pytest.raises(ValueError):
        import_folder(stores, REPO_ID, tree, block_size=0)
    with pytest.raises(NotADirectoryError):
        import_folder(stores, REPO_ID, tree / "UPPER")


def test_names_that_are_not_utf8_are_refused(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    try:
        (src / os.fsdecode(b"bad\xff")).write_text("x")
    except OSError:
        pytest.skip("filesystem refuses non-UTF-8 names")
    with pytest.raises(ValueError, match="UTF-8"):
        import_folder(make_stores(), REPO_ID, src)
