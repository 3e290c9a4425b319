"""Authenticated cache values (``cache_secret``), against real Redis and memcached.

A commit id covers only root_id, creator, creator_name, description and ctime: a
commit whose parent_id, repo_name or encryption fields were rewritten in the cache
still matches its id.  Without a secret that is all objstore can check (the first
test shows it, as the README says); with one, every value carries an HMAC over its
key and bytes, and such a commit is never served.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import objstore
from objstore import ConfigError, ObjKind, Stores
from objstore.cache import MAC_SIZE, CachedDriver
from objstore.config import UNAUTHENTICATED_CACHE, MemcachedConfig, RedisConfig, load_config
from objstore.formats import Commit, decode_commit, encode_commit, verify_object

from .helpers import fs_conf, write_conf
from .test_cache import cache_section, fs_object, new_repo

SECRET = "cache-secret-0123456789-abcdefgh"
PARENT = "1" * 40


def encrypted_commit(repo: str) -> tuple[str, bytes]:
    """A commit of an encrypted library, with a parent: the fields an attacker wants."""
    return encode_commit(
        Commit.create(
            repo_id=repo,
            root_id=os.urandom(20).hex(),
            ctime=1_700_000_000,
            creator_name="owner@example.com",
            description="Modified report.pdf",
            parent_id=PARENT,
            repo_name="finance",
            encrypted=True,
            enc_version=2,
            magic=os.urandom(32).hex(),
            random_key=os.urandom(48).hex(),
        )
    )


REWRITES: dict[str, Callable[[Commit], Commit]] = {
    "parent_id": lambda c: dataclasses.replace(c, parent_id="2" * 40),
    "repo_name": lambda c: dataclasses.replace(c, repo_name="nothing to see here"),
    "encryption dropped": lambda c: dataclasses.replace(
        c, encrypted=False, enc_version=0, magic=None, random_key=None
    ),
    "magic and key": lambda c: dataclasses.replace(
        c, magic="0" * 64, random_key="0" * 96, salt="0" * 64
    ),
}


def rewrite(data: bytes, how: str) -> bytes:
    """The commit with one group of fields changed; it still matches its id."""
    original = decode_commit(data)
    commit_id, forged = encode_commit(REWRITES[how](original))
    assert commit_id == original.commit_id and forged != data
    verify_object(ObjKind.COMMIT, commit_id, forged)  # the id check cannot see it
    return forged


class Cache:
    """Raw access to the test cache server, as an attacker with network access has."""

    def __init__(self, kind: str, server: Any) -> None:
        self.kind = kind
        self.client = server.client()

    def get(self, key: str) -> bytes | None:
        value: bytes | None = self.client.get(key)
        return value

    def set(self, key: str, value: bytes) -> None:
        if self.kind == "memcached":  # wait for the reply: the store reads on another socket
            self.client.set(key, value, noreply=False)
        else:
            self.client.set(key, value)

    def close(self) -> None:
        self.client.close()


@pytest.fixture(params=["redis", "memcached"])
def cache(request: pytest.FixtureRequest) -> Iterator[tuple[str, Any, Cache]]:
    server = request.getfixturevalue(f"{request.param}_server")
    raw = Cache(request.param, server)
    yield request.param, server, raw
    raw.close()


def open_with(tmp_path: Path, kind: str, port: int, secret: str | None) -> Stores:
    data = tmp_path / "data"
    data.mkdir(exist_ok=True)
    extra = f"cache_secret = {secret}\n" if secret else ""
    name = "secret" if secret else "plain"
    conf = write_conf(tmp_path / name, fs_conf(data) + cache_section(kind, port, extra))
    return objstore.open_stores(conf)


def cache_key(stores: Stores, kind: ObjKind, repo: str, obj_id: str) -> str:
    driver = stores[kind].driver
    assert isinstance(driver, CachedDriver)
    return driver.key(repo, obj_id)


@pytest.mark.parametrize("secret", [None, SECRET], ids=["no secret", "secret"])
@pytest.mark.parametrize("how", sorted(REWRITES))
def test_a_commit_rewritten_in_the_cache(
    tmp_path: Path, cache: tuple[str, Any, Cache], how: str, secret: str | None
) -> None:
    """Without a secret the rewritten commit is served (what the README says is not
    checked: this is it); with one it never is."""
    kind, server, raw = cache
    repo = new_repo()
    obj_id, data = encrypted_commit(repo)
    forged = rewrite(data, how)
    with open_with(tmp_path, kind, server.port, secret) as stores:
        stores.commit.write(repo, obj_id, data)
        key = cache_key(stores, ObjKind.COMMIT, repo, obj_id)
        stored = raw.get(key)
        assert stored is not None
        if secret is None:
            assert stored == data
            raw.set(key, forged)
            assert stores.commit.read(repo, obj_id) == forged
            return
        assert stored[MAC_SIZE:] == data
        attempts = [
            forged,  # the plain bytes, as a cache writer without the secret would store
            stored[:MAC_SIZE] + forged,  # the genuine tag in front of other bytes
        ]
        for n, value in enumerate(attempts, start=1):
            raw.set(key, value)
            assert stores.commit.read(repo, obj_id) == data
            assert raw.get(key) == stored  # dropped and filled again from the backend
            raw.set(key, value)
            assert stores.commit.read_many(repo, [obj_id]) == {obj_id: data}
            assert stores.cache_stats()["commit"]["forged"] == 2 * n
        assert stores.commit.read(repo, obj_id) == data
        assert stores.cache_stats()["commit"]["hits"] >= 1  # the genuine value is served


def test_a_sealed_value_cannot_be_moved_to_another_key(
    tmp_path: Path, cache: tuple[str, Any, Cache]
) -> None:
    """The tag covers the key: another object's genuine value, or the same object's
    value from another library, is refused."""
    kind, server, raw = cache
    repo, other_repo = new_repo(), new_repo()
    obj_id, data = fs_object()
    other_id, other = fs_object(7, "other")
    with open_with(tmp_path, kind, server.port, SECRET) as stores:
        for r in (repo, other_repo):
            stores.fs.write(r, obj_id, data)
        stores.fs.write(repo, other_id, other)
        key = cache_key(stores, ObjKind.FS, repo, obj_id)
        other_key = cache_key(stores, ObjKind.FS, repo, other_id)
        raw.set(key, raw.get(other_key))  # type: ignore[arg-type]
        assert stores.fs.read(repo, obj_id) == data
        elsewhere = raw.get(cache_key(stores, ObjKind.FS, other_repo, obj_id))
        raw.set(key, elsewhere)  # type: ignore[arg-type]
        assert stores.fs.read(repo, obj_id) == data
        assert stores.cache_stats()["fs"]["forged"] == 2


def test_values_with_and_without_a_secret_never_meet(
    tmp_path: Path, cache: tuple[str, Any, Cache]
) -> None:
    """Two processes, one with a secret and one without, on one cache and store: each
    has its own namespace, so neither drops the other's values (no thrashing)."""
    kind, server, raw = cache
    repo = new_repo()
    obj_id, data = fs_object()
    with (
        open_with(tmp_path, kind, server.port, SECRET) as sealed,
        open_with(tmp_path, kind, server.port, None) as plain,
    ):
        sealed.fs.write(repo, obj_id, data)
        assert plain.fs.read(repo, obj_id) == data
        for _ in range(2):
            assert sealed.fs.read(repo, obj_id) == data
            assert plain.fs.read(repo, obj_id) == data
        k_sealed = cache_key(sealed, ObjKind.FS, repo, obj_id)
        k_plain = cache_key(plain, ObjKind.FS, repo, obj_id)
        assert k_sealed != k_plain
        assert raw.get(k_plain) == data and raw.get(k_sealed)[MAC_SIZE:] == data  # type: ignore[index]
        for stores in (sealed, plain):
            stats = stores.cache_stats()["fs"]
            assert stats["hits"] == 2 and stats["forged"] == 0 and stats["corrupt"] == 0


