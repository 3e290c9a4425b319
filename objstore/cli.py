"""``objstore-migrate``: the command line of :mod:`objstore.migration`.

It only parses arguments, shows progress and prints the summary; every number
comes from the engine's result values.  Exit codes: 0 everything copied and
verified; 1 some objects failed (listed in the report); 2 usage or configuration
error; 130 interrupted (Ctrl-C or SIGTERM; in-flight uploads aborted, report
written).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import signal
import sys
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, NoReturn

from .config import StoreConfig, load_config
from .errors import AuthError, ConfigError, InvalidId, ObjStoreError
from .ids import ObjKind
from .migration.options import (
    SERVER_SIDE_COPY_MODES,
    VERIFY_MODES,
    MigrateOptions,
    parse_kinds,
    parse_rate,
    parse_shard,
    read_repo_list,
)
from .migration.planfile import PROGRESS_MODES, load_plan_file
from .migration.results import (
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_USAGE,
    MigrationResult,
    Plan,
)
from .migration.shards import shard_report_path
from .progress import LogProgress, NullProgress, Progress, TqdmProgress, format_bytes

PROG = "objstore-migrate"
log = logging.getLogger("objstore.cli")

EPILOG = """\
exit codes: 0 everything copied and verified; 1 some objects failed (see --report);
2 usage or configuration error; 130 interrupted.

examples:
  objstore-migrate /opt/seafile/conf /opt/seafile/conf-s3 --dry-run
  objstore-migrate /opt/seafile/conf /opt/seafile/conf-s3 --verify hash --bwlimit 50M
  objstore-migrate --plan migrations/disk-to-s3.toml --report disk-to-s3.json
  objstore-migrate old.conf new.conf --shard env:JOB_COMPLETION_INDEX/16 --report run.json
  objstore-migrate merge-reports run.shard-*-of-16.json
  objstore-migrate /opt/seafile/conf --from-class local --to-class s3 --repo ID --update-mapping

