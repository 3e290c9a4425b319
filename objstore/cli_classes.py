"""``objstore-migrate CONF --from-class A --to-class B [--repo ID ...] [--update-mapping]``:
the command line of :mod:`objstore.classmove`.

Exit codes as for any migration: 0 everything copied and verified (and, with
``--update-mapping``, the mapping updated); 1 some objects failed, or the mapping
could not be updated; 2 usage or configuration error (nothing moved); 130
interrupted.  The JSON report holds every run.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from .classes import StorageClasses, open_storage_classes
from .classmove import ClassMove
from .cli import _error, print_summary, write_report
from .config import backend_location
from .errors import ObjStoreError
from .ids import ObjKind
from .migration import MigrateOptions, MigrationInterrupted, MigrationResult
from .migration.results import EXIT_FAILED, EXIT_INTERRUPTED
from .progress import Progress

FINAL_STEP_WARNING = (
    "final step: the file server must not write to {n} until the mapping is updated "
    "(Seafile sets a library read-only for this step); a write made now to class {a!r} "
    "would not reach class {b!r}"
)


def _locations(classes: StorageClasses, storage_id: str) -> str:
    cfg = classes.config.classes[storage_id].config
    return ", ".join(f"{k.value} {backend_location(cfg.backends[k], k)}" for k in ObjKind)


def _run(move: ClassMove, options: MigrateOptions, progress: Progress) -> MigrationResult:
    try:
        return move.migrate(options, progress)
    except MigrationInterrupted as exc:
        return exc.result


def move_classes(
    conf: str,
    from_id: str,
    to_id: str,
    update_mapping: bool,
    options: MigrateOptions,
    progress: Progress,
    report: Path | None,
    *,
    data_dir: str | None = None,
) -> int:
    """Run a storage-class move as the CLI does (prints, writes the report); the exit code.
    ``data_dir``: where an SQLite ``seafile.db`` lives (default ``SEAFILE_DATA_DIR``)."""
    try:
        with open_storage_classes(conf, data_dir=data_dir) as classes:
            move = ClassMove(classes, from_id, to_id, options.repos)
            return _move(classes, move, update_mapping, options, progress, report)
    except ObjStoreError as exc:
        return _error(str(exc), report)
    except KeyboardInterrupt:
        return _error("interrupted", report, EXIT_INTERRUPTED)


def _move(
    classes: StorageClasses,
    move: ClassMove,
    update_mapping: bool,
    options: MigrateOptions,
    progress: Progress,
    report: Path | None,
) -> int:
    out = sys.stdout
    a, b = move.from_id, move.to_id
    libraries = f"{len(move.repos)} {'library' if len(move.repos) == 1 else 'libraries'}"
    out.write(f"class {a!r}: {_locations(classes, a)}\nclass {b!r}: {_locations(classes, b)}\n")
    out.write(f"moving {libraries} from class {a!r} to class {b!r}\n")
    summary: dict[str, Any] = {
        "conf": classes.config.source,
        "from_class": a,
        "to_class": b,
        "libraries": move.repos,
        "update_mapping": update_mapping,
        "mapping_updated": False,
    }
    runs: list[MigrationResult] = []
    code = 0
    if not move.repos:
        out.write(f"no library lives in class {a!r}: nothing to move\n")
    else:
        runs.append(_run(move, options, progress))
        print_summary(runs[-1], out)
        code = runs[-1].exit_code
    if move.repos and code == 0 and update_mapping and not options.dry_run:
        out.write(FINAL_STEP_WARNING.format(n=libraries, a=a, b=b) + "\n")
        out.flush()
        runs.append(_run(move, move.final_options(options), progress))
        print_summary(runs[-1], out)
        code = runs[-1].exit_code
        if code == 0:
            code = _update_mapping(move, summary, libraries)
    if summary["mapping_updated"]:
        out.write(
            f"next: objstore-admin remove-objs {classes.config.source} --class {a} --repo ID "
            f"--dry-run, then without --dry-run, frees class {a!r}\n"
        )
    elif code == 0 and move.repos and not options.dry_run:
        out.write(f"the libraries still live in class {a!r}: re-run with --update-mapping "
                  "to switch them\n")  # fmt: skip
    out.flush()
    if report is not None:
        data = {
            "class_move": summary,
            "runs": [r.to_dict() for r in runs],
            "exit_code": code,
            "ok": code == 0,
        }
        try:
            write_report(report, data)
        except OSError as exc:
            sys.stderr.write(f"objstore-migrate: error: cannot write the report {report}: {exc}\n")
            return max(code, EXIT_FAILED)
    return code


def _update_mapping(move: ClassMove, summary: dict[str, Any], libraries: str) -> int:
    try:
        move.update_mapping()
    except ObjStoreError as exc:
        sys.stdout.write(f"mapping NOT updated (re-run to finish): {exc}\n")
        summary["mapping_error"] = str(exc)
        return EXIT_FAILED
    summary["mapping_updated"] = True
    sys.stdout.write(
        f"mapping: RepoStorageId now points {libraries} at class {move.to_id!r} (one transaction)\n"
    )
    return 0
