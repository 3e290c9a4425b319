"""The object cache (objstore.cache) and objstore-admin, against real Redis,
memcached and SeaweedFS servers.

Fault tests (Redis stopped, memcached killed, Redis frozen) use private servers
from ``server_factory`` so the session servers are never disturbed.  Redis Cluster
is tested in ``test_cache_cluster.py``; authenticated values in ``test_cache_auth.py``.
"""

from __future__ import annotations

import json
import logging
import os
import re
import signal
import subprocess
import sys
import threading
import time
import uuid
import zlib
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

import objstore
from objstore import NotFound, ObjKind, Stores
from objstore.admin import main as admin_main
from objstore.cache import (
    CachedDriver,
    LocalTier,
    VerifiedMemo,
    hit_is_valid,
    key_prefix,
    make_remote,
    namespace,
)
from objstore.config import MemcachedConfig, RedisConfig
from objstore.drivers.base import Driver
from objstore.drivers.fs import FsDriver
from objstore.formats import (
    FILE_MODE,
    Commit,
    Dirent,
    SeafDir,
    block_id,
    encode_commit,
    encode_dir,
)

from .conformance import ConformanceSuite
from .helpers import fs_conf, s3_conf, wait_until, write_conf
from .servers import MemcachedServer, RedisServer

REPO_ROOT = Path(__file__).resolve().parent.parent


# ---------------------------------------------------------------- objects and helpers


def fs_object(entries: int = 5, name: str = "file") -> tuple[str, bytes]:
    """A real fs (dir) object: zlib JSON whose uncompressed sha1 is the id."""
    dirents = [
        Dirent(os.urandom(20).hex(), FILE_MODE, 1_700_000_000 + i, f"{name} {i}.txt", "x@y.z", i)
        for i in range(entries)
    ]
    return encode_dir(SeafDir(dirents))


def fs_objects(n: int, entries: int = 5) -> dict[str, bytes]:
    return dict(fs_object(entries, f"f{i}") for i in range(n))


def commit_object(repo: str, description: str = "Added a file") -> tuple[str, bytes]:
    commit = Commit.create(
        repo_id=repo,
        root_id=os.urandom(20).hex(),
        ctime=1_700_000_000,
        creator_name="someone@example.com",
        description=description,
        repo_name="docs",
    )
    return encode_commit(commit)


def new_repo() -> str:
    return str(uuid.uuid4())


class CountingDriver(Driver):
    """A real FsDriver that counts ``get`` calls and can hold them at a gate
    (after the bytes were read) until the test opens it."""

    def __init__(self, inner: FsDriver) -> None:
        self.inner = inner
        self.kind = inner.kind
        self.properties = inner.properties
        self.gets = 0
        self._count_lock = threading.Lock()
        self.gate: threading.Event | None = None

    @property
    def identity(self) -> str:
        return self.inner.identity

    def get(self, repo_id: str, obj_id: str) -> bytes:
        with self._count_lock:
            self.gets += 1
        data = self.inner.get(repo_id, obj_id)
        if self.gate is not None:
            assert self.gate.wait(30), "gate never opened"
        return data

    def put(self, repo_id: str, obj_id: str, data: bytes) -> None:
        self.inner.put(repo_id, obj_id, data)

    def head(self, repo_id: str, obj_id: str) -> objstore.ObjectInfo:
        return self.inner.head(repo_id, obj_id)

    def delete(self, repo_id: str, obj_id: str) -> None:
        self.inner.delete(repo_id, obj_id)

    def list(self, repo_id: str | None = None) -> Iterator[objstore.ObjectInfo]:
        return self.inner.list(repo_id)

    def remove_repo(self, repo_id: str) -> None:
        self.inner.remove_repo(repo_id)


def wait_for(cond: Callable[[], bool], what: str, timeout: float = 20.0) -> None:
    """Poll ``cond`` (a state, not a speed: the timeout only avoids hanging)."""
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def redis_cfg(server: RedisServer, **kw: Any) -> RedisConfig:
    return RedisConfig(host=server.host, port=server.port, **kw)


def memcached_cfg(*servers: MemcachedServer, **kw: Any) -> MemcachedConfig:
    return MemcachedConfig(servers=tuple((s.host, s.port) for s in servers), **kw)


def cached(
    tmp_path: Path,
    cfg: RedisConfig | MemcachedConfig,
    kind: ObjKind = ObjKind.FS,
    counting: bool = False,
    **kw: Any,
) -> CachedDriver:
    """A CachedDriver over a fresh fs store, with a short breaker back-off."""
    inner: Driver = FsDriver(tmp_path / "data", kind, fsync=False)
    if counting:
        inner = CountingDriver(inner)  # type: ignore[arg-type]
    kw.setdefault("retry_after", 0.05)
    kw.setdefault("max_retry_after", 0.2)
    kw.setdefault("expiry", cfg.expiry)
    return CachedDriver(inner, make_remote(cfg), **kw)


@pytest.fixture
def redis_driver(tmp_path: Path, redis_server: RedisServer) -> Iterator[CachedDriver]:
    d = cached(tmp_path, redis_cfg(redis_server))
    yield d
    d.close()
    d.remote.close()