The environment (SEAF_SERVER_STORAGE_TYPE, S3_*, SEAFILE_DATA_DIR, ...) applies to
SRC as it does to Seafile; DEST is read as written.
"""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


def _rate_arg(text: str) -> int:
    try:
        return parse_rate(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _int_arg(lo: int, hi: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError("expected a whole number") from None
        if not lo <= value <= hi:
            raise argparse.ArgumentTypeError(f"must be between {lo} and {hi}")
        return value

    return parse


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog=PROG,
        description="Copy Seafile objects between backends (disk, S3, SSE-C S3): planned, "
        "resumable (a re-run copies only what is missing), verified.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("src", nargs="?", metavar="SRC", help="source seafile.conf (or its directory)")
    p.add_argument("dest", nargs="?", metavar="DEST", help="destination seafile.conf (or its dir)")
    p.add_argument("--plan", metavar="FILE", help="read SRC, DEST and options from a TOML plan")
    p.add_argument(
        "--data-dir",
        metavar="DIR",
        help="SRC's data dir, for fs backends without `dir` (a seafile.conf without backend "
        "sections keeps its objects under DIR/storage); default $SEAFILE_DATA_DIR",
    )
    p.add_argument(
        "--dest-data-dir",
        metavar="DIR",
        help="DEST's data dir, likewise (DEST is read without the environment, so "
        "$SEAFILE_DATA_DIR does not apply to it)",
    )
    p.add_argument(
        "--from-class",
        metavar="ID",
        help="storage classes: move libraries of this class (SRC is then the seafile.conf "
        "naming the classes; no DEST)",
    )
    p.add_argument("--to-class", metavar="ID", help="storage classes: to this class")
    p.add_argument(
        "--update-mapping",
        action="store_true",
        default=None,
        help="storage classes: after copying, a final delta copy and verify, then point "
        "the libraries at --to-class in RepoStorageId (the file server must not write to "
        "them during that last step)",
    )
    p.add_argument(
        "--kinds",
        action="append",
        metavar="LIST",
        help="object kinds, e.g. block,fs,commit (default all; always copied "
        "blocks, then fs, then commits)",
    )
    p.add_argument(
        "--repo", action="append", metavar="ID", dest="repos", help="only this library (repeatable)"
    )
    p.add_argument("--repos-from", metavar="FILE", help="only the libraries listed in FILE")
    p.add_argument(
        "--workers",
        type=_int_arg(1, 1024),
        metavar="N",
        help="concurrent objects (default: sized from the drivers)",
    )
    p.add_argument(
        "--dry-run",
        action="store_true",
        default=None,
        help="print the plan (objects and bytes to copy per kind); write nothing",
    )
    p.add_argument(
        "--verify",
        choices=VERIFY_MODES,
        help="after copying: none, size (default), or hash (re-read every "
        "destination object and check it against its id)",
    )
    p.add_argument(
        "--verify-only",
        action="store_true",
        default=None,
        help="compare source and destination; copy nothing",
    )
    p.add_argument(
        "--bwlimit", type=_rate_arg, metavar="RATE", help="bytes/s across all workers, e.g. 50M"
    )
    p.add_argument(
        "--shard",
        metavar="K/N",
        help="only the libraries in shard K of N (0 <= K < N <= 4096), chosen by repo-id "
        "prefix; K may come from the environment: env:JOB_COMPLETION_INDEX/N (a Kubernetes "
        "Indexed Job); --report run.json then writes run.shard-K-of-N.json "
        "(see: objstore-migrate merge-reports -h)",
    )
    p.add_argument(
        "--server-side-copy",
        choices=SERVER_SIDE_COPY_MODES,
        help="S3 to S3 on one endpoint: CopyObject (auto falls back to GET+PUT "
        "when the server refuses)",
    )
    p.add_argument(
        "--decrypt",
        action="store_true",
        default=None,
        help="read a [store_crypt] store and write plain objects",
    )
    p.add_argument(
        "--retries",
        type=_int_arg(0, 100),
        metavar="N",
        help="retries per S3 request, with back-off (default: each backend's max_retries, 5)",
    )
    p.add_argument(
        "--progress",
        choices=PROGRESS_MODES,
        help="auto (bar on a terminal, else log), bar, log, none",
    )
    p.add_argument("--report", metavar="FILE.json", help="write the JSON report here")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    return p


# --------------------------------------------------------------------------- settings


class _UsageError(Exception):
    pass


@dataclass
class _Settings:
    """One run, from the plan file and the command line."""

    src: str
    dest: str
    options: MigrateOptions
    progress: str
    report: Path | None
    classes: tuple[str, str, bool] | None
    """``(from_class, to_class, update_mapping)`` for a storage-class move."""
    data_dir: str | None = None
    dest_data_dir: str | None = None


def _settings(args: argparse.Namespace) -> _Settings:
    """Merge the plan file (if any) with the command line (which wins)."""
    values: dict[str, Any] = {}
    src, dest = args.src, args.dest
    if args.plan:
        if src or dest:
            raise _UsageError("give either SRC DEST or --plan, not both")
        plan = load_plan_file(args.plan)
        values.update(plan.values)
        src, dest = str(plan.source), plan.destination and str(plan.destination)
    for name in ("from_class", "to_class", "update_mapping"):
        if getattr(args, name) is not None:
            values[name] = getattr(args, name)
    classes = _class_move(values, src, dest)
    if classes is None and not (src and dest):
        raise _UsageError("SRC and DEST are required (or --plan FILE)")
    for name in (
        "kinds",
        "repos",
        "repos_from",
        "workers",
        "verify",
        "verify_only",
        "dry_run",
        "bwlimit",
        "shard",
        "server_side_copy",
        "decrypt",
        "retries",
        "progress",
        "report",
        "data_dir",
        "dest_data_dir",
    ):
        value = getattr(args, name)
        if value is not None:
            values[name] = value
    if isinstance(values.get("shard"), str):  # from the command line (plan files: parsed)
        try:
            values["shard"] = parse_shard(values["shard"])
        except ValueError as exc:
            raise ValueError(f"--shard: {exc}") from None
    repos: list[str] | None = None
    if "repos" in values:
        repos = [str(r).strip() for r in values["repos"]]
    if "repos_from" in values:
        path = values["repos_from"]
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"cannot read: {exc.strerror or exc}", file=str(path)) from None
        repos = (repos or []) + read_repo_list(text)
    if values.get("verify_only") and values.get("dry_run"):
        raise _UsageError("--dry-run and --verify-only exclude each other")
    kinds = parse_kinds(values["kinds"]) if "kinds" in values else None
    fields: dict[str, Any] = {
        name: values[name]
        for name in (
            "workers",
            "verify",
            "verify_only",
            "dry_run",
            "bwlimit",
            "shard",
            "server_side_copy",
            "decrypt",
            "retries",
        )
        if name in values
    }
    if kinds is not None:
        fields["kinds"] = kinds
    if repos is not None:
        fields["repos"] = frozenset(repos)
    options = MigrateOptions(**fields)
    report = values.get("report")
    if classes is not None and classes[2] and (options.verify_only or options.shard):
        raise _UsageError("--update-mapping cannot be combined with --verify-only or --shard")
    report_path = Path(report) if report else None
    if report_path is not None and options.shard is not None:
        report_path = shard_report_path(report_path, options.shard)
    return _Settings(
        src, dest, options, values.get("progress", "auto"), report_path,
        classes, values.get("data_dir"), values.get("dest_data_dir"),
    )  # fmt: skip


def _class_move(
    values: dict[str, Any], src: str | None, dest: str | None
) -> tuple[str, str, bool] | None:
    """``(from_class, to_class, update_mapping)`` when the run moves libraries between
    storage classes (CONF only, no DEST), else None."""
    from_class, to_class = values.get("from_class"), values.get("to_class")
    if not (from_class or to_class):
        if values.get("update_mapping"):
            raise _UsageError("--update-mapping needs --from-class and --to-class")
        return None
    if not (from_class and to_class):
        raise _UsageError("--from-class and --to-class go together")
    if not src or dest:
        raise _UsageError("with --from-class/--to-class give one CONF (the seafile.conf "
                          "naming the storage classes), no DEST")  # fmt: skip
    return str(from_class), str(to_class), bool(values.get("update_mapping"))


# --------------------------------------------------------------------------- output


class _TqdmHandler(logging.Handler):
    """Log lines that do not tear the progress bars."""

    def emit(self, record: logging.LogRecord) -> None:
        from tqdm import tqdm

        try:
            tqdm.write(self.format(record), file=sys.stderr)
        except Exception:
            self.handleError(record)


def _setup_logging(mode: str, verbose: bool) -> Callable[[], None]:
    """Send objstore's logging to stderr; returns what undoes it (for in-process use)."""
    handler: logging.Handler = _TqdmHandler() if mode == "bar" else logging.StreamHandler()
    if mode == "log":
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    else:
        handler.setFormatter(logging.Formatter(f"{PROG}: %(levelname)s: %(message)s"))
    root = logging.getLogger("objstore")
    saved = (root.handlers[:], root.propagate, root.level)
    root.handlers[:] = [handler]
    root.propagate = False
    root.setLevel(logging.DEBUG if verbose else logging.INFO if mode == "log" else logging.WARNING)

    def restore() -> None:
        root.handlers[:], root.propagate, level = saved
        root.setLevel(level)

    return restore


