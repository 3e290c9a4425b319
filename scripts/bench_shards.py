#!/usr/bin/env python3
"""Benchmark sharded passes and big no-op re-runs of objstore-migrate (not a test:
prints markdown tables, writes JSON).

1. A sharded no-op pass (every object already at the destination), S3 -> S3 on one
   SeaweedFS, for N = 1, 4, 16 shards, before (``--before``, default ea40bdd: every
   shard lists both buckets whole and keeps its share) and after (this tree: each
   shard lists only its repo-id prefixes), side by side in one run, medians of
   ``--runs``.  A pass runs its N shards one after the other: "pass wall" is their
   sum (the time N machines spend together), "slowest shard" the longest.  Listing
   requests are counted from each shard's DEBUG log (``-v``: ``objstore.s3`` logs
   every request), leaving out the open-time bucket checks.
2. A no-op re-run of a store of ``--big-objects`` tiny blocks (disk -> S3): wall
   time, CPU and peak RSS of objstore-migrate, side by side with ``rclone copy
   --size-only`` of the same files into the same bucket (with and without
   ``--fast-list``), medians of ``--runs``.  The store is written straight to disk
   and to the bucket at once (``--skip big`` leaves this part out).

    scripts/bench shards                               # = .venv/bin/python scripts/bench_shards.py
    scripts/bench shards --big-objects 20000 --runs 1  # a quick look
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import os
import random
import re
import shutil
import statistics
import sys
import tempfile
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))

import bench_ab  # noqa: E402
import bench_migrate as bm  # noqa: E402

import objstore  # noqa: E402
from objstore.config import FsConfig  # noqa: E402
from objstore.drivers.fs import FsDriver  # noqa: E402
from objstore.formats import SeafFile, encode_file  # noqa: E402
from objstore.ids import ObjKind  # noqa: E402

SHARDS = (1, 4, 16)
FIGURES = ("wall", "cpu", "rss_mb")
NOW = "WORKTREE"


# --------------------------------------------------------------------------- stores


def tiny_objects(repos: int, per_repo: int, seed: int) -> Iterator[tuple[ObjKind, str, str, bytes]]:
    """Valid objects of a few dozen bytes: per repo ``per_repo`` blocks, and one file
    object (an fs object) per two blocks; no commits (a no-op pass lists them all
    the same)."""
    rng = random.Random(seed)
    for _ in range(repos):
        repo = str(uuid.UUID(int=rng.getrandbits(128), version=4))
        blocks = []
        for _ in range(per_repo):
            data = rng.randbytes(rng.randint(16, 64))
            bid = hashlib.sha1(data).hexdigest()
            blocks.append((bid, len(data)))
            yield ObjKind.BLOCK, repo, bid, data
        for i in range(0, len(blocks) - 1, 2):
            pair = blocks[i : i + 2]
            fid, stored = encode_file(
                SeafFile(block_ids=[b for b, _ in pair], size=sum(s for _, s in pair))
            )
            yield ObjKind.FS, repo, fid, stored


def write_stores(confs: list[Path], objects: Iterator[tuple[ObjKind, str, str, bytes]]) -> int:
    """Write every object into each configuration at once (32 threads; fs stores
    without fsync); the count."""
    opened = [objstore.open_stores(conf) for conf in confs]
    drivers = [
        {kind: FsDriver(cfg.dir, kind, fsync=False) if isinstance(cfg, FsConfig)
         else stores[kind].driver for kind, cfg in stores.config.backends.items()}
        for stores in opened
    ]  # fmt: skip
    n = 0
    try:
        with ThreadPoolExecutor(32) as pool:
            batch: list[Any] = []

            def flush() -> None:
                jobs = [pool.submit(d[kind].put, repo, obj, data)
                        for kind, repo, obj, data in batch for d in drivers]  # fmt: skip
                for job in jobs:
                    job.result()
                batch.clear()

            for item in objects:
                batch.append(item)
                n += 1
                if len(batch) == 2000:
                    flush()
            flush()
    finally:
        for stores in opened:
            stores.close()
    return n


def disk_conf(path: Path) -> Path:
    data = path / "data"
    data.mkdir(parents=True, exist_ok=True)
    conf = path / "conf" / "seafile.conf"
    conf.parent.mkdir(parents=True, exist_ok=True)
    conf.write_text("".join(f"[{k.section}]\nname = fs\ndir = {data}\n\n" for k in ObjKind))
    return conf


def flat_links(data: Path, flat: Path) -> None:
    """The disk store laid out as the S3 keys (``<kind>/<repo>/<obj_id>``, hard links),
    for rclone."""
    for kind in ObjKind:
        for repo_dir in sorted((data / "storage" / kind.value).glob("*")):
            target = flat / kind.value / repo_dir.name
            target.mkdir(parents=True, exist_ok=True)
            for path in repo_dir.glob("*/*"):
                os.link(path, target / (path.parent.name + path.name))


# --------------------------------------------------------------------------- part 1


_REQUEST_RE = re.compile(r"DEBUG:? GET (\S*list-type=2\S*)")


def listing_requests(stderr: str) -> int:
    """Full listing requests in a -v log (not the bucket checks, which ask for one key)."""
    found = (parse_qs(urlsplit(m.group(1)).query) for m in _REQUEST_RE.finditer(stderr))
    return sum(query.get("max-keys") != ["1"] for query in found)


def sharded_passes(
    args: argparse.Namespace, bench: bm.Bench, trees: dict[str, Path]
) -> list[dict[str, Any]]:
    src = bench.conf(bench.bucket("shards-src"))
    dst = bench.conf(bench.bucket("shards-dst"))
    print("writing the sharded-pass store ...", file=sys.stderr)
    objects = write_stores([src, dst], tiny_objects(args.repos, args.blocks_per_repo, seed=11))
    for tree in trees.values():  # warm-up: each tree's bytecode cache is written once
        bench.objstore(src, dst, "--dry-run", tree=tree)
    runs: dict[tuple[str, int], list[dict[str, float]]] = {}
    for r in range(args.runs):
        for rev in list(trees)[r % 2 :] + list(trees)[: r % 2]:
            for n in SHARDS:
                tree = trees[rev]
                shards = [
                    bench.objstore(src, dst, "--shard", f"{k}/{n}", "-v", tree=tree, tail=None)
                    for k in range(n)
                ]
                one = {
                    "requests": sum(listing_requests(s["stderr"]) for s in shards),
                    "wall": sum(s["wall"] for s in shards),
                    "slowest": max(s["wall"] for s in shards),
                    "cpu": sum(s["cpu"] for s in shards),
                }
                runs.setdefault((rev, n), []).append(one)
                print(f"  round {r + 1}: {rev} N={n}: {one}", file=sys.stderr)
    rows = []
    for n in SHARDS:
        for rev in trees:
            got = runs[(rev, n)]
            med = {k: statistics.median(g[k] for g in got) for k in got[0]}
            rows.append({"revision": rev, "shards": n, "objects": objects, **med})
    return rows


# --------------------------------------------------------------------------- part 2


def big_rerun(args: argparse.Namespace, bench: bm.Bench, work: Path) -> dict[str, Any]:
    src = disk_conf(work / "big")
    bucket = bench.bucket("big")
    dst = bench.conf(bucket)
    per_repo = 200  # blocks, and 100 fs objects
    print(f"writing {args.big_objects} objects to disk and S3 at once ...", file=sys.stderr)
    repos = -(-args.big_objects // (per_repo + per_repo // 2))
    objects = write_stores([src, dst], tiny_objects(repos, per_repo, seed=12))
    flat = work / "big-flat"
    flat_links(work / "big" / "data", flat)
    rclone_env = bm.clean_env({"HOME": str(work), "XDG_CONFIG_HOME": str(work),
                               "XDG_CACHE_HOME": str(work)})  # fmt: skip
    n = str(args.workers)
    rclone = [
        bm.find_binary("rclone"), "--config", str(bench.rclone_conf), "-v", "copy", str(flat),
        f"bench:{bucket}", "--size-only", "--transfers", n, "--checkers", n,
    ]  # fmt: skip
    runs: dict[str, list[dict[str, Any]]] = {}
    for r in range(args.runs):
        print(f"  big no-op re-run, round {r + 1}", file=sys.stderr)
        ours = bench.objstore(src, dst)
        assert "copy: 0 copied" in ours["stdout"], ours["stdout"]
        runs.setdefault("objstore-migrate", []).append(ours)
        for name, extra in (("rclone copy --size-only", []),
                            ("rclone copy --size-only --fast-list", ["--fast-list"])):  # fmt: skip
            result = bm.run_measured(rclone + extra, rclone_env, tail=None)
            if result["rc"] != 0 or "Copied (" in result["stderr"]:
                raise RuntimeError(f"rclone failed or copied: {result['stderr'][-2000:]}")
            runs.setdefault(name, []).append(result)
    return {
        "objects": objects,
        "tools": {
            name: {k: round(statistics.median(r[k] for r in rs), 3) for k in FIGURES}
            for name, rs in runs.items()
        },
    }


# --------------------------------------------------------------------------- report


def markdown(results: dict[str, Any]) -> str:
    lines = []
    if results["passes"]:
        lines += [
            f"Sharded no-op pass, S3 -> S3 ({results['passes'][0]['objects']:,} objects in "
            f"{results['repos']} libraries, blocks and fs), shards one after the other, "
            f"{results['workers']} workers, medians of {results['runs']}:",
            "",
            "| N | revision | listing requests | pass wall s (sum) | slowest shard s "
            "| client CPU s |",
            "|---:|---|---:|---:|---:|---:|",
        ]
    for row in results["passes"]:
        rev = "now" if row["revision"] == NOW else row["revision"]
        lines.append(
            f"| {row['shards']} | {rev} | {row['requests']:.0f} | {row['wall']:.2f} | "
            f"{row['slowest']:.2f} | {row['cpu']:.2f} |"
        )
    big = results.get("big")
    if big:
        lines += [
            "",
            f"No-op re-run, disk -> S3, {big['objects']:,} objects, medians of {results['runs']}:",
            "",
            "| tool | wall s | client CPU s | peak RSS MB |",
            "|---|---:|---:|---:|",
        ]
        for name, r in big["tools"].items():
            lines.append(f"| {name} | {r['wall']:.2f} | {r['cpu']:.2f} | {r['rss_mb']:.0f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--before", default="ea40bdd", help="the revision to compare with")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--workers", type=int, default=16)
    ap.add_argument("--repos", type=int, default=256, help="libraries of the sharded-pass store")
    ap.add_argument("--blocks-per-repo", type=int, default=60)
    ap.add_argument("--big-objects", type=int, default=200_000)
    ap.add_argument("--skip", default="", help="comma list of: shards,big")
    ap.add_argument("--out", default=str(ROOT / "bench-results" / "shards.json"))
    args = ap.parse_args(argv)
    skip = set(filter(None, args.skip.split(",")))
    logging.getLogger("objstore").setLevel(logging.ERROR)  # not the key_prefix warnings
    work = Path(tempfile.mkdtemp(prefix="objstore-bench-shards-"))
    trees: dict[str, Path] = {}
    results: dict[str, Any] = {
        "command": " ".join([os.path.relpath(sys.argv[0], ROOT), *sys.argv[1:]]),
        "runs": args.runs, "workers": args.workers, "repos": args.repos, "passes": [],
    }  # fmt: skip
    bench = bm.Bench(args, work, {})
    try:
        if "shards" not in skip:
            trees = {args.before: bench_ab.checkout(args.before, work / "trees"), NOW: ROOT}
            results["passes"] = sharded_passes(args, bench, trees)
        if "big" not in skip:
            results["big"] = big_rerun(args, bench, work)
        results["seaweedfs"] = bm.weed_version(bench.server)
    finally:
        bench.close()
        for tree in trees.values():
            bench_ab.remove_checkout(tree)
        shutil.rmtree(work, ignore_errors=True)
    bm.publish(results, markdown(results), args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
