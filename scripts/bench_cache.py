#!/usr/bin/env python3
"""Benchmark of the object cache: fs objects served from SeaweedFS (S3), read with
no cache, through Redis (with and without cache_secret), through memcached and from
the local tier, next to a
bare redis-py GET / MGET loop over the same keys and values (the floor).

    .venv/bin/python scripts/bench_cache.py [--objects 2000] [--runs 5] [--out FILE]

Every configuration is measured in each run, interleaved (run 1: all configs,
run 2: all configs...), single-threaded; the table shows medians over the runs of
objects/s and of each run's p50/p99 latency per call.  Not a test: it prints a
markdown table and writes JSON (default bench-results/bench_cache.json).

Goals checked at the end: a Redis hit costs at most 1.5x a bare GET (p50), and
``read_many(100)`` on hits is at least 20x faster than 100 uncached reads.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import sys
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from objstore import ObjectStore, ObjKind  # noqa: E402
from objstore.cache import CachedDriver, make_remote  # noqa: E402
from objstore.config import MemcachedConfig, RedisConfig, S3Config, Secret  # noqa: E402
from objstore.formats import (  # noqa: E402
    DIR_MODE,
    FILE_MODE,
    Dirent,
    SeafDir,
    SeafFile,
    encode_dir,
    encode_file,
)
from objstore.store import build_driver  # noqa: E402
from tests.servers import MemcachedServer, RedisServer, SeaweedS3  # noqa: E402

STEMS = ["report", "IMG", "notes", "src", "data"]
SUFFIXES = [".pdf", ".jpg", ".txt", ".py", ".xlsx"]


def make_objects(n: int, seed: int = 1) -> dict[str, bytes]:
    """Realistic fs objects: directories of 1-60 entries and files of 1-30 blocks
    (a few hundred bytes to a few KB once compressed)."""
    rng = random.Random(seed)
    out: dict[str, bytes] = {}
    while len(out) < n:
        if rng.random() < 0.6:
            entries = []
            for i in range(rng.choice([1, 2, 3, 5, 8, 12, 20, 35, 60])):
                is_dir = rng.random() < 0.2
                entries.append(
                    Dirent(
                        rng.randbytes(20).hex(),
                        DIR_MODE if is_dir else FILE_MODE,
                        1_600_000_000 + rng.randrange(10**8),
                        f"{rng.choice(STEMS)}_{i}_{rng.randrange(10**6)}"
                        + ("" if is_dir else rng.choice(SUFFIXES)),
                        "" if is_dir else "user@example.com",
                        0 if is_dir else rng.randrange(10**7),
                    )
                )
            obj_id, data = encode_dir(SeafDir(entries))
        else:
            blocks = [rng.randbytes(20).hex() for _ in range(rng.choice([1, 1, 2, 4, 10, 30]))]
            obj_id, data = encode_file(SeafFile(blocks, len(blocks) * 8 * 2**20))
        out[obj_id] = data
    return out


def percentile(samples: list[float], q: float) -> float:
    s = sorted(samples)
    return s[min(len(s) - 1, int(q * len(s)))]


def measure(
    ops: dict[str, tuple[Callable[[], object], int, int]], chunks: int = 10
) -> dict[str, dict[str, float]]:
    """Time several configurations side by side: each ``name: (fn, calls, objects
    per call)`` runs its calls in ``chunks`` slices, interleaved round-robin (in a
    rotating order) so that every configuration sees the same background load."""
    lat: dict[str, list[float]] = {name: [] for name in ops}
    clock = time.perf_counter
    names = list(ops)
    for chunk in range(chunks):
        for name in names[chunk % len(names) :] + names[: chunk % len(names)]:
            fn, calls, _ = ops[name]
            samples = lat[name]
            for _ in range(max(1, calls // chunks)):
                t0 = clock()
                fn()
                samples.append(clock() - t0)
    return {
        name: {
            "objects_per_s": len(lat[name]) * ops[name][2] / sum(lat[name]),
            "p50_us": percentile(lat[name], 0.50) * 1e6,
            "p99_us": percentile(lat[name], 0.99) * 1e6,
        }
        for name in names
    }


def cycler(items: list[Any]) -> Callable[[], Any]:
    state = {"i": 0}

    def nxt() -> Any:
        i = state["i"]
        state["i"] = (i + 1) % len(items)
        return items[i]

    return nxt


def _read(store: ObjectStore, repo: str, nxt: Callable[[], str]) -> object:
    return store.read(repo, nxt())


def _read_many(store: ObjectStore, repo: str, nxt: Callable[[], list[str]]) -> object:
    return store.read_many(repo, nxt())


def _get(client: Any, nxt: Callable[[], str]) -> object:
    return client.get(nxt())


def _mget(client: Any, nxt: Callable[[], list[str]]) -> object:
    return client.mget(nxt())


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--objects", type=int, default=2000, help="fs objects in the data set")
    ap.add_argument("--runs", type=int, default=5, help="runs (medians are reported)")
    ap.add_argument("--reads", type=int, default=2000, help="read() calls per cached config/run")
    ap.add_argument("--uncached-reads", type=int, default=200, help="read() calls, no cache")
    ap.add_argument("--batches", type=int, default=100, help="read_many(100) calls per config/run")
    ap.add_argument("--out", type=Path, default=REPO / "bench-results" / "bench_cache.json")
    args = ap.parse_args()

    objs = make_objects(args.objects)
    sizes = sorted(len(d) for d in objs.values())
    ids = list(objs)
    random.Random(2).shuffle(ids)
    repo = str(uuid.uuid4())
    batches = [ids[i : i + 100] for i in range(0, len(ids) - 99, 100)]
    print(
        f"data set: {len(objs)} fs objects, {sum(sizes)} bytes, size p5/p50/p95 = "
        f"{sizes[len(sizes) // 20]}/{sizes[len(sizes) // 2]}/{sizes[len(sizes) * 19 // 20]} B",
        file=sys.stderr,
    )

    with SeaweedS3(https=False) as s3, RedisServer() as rs, MemcachedServer(memory_mb=256) as ms:
        bucket = s3.create_bucket(f"bench-fs-{uuid.uuid4().hex[:8]}")
        s3cfg = S3Config(
            bucket=bucket,
            key_id=s3.access_key,
            key=Secret(s3.secret_key),
            host=f"127.0.0.1:{s3.http_port}",
            use_v4_signature=True,
            path_style_request=True,
        )
        redis_cfg = RedisConfig(host="127.0.0.1", port=rs.port)
        configs: dict[str, Any] = {
            "no cache": None,
            "redis": redis_cfg,
            "redis + cache_secret": RedisConfig(
                host="127.0.0.1", port=rs.port, secret=Secret("bench-cache-secret-0123456789")
            ),
            "memcached": MemcachedConfig(servers=(("127.0.0.1", ms.port),)),
            "local tier (+redis)": RedisConfig(
                host="127.0.0.1",
                port=rs.port,
                local_cache_bytes=256 * 2**20,
                local_cache_max_age=3600.0,
            ),
        }
        stores = {
            name: ObjectStore(build_driver(s3cfg, ObjKind.FS, cfg)) for name, cfg in configs.items()
        }
        # every hit checked in full (inflate + sha1), as a process's first hit of an object is
        stores["redis, no memo"] = ObjectStore(
            CachedDriver(build_driver(s3cfg, ObjKind.FS), make_remote(redis_cfg), memo_entries=0)
        )
        plain = stores["no cache"]
        with ThreadPoolExecutor(16) as pool:
            list(pool.map(lambda item: plain.write(repo, *item), objs.items()))
        for name, store in stores.items():  # warm every cache (and check the bytes)
            if name != "no cache":
                for batch in [ids[i : i + 100] for i in range(0, len(ids), 100)]:
                    assert store.read_many(repo, batch) == {i: objs[i] for i in batch}
        redis_driver: CachedDriver = stores["redis"].driver  # type: ignore[assignment]
        keys = [redis_driver.key(repo, i) for i in ids]
        bare = rs.client(socket_timeout=1.0)
        assert bare.get(keys[0]) == objs[ids[0]]  # same keys, same values as the cache holds
        key_batches = [keys[i : i + 100] for i in range(0, len(keys) - 99, 100)]

        results: dict[str, dict[str, list[dict[str, float]]]] = {}

        def record(config: str, op: str, m: dict[str, float]) -> None:
            results.setdefault(config, {}).setdefault(op, []).append(m)

        for run in range(args.runs):
            print(f"run {run + 1}/{args.runs}", file=sys.stderr)
            reads: dict[str, tuple[Callable[[], object], int, int]] = {}
            many: dict[str, tuple[Callable[[], object], int, int]] = {}
            for name, store in stores.items():
                uncached = name == "no cache"
                one_fn = partial(_read, store, repo, cycler(ids))
                many_fn = partial(_read_many, store, repo, cycler(batches))
                reads[name] = (one_fn, args.uncached_reads if uncached else args.reads, 1)
                many[name] = (
                    many_fn,
                    max(10, args.batches // 4) if uncached else args.batches,
                    100,
                )
            reads["bare redis-py"] = (partial(_get, bare, cycler(keys)), args.reads, 1)
            many["bare redis-py"] = (partial(_mget, bare, cycler(key_batches)), args.batches, 100)
            for op, measured in (("read", measure(reads)), ("read_many(100)", measure(many))):
                for name, m in measured.items():
                    record(name, op, m)
        hit_stats = {
            name: s.driver.stats()
            for name, s in stores.items()
            if isinstance(s.driver, CachedDriver)
        }
        for store in stores.values():
            store.close()
        no_memo = stores["redis, no memo"].driver
        assert isinstance(no_memo, CachedDriver)
        no_memo.remote.close()
        bare.close()

    summary: dict[str, dict[str, dict[str, float]]] = {
        config: {
            op: {k: statistics.median(m[k] for m in runs) for k in runs[0]}
            for op, runs in ops.items()
        }
        for config, ops in results.items()
    }
    rows = [
        "| configuration | op | objects/s | p50 µs/call | p99 µs/call |",
        "|---|---|---:|---:|---:|",
    ]
    for config, ops in summary.items():
        for op, m in ops.items():
            label = op if config != "bare redis-py" else ("GET" if op == "read" else "MGET(100)")
            rows.append(
                f"| {config} | {label} | {m['objects_per_s']:,.0f} | "
                f"{m['p50_us']:,.0f} | {m['p99_us']:,.0f} |"
            )

    def per_run_ratio(config: str, op: str, key: str, invert: bool = False) -> float:
        """Median over runs of config/bare in the same run (measured side by side)."""
        ratios = []
        for mine, bare_m in zip(results[config][op], results["bare redis-py"][op]):
            r = mine[key] / bare_m[key]
            ratios.append(1 / r if invert else r)
        return statistics.median(ratios)

    hit_p50_ratio = per_run_ratio("redis", "read", "p50_us")
    hit_tput_ratio = per_run_ratio("redis", "read", "objects_per_s", invert=True)
    cold_p50_ratio = per_run_ratio("redis, no memo", "read", "p50_us")
    secret_p50_ratio = per_run_ratio("redis + cache_secret", "read", "p50_us")
    hit_vs_get = hit_p50_ratio
    many_vs_get = per_run_ratio("redis", "read_many(100)", "p50_us")
    uncached_100 = 100 * summary["no cache"]["read"]["p50_us"]
    many_speedup = uncached_100 / summary["redis"]["read_many(100)"]["p50_us"]
    many_vs_uncached_many = (
        summary["no cache"]["read_many(100)"]["p50_us"]
        / summary["redis"]["read_many(100)"]["p50_us"]
    )
    goals = {
        "redis_hit_vs_bare_get_p50": round(hit_vs_get, 3),
        "redis_hit_vs_bare_get_throughput": round(hit_tput_ratio, 3),
        "redis_hit_no_memo_vs_bare_get_p50": round(cold_p50_ratio, 3),
        "redis_hit_with_cache_secret_vs_bare_get_p50": round(secret_p50_ratio, 3),
        "redis_read_many_vs_bare_mget_p50": round(many_vs_get, 3),
        "read_many100_hit_speedup_vs_100_uncached_reads": round(many_speedup, 1),
        "read_many100_hit_speedup_vs_uncached_read_many100": round(many_vs_uncached_many, 1),
        "goal_hit_at_most_1.5x_get": hit_vs_get <= 1.5,
        "goal_read_many_at_least_20x": many_speedup >= 20,
    }
    print("\n".join(rows))
    print()
    print(
        f"- Redis hit / bare GET (p50): **{hit_vs_get:.2f}x** (goal <= 1.5x: "
        f"{'met' if hit_vs_get <= 1.5 else 'MISSED'})"
    )
    print(
        f"  (median of per-run ratios; by objects/s: {hit_tput_ratio:.2f}x; with every hit "
        f"checked in full, no memo: {cold_p50_ratio:.2f}x p50; with cache_secret, every hit's "
        f"HMAC checked: {secret_p50_ratio:.2f}x p50)"
    )
    print(f"- Redis read_many(100) / bare MGET(100) (p50): {many_vs_get:.2f}x")
    print(
        "- read_many(100) on Redis hits vs 100 uncached reads (100 x p50): "
        f"**{many_speedup:.0f}x** "
        f"(goal >= 20x: {'met' if many_speedup >= 20 else 'MISSED'}); vs one uncached "
        f"read_many(100) (concurrent): {many_vs_uncached_many:.0f}x"
    )
    out = {
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "machine": {
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
        },
        "data_set": {
            "objects": len(objs),
            "bytes": sum(sizes),
            "size_p50": sizes[len(sizes) // 2],
            "size_min": sizes[0],
            "size_max": sizes[-1],
        },
        "runs": args.runs,
        "median": summary,
        "all_runs": results,
        "goals": goals,
        "cache_stats": hit_stats,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=2))
    print(f"\nJSON: {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