def _progress(mode: str) -> Progress:
    if mode == "bar":
        return TqdmProgress()
    if mode == "log":
        return LogProgress()
    return NullProgress()


def _rate(count: float, seconds: float) -> float:
    return count / seconds if seconds > 0 else 0.0


def origins(src: StoreConfig, dest: StoreConfig) -> dict[str, dict[str, str]]:
    """Per side and kind, where the settings came from (also in the JSON report)."""
    return {
        label: {kind.value: cfg.origins.get(kind, cfg.source) for kind in ObjKind}
        for label, cfg in (("source", src), ("destination", dest))
    }


def print_origins(src: StoreConfig, dest: StoreConfig, out: IO[str]) -> None:
    """Where each kind's settings come from, for both sides (before anything runs)."""
    for label, kinds in origins(src, dest).items():
        config = src if label == "source" else dest
        out.write(f"{label} {config.source}:\n")
        for kind, origin in kinds.items():
            out.write(f"  {kind:<8} {origin}\n")
    out.flush()


def _encryption(fingerprint: str | None) -> str:
    if fingerprint is None:
        return ""
    return f" (SSE-C, key fingerprint {fingerprint.partition(':')[2]})"


def print_locations(plan: Plan, out: IO[str]) -> None:
    """Per kind: where it is read from and written to, and with which SSE-C key
    (a fingerprint, never the key)."""
    for kp in plan.kinds.values():
        out.write(f"  {kp.kind:<8} {kp.source}{_encryption(kp.source_encryption)}\n")
        out.write(f"  {'':<8} -> {kp.destination}{_encryption(kp.destination_encryption)}\n")


