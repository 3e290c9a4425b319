"""One library written by a real Seafile server (``tests/fixtures/seafile-real-library``,
from haiwen/seafobj's test data, Apache-2.0: see its README for origin and facts).

Ground truth for the formats: every object lists, reads and verifies; every commit
and fs object decodes; the head commit walks to its blocks; the facts in the
fixture's README hold; the library survives disk -> SSE-C S3 (SeaweedFS over HTTPS)
-> disk byte for byte; and it is served through the cache.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import objstore
from objstore import EncryptionKeyError, ObjKind, Stores
from objstore.formats import (
    Commit,
    SeafDir,
    SeafFile,
    decode_commit,
    decode_fs,
    verify_object,
)
from objstore.ids import EMPTY_ID

from .helpers import fs_conf, s3_conf, write_conf
from .test_cache import cache_section

FIXTURE = Path(__file__).resolve().parent / "fixtures" / "seafile-real-library"
REPO = "3f9e4aa5-d6ba-4066-a1d6-81824f422af1"
HEAD = "a24bf4385e5df18922337390e757c4b7789d853d"
SSE_KEY = "real-library-sse-c-key-0123456789"[:32]
COUNTS = {ObjKind.COMMIT: 35, ObjKind.FS: 57, ObjKind.BLOCK: 10}  # the fixture README
DIR_MODE = 0o40000


@pytest.fixture(scope="module")
def conf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A seafile.conf for the fixture as it is in the repository (read only)."""
    return write_conf(tmp_path_factory.mktemp("real-conf"), fs_conf(FIXTURE))


@pytest.fixture
def stores(conf: Path) -> Iterator[Stores]:
    with objstore.open_stores(conf, env={}) as stores:
        yield stores


def commits_of(stores: Stores) -> dict[str, Commit]:
    return {
        i.obj_id: decode_commit(stores.commit.read(REPO, i.obj_id)) for i in stores.commit.list()
    }


def walk(stores: Stores, root_id: str) -> tuple[dict[str, str], set[str], set[str]]:
    """From a root dir: {path: file id}, the fs object ids and the block ids reached."""
    files: dict[str, str] = {}
    fs_ids: set[str] = set()
    blocks: set[str] = set()
    todo = [("/", root_id)]
    while todo:
        path, dir_id = todo.pop()
        if dir_id == EMPTY_ID:
            continue
        fs_ids.add(dir_id)
        seafdir = decode_fs(stores.fs.read(REPO, dir_id))
        assert isinstance(seafdir, SeafDir)
        for entry in seafdir.dirents:
            if entry.mode & DIR_MODE:
                todo.append((f"{path}{entry.name}/", entry.id))
            elif entry.id != EMPTY_ID:
                files[path + entry.name] = entry.id
                fs_ids.add(entry.id)
                seafile = decode_fs(stores.fs.read(REPO, entry.id))
                assert isinstance(seafile, SeafFile)
                assert seafile.size == entry.size
                blocks.update(seafile.block_ids)
    return files, fs_ids, blocks


def test_every_object_lists_reads_and_verifies(stores: Stores) -> None:
    for kind, count in COUNTS.items():
        listed = list(stores[kind].list())
        assert len(listed) == count
        assert {i.repo_id for i in listed} == {REPO}
        assert listed == sorted(listed, key=lambda i: (i.repo_id, i.obj_id))
        for info in listed:
            data = stores[kind].read(REPO, info.obj_id)
            assert len(data) == info.size == stores[kind].stat(REPO, info.obj_id).size
            verify_object(kind, info.obj_id, data)
            on_disk = FIXTURE / "storage" / kind.value / REPO / info.obj_id[:2] / info.obj_id[2:]
            assert data == on_disk.read_bytes()


def test_every_commit_and_fs_object_decodes(stores: Stores) -> None:
    commits = commits_of(stores)
    assert len(commits) == 35
    for commit_id, commit in commits.items():
        assert commit.commit_id == commit_id and commit.repo_id == REPO
        assert commit.repo_name == "obj_test" and commit.version == 1 and not commit.encrypted
        assert commit.parent_id is None or commit.parent_id in commits
    assert sum(c.parent_id is None for c in commits.values()) == 1  # one root commit
    for info in stores.fs.list():
        obj = decode_fs(stores.fs.read(REPO, info.obj_id))
        assert isinstance(obj, (SeafDir, SeafFile))


