"""One verdict over the JSON reports of a sharded migration (what
``objstore-migrate merge-reports`` prints): every shard of one N present exactly
once, all run against the same source and destination with the same kinds and
libraries, and every one succeeded.  Pure data in, data out; the CLI prints it."""

from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

_SHARD_RE = re.compile(r"(\d+)/(\d+)\Z")
PLAN_FIELDS = ("objects", "bytes", "to_copy", "to_copy_bytes")
TRANSFER_FIELDS = ("copied", "skipped", "failed", "vanished", "bytes")
VERIFY_FIELDS = ("checked", "ok", "missing", "mismatched", "corrupt", "failed", "extra")
SAME_RUN = ("source", "destination")
SAME_OPTIONS = ("kinds", "repos")


class BadReport(ValueError):
    """A file that is not an ``objstore-migrate`` report (the message names it)."""


@dataclass(frozen=True)
class ShardReport:
    """One report: its file, which shard it covered (``(0, 1)`` for a run without
    ``--shard``; None when the run stopped before it knew), and its data."""

    path: str
    shard: tuple[int, int] | None
    data: dict[str, Any]

    @property
    def name(self) -> str:
        shard = f"shard {self.shard[0]}/{self.shard[1]}" if self.shard else "a run"
        return f"{shard} ({self.path})"


def load_report(path: str | Path) -> ShardReport:
    """Read one report; BadReport naming the file when it cannot be one."""
    where = str(path)
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise BadReport(f"cannot read {where}: {exc.strerror or exc}") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BadReport(f"{where}: not JSON ({exc})") from None
    if not isinstance(data, dict) or not isinstance(data.get("exit_code"), int):
        raise BadReport(f"{where}: not an objstore-migrate report (no exit_code)")
    if "class_move" in data:
        raise BadReport(f"{where}: a storage-class move report; merge-reports reads the "
                        "reports of SRC DEST migrations")  # fmt: skip
    if "error" in data and "options" not in data:
        return ShardReport(where, None, data)  # stopped at start: the shard is unknown
    options = data.get("options")
    sides = [data.get(side) for side in SAME_RUN]
    if not isinstance(options, dict) or not all(isinstance(s, dict) for s in sides):
        raise BadReport(f"{where}: not an objstore-migrate report (no options, source, "
                        "destination)")  # fmt: skip
    text = options.get("shard")
    if text is None:
        return ShardReport(where, (0, 1), data)
    m = _SHARD_RE.match(text) if isinstance(text, str) else None
    if m is None or not 0 <= int(m.group(1)) < int(m.group(2)):
        raise BadReport(f"{where}: options.shard is {str(text)[:30]!r}, not K/N")
    return ShardReport(where, (int(m.group(1)), int(m.group(2))), data)


@dataclass
class MergedReports:
    """The verdict: ``ok`` when ``problems`` is empty.  Counts are summed over the
    reports of distinct shards."""

    shards: int
    present: list[int]
    problems: list[str] = field(default_factory=list)
    source: dict[str, str] = field(default_factory=dict)
    destination: dict[str, str] = field(default_factory=dict)
    plan: dict[str, int] = field(default_factory=dict)
    transfer: dict[str, int] = field(default_factory=dict)
    verify: dict[str, int] = field(default_factory=dict)
    verify_modes: Counter[str] = field(default_factory=Counter)

    @property
    def ok(self) -> bool:
        return not self.problems