@pytest.fixture
def rclient(redis_server: RedisServer) -> Iterator[Any]:
    c = redis_server.client()
    yield c
    c.close()


def cache_section(kind: str, port: int, extra: str = "") -> str:
    if kind == "redis":
        return f"[redis]\nredis_host = 127.0.0.1\nredis_port = {port}\n{extra}"
    return f"[memcached]\nmemcached_options = --SERVER=127.0.0.1:{port} --POOL-MIN=2\n{extra}"


# ---------------------------------------------------------------- conformance with a cache in front

ALL_KINDS = "cached_kinds = commit,fs,block\n"
SECRET = "cache_secret = conformance-secret-0123456789\n"
WITH_AND_WITHOUT_SECRET = pytest.mark.parametrize(
    "extra", [ALL_KINDS, ALL_KINDS + SECRET], ids=["plain", "cache_secret"]
)


def _open(tmp_path: Path, text: str) -> Iterator[Stores]:
    stores = objstore.open_stores(write_conf(tmp_path / "conf", text))
    assert all(isinstance(s.driver, CachedDriver) for s in stores.values())
    try:
        yield stores
    finally:
        stores.close()


class CachedSuite(ConformanceSuite):
    """The conformance suite with every kind (blocks too, so the suite's block
    objects, whose id is their sha1, actually go through the cache)."""

    def test_reads_are_served_from_the_cache(self, stores: Stores) -> None:
        repo = new_repo()
        obj_id, data = fs_object(20)
        stores.fs.driver.inner.put(repo, obj_id, data)  # type: ignore[attr-defined]
        assert stores.fs.read(repo, obj_id) == data  # miss, fill
        assert stores.fs.read(repo, obj_id) == data  # hit
        assert stores.fs.read_many(repo, [obj_id]) == {obj_id: data}  # hit
        stats = stores.cache_stats()["fs"]
        assert stats["misses"] == 1 and stats["hits"] == 2 and stats["fills"] == 1
        assert stats["errors"] == 0


class TestRedisOverFs(CachedSuite):
    @pytest.fixture
    def stores(self, tmp_path: Path, redis_server: RedisServer) -> Iterator[Stores]:
        (tmp_path / "data").mkdir()
        text = fs_conf(tmp_path / "data") + cache_section("redis", redis_server.port, ALL_KINDS)
        yield from _open(tmp_path, text)


@WITH_AND_WITHOUT_SECRET
class TestRedisOverS3(CachedSuite):
    @pytest.fixture
    def stores(
        self, tmp_path: Path, seaweed: Any, redis_server: RedisServer, extra: str
    ) -> Iterator[Stores]:
        text = s3_conf(seaweed) + cache_section("redis", redis_server.port, extra)
        yield from _open(tmp_path, text)


@WITH_AND_WITHOUT_SECRET
class TestMemcachedOverFs(CachedSuite):
    @pytest.fixture
    def stores(
        self, tmp_path: Path, memcached_server: MemcachedServer, extra: str
    ) -> Iterator[Stores]:
        (tmp_path / "data").mkdir()
        text = fs_conf(tmp_path / "data") + cache_section("memcached", memcached_server.port, extra)
        yield from _open(tmp_path, text)


class TestMemcachedOverS3(CachedSuite):
    @pytest.fixture
    def stores(
        self, tmp_path: Path, seaweed: Any, memcached_server: MemcachedServer
    ) -> Iterator[Stores]:
        text = s3_conf(seaweed) + cache_section("memcached", memcached_server.port, ALL_KINDS)
        yield from _open(tmp_path, text)


def test_only_configured_kinds_are_cached(tmp_path: Path, redis_server: RedisServer) -> None:
    (tmp_path / "data").mkdir()
    text = fs_conf(tmp_path / "data") + cache_section("redis", redis_server.port)
    with objstore.open_stores(write_conf(tmp_path / "conf", text)) as stores:
        assert isinstance(stores.commit.driver, CachedDriver)
        assert isinstance(stores.fs.driver, CachedDriver)
        assert not isinstance(stores.block.driver, CachedDriver)  # never blocks by default
        assert set(stores.cache_stats()) == {"commit", "fs"}


# ---------------------------------------------------------------- keys


def test_key_format(redis_driver: CachedDriver) -> None:
    repo, obj_id = new_repo(), "a" * 40
    ns = namespace(ObjKind.FS, redis_driver.identity)
    assert redis_driver.key(repo, obj_id) == f"sfo1:{ns}:{{{repo}}}:{obj_id}"
    assert len(redis_driver.key(repo, obj_id)) == 95
    assert namespace(ObjKind.COMMIT, redis_driver.identity) != ns