def print_plan(plan: Plan, out: IO[str]) -> None:
    """The plan, before anything is copied: locations, then per kind what the
    source holds and what the destination lacks."""
    out.write("plan:\n")
    print_locations(plan, out)
    out.write(
        f"{'kind':<8} {'method':<17} {'objects':>9} {'bytes':>10} {'present':>9} "
        f"{'to copy':>9} {'to copy bytes':>14} {'extra':>7}\n"
    )
    for kp in plan.kinds.values():
        out.write(
            f"{kp.kind:<8} {kp.method:<17} {kp.objects:>9} {format_bytes(kp.bytes):>10} "
            f"{kp.present:>9} {kp.to_copy:>9} {format_bytes(kp.to_copy_bytes):>14} "
            f"{kp.extra:>7}\n"
        )
    if any(kp.method == "rotate in place" for kp in plan.kinds.values()):
        out.write(
            "(rotate in place: every object is checked under the new key; "
            "'to copy' is an upper bound)\n"
        )
    if not plan.objects:
        out.write("warning: the source has no objects in scope: nothing to copy\n")
    out.flush()


_VERIFY_MEANS = {
    "size": "every object present at the destination with the source's size",
    "hash": "every destination object re-read and checked against its id",
}


def print_summary(result: MigrationResult, out: IO[str]) -> None:
    """The human summary: locations, copy and verify numbers, failures, what is
    left after an interruption, the verdict (and which verify mode it rests on)."""
    w = out.write
    plan = result.plan
    if plan is not None and plan.kinds:
        w("locations:\n")
        print_locations(plan, out)
    if result.options.get("dry_run"):
        w("dry run: nothing was written\n")
    t = result.transfer
    if t is not None:
        ss = f" ({t.server_side} server-side)" if t.server_side else ""
        w(
            f"copy: {t.copied} copied{ss}, {t.skipped} already there, {t.failed} failed"
            f"{f', {t.vanished} vanished from the source' if t.vanished else ''}; "
            f"{format_bytes(t.bytes)} in {t.seconds:.1f}s "
            f"({_rate(t.copied, t.seconds):.0f} obj/s, "
            f"{format_bytes(_rate(t.bytes, t.seconds))}/s)\n"
        )
    v = result.verify
    if v is not None:
        repaired = f" ({v.repaired} copied again and then right)" if v.repaired else ""
        w(
            f"verify ({v.mode}): {v.checked} checked, {v.ok} ok{repaired}, {v.missing} missing, "
            f"{v.mismatched} wrong size, {v.corrupt} corrupt, {v.failed} unreadable"
            f"{f', {v.extra} only in the destination' if v.extra else ''}\n"
        )
    failures = (t.failures if t is not None else []) + (v.failures if v is not None else [])
    for f in failures[:20]:
        w(f"  FAILED {f.phase} {f.kind} {f.repo_id}/{f.obj_id}: {f.reason}\n")
    total = (t.failed if t is not None else 0) + (
        v.missing + v.mismatched + v.corrupt + v.failed if v is not None else 0
    )
    if total > min(len(failures), 20):
        w(f"  ... {total - min(len(failures), 20)} more (all are in the report)\n")
    for warning in result.warnings:
        w(f"warning: {warning}\n")
    if result.fatal:
        w(f"stopped early: {result.fatal}\n")
    if result.interrupted:
        to_copy = plan.to_copy if plan is not None else 0
        copied = t.copied if t is not None else 0
        w(
            f"interrupted: {copied} of {to_copy} objects to copy were copied; run the same "
            "command again to copy the rest (what is already there is skipped, nothing is "
            "copied twice)\n"
        )
    mode = result.options.get("verify", "none")
    if not result.options.get("dry_run") and result.verify is not None:
        w(f"verified by {mode}: {_VERIFY_MEANS.get(mode, mode)}\n")
    elif not result.options.get("dry_run") and mode == "none":
        w("not verified (--verify none)\n")
    state = "INTERRUPTED" if result.interrupted else "OK" if result.ok else "FAILED"
    w(f"result: {state} (exit {result.exit_code}) in {result.seconds:.1f}s\n")