def merge_reports(reports: list[ShardReport]) -> MergedReports:
    """Check the shard reports against each other and add up their counts."""
    known = [r for r in reports if r.shard is not None]
    counts = Counter(r.shard[1] for r in known if r.shard is not None)
    n = counts.most_common(1)[0][0] if counts else 1
    merged = MergedReports(shards=n, present=[])
    for total, names in ((merged.plan, PLAN_FIELDS), (merged.transfer, TRANSFER_FIELDS),
                         (merged.verify, VERIFY_FIELDS)):  # fmt: skip
        total.update(dict.fromkeys(names, 0))
    problems = merged.problems
    for r in reports:
        if r.shard is None:
            problems.append(f"{r.path}: the run stopped before it started "
                            f"(exit {r.data['exit_code']}): {r.data.get('error', '')}")  # fmt: skip
    by_shard: dict[int, list[ShardReport]] = {}
    for r in known:
        assert r.shard is not None
        if r.shard[1] != n:
            problems.append(f"{r.name}: a shard of {r.shard[1]}, the others are of {n}")
        else:
            by_shard.setdefault(r.shard[0], []).append(r)
    merged.present = sorted(by_shard)
    missing = [k for k in range(n) if k not in by_shard]
    if missing:
        problems.append(f"missing: {_shard_list(missing, n)}")
    for k, group in sorted(by_shard.items()):
        if len(group) > 1:
            problems.append(
                f"shard {k}/{n} given {len(group)} times: {', '.join(r.path for r in group)}"
            )
    first = [group[0] for _, group in sorted(by_shard.items())]
    if first:
        merged.source, merged.destination = first[0].data["source"], first[0].data["destination"]
    for r in first:
        problems.extend(_differences(r, first[0]))
        failure = _failure(r.data)
        if failure:
            problems.append(f"{r.name} failed: {failure}")
        _add(merged.plan, _plan_totals(r.data), PLAN_FIELDS)
        _add(merged.transfer, r.data.get("transfer"), TRANSFER_FIELDS)
        verify = r.data.get("verify")
        _add(merged.verify, verify, VERIFY_FIELDS)
        merged.verify_modes[verify.get("mode", "?") if isinstance(verify, dict) else "none"] += 1
    return merged


def _shard_list(ks: list[int], n: int) -> str:
    shown = ", ".join(f"{k}/{n}" for k in ks[:20])
    more = f" and {len(ks) - 20} more" if len(ks) > 20 else ""
    return f"{len(ks)} of {n} shards ({shown}{more})"


def _differences(r: ShardReport, ref: ShardReport) -> list[str]:
    """What makes ``r`` a run of another migration than ``ref``."""
    out = []
    for side in SAME_RUN:
        if r.data[side] != ref.data[side]:
            out.append(
                f"{r.name}: another {side} ({_locations(r.data[side])}) than "
                f"{ref.path} ({_locations(ref.data[side])})"
            )
    for name in SAME_OPTIONS:
        if r.data["options"].get(name) != ref.data["options"].get(name):
            out.append(f"{r.name}: other {name} than {ref.path}")
    return out


def _locations(side: dict[str, Any]) -> str:
    return ", ".join(f"{kind} {where}" for kind, where in side.items())


def _failure(data: dict[str, Any]) -> str:
    """Why a report is not a success ('' when it is one)."""
    options = data["options"]
    if options.get("dry_run"):
        return "a dry run (nothing was copied or verified)"
    if data.get("exit_code") == 0 and data.get("ok") is True:
        return ""
    why = [f"exit {data.get('exit_code')}"]
    if data.get("interrupted"):
        why.append("interrupted")
    if data.get("fatal"):
        why.append(f"stopped early: {data['fatal']}")
    transfer = data.get("transfer") or {}
    if transfer.get("failed"):
        why.append(f"{transfer['failed']} objects failed to copy")
    verify = data.get("verify") or {}
    bad = [f"{verify[k]} {k}" for k in ("missing", "mismatched", "corrupt", "failed") if
           verify.get(k)]  # fmt: skip
    if bad:
        why.append(f"verify: {', '.join(bad)}")
    return "; ".join(why)


def _plan_totals(data: dict[str, Any]) -> dict[str, int]:
    plan = data.get("plan") or {}
    totals: dict[str, int] = {}
    for kp in (plan.get("kinds") or {}).values():
        _add(totals, kp, PLAN_FIELDS)
    return totals


def _add(total: dict[str, int], part: object, names: tuple[str, ...]) -> None:
    for name in names:
        value = part.get(name) if isinstance(part, dict) else None
        total[name] = total.get(name, 0) + (value if isinstance(value, int) else 0)