def test_two_stores_sharing_one_redis_never_collide(
    tmp_path: Path, redis_server: RedisServer, rclient: Any
) -> None:
    cfg = redis_cfg(redis_server)
    a = cached(tmp_path / "a", cfg)
    b = cached(tmp_path / "b", cfg)
    a_commits = cached(tmp_path / "a", cfg, kind=ObjKind.COMMIT)
    try:
        repo = new_repo()
        obj_id, data = fs_object()
        a.put(repo, obj_id, data)
        assert a.get(repo, obj_id) == data and a.stats()["hits"] == 1
        # same repo and object id, other installation / other kind: not served from a's entry
        with pytest.raises(NotFound):
            b.get(repo, obj_id)
        with pytest.raises(NotFound):
            a_commits.get(repo, obj_id)
        assert b.stats()["hits"] == 0 and a_commits.stats()["hits"] == 0
        b.put(repo, obj_id, data)
        assert a.flush() == 1
        assert rclient.get(b.key(repo, obj_id)) == data  # b's entry survives a's flush
        assert rclient.get(a.key(repo, obj_id)) is None
    finally:
        for d in (a, b, a_commits):
            d.close()
            d.remote.close()


def _redis_connections(remote: Any) -> list[Any]:
    """The cache's own idle Redis connections (left in place)."""
    with remote._idle_lock:
        return list(remote._idle)


def test_redis_gets_use_hiredis_and_never_read_a_stale_answer(
    redis_driver: CachedDriver, rclient: Any
) -> None:
    """GETs go over the cache's own connections, parsed by hiredis; a connection
    with an answer nobody read is reset, one the server closed is replaced, and
    either way the GET returns its own object's bytes."""
    import redis.utils

    remote: Any = redis_driver.remote
    repo = new_repo()
    objs = fs_objects(2)
    for obj_id, data in objs.items():
        redis_driver.put(repo, obj_id, data)
        assert redis_driver.get(repo, obj_id) == data
    (first, data_1), (second, data_2) = objs.items()
    assert redis.utils.HIREDIS_AVAILABLE
    (conn,) = _redis_connections(remote)  # one caller, one connection
    assert "Hiredis" in type(conn._parser).__name__
    stale_socket = conn._sock
    conn.send_command("GET", redis_driver.key(repo, first))  # answered, never read
    wait_until(conn.can_read, "the stale answer to arrive")
    assert redis_driver.get(repo, second) == data_2
    assert conn._sock is not stale_socket  # that socket was closed, not read from
    host, port = conn._sock.getsockname()[:2]
    rclient.execute_command("CLIENT", "KILL", "ADDR", f"{host}:{port}")  # the server drops it
    hits = redis_driver.stats()["hits"]
    assert redis_driver.get(repo, first) == data_1
    assert redis_driver.stats()["hits"] == hits + 1  # served by Redis, not the backend


def test_a_forked_child_makes_its_own_redis_connections(redis_driver: CachedDriver) -> None:
    """A child forked after the cache was used (a pre-forking server) never talks on
    its parent's sockets: it starts without connections and makes its own."""
    remote: Any = redis_driver.remote
    repo = new_repo()
    ((obj_id, data),) = fs_objects(1).items()
    redis_driver.put(repo, obj_id, data)
    assert redis_driver.get(repo, obj_id) == data
    (parent_conn,) = _redis_connections(remote)
    parent_socket = parent_conn._sock
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report, never return into pytest
        verdict = b"bad"
        try:
            inherited = _redis_connections(remote)
            if not inherited and redis_driver.get(repo, obj_id) == data:
                (own,) = _redis_connections(remote)
                verdict = b"ok" if own is not parent_conn else b"shared"
            else:
                verdict = b"inherited"
        finally:
            os.write(write_end, verdict)
            os._exit(0)
    os.close(write_end)
    os.waitpid(pid, 0)
    with os.fdopen(read_end, "rb") as fh:
        assert fh.read() == b"ok"
    assert redis_driver.get(repo, obj_id) == data
    assert _redis_connections(remote)[0]._sock is parent_socket  # the parent's, untouched


def test_redis_connections_are_bounded(tmp_path: Path, redis_server: RedisServer) -> None:
    """Never more than max_connections of the cache's own connections, however many
    threads read at once."""
    cfg = redis_cfg(redis_server, max_connections=3)
    d = cached(tmp_path, cfg)
    try:
        repo = new_repo()
        objs = fs_objects(40)
        for obj_id, data in objs.items():
            d.put(repo, obj_id, data)
        with ThreadPoolExecutor(16) as pool:
            for _ in range(5):
                got = list(pool.map(lambda o: d.get(repo, o), objs))
                assert got == list(objs.values())
        assert 1 <= len(_redis_connections(d.remote)) <= 3
        assert d.stats()["errors"] == 0
    finally:
        d.close()
        d.remote.close()


# ---------------------------------------------------------------- read paths and stats


def test_stats_count_hits_misses_and_bytes(redis_driver: CachedDriver) -> None:
    repo = new_repo()
    objs = fs_objects(3)
    for obj_id, data in objs.items():
        redis_driver.inner.put(repo, obj_id, data)  # behind the cache's back: not cached
    for obj_id, data in objs.items():
        assert redis_driver.get(repo, obj_id) == data
    s = redis_driver.stats()
    assert (s["hits"], s["misses"], s["fills"], s["bytes"]) == (0, 3, 3, 0)
    assert redis_driver.get_many(repo, list(objs)) == objs
    s = redis_driver.stats()
    assert (s["hits"], s["misses"], s["errors"]) == (3, 3, 0)
    assert s["bytes"] == sum(len(d) for d in objs.values())