def write_report(path: Path, data: dict[str, Any]) -> None:
    """Write the JSON report atomically (temp file + rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(data, fh, indent=2, sort_keys=False)
            fh.write("\n")
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _error(message: str, report: Path | None, code: int = EXIT_USAGE) -> int:
    sys.stderr.write(f"{PROG}: error: {' '.join(message.split())}\n")
    if report is not None:
        with contextlib.suppress(OSError):
            write_report(report, {"ok": False, "exit_code": code, "error": message})
    return code


def _sigterm(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt()


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["merge-reports"]:
        from .cli_merge import main as merge_reports

        return merge_reports(argv[1:])
    parser = build_parser()
    args = parser.parse_args(argv)
    report: Path | None = Path(args.report) if args.report else None
    try:
        run = _settings(args)
    except _UsageError as exc:
        parser.error(str(exc))
    except (ConfigError, ValueError, InvalidId) as exc:
        return _error(str(exc), report)
    report = run.report
    if report is not None:
        problem = _unwritable(report)
        if problem:  # found now, not after hours of copying
            return _error(f"cannot write the report {report}: {problem}", None)
    mode = run.progress
    if mode == "auto":
        mode = "bar" if sys.stderr.isatty() else "log"
    restore_logging = _setup_logging(mode, args.verbose)
    old_sigterm: Any = None
    with contextlib.suppress(ValueError):  # not in the main thread
        old_sigterm = signal.signal(signal.SIGTERM, _sigterm)
    try:
        if run.classes is not None:
            from .cli_classes import move_classes

            return move_classes(
                run.src, *run.classes, run.options, _progress(mode), report,
                data_dir=run.data_dir,
            )  # fmt: skip
        return _migrate(run, _progress(mode), report)
    finally:
        restore_logging()
        if old_sigterm is not None:
            signal.signal(signal.SIGTERM, old_sigterm)


def _unwritable(path: Path) -> str | None:
    """Why the report cannot be written at ``path`` (None: it can): checked by
    creating and removing a file beside it."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
        os.close(fd)
        os.unlink(tmp)
    except OSError as exc:
        return exc.strerror or str(exc)
    if path.is_dir():
        return "it is a directory"
    return None


def _migrate(run: _Settings, progress: Progress, report: Path | None) -> int:
    from .migration.engine import Migration, MigrationInterrupted

    options = run.options
    try:
        # SRC is the running deployment: the environment applies to it, as it does
        # to Seafile; DEST is read as written.
        src_cfg = load_config(run.src, data_dir=run.data_dir)
        dst_cfg = load_config(run.dest, data_dir=run.dest_data_dir, use_env=False)
        print_origins(src_cfg, dst_cfg, sys.stdout)
        migration = Migration.open(src_cfg, dst_cfg, options, progress=progress)
    except (ConfigError, AuthError) as exc:
        return _error(str(exc), report)
    except ObjStoreError as exc:
        return _error(f"cannot open the stores: {exc}", report)
    except KeyboardInterrupt:
        return _error("interrupted", report, EXIT_INTERRUPTED)
    try:
        result = migration.run(on_plan=lambda plan: print_plan(plan, sys.stdout))
    except MigrationInterrupted as exc:
        result = exc.result
    except (ConfigError, AuthError) as exc:
        return _error(str(exc), report)
    except KeyboardInterrupt:
        return _error("interrupted", report, EXIT_INTERRUPTED)
    finally:
        migration.close()
    print_summary(result, sys.stdout)
    sys.stdout.flush()
    if report is not None:
        try:
            write_report(report, {**result.to_dict(), "origins": origins(src_cfg, dst_cfg)})
        except OSError as exc:
            sys.stderr.write(f"{PROG}: error: cannot write the report {report}: {exc}\n")
            return max(result.exit_code, EXIT_FAILED)
    return result.exit_code


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
