"""What a migration does: :class:`MigrateOptions`, and the parsers the CLI and the
plan files share (so ``--bwlimit 50M`` and ``bwlimit = "50M"`` mean the same)."""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from ..ids import ObjKind, check_repo_id
from .shards import MAX_SHARDS

MiB = 1024 * 1024

KIND_ORDER: tuple[ObjKind, ...] = (ObjKind.BLOCK, ObjKind.FS, ObjKind.COMMIT)
"""Kinds are always copied in this order: a commit never reaches the destination
before the fs objects and blocks it references."""

VERIFY_MODES = ("none", "size", "hash")
SERVER_SIDE_COPY_MODES = ("auto", "always", "never")


@dataclass(frozen=True)
class MigrateOptions:
    """Options of one migration; every field has a safe default.

    ``kinds`` are reordered into :data:`KIND_ORDER`.  ``repos`` limits the run to
    these libraries; ``shard=(k, n)`` to the libraries whose repo ids start with
    one of the hex prefixes of shard ``k`` of ``n`` (see :mod:`.shards`).
    ``workers=None`` sizes the pool from the drivers.
    ``bwlimit`` is in bytes/s across all workers.  ``retries`` replaces the
    ``max_retries`` of every S3 backend for this run (None: as configured): the
    one retry policy applies per request, and objects are not retried on top.
    ``max_inflight_bytes`` bounds the object bytes held in memory at once.
    """

    kinds: tuple[ObjKind, ...] = KIND_ORDER
    repos: frozenset[str] | None = None
    shard: tuple[int, int] | None = None
    workers: int | None = None
    verify: str = "size"
    verify_only: bool = False
    dry_run: bool = False
    bwlimit: int | None = None
    server_side_copy: str = "auto"
    decrypt: bool = False
    retries: int | None = None
    max_inflight_bytes: int = 128 * MiB

    def __post_init__(self) -> None:
        kinds = tuple(k for k in KIND_ORDER if k in set(self.kinds))
        if not kinds:
            raise ValueError("no object kinds selected")
        object.__setattr__(self, "kinds", kinds)
        if self.repos is not None:
            object.__setattr__(self, "repos", frozenset(check_repo_id(r) for r in self.repos))
        if self.shard is not None:
            k, n = self.shard
            if not (isinstance(k, int) and isinstance(n, int) and 0 <= k < n <= MAX_SHARDS):
                raise ValueError(f"shard must be K/N with 0 <= K < N <= {MAX_SHARDS}, not {k}/{n}")
        if self.workers is not None and not 1 <= self.workers <= 1024:
            raise ValueError("workers must be between 1 and 1024")
        if self.verify not in VERIFY_MODES:
            raise ValueError(f"verify must be one of {', '.join(VERIFY_MODES)}")
        if self.server_side_copy not in SERVER_SIDE_COPY_MODES:
            raise ValueError(f"server_side_copy must be one of {', '.join(SERVER_SIDE_COPY_MODES)}")
        if self.bwlimit is not None and self.bwlimit <= 0:
            raise ValueError("bwlimit must be positive")
        if self.retries is not None and not 0 <= self.retries <= 100:
            raise ValueError("retries must be between 0 and 100")
        if self.max_inflight_bytes < MiB:
            raise ValueError("max_inflight_bytes must be at least 1 MiB")


_RATE_RE = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(i?b?)(?:/s)?\s*", re.IGNORECASE)


def parse_rate(text: str) -> int:
    """Bytes per second: ``50M``, ``1.5G``, ``800k``, ``1048576`` (powers of 1024)."""
    m = _RATE_RE.fullmatch(text)
    if not m:
        raise ValueError(f"bad rate {text[:30]!r}: expected e.g. 50M, 800k or 1048576 (bytes/s)")
    value = float(m.group(1)) * 1024 ** " kmgt".index(m.group(2).lower() or " ")
    if value < 1:
        raise ValueError("rate must be at least 1 byte/s")
    return int(value)


_SHARD_RE = re.compile(r"\s*(?:(\d+)|env:([A-Za-z_][A-Za-z0-9_]*))\s*/\s*(\d+)\s*")


def parse_shard(text: str, environ: Mapping[str, str] | None = None) -> tuple[int, int]:
    """``K/N`` with ``0 <= K < N <= 4096``, or ``env:VAR/N``: K read from the
    environment variable VAR (``environ``, default ``os.environ``), e.g. the
    ``JOB_COMPLETION_INDEX`` Kubernetes sets in each pod of an Indexed Job.
    ValueError naming the variable when it is unset or not such a K."""
    m = _SHARD_RE.fullmatch(text)
    if not m:
        raise ValueError(
            f"bad shard {text[:40]!r}: expected K/N (e.g. 0/4) or env:VAR/N "
            "(e.g. env:JOB_COMPLETION_INDEX/16)"
        )
    n = int(m.group(3))
    if not 1 <= n <= MAX_SHARDS:
        raise ValueError(f"bad shard {text.strip()}: N must be from 1 to {MAX_SHARDS}")
    var = m.group(2)
    if var is None:
        k = int(m.group(1))
    else:
        value = (os.environ if environ is None else environ).get(var)
        if value is None:
            raise ValueError(f"shard {text.strip()}: the environment variable {var} is not set")
        if not re.fullmatch(r"\d+", value.strip()):
            raise ValueError(
                f"shard {text.strip()}: the environment variable {var} is {value[:20]!r}, "
                "not a whole number"
            )
        k = int(value)
    if k >= n:
        source = "" if var is None else f" (K from the environment variable {var})"
        raise ValueError(f"bad shard {k}/{n}{source}: need 0 <= K < N")
    return k, n


def parse_kinds(items: Iterable[str]) -> tuple[ObjKind, ...]:
    """Kind names (``block``, ``fs``, ``commit``, plural accepted), comma-separated or not."""
    out: list[ObjKind] = []
    for item in items:
        for part in item.split(","):
            if part.strip():
                out.append(ObjKind.parse(part))
    if not out:
        raise ValueError("no object kinds given")
    return tuple(dict.fromkeys(out))


def read_repo_list(text: str) -> list[str]:
    """Repo ids, one per line (``#`` comments and blank lines ignored).  InvalidId on a bad one."""
    repos = []
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            repos.append(check_repo_id(line))
    return repos