def test_cache_secret_option_and_variable(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    data = fs_conf(tmp_path)
    for section, cls in (("redis", RedisConfig), ("memcached", MemcachedConfig)):
        with_secret = write_conf(
            tmp_path / section, data + cache_section(section, 1, f"cache_secret = {SECRET}\n")
        )
        cfg = load_config(with_secret, env={})
        assert isinstance(cfg.cache, cls) and cfg.cache.secret is not None
        assert cfg.cache.secret.reveal() == SECRET
        assert not any("not authenticated" in w for w in cfg.warnings)
        without = write_conf(tmp_path / f"{section}-plain", data + cache_section(section, 1))
        with caplog.at_level(logging.WARNING, logger="objstore"):
            cfg = load_config(without, env={})
        assert f"{without} [{section}]: {UNAUTHENTICATED_CACHE}" in cfg.warnings
        assert UNAUTHENTICATED_CACHE in caplog.text
        short = write_conf(
            tmp_path / f"{section}-short",
            data + cache_section(section, 1, "cache_secret = s3cr3t\n"),
        )
        with pytest.raises(ConfigError, match="at least 16 bytes") as info:
            load_config(short, env={})
        assert info.value.option == "cache_secret" and "s3cr3t" not in str(info.value)
    env = {"CACHE_PROVIDER": "redis", "REDIS_HOST": "10.0.0.5", "OBJSTORE_CACHE_SECRET": SECRET}
    cfg = load_config(without, env=env)
    assert cfg.cache is not None and cfg.cache.secret is not None
    assert cfg.cache.secret.reveal() == SECRET
    # the file's cache_secret goes with the file's cache: not read when the environment wins
    file_secret = write_conf(
        tmp_path / "file-secret", data + cache_section("redis", 1, f"cache_secret = {SECRET}\n")
    )
    cfg = load_config(file_secret, env={**env, "OBJSTORE_CACHE_SECRET": ""})
    assert cfg.cache is not None and cfg.cache.secret is None
    assert any(w.startswith("[redis] is not used: environment") for w in cfg.warnings)
    cfg = load_config(without, env={**env, "OBJSTORE_CACHE_SECRET": ""})
    assert any(
        w.startswith("environment (CACHE_PROVIDER=redis): cached values") for w in cfg.warnings
    )
    with pytest.raises(ConfigError, match="at least 16 bytes") as info:
        load_config(without, env={**env, "OBJSTORE_CACHE_SECRET": "s3cr3t"})
    assert info.value.option == "OBJSTORE_CACHE_SECRET" and "s3cr3t" not in str(info.value)


def test_the_secret_never_shows(
    tmp_path: Path, redis_server: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    repo = new_repo()
    obj_id, data = fs_object()
    with open_with(tmp_path, "redis", redis_server.port, SECRET) as stores:
        stores.fs.write(repo, obj_id, data)
        raw = redis_server.client()
        try:
            key = cache_key(stores, ObjKind.FS, repo, obj_id)
            raw.set(key, b"garbage")
            assert stores.fs.read(repo, obj_id) == data  # logs the forged value
        finally:
            raw.close()
        shown = [
            repr(stores), repr(stores.config), str(stores.config.cache),
            repr(stores.fs.driver), repr(stores.cache_stats()), caplog.text,
        ]  # fmt: skip
    assert "fail their HMAC" in caplog.text
    for text in shown:
        assert SECRET not in text
