"""``redis_cluster = true`` against a real Redis Cluster: three redis-server
primaries on loopback (cluster-enabled, joined with ``redis-cli --cluster create``),
started by the harness (``redis_cluster`` fixture) and stopped after the session."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import cast

import pytest

import objstore
from objstore import ConfigError, Stores
from objstore.admin import main as admin_main
from objstore.cache import CachedDriver

from .conformance import block
from .helpers import fs_conf, write_conf
from .servers import RedisCluster
from .test_cache import ALL_KINDS, CachedSuite, commit_object, fs_object, new_repo


def cluster_conf(tmp_path: Path, cluster: RedisCluster, seed: int = 0, extra: str = "") -> Path:
    data = tmp_path / "data"
    data.mkdir(exist_ok=True)
    text = fs_conf(data) + (
        f"[redis]\nredis_host = {cluster.host}\nredis_port = {cluster.ports[seed]}\n"
        f"redis_cluster = true\n{extra}"
    )
    return write_conf(tmp_path / "conf", text)


def keys_per_node(cluster: RedisCluster, pattern: str) -> list[list[bytes]]:
    out: list[list[bytes]] = []
    for node in cluster.nodes:
        client = node.client()
        try:
            keys = cast("list[bytes]", client.keys(pattern))  # no decode_responses
            out.append(sorted(keys))
        finally:
            client.close()
    return out


class TestRedisClusterOverFs(CachedSuite):
    """The conformance suite (every kind cached) through the cluster."""

    @pytest.fixture
    def stores(self, tmp_path: Path, redis_cluster: RedisCluster) -> Iterator[Stores]:
        conf = cluster_conf(tmp_path, redis_cluster, extra=ALL_KINDS)
        with objstore.open_stores(conf) as stores:
            assert all(isinstance(s.driver, CachedDriver) for s in stores.values())
            yield stores


@pytest.mark.parametrize("seed", [0, 2])
def test_objects_spread_over_every_node_one_repo_per_slot(
    tmp_path: Path, redis_cluster: RedisCluster, seed: int
) -> None:
    """Any node is a seed; the repos land on all three nodes, and the keys of one repo
    (its objects and its tombstone) share one slot, so MGET and the fill script work."""
    repos = [new_repo() for _ in range(24)]
    with objstore.open_stores(cluster_conf(tmp_path, redis_cluster, seed)) as stores:
        objects: dict[str, dict[str, bytes]] = {}
        for repo in repos:
            objects[repo] = dict(fs_object(3, f"r{n}") for n in range(3))
            for obj_id, data in objects[repo].items():
                stores.fs.write(repo, obj_id, data)
        for repo in repos:
            assert stores.fs.read_many(repo, list(objects[repo])) == objects[repo]
        stats = stores.cache_stats()["fs"]
        assert stats["hits"] == 3 * len(repos) and stats["errors"] == 0
        driver = stores.fs.driver
        assert isinstance(driver, CachedDriver)
        per_node = keys_per_node(redis_cluster, f"{driver.prefix}*")
        assert all(per_node), "every node holds some repos"
        assert sum(len(k) for k in per_node) == 3 * len(repos)
        for repo in repos:
            nodes = {redis_cluster.node_of_key(driver.key(repo, o)).port for o in objects[repo]}
            assert len(nodes) == 1
        stores.fs.remove_repo(repos[0])  # tombstone + deletes in that repo's slot
        for obj_id in objects[repos[0]]:
            with pytest.raises(objstore.NotFound):
                stores.fs.read(repos[0], obj_id)


def test_flush_and_stats_across_the_nodes(
    tmp_path: Path, redis_cluster: RedisCluster, capsys: pytest.CaptureFixture[str]
) -> None:
    conf = cluster_conf(tmp_path, redis_cluster)
    repos = [new_repo() for _ in range(12)]
    with objstore.open_stores(conf) as stores:
        for repo in repos:
            obj_id, data = commit_object(repo)
            stores.commit.write(repo, obj_id, data)
            assert stores.commit.read(repo, obj_id) == data
        driver = stores.commit.driver
        assert isinstance(driver, CachedDriver)
        prefix = driver.prefix
    assert all(keys_per_node(redis_cluster, f"{prefix}*"))
    assert admin_main(["cache-stats", str(conf), "--json"]) == 0
    stats = json.loads(capsys.readouterr().out)
    assert stats["kinds"]["commits"]["entries"] == len(repos)
    assert len(stats["servers"]) == 3  # one entry per cluster node
    assert admin_main(["cache-flush", str(conf), "--kind", "commit"]) == 0
    assert f"flushed {len(repos)} cached objects" in capsys.readouterr().out
    assert keys_per_node(redis_cluster, f"{prefix}{{*}}:[0-9a-f]*") == [[], [], []]


def test_a_block_through_the_cluster_with_a_secret(
    tmp_path: Path, redis_cluster: RedisCluster
) -> None:
    conf = cluster_conf(
        tmp_path, redis_cluster, extra=ALL_KINDS + "cache_secret = cluster-secret-0123456789\n"
    )
    repo = new_repo()
    obj_id, data = block(b"through the cluster")
    with objstore.open_stores(conf) as stores:
        stores.block.write(repo, obj_id, data)
        assert stores.block.read(repo, obj_id) == data
        assert stores.cache_stats()["block"]["hits"] == 1


def test_cluster_has_only_database_0(tmp_path: Path, redis_cluster: RedisCluster) -> None:
    conf = cluster_conf(tmp_path, redis_cluster, extra="redis_db = 1\n")
    with pytest.raises(ConfigError, match="database 0") as info:
        objstore.load_config(conf, env={})
    assert info.value.option == "redis_db"
