"""``objstore-migrate merge-reports REPORT...``: one verdict over the reports of a
sharded migration.  Exit 0 only when every shard of one N is there exactly once,
all ran against the same source and destination and all succeeded; 1 otherwise
(naming what is missing or failed); 2 when a file is not a report."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import IO

from .migration.reports import BadReport, MergedReports, load_report, merge_reports
from .migration.results import EXIT_FAILED, EXIT_OK, EXIT_USAGE
from .progress import format_bytes

PROG = "objstore-migrate merge-reports"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=PROG,
        description="One verdict over the JSON reports of the N shards of a migration "
        "(--shard K/N --report run.json writes run.shard-K-of-N.json).",
        epilog="exit codes: 0 all N shards present once, same source and destination, all "
        "succeeded; 1 a shard missing, given twice, of another migration or failed; "
        "2 a file that is not a report.",
    )
    p.add_argument("reports", nargs="+", metavar="REPORT", help="shard reports (JSON)")
    return p


def print_merged(merged: MergedReports, out: IO[str]) -> None:
    """The combined summary: shards, locations, summed counts, every problem, verdict."""
    p, t, v = merged.plan, merged.transfer, merged.verify
    modes = ", ".join(f"{mode} in {count}" for mode, count in sorted(merged.verify_modes.items()))
    lines = [f"shards: {len(merged.present)} of {merged.shards} present"]
    for label, side in (("source", merged.source), ("destination", merged.destination)):
        lines += [f"{label + ' ' + kind + ':':<20} {where}" for kind, where in side.items()]
    lines += [
        f"plan: {p['objects']} objects, {format_bytes(p['bytes'])}; "
        f"{p['to_copy']} to copy ({format_bytes(p['to_copy_bytes'])})",
        f"copy: {t['copied']} copied, {t['skipped']} already there, {t['failed']} failed; "
        f"{format_bytes(t['bytes'])}",
        f"verify ({modes}): {v['checked']} checked, {v['ok']} ok, {v['missing']} missing, "
        f"{v['mismatched']} wrong size, {v['corrupt']} corrupt, {v['failed']} unreadable",
        *(f"  PROBLEM {problem}" for problem in merged.problems),
        f"result: {'OK' if merged.ok else 'FAILED'} (exit {EXIT_OK if merged.ok else EXIT_FAILED})",
    ]
    out.write("".join(line + "\n" for line in lines))


def main(argv: Sequence[str]) -> int:
    args = build_parser().parse_args(argv)
    try:
        reports = [load_report(path) for path in args.reports]
    except BadReport as exc:
        sys.stderr.write(f"{PROG}: error: {' '.join(str(exc).split())}\n")
        return EXIT_USAGE
    merged = merge_reports(reports)
    print_merged(merged, sys.stdout)
    return EXIT_OK if merged.ok else EXIT_FAILED