def test_the_readme_facts(stores: Stores) -> None:
    commits = commits_of(stores)
    head = commits[HEAD]
    assert head.description == 'Renamed directory "create_renamed_folder"'
    assert (head.parent_id, head.ctime) == ("ffc32568c059e9532cb426f19f8138c624c5cdd4", 1517211913)
    assert max(commits.values(), key=lambda c: c.ctime) is head
    other = commits["4405b7234b1e9dd74fe7c4f6a844ce79198e0e19"]
    assert other.description == 'Modified "added_folder.md"'
    assert (other.parent_id, other.ctime) == (
        "9e4705d102d86756eb8ed9d8d16922ee3212c7c5",
        1517211712,
    )

    def dirents(dir_id: str) -> dict[str, str]:
        seafdir = decode_fs(stores.fs.read(REPO, dir_id))
        assert isinstance(seafdir, SeafDir)
        return {d.name: d.id for d in seafdir.dirents}

    assert dirents("b27235c5278ccba69b392fa1734138bf4100693c") == {
        "create_moved_folder": "05a6f0455d1f11ecfc202f5e218274b092fd3dbc",
        "create_moved_file.md": "045dfc08495b5c6cbc1a4dc347f5e2987fd809f4",
    }
    assert "added_folder.md" in dirents("3ef00cc2e396b7492eaee6e7d0fc6e23279569c5")

    def block_ids(file_id: str) -> list[str]:
        seafile = decode_fs(stores.fs.read(REPO, file_id))
        assert isinstance(seafile, SeafFile)
        return seafile.block_ids

    assert block_ids("9771cd218f1002e59c6f0dc6ee2dc57dc9dde698")[0] == (
        "2949afb5a9c351b9415b91c8f3d0d98991118c11"
    )
    assert block_ids("67619f6d87f2f232bb0a821649f9fd1358eaa58c") == [
        "125f1e9dc9f3eca5a6819f9b4a2e17e53d7e2f78"
    ]
    for block_id, text in {
        "2949afb5a9c351b9415b91c8f3d0d98991118c11": b"this is new file.",
        "125f1e9dc9f3eca5a6819f9b4a2e17e53d7e2f78": b"this is modified file",
        "b73b3cf6dc021d20c7a0e9bedf46a5b6a58bdd53": b"this is renamed file.",
        "1569cf662c7befe4c4891a22cc7a1c035bc8bfac": b"this is moved file.",
    }.items():
        assert text in stores.block.read(REPO, block_id)


def test_head_commit_walks_to_every_block(stores: Stores) -> None:
    """The head's tree reaches 7 blocks, each present and valid; all commits together
    reach every stored block, and every fs object they reference is stored."""
    commits = commits_of(stores)
    files, _, blocks = walk(stores, commits[HEAD].root_id)
    assert files["/create_new_file.md"] == "9771cd218f1002e59c6f0dc6ee2dc57dc9dde698"
    assert "/tmp_folder/create_moved_folder/moved_folder.md" in files
    assert len(blocks) == 7
    for block_id in blocks:
        verify_object(ObjKind.BLOCK, block_id, stores.block.read(REPO, block_id))
    all_fs: set[str] = set()
    all_blocks: set[str] = set()
    for commit in commits.values():
        _, fs_ids, reached = walk(stores, commit.root_id)
        all_fs |= fs_ids
        all_blocks |= reached
    assert all_blocks == {i.obj_id for i in stores.block.list()}
    stored_fs = {i.obj_id for i in stores.fs.list()}
    assert all_fs <= stored_fs
    # two root dirs that no commit kept (intermediate trees of one operation);
    # everything they reference is stored
    unreached = stored_fs - all_fs
    assert len(unreached) == 2
    for dir_id in unreached:
        seafdir = decode_fs(stores.fs.read(REPO, dir_id))
        assert isinstance(seafdir, SeafDir)
        assert {d.id for d in seafdir.dirents} <= stored_fs


def tree_bytes(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


def test_disk_to_sse_c_s3_to_disk_is_byte_identical(
    tmp_path: Path, conf: Path, seaweed: Any, new_bucket: Callable[..., str]
) -> None:
    buckets = {kind: new_bucket(seaweed, "real") for kind in ObjKind}
    s3 = write_conf(
        tmp_path / "s3",
        s3_conf(seaweed, buckets, create=False, https=True, sse_c_key=SSE_KEY),
    )
    back_data = tmp_path / "back"
    back_data.mkdir()
    back = write_conf(tmp_path / "back-conf", fs_conf(back_data))
    there = objstore.migrate(conf, s3, verify="hash")
    assert there.exit_code == 0 and there.transfer is not None
    assert there.transfer.copied == sum(COUNTS.values())
    plain = write_conf(tmp_path / "plain", s3_conf(seaweed, buckets, create=False, https=True))
    with objstore.open_stores(plain) as without_key, pytest.raises(EncryptionKeyError):
        without_key.commit.read(REPO, HEAD)  # encrypted at rest under the key
    home = objstore.migrate(s3, back, verify="hash")
    assert home.exit_code == 0 and home.transfer is not None
    assert home.transfer.copied == sum(COUNTS.values())
    original = tree_bytes(FIXTURE / "storage")
    assert len(original) == sum(COUNTS.values())
    assert tree_bytes(back_data / "storage") == original


@pytest.mark.parametrize("provider", ["redis", "memcached"])
def test_served_through_the_cache(
    tmp_path: Path, provider: str, request: pytest.FixtureRequest
) -> None:
    server = request.getfixturevalue(f"{provider}_server")
    extra = "cache_secret = real-library-cache-secret\n"
    text = fs_conf(FIXTURE) + cache_section(provider, server.port, extra)
    with objstore.open_stores(write_conf(tmp_path, text), env={}) as stores:
        head = decode_commit(stores.commit.read(REPO, HEAD))
        first = walk(stores, head.root_id)
        cold = stores.cache_stats()
        assert cold["fs"]["hits"] == 0 and cold["fs"]["fills"] == len(first[1])
        again = walk(stores, head.root_id)
        assert again == first
        assert (
            stores.commit.read(REPO, HEAD)
            == (FIXTURE / "storage/commits" / REPO / HEAD[:2] / HEAD[2:]).read_bytes()
        )
        warm = stores.cache_stats()
        assert warm["fs"]["hits"] == len(first[1]) and warm["fs"]["misses"] == len(first[1])
        assert warm["commit"]["hits"] == 1
        assert warm["fs"]["errors"] == warm["commit"]["errors"] == 0
