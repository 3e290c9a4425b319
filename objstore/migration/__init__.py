"""Planned, resumable, verified migration between backends (disk, S3, SSE-C S3),
including SSE-C key rotation in place.

    >>> result = objstore.migrate("/etc/seafile/seafile.conf", "/etc/seafile-s3/seafile.conf",
    ...                           verify="hash", bwlimit=50 * 2**20)
    >>> result.exit_code, result.transfer.copied

Step by step (each step returns a result value)::

    with Migration.open(src, dest, MigrateOptions(kinds=(ObjKind.BLOCK,))) as m:
        plan = m.plan()                 # Plan: per kind, objects/bytes to copy
        done = m.copy(plan)             # TransferResult(copied, skipped, failed, bytes)
        check = m.verify(plan, done)    # VerifyResult(missing, mismatched, corrupt, ...)

The command line is :mod:`objstore.cli` (``objstore-migrate``); plan files are
read by :func:`load_plan_file`.
"""

from __future__ import annotations

from .engine import Migration, MigrationInterrupted, migrate
from .join import merge_join
from .options import KIND_ORDER, MigrateOptions, parse_rate, parse_shard
from .planfile import PlanFile, load_plan_file
from .results import Failure, KindPlan, MigrationResult, Plan, TransferResult, VerifyResult
from .shards import shard_of, shard_prefixes

__all__ = [
    "KIND_ORDER",
    "Failure",
    "KindPlan",
    "MigrateOptions",
    "Migration",
    "MigrationInterrupted",
    "MigrationResult",
    "Plan",
    "PlanFile",
    "TransferResult",
    "VerifyResult",
    "load_plan_file",
    "merge_join",
    "migrate",
    "parse_rate",
    "parse_shard",
    "shard_of",
    "shard_prefixes",
]