def test_read_many_uses_one_batch_and_fetches_only_misses(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    d = cached(tmp_path, redis_cfg(redis_server), counting=True)
    counting: CountingDriver = d.inner  # type: ignore[assignment]
    try:
        repo = new_repo()
        objs = fs_objects(30)
        for obj_id, data in objs.items():
            counting.put(repo, obj_id, data)
        half = list(objs)[:15]
        assert d.get_many(repo, half) == {i: objs[i] for i in half}
        assert counting.gets == 15
        assert d.get_many(repo, list(objs) + half) == objs  # duplicates are fine
        assert counting.gets == 30  # only the 15 misses went to the backend
        assert d.get_many(repo, list(objs)) == objs
        assert counting.gets == 30
        missing = fs_object()[0]
        with pytest.raises(NotFound):
            d.get_many(repo, [*half, missing])
    finally:
        d.close()
        d.remote.close()


def test_single_flight(tmp_path: Path, redis_server: RedisServer) -> None:
    """N threads miss the same object: one backend get, everyone gets the bytes."""
    d = cached(tmp_path, redis_cfg(redis_server), counting=True)
    counting: CountingDriver = d.inner  # type: ignore[assignment]
    try:
        repo = new_repo()
        obj_id, data = fs_object()
        other_id, other = fs_object()
        counting.put(repo, obj_id, data)
        counting.put(repo, other_id, other)
        counting.gate = threading.Event()
        n = 8
        results: list[Any] = []

        def read() -> None:
            results.append(d.get(repo, obj_id))

        threads = [threading.Thread(target=read) for _ in range(n)]
        threads.append(
            threading.Thread(target=lambda: results.append(d.get_many(repo, [obj_id, other_id])))
        )
        for t in threads:
            t.start()
        # every reader has missed and joined the one fetch in flight before it returns
        wait_for(lambda: d.stats()["coalesced"] == n, "all readers to join the fetch")
        counting.gate.set()
        for t in threads:
            t.join(30)
        assert counting.gets == 2  # obj_id once, other_id once
        assert results.count(data) == n
        assert {obj_id: data, other_id: other} in results
    finally:
        d.close()
        d.remote.close()


def test_single_flight_shares_not_found(tmp_path: Path, redis_server: RedisServer) -> None:
    d = cached(tmp_path, redis_cfg(redis_server), counting=True)
    try:
        errors: list[BaseException] = []
        missing = fs_object()[0]
        repo = new_repo()

        def read() -> None:
            try:
                d.get(repo, missing)
            except NotFound as exc:
                errors.append(exc)

        threads = [threading.Thread(target=read) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        assert len(errors) == 4
        assert d.get_many(repo, []) == {}
    finally:
        d.close()
        d.remote.close()


# ---------------------------------------------------------------- integrity


def test_corrupt_values_in_redis_are_never_returned(
    redis_driver: CachedDriver, rclient: Any
) -> None:
    repo = new_repo()
    obj_id, data = fs_object(10)
    other = fs_object(10)[1]
    redis_driver.put(repo, obj_id, data)
    key = redis_driver.key(repo, obj_id)
    text = zlib.decompress(data)
    garbage = [
        b"\x00garbage",  # looks like a version 0 object
        os.urandom(len(data)),
        data[:-3],  # truncated
        data + b"junk",  # trailing bytes after the zlib stream
        other,  # a valid object, but another id
        zlib.compress(text.replace(b'"version": 1', b'"version": 2')),  # altered JSON
        b"",
    ]
    for n, bad in enumerate(garbage, 1):
        rclient.set(key, bad)
        assert redis_driver.get(repo, obj_id) == data
        assert redis_driver.stats()["corrupt"] == n
        assert rclient.get(key) == data  # dropped and refilled with the right bytes
    rclient.set(key, other)
    assert redis_driver.get_many(repo, [obj_id]) == {obj_id: data}
    assert redis_driver.stats()["corrupt"] == len(garbage) + 1
    rclient.delete(key)
    rclient.lpush(key, b"not a string")  # wrong type: GET fails for this key only
    assert redis_driver.get(repo, obj_id) == data
    assert redis_driver.stats()["breaker_open"] == 0
    assert rclient.get(key) == data


def test_corrupt_commit_in_redis_is_never_returned(
    tmp_path: Path, redis_server: RedisServer, rclient: Any
) -> None:
    d = cached(tmp_path, redis_cfg(redis_server), kind=ObjKind.COMMIT)
    try:
        repo = new_repo()
        obj_id, data = commit_object(repo)
        d.put(repo, obj_id, data)
        assert rclient.get(d.key(repo, obj_id)) == data
        rclient.set(d.key(repo, obj_id), data.replace(b"Added a file", b"Deleted everything"))
        assert d.get(repo, obj_id) == data
        assert d.stats()["corrupt"] == 1
    finally:
        d.close()
        d.remote.close()


def test_hit_check_agrees_with_verify_object() -> None:
    obj_id, data = fs_object(3)
    assert hit_is_valid(ObjKind.FS, obj_id, data)
    for bad in (data[:-1], data + b"x", b"", b"\x00" + data, zlib.compress(b"{}")):
        assert not hit_is_valid(ObjKind.FS, obj_id, bad)
        with pytest.raises(objstore.CorruptObject):
            objstore.verify_object(ObjKind.FS, obj_id, bad)


def test_verified_memo_is_bounded_and_never_accepts_other_bytes() -> None:
    memo = VerifiedMemo(capacity=100)
    objs = fs_objects(300, entries=2)
    for obj_id, data in objs.items():
        assert memo.check(ObjKind.FS, obj_id, data)  # checked in full, then remembered
        assert len(memo) <= 100
    last_id, last = list(objs.items())[-1]
    assert memo.check(ObjKind.FS, last_id, last)
    first_id = next(iter(objs))
    assert not memo.check(ObjKind.FS, first_id, last)  # remembered bytes, other id
    assert not memo.check(ObjKind.FS, last_id, last + b"x")
    memo.remember(last_id, b"what verify_object accepted")
    assert memo.check(ObjKind.FS, last_id, b"what verify_object accepted")


def test_unverifiable_backend_bytes_are_returned_but_not_cached(
    redis_driver: CachedDriver, rclient: Any
) -> None:
    repo = new_repo()
    obj_id = fs_object()[0]
    redis_driver.put(repo, obj_id, b"not an fs object")
    assert redis_driver.get(repo, obj_id) == b"not an fs object"  # the backend is the truth
    assert rclient.get(redis_driver.key(repo, obj_id)) is None
    assert redis_driver.stats()["unverifiable"] == 2


# ---------------------------------------------------------------- sizes


def test_values_over_the_item_limit_are_skipped(
    tmp_path: Path, memcached_server: MemcachedServer
) -> None:
    cfg = memcached_cfg(memcached_server, item_limit=8 * 1024)
    d = cached(tmp_path, cfg)
    client = memcached_server.client()
    try:
        repo = new_repo()
        big_id, big = fs_object(400)  # about 14 KB compressed: over the limit
        small_id, small = fs_object(5)
        assert len(big) > 8 * 1024
        d.put(repo, big_id, big)
        d.put(repo, small_id, small)
        assert client.get(d.key(repo, big_id)) is None
        assert client.get(d.key(repo, small_id)) == small
        assert d.get(repo, big_id) == big
        assert d.get_many(repo, [big_id, small_id]) == {big_id: big, small_id: small}
        s = d.stats()
        assert s["too_large"] == 3 and s["errors"] == 0
    finally:
        client.close()
        d.close()
        d.remote.close()


def test_memcached_default_limit_skips_8mib_blocks(
    tmp_path: Path, memcached_server: MemcachedServer
) -> None:
    d = cached(tmp_path, memcached_cfg(memcached_server), kind=ObjKind.BLOCK)
    try:
        repo = new_repo()
        data = os.urandom(2 * 1024 * 1024)
        obj_id = block_id(data)
        d.put(repo, obj_id, data)
        assert d.get(repo, obj_id) == data
        s = d.stats()
        assert s["too_large"] == 2 and s["errors"] == 0 and s["breaker_open"] == 0
    finally:
        d.close()
        d.remote.close()


# ---------------------------------------------------------------- local tier


def test_local_tier_bounds_and_age() -> None:
    now = [0.0]
    tier = LocalTier(10_000, 5.0, clock=lambda: now[0])
    for i in range(50):
        tier.put(f"k{i}", bytes(500))
    assert tier.size <= 10_000
    assert len(tier) == 10_000 // (500 + 3 + 100)
    assert tier.get("k0") is None and tier.get("k49") == bytes(500)  # least recent went first
    tier.put("huge", bytes(5000))  # over a quarter of the tier: not kept
    assert tier.get("huge") is None
    now[0] = 5.0
    assert tier.get("k49") is None  # aged out
    assert tier.size < 10_000


def test_local_tier_in_front_of_redis(tmp_path: Path, redis_server: RedisServer) -> None:
    d = cached(tmp_path, redis_cfg(redis_server), counting=True, local_cache_bytes=20_000)
    try:
        repo = new_repo()
        objs = fs_objects(60)
        for obj_id, data in objs.items():
            d.put(repo, obj_id, data)  # fills Redis and the local tier
        s = d.stats()
        assert s["local_bytes"] <= 20_000 and 0 < s["local_items"] < 60
        last = list(objs)[-1]
        assert d.get(repo, last) == objs[last]
        assert d.stats()["local_hits"] == 1 and d.stats()["hits"] == 1
        assert d.get_many(repo, list(objs)) == objs  # the rest come from Redis
        s = d.stats()
        assert s["hits"] == 61 and s["misses"] == 0 and s["local_bytes"] <= 20_000
        assert d.inner.gets == 0  # type: ignore[attr-defined]
        d.delete(repo, last)  # invalidates the local copy too
        with pytest.raises(NotFound):
            d.get(repo, last)
    finally:
        d.close()
        d.remote.close()


# ---------------------------------------------------------------- invalidation


def test_delete_and_remove_repo_invalidate(redis_driver: CachedDriver, rclient: Any) -> None:
    repo, kept = new_repo(), new_repo()
    objs = fs_objects(5)
    for obj_id, data in objs.items():
        redis_driver.put(repo, obj_id, data)
    kept_id, kept_data = fs_object()
    redis_driver.put(kept, kept_id, kept_data)
    first = next(iter(objs))
    redis_driver.delete(repo, first)
    assert rclient.get(redis_driver.key(repo, first)) is None
    redis_driver.remove_repo(repo)
    for obj_id in objs:
        assert rclient.get(redis_driver.key(repo, obj_id)) is None
        with pytest.raises(NotFound):
            redis_driver.get(repo, obj_id)
    assert redis_driver.get(kept, kept_id) == kept_data
    assert rclient.get(redis_driver.key(kept, kept_id)) == kept_data


def test_remove_repo_beats_a_read_in_flight(
    tmp_path: Path, redis_server: RedisServer, rclient: Any
) -> None:
    """Another process read an object just before remove_repo and fills the cache
    just after it: the tombstone refuses the fill, so nobody is served the object."""
    cfg = redis_cfg(redis_server)
    slow = cached(tmp_path, cfg, counting=True)  # the "other process"
    remover = cached(tmp_path, cfg)
    try:
        repo = new_repo()
        obj_id, data = fs_object()
        slow.inner.put(repo, obj_id, data)
        counting: CountingDriver = slow.inner  # type: ignore[assignment]
        counting.gate = threading.Event()
        got: list[bytes] = []
        reader = threading.Thread(target=lambda: got.append(slow.get(repo, obj_id)))
        reader.start()
        wait_for(lambda: counting.gets == 1, "the read to reach the backend")
        remover.remove_repo(repo)
        counting.gate.set()  # the read completes with the bytes it already had
        reader.join(30)
        assert got == [data]
        assert rclient.get(slow.key(repo, obj_id)) is None
        assert slow.stats()["fills"] == 0
        with pytest.raises(NotFound):
            remover.get(repo, obj_id)
    finally:
        for d in (slow, remover):
            d.close()
            d.remote.close()


# ---------------------------------------------------------------- outages


def _reader(
    d: CachedDriver,
    repo: str,
    objs: dict[str, bytes],
    stop: threading.Event,
    failures: list[BaseException],
    reads: list[int],
) -> None:
    ids = list(objs)
    while not stop.is_set():
        try:
            for obj_id in ids:
                assert d.get(repo, obj_id) == objs[obj_id]
            assert d.get_many(repo, ids) == objs
            reads[0] += 1
        except BaseException as exc:
            failures.append(exc)
            return


def test_redis_stopped_mid_run_and_restarted(
    tmp_path: Path, server_factory: Any, caplog: pytest.LogCaptureFixture
) -> None:
    server = server_factory(RedisServer)
    d = cached(tmp_path, redis_cfg(server, timeout=0.5))
    caplog.set_level(logging.WARNING, "objstore.cache")
    try:
        repo = new_repo()
        objs = fs_objects(20)
        for obj_id, data in objs.items():
            d.put(repo, obj_id, data)
        stop, reads = threading.Event(), [0]
        failures: list[BaseException] = []
        threads = [
            threading.Thread(target=_reader, args=(d, repo, objs, stop, failures, reads))
            for _ in range(3)
        ]
        for t in threads:
            t.start()
        wait_for(lambda: d.stats()["hits"] > 100, "cache hits")
        server.stop()
        wait_for(lambda: d.stats()["bypassed"] > 100, "reads while Redis is down")
        assert d.stats()["breaker_open"] == 1
        down = reads[0]
        wait_for(lambda: reads[0] > down + 5, "more reads with Redis down")
        server.start()
        hits = d.stats()["hits"]
        wait_for(lambda: d.stats()["hits"] > hits + 100, "hits after the restart")
        stop.set()
        for t in threads:
            t.join(30)
        assert failures == []
        s = d.stats()
        assert s["errors"] >= 1 and s["breaker_open"] == 0
        records = [r for r in caplog.records if r.name == "objstore.cache"]
        assert 1 <= len(records) <= 6  # rate-limited, not one line per failed request
        assert any("is back" in r.getMessage() for r in records)
    finally:
        d.close()
        d.remote.close()


def test_frozen_redis_times_out_and_missed_deletes_are_replayed(
    tmp_path: Path, server_factory: Any, rclient: Any
) -> None:
    """A hung cache (SIGSTOP: connections accepted, never answered) costs one
    timeout, then reads bypass it; a delete made meanwhile is applied when it is back."""
    server = server_factory(RedisServer)
    direct = server.client()
    d = cached(tmp_path, redis_cfg(server, timeout=0.3))
    try:
        repo = new_repo()
        objs = fs_objects(3)
        for obj_id, data in objs.items():
            d.put(repo, obj_id, data)
        victim, kept = list(objs)[:2]
        os.kill(server.pid, signal.SIGSTOP)
        try:
            assert d.get(repo, kept) == objs[kept]  # one timeout, then the backend
            d.delete(repo, victim)  # backend delete works; invalidation deferred
            assert d.stats()["pending_invalidations"] == 1
            for _ in range(20):
                assert d.get(repo, kept) == objs[kept]
        finally:
            os.kill(server.pid, signal.SIGCONT)
        wait_for(
            lambda: d.get(repo, kept) == objs[kept] and not d.stats()["breaker_open"],
            "the breaker to close",
        )
        assert d.stats()["pending_invalidations"] == 0
        assert direct.get(d.key(repo, victim)) is None
        assert direct.get(d.key(repo, kept)) == objs[kept]  # the rest of the cache survived
        with pytest.raises(NotFound):
            d.get(repo, victim)
    finally:
        direct.close()
        d.close()
        d.remote.close()


def test_cache_speaking_another_protocol(
    tmp_path: Path, memcached_server: MemcachedServer, redis_server: RedisServer
) -> None:
    """Redis pointed at a memcached port and memcached at a Redis port: garbage
    replies are errors, reads come from the backend."""
    wrong: list[RedisConfig | MemcachedConfig] = [
        RedisConfig(host="127.0.0.1", port=memcached_server.port),
        MemcachedConfig(servers=(("127.0.0.1", redis_server.port),)),
    ]
    for n, cfg in enumerate(wrong):
        d = cached(tmp_path / str(n), cfg)
        try:
            repo = new_repo()
            objs = fs_objects(3)
            for obj_id, data in objs.items():
                d.put(repo, obj_id, data)
            for _ in range(3):
                assert d.get_many(repo, list(objs)) == objs
                for obj_id, data in objs.items():
                    assert d.get(repo, obj_id) == data
            s = d.stats()
            assert s["errors"] >= 1 and s["hits"] == 0
        finally:
            d.close()
            d.remote.close()


def test_memcached_two_servers_one_killed(tmp_path: Path, server_factory: Any) -> None:
    m1 = server_factory(MemcachedServer)
    m2 = server_factory(MemcachedServer)
    d = cached(tmp_path, memcached_cfg(m1, m2))
    try:
        repo = new_repo()
        objs = fs_objects(60)
        for obj_id, data in objs.items():
            d.put(repo, obj_id, data)
        per_server = []
        for m in (m1, m2):
            c = m.client()
            per_server.append(int(c.stats()[b"curr_items"]))
            c.close()
        assert sum(per_server) == 60 and min(per_server) > 0  # keys spread over both
        assert d.get_many(repo, list(objs)) == objs
        assert d.stats()["hits"] == 60
        m1.kill()
        for _ in range(3):  # errors once, then m1's keys move to m2
            for obj_id, data in objs.items():
                assert d.get(repo, obj_id) == data
            assert d.get_many(repo, list(objs)) == objs
        assert d.stats()["errors"] >= 1

        def all_hits() -> bool:
            before = d.stats()["hits"]
            assert d.get_many(repo, list(objs)) == objs
            return d.stats()["hits"] - before == 60

        wait_for(all_hits, "every object to be served by the surviving server")
        gone = list(objs)[:10]
        for obj_id in gone:  # invalidation reaches the surviving server
            d.delete(repo, obj_id)
            with pytest.raises(NotFound):
                d.get(repo, obj_id)
        assert d.stats()["pending_invalidations"] == 0
    finally:
        d.close()
        d.remote.close()


# ---------------------------------------------------------------- objstore-admin


@pytest.fixture
def redis_conf(tmp_path: Path, redis_server: RedisServer) -> Path:
    (tmp_path / "data").mkdir()
    text = fs_conf(tmp_path / "data") + cache_section("redis", redis_server.port)
    return write_conf(tmp_path / "conf", text)


def _fill(conf: Path, repos: list[str]) -> dict[str, dict[str, bytes]]:
    out = {}
    with objstore.open_stores(conf) as stores:
        for repo in repos:
            objs = fs_objects(4)
            for obj_id, data in objs.items():
                stores.fs.write(repo, obj_id, data)
            commit_id, commit = commit_object(repo)
            stores.commit.write(repo, commit_id, commit)
            out[repo] = objs
    return out


def test_cli_cache_flush_one_repo_then_all(
    redis_conf: Path, rclient: Any, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    a, b = new_repo(), new_repo()
    _fill(redis_conf, [a, b])
    rclient.set("someone-else:key", b"keep me")
    fs_prefix = key_prefix(ObjKind.FS, f"file://{(tmp_path / 'data/storage/fs').resolve()}")
    assert len(list(rclient.scan_iter(match=f"{fs_prefix}{{{a}}}:*"))) == 4

    assert admin_main(["cache-flush", str(redis_conf), "--repo", a]) == 0
    out = capsys.readouterr().out
    assert "flushed 5 cached objects of repo" in out and "commits: 1, fs: 4" in out
    assert list(rclient.scan_iter(match=f"{fs_prefix}{{{a}}}:*")) == []
    assert len(list(rclient.scan_iter(match=f"{fs_prefix}{{{b}}}:*"))) == 4

    assert admin_main(["cache-stats", str(redis_conf), "--json"]) == 0
    stats = json.loads(capsys.readouterr().out)
    assert stats["kinds"]["fs"]["entries"] == 4 and stats["kinds"]["commits"]["entries"] == 1
    assert stats["kinds"]["fs"]["bytes"] > 0 and stats["servers"]

    assert admin_main(["cache-flush", str(redis_conf), "--kind", "fs"]) == 0
    assert "flushed 4 cached objects" in capsys.readouterr().out
    assert admin_main(["cache-flush", str(redis_conf)]) == 0
    assert "flushed 1 cached objects" in capsys.readouterr().out
    assert list(rclient.scan_iter(match=f"{fs_prefix}*")) == []
    assert rclient.get("someone-else:key") == b"keep me"  # never FLUSHALL
    assert admin_main(["cache-stats", str(redis_conf)]) == 0
    assert "fs" in capsys.readouterr().out


def test_cli_cache_flush_memcached(
    tmp_path: Path, memcached_server: MemcachedServer, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "data").mkdir()
    text = fs_conf(tmp_path / "data") + cache_section("memcached", memcached_server.port)
    conf = write_conf(tmp_path / "conf", text)
    a, b = new_repo(), new_repo()
    objs = _fill(conf, [a, b])
    client = memcached_server.client()
    client.set("someone-else:key", b"keep me")
    try:
        with objstore.open_stores(conf) as stores:
            driver: CachedDriver = stores.fs.driver  # type: ignore[assignment]
            key_a = driver.key(a, next(iter(objs[a])))
            key_b = driver.key(b, next(iter(objs[b])))
        assert client.get(key_a) is not None and client.get(key_b) is not None
        assert admin_main(["cache-flush", str(conf), "--repo", a]) == 0
        assert "flushed 5 cached objects" in capsys.readouterr().out
        assert client.get(key_a) is None and client.get(key_b) is not None
        assert admin_main(["cache-stats", str(conf)]) == 0
        assert "curr_items" in capsys.readouterr().out
        assert admin_main(["cache-flush", str(conf)]) == 0
        assert client.get(key_b) is None
        assert client.get("someone-else:key") == b"keep me"
    finally:
        client.close()


def test_memcached_flush_scans_again_for_what_a_metadump_missed(
    tmp_path: Path, memcached_server: MemcachedServer
) -> None:
    """memcached's metadump is best effort (an item moving between LRU segments
    during the crawl is not listed): a flush scans again until a pass finds
    nothing.  Here the first scan of a real server hides one entry."""
    d = cached(tmp_path, memcached_cfg(memcached_server))
    remote: Any = d.remote
    real_scan = remote.scan
    scans = [0]

    def first_scan_misses_one(prefix: str) -> Iterator[list[tuple[str, int]]]:
        scans[0] += 1
        for batch in real_scan(prefix):
            yield batch[1:] if scans[0] == 1 else batch

    try:
        repo = new_repo()
        objs = fs_objects(3)
        for obj_id, data in objs.items():
            d.put(repo, obj_id, data)
            assert d.get(repo, obj_id) == data
        assert d.cached_entries()[0] == 3
        remote.scan = first_scan_misses_one
        assert d.flush(repo) == 3
        assert scans[0] == 3  # 2 found, then the missed one, then nothing
        remote.scan = real_scan
        assert d.cached_entries()[0] == 0
    finally:
        d.close()
        d.remote.close()


def test_cli_errors_are_one_line_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], redis_conf: Path
) -> None:
    from .servers import free_port

    (tmp_path / "d2").mkdir()
    closed = free_port()
    down = write_conf(
        tmp_path / "down",
        fs_conf(tmp_path / "d2") + cache_section("redis", closed, "redis_password = s3cr3t-pw\n"),
    )
    cases = [
        ["cache-flush", str(tmp_path / "nowhere.conf")],
        ["cache-flush", str(redis_conf), "--repo", "not-a-repo"],
        ["cache-flush", str(redis_conf), "--kind", "block"],
        ["cache-flush", str(redis_conf), "--kind", "nonsense"],
        ["cache-flush", str(down)],
        ["cache-stats", str(down)],
        ["no-such-command"],
    ]
    for argv in cases:
        status = run_cli(argv)
        captured = capsys.readouterr()
        assert status == 2, argv
        lines = captured.err.strip().splitlines()
        assert len(lines) == 1 and re.match(r"objstore-admin( [a-z-]+)?: error: ", lines[0]), argv
        assert "Traceback" not in captured.err and "s3cr3t-pw" not in captured.err
    fs_only = write_conf(tmp_path / "plain", fs_conf(tmp_path / "d2"))
    assert run_cli(["cache-stats", str(fs_only)]) == 2
    assert "no cache is configured" in capsys.readouterr().err


def run_cli(argv: list[str]) -> int:
    """objstore-admin's exit status, whether it returns it or argparse exits."""
    try:
        return admin_main(argv)
    except SystemExit as exc:
        return int(exc.code or 0)


def test_cli_entry_point_runs_as_a_process(tmp_path: Path) -> None:
    (tmp_path / "d").mkdir()
    # with a secret: no "not authenticated" warning line before the error
    text = fs_conf(tmp_path / "d") + cache_section("redis", 1, SECRET)
    conf = write_conf(tmp_path / "c", text)
    proc = subprocess.run(
        [sys.executable, "-m", "objstore.admin", "cache-flush", str(conf)],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        timeout=60,
    )
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "objstore-admin: error:" in proc.stderr
    assert proc.stdout == ""
