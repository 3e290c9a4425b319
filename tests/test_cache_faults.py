"""Redis or memcached killed (SIGKILL) and restarted under a steady read load:
no read fails, and the cache recovers by itself."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest

from .servers import MemcachedServer, RedisServer
from .test_cache import _reader, cached, fs_objects, memcached_cfg, new_repo, redis_cfg, wait_for


@pytest.mark.parametrize("server_cls", [RedisServer, MemcachedServer], ids=["redis", "memcached"])
def test_cache_killed_and_restarted_under_load(
    tmp_path: Path, server_factory: Any, server_cls: type
) -> None:
    server = server_factory(server_cls)
    cfg = (
        redis_cfg(server, timeout=0.5)
        if server_cls is RedisServer
        else memcached_cfg(server, timeout=0.5)
    )
    d = cached(tmp_path, cfg)
    try:
        repo = new_repo()
        objs = fs_objects(30)
        for obj_id, data in objs.items():
            d.put(repo, obj_id, data)
        stop, reads = threading.Event(), [0]
        failures: list[BaseException] = []
        threads = [
            threading.Thread(target=_reader, args=(d, repo, objs, stop, failures, reads))
            for _ in range(4)
        ]
        for t in threads:
            t.start()
        for _ in range(2):  # two kill/restart cycles
            wait_for(lambda: d.stats()["hits"] > 200, "cache hits")
            server.kill()
            wait_for(lambda: d.stats()["breaker_open"] == 1, "the breaker to open")

            def more_reads(before: int = reads[0]) -> bool:
                return reads[0] > before + 5

            wait_for(more_reads, "reads served by the backend")
            server.restart()  # empty: nothing survives a SIGKILL of these servers

            def more_hits(before: int = d.stats()["hits"]) -> bool:
                return d.stats()["hits"] > before + 200

            wait_for(more_hits, "hits after the restart")
            assert d.stats()["breaker_open"] == 0
        stop.set()
        for t in threads:
            t.join(30)
        assert failures == []
        assert d.stats()["errors"] >= 2
    finally:
        d.close()
        d.remote.close()
