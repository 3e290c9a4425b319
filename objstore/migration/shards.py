"""Shards: which libraries shard K of N migrates, chosen by repo-id prefix.

Repo ids are uuid4s, so their leading hex digits are uniformly random.  Shard
``K`` of ``N`` takes the repo ids whose first ``L`` hex digits, read as a number
``x``, satisfy ``K*16^L // N <= x < (K+1)*16^L // N``, where ``L`` is the
smallest number of digits with ``16^L >= 256*N`` (``N <= 4096``, so ``L <= 5``):
the shares of the id space differ by at most one part in 256.  That range is
written as the fewest hex prefixes (``0/1`` is ``[""]``, ``3/16`` is ``["3"]``,
``1/4`` is ``["4", "5", "6", "7"]``), sorted and disjoint, so listing them one
after the other is one sorted stream, and the N shards together list every
object exactly once.  Drivers list a prefix natively (S3 ``prefix=``, fs: only
the matching library directories); the CLI, plan files and the engine all use
this one split.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

MAX_SHARDS = 4096
"""The largest N of ``--shard K/N``."""

_SPREAD = 256
"""16^L >= _SPREAD * N: each shard's share of the id space is exact to 1/_SPREAD."""


def _values(digits: int) -> int:
    """How many ``digits``-digit hex numbers there are (16^digits)."""
    return 1 << (4 * digits)


def prefix_digits(n: int) -> int:
    """``L``: the hex digits that decide the shard of a library when there are ``n``."""
    if not 1 <= n <= MAX_SHARDS:
        raise ValueError(f"the number of shards must be from 1 to {MAX_SHARDS}, not {n}")
    digits = 1
    while _values(digits) < _SPREAD * n:
        digits += 1
    return digits


def _bounds(k: int, n: int) -> tuple[int, int, int]:
    """``(lo, hi, L)``: shard ``k`` of ``n`` is the ``L``-digit values ``lo <= x < hi``."""
    digits = prefix_digits(n)
    if not 0 <= k < n:
        raise ValueError(f"shard {k}/{n}: need 0 <= K < N")
    space = _values(digits)
    return k * space // n, (k + 1) * space // n, digits


@lru_cache(maxsize=64)
def shard_prefixes(k: int, n: int) -> tuple[str, ...]:
    """The sorted, disjoint hex prefixes of the repo ids in shard ``k`` of ``n``:
    the fewest aligned blocks covering its range (at most 15 per digit on each side)."""
    lo, hi, digits = _bounds(k, n)
    out: list[str] = []
    while lo < hi:
        level = digits  # the largest aligned block starting at lo that fits in [lo, hi)
        while level and (lo % _values(level) or lo + _values(level) > hi):
            level -= 1
        width = digits - level
        out.append(format(lo // _values(level), f"0{width}x") if width else "")
        lo += _values(level)
    return tuple(out)


def shard_of(repo_id: str, n: int) -> int:
    """The shard (``0 <= k < n``) holding the library ``repo_id`` (a lowercase uuid):
    the same on every machine, for fs, S3 and plan files alike."""
    digits = prefix_digits(n)
    x = int(repo_id[:digits], 16)
    return ((x + 1) * n - 1) // _values(digits)


def in_shard(repo_id: str, shard: tuple[int, int] | None) -> bool:
    """Whether shard ``(k, n)`` holds the library ``repo_id`` (any, with no shard)."""
    return shard is None or shard_of(repo_id, shard[1]) == shard[0]


def shard_report_path(path: Path, shard: tuple[int, int]) -> Path:
    """Where shard ``K`` of ``N`` writes its report: ``run.json`` becomes
    ``run.shard-K-of-N.json`` (so shards sharing a directory never overwrite each
    other; ``objstore-migrate merge-reports`` reads them back)."""
    k, n = shard
    tag = f"shard-{k}-of-{n}"
    if path.suffix:
        return path.with_name(f"{path.stem}.{tag}{path.suffix}")
    return path.with_name(f"{path.name}.{tag}")
