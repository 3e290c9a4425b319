"""The conformance suite every driver configuration (and every wrapper) must pass.

Subclass :class:`ConformanceSuite` and provide a ``stores`` fixture (an open
:class:`objstore.Stores`); the tests use its block store unless they say
otherwise.  What a configuration cannot support is declared with class flags,
for that configuration only, with the reason.
"""

from __future__ import annotations

import hashlib
import io
import os
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import pytest

import objstore
from objstore import InvalidId, NotFound, ObjectInfo, ObjectStore, ObjKind, Stores

MiB = 1024 * 1024

BAD_IDS = [
    "../../../../etc/passwd",
    "/etc/passwd",
    "a" * 39,
    "a" * 41,
    "A" * 40,
    "g" * 40,
    "0" * 38 + "\x00a",
    "..\\..\\" + "a" * 34,
    "\uff41" * 40,  # fullwidth look-alikes of "a"
    "",
    " " + "a" * 39,
]
BAD_REPOS = [
    "../x",
    "/tmp",
    "1B4E28BA-2FA1-11D2-883F-0016D3CCA427",
    "1b4e28ba2fa111d2883f0016d3cca427",
    "1b4e28ba-2fa1-11d2-883f-0016d3cca42",
    "1b4e28ba-2fa1-11d2-883f-0016d3cca427/..",
    "",
]


def new_repo() -> str:
    return str(uuid.uuid4())


def block(data: bytes) -> tuple[str, bytes]:
    """A block object: (sha1 id, data)."""
    return hashlib.sha1(data).hexdigest(), data


