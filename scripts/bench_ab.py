#!/usr/bin/env python3
"""Compare objstore-migrate at several git revisions, interleaved on one server.

The machine is shared and noisy: figures taken minutes apart differ by 30%.
This runs every revision once per round, in a rotating order, on the same
generated store and the same SeaweedFS, and prints medians per revision of the
client's CPU (user+sys), wall time, context switches (each a thread handing
the GIL on, mostly) and peak RSS for three scenarios: disk -> S3
(first run), its no-op re-run, and S3 -> SSE-C S3 over HTTPS by GET+PUT.

    scripts/bench ab HEAD~1 WORKTREE             # WORKTREE: the files as they are now
    .venv/bin/python scripts/bench_ab.py 05854a1 HEAD --runs 5
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))

import bench_migrate as bm  # noqa: E402

SCENARIOS = ("disk -> S3", "no-op re-run", "S3 -> SSE-C S3 GET+PUT")


def checkout(rev: str, into: Path) -> Path:
    """The tree of ``rev`` (a detached worktree), or this checkout for WORKTREE."""
    if rev == "WORKTREE":
        return ROOT
    path = into / rev.replace("/", "_").replace("~", "-")
    subprocess.run(
        ["git", "-C", str(ROOT), "worktree", "add", "--detach", "-q", str(path), rev], check=True
    )
    return path


def remove_checkout(tree: Path) -> None:
    """Remove a tree made by :func:`checkout` (this checkout stays)."""
    if tree != ROOT:
        subprocess.run(
            ["git", "-C", str(ROOT), "worktree", "remove", "--force", str(tree)], check=False
        )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("revs", nargs="+", help="git revisions, or WORKTREE")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--workers", type=int, default=16)
    ap.add_argument("--repos", type=int, default=8)
    ap.add_argument("--blocks-per-repo", type=int, default=900)
    ap.add_argument("--commits-per-repo", type=int, default=100)
    args = ap.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="objstore-bench-ab-"))
    trees: dict[str, Path] = {}
    try:
        for rev in args.revs:
            trees[rev] = checkout(rev, work / "trees")
        results = _rounds(args, work, trees)
    finally:
        for tree in trees.values():
            remove_checkout(tree)
        shutil.rmtree(work, ignore_errors=True)
    print(f"\n{args.runs} interleaved rounds, {args.workers} workers; medians.\n")
    print("| revision | scenario | client CPU s | wall s | context switches | peak RSS MB |")
    print("|---|---|---:|---:|---:|---:|")
    for rev in args.revs:
        for scenario in SCENARIOS:
            runs = results[(rev, scenario)]
            cpu, wall, switches, rss = (
                statistics.median(r[k] for r in runs) for k in ("cpu", "wall", "switches", "rss_mb")
            )
            print(f"| {rev} | {scenario} | {cpu:.2f} | {wall:.2f} | {switches:.0f} | {rss:.0f} |")
    return 0


def _rounds(
    args: argparse.Namespace, work: Path, trees: dict[str, Path]
) -> dict[tuple[str, str], list[dict[str, Any]]]:
    print(f"generating the store under {work} ...", file=sys.stderr)
    store = bm.generate_store(
        work / "store", args.repos, args.blocks_per_repo, args.commits_per_repo
    )
    bench = bm.Bench(args, work, store)
    results: dict[tuple[str, str], list[dict[str, Any]]] = {}
    src = Path(store["conf"])

    def run(rev: str, scenario: str, source: Path, dest: Path, *extra: str) -> None:
        result = bench.objstore(source, dest, *extra, tree=trees[rev])
        results.setdefault((rev, scenario), []).append(result)
        print(f"  {rev}: {scenario}: {result['cpu']:.2f}s CPU, {result['switches']} switches",
              file=sys.stderr)  # fmt: skip

    try:
        revs = list(trees)
        for n in range(args.runs):
            print(f"round {n + 1}/{args.runs}", file=sys.stderr)
            for rev in revs[n % len(revs) :] + revs[: n % len(revs)]:
                bucket = bench.bucket("ab")
                dest = bench.conf(bucket)
                run(rev, SCENARIOS[0], src, dest)
                run(rev, SCENARIOS[1], src, dest)
                sse = bench.conf(bench.bucket("ab-ssec"), https=True, sse_c_key=bm.SSE_KEY)
                run(rev, SCENARIOS[2], bench.conf(bucket, https=True), sse,
                    "--server-side-copy", "never")  # fmt: skip
    finally:
        bench.close()
    return results


if __name__ == "__main__":
    sys.exit(main())