class ConformanceSuite:
    """Behaviour every store must show; subclasses provide the ``stores`` fixture."""

    supports_sse_c = False

    @pytest.fixture
    def store(self, stores: Stores) -> ObjectStore:
        return stores.block

    # ------------------------------------------------------------ round trips

    @pytest.mark.parametrize(
        "size", [0, 1, 8 * MiB, 20 * MiB], ids=["empty", "1B", "8MiB", "20MiB"]
    )
    def test_round_trip(self, store: ObjectStore, size: int) -> None:
        repo = new_repo()
        obj_id, data = block(os.urandom(size))
        store.write(repo, obj_id, data)
        assert store.read(repo, obj_id) == data
        assert store.stat(repo, obj_id) == ObjectInfo(repo, obj_id, size)
        assert store.exists(repo, obj_id)

    @pytest.mark.parametrize("size", [0, 8 * MiB + 1, 20 * MiB], ids=["empty", "8MiB+1", "20MiB"])
    def test_streaming_round_trip(self, store: ObjectStore, size: int) -> None:
        repo = new_repo()
        obj_id, data = block(os.urandom(size))
        store.write_from(repo, obj_id, io.BytesIO(data))
        with store.open_read(repo, obj_id) as fh:
            got = b"".join(iter(lambda: fh.read(1024 * 1024), b""))
        assert got == data

    def test_overwrite_keeps_one_complete_object(self, store: ObjectStore) -> None:
        repo = new_repo()
        obj_id, data = block(b"x" * 1000)
        store.write(repo, obj_id, data)
        store.write(repo, obj_id, data)
        assert store.read(repo, obj_id) == data
        assert [i.obj_id for i in store.list(repo)] == [obj_id]

    def test_missing(self, store: ObjectStore) -> None:
        repo = new_repo()
        obj_id = hashlib.sha1(b"never written").hexdigest()
        with pytest.raises(NotFound):
            store.read(repo, obj_id)
        with pytest.raises(NotFound):
            store.stat(repo, obj_id)
        with pytest.raises(NotFound):
            store.open_read(repo, obj_id)
        with pytest.raises(NotFound):
            store.read_many(repo, [obj_id])
        assert store.exists(repo, obj_id) is False
        store.delete(repo, obj_id)  # deleting a missing object is fine
        assert list(store.list(repo)) == []

    def test_delete(self, store: ObjectStore) -> None:
        repo = new_repo()
        obj_id, data = block(b"delete me")
        store.write(repo, obj_id, data)
        store.delete(repo, obj_id)
        assert not store.exists(repo, obj_id)
        with pytest.raises(NotFound):
            store.read(repo, obj_id)

    def test_read_many(self, store: ObjectStore) -> None:
        repo = new_repo()
        objs = dict(block(os.urandom(100 + i)) for i in range(40))
        for obj_id, data in objs.items():
            store.write(repo, obj_id, data)
        assert store.read_many(repo, list(objs)) == objs
        assert store.read_many(repo, []) == {}

    def test_copy_between_repos(self, store: ObjectStore) -> None:
        src, dst = new_repo(), new_repo()
        obj_id, data = block(os.urandom(3000))
        store.write(src, obj_id, data)
        store.copy(src, dst, obj_id)
        assert store.read(dst, obj_id) == data
        assert store.read(src, obj_id) == data

    def test_remove_repo(self, store: ObjectStore) -> None:
        gone, kept = new_repo(), new_repo()
        for i in range(5):
            store.write(gone, *block(b"gone%d" % i))
        store.write(kept, *block(b"kept"))
        store.remove_repo(gone)
        assert list(store.list(gone)) == []
        assert [i.obj_id for i in store.list(kept)] == [block(b"kept")[0]]
        store.remove_repo(new_repo())  # an unknown repo is fine

    def test_list_sorted_across_pages(self, stores: Stores) -> None:
        """More than 1000 objects (one S3 page) in several repos, listed in order."""
        store = stores.fs  # a kind that other tests leave almost empty
        repos = sorted(new_repo() for _ in range(3))
        objs = [(repos[n % 3], *block(b"obj %d" % n)) for n in range(1030)]
        expected = [ObjectInfo(repo, obj_id, len(data)) for repo, obj_id, data in objs]
        with ThreadPoolExecutor(16) as pool:
            list(pool.map(lambda o: store.write(*o), objs))
        wanted = set(repos)
        listed = [i for i in store.list() if i.repo_id in wanted]
        assert listed == sorted(expected)
        assert list(store.list(repos[1])) == sorted(i for i in expected if i.repo_id == repos[1])
        for repo in repos:
            store.remove_repo(repo)

    def test_list_prefix(self, stores: Stores) -> None:
        """Only the libraries whose repo id starts with the prefix, sorted as list()."""
        store = stores.commit
        base = os.urandom(3).hex()  # 6 random hex digits: no other test's repos
        repos = [base + tail + new_repo()[8:] for tail in ("00", "01", "0f", "a0", "ff")]
        objs = [(repo, *block(b"%s %d" % (repo.encode(), n))) for repo in repos for n in range(3)]
        for obj in objs:
            store.write(*obj)
        everything = list(store.list())
        for prefix in ("", base, base + "0", base + "01", repos[3][:8], base + "1", base[:3]):
            expected = [i for i in everything if i.repo_id.startswith(prefix)]
            assert list(store.list_prefix(prefix)) == expected, prefix
        mine = list(store.list_prefix(base))
        assert mine == sorted(ObjectInfo(r, o, len(d)) for r, o, d in objs)
        assert list(store.list_prefix(base + "1")) == []
        for bad in ("A", "g", "-", "../", "0" * 9, repos[0][:9]):
            with pytest.raises(InvalidId):
                store.list_prefix(bad)
        for repo in repos:
            store.remove_repo(repo)

    def test_kinds_are_separate(self, stores: Stores) -> None:
        repo = new_repo()
        obj_id, data = block(b"commit-ish")
        stores.commit.write(repo, obj_id, data)
        assert stores[ObjKind.COMMIT].read(repo, obj_id) == data
        assert not stores.block.exists(repo, obj_id)
        assert not stores.fs.exists(repo, obj_id)

    # ------------------------------------------------------------ bad input

    @pytest.mark.parametrize("bad", BAD_IDS)
    def test_invalid_obj_ids(self, store: ObjectStore, bad: str) -> None:
        repo = new_repo()
        good_id, data = block(b"good")
        calls: list[Callable[[], object]] = [
            lambda: store.write(repo, bad, data),
            lambda: store.read(repo, bad),
            lambda: store.exists(repo, bad),
            lambda: store.stat(repo, bad),
            lambda: store.delete(repo, bad),
            lambda: store.read_many(repo, [good_id, bad]),
            lambda: store.copy(repo, new_repo(), bad),
            lambda: store.open_read(repo, bad),
            lambda: store.write_from(repo, bad, io.BytesIO(data)),
        ]
        for call in calls:
            with pytest.raises(InvalidId):
                call()
        assert list(store.list(repo)) == []

    @pytest.mark.parametrize("bad", BAD_REPOS)
    def test_invalid_repo_ids(self, store: ObjectStore, bad: str) -> None:
        obj_id, data = block(b"good")
        calls: list[Callable[[], object]] = [
            lambda: store.write(bad, obj_id, data),
            lambda: store.read(bad, obj_id),
            lambda: store.exists(bad, obj_id),
            lambda: store.list(bad),
            lambda: store.remove_repo(bad),
            lambda: store.copy(new_repo(), bad, obj_id),
        ]
        for call in calls:
            with pytest.raises(InvalidId):
                call()

    def test_write_rejects_non_bytes(self, store: ObjectStore) -> None:
        with pytest.raises(TypeError):
            store.write(new_repo(), block(b"x")[0], "text")  # type: ignore[arg-type]

    def test_verify_object_on_read(self, store: ObjectStore) -> None:
        repo = new_repo()
        obj_id, data = block(os.urandom(500))
        store.write(repo, obj_id, data)
        objstore.verify_object(ObjKind.BLOCK, obj_id, store.read(repo, obj_id))
