"""Result values of the plan, copy and verify steps.  The CLI, the tests and the
benchmarks all read these numbers; :meth:`MigrationResult.to_dict` is the JSON
report (counts, bytes, durations, failures, secret-free locations)."""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from typing import Any

from ..ids import ObjKind

MAX_FAILURES_KEPT = 10_000
"""Failures are counted exactly but only this many are kept (memory stays bounded)."""

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


@dataclass(frozen=True)
class Failure:
    """One object that could not be copied or verified, and why."""

    kind: str
    repo_id: str
    obj_id: str
    reason: str
    attempts: int = 1
    phase: str = "copy"


@dataclass
class KindPlan:
    """What one kind needs.  ``method`` is ``copy`` (read, check, write),
    ``server-side copy`` or ``rotate in place`` (same bucket, new SSE-C key: every
    object is checked with a HEAD, so ``to_copy`` is an upper bound)."""

    kind: str
    source: str
    destination: str
    method: str = "copy"
    source_encryption: str | None = None
    """``sse-c:<key fingerprint>`` (never the key), or None."""
    destination_encryption: str | None = None
    objects: int = 0
    bytes: int = 0
    present: int = 0
    missing: int = 0
    mismatched: int = 0
    extra: int = 0
    to_copy: int = 0
    to_copy_bytes: int = 0
    seconds: float = 0.0


@dataclass
class Plan:
    """The plan of every selected kind, in copy order."""

    kinds: dict[ObjKind, KindPlan] = field(default_factory=dict)

    @property
    def to_copy(self) -> int:
        return sum(p.to_copy for p in self.kinds.values())

    @property
    def to_copy_bytes(self) -> int:
        return sum(p.to_copy_bytes for p in self.kinds.values())

    @property
    def objects(self) -> int:
        return sum(p.objects for p in self.kinds.values())


@dataclass
class TransferResult:
    """What the copy step did.  ``copied + skipped + failed + vanished`` is the
    number of source objects it looked at; ``vanished`` ones were deleted from
    the source between listing and reading (e.g. by Seafile's GC)."""

    copied: int = 0
    skipped: int = 0
    failed: int = 0
    bytes: int = 0
    vanished: int = 0
    server_side: int = 0
    seconds: float = 0.0
    failures: list[Failure] = field(default_factory=list)
    by_kind: dict[str, TransferResult] = field(default_factory=dict)

    @classmethod
    def combine(cls, parts: dict[str, TransferResult]) -> TransferResult:
        total = cls(by_kind=dict(parts))
        for part in parts.values():
            total.copied += part.copied
            total.skipped += part.skipped
            total.failed += part.failed
            total.bytes += part.bytes
            total.vanished += part.vanished
            total.server_side += part.server_side
            total.seconds += part.seconds
            total.failures.extend(part.failures[: MAX_FAILURES_KEPT - len(total.failures)])
        return total


@dataclass
class VerifyResult:
    """What the verify step found.  ``missing`` includes objects not yet re-keyed
    (rotation); ``corrupt`` objects do not match their id; ``failed`` could not be
    read; ``extra`` exist only in the destination (not an error).  ``repaired``
    objects were found missing, of the wrong size or corrupt, copied again and
    then found right (counted in ``ok``); ``vanished`` ones were deleted from the
    source before they could be copied again (not an error)."""

    mode: str = "size"
    checked: int = 0
    ok: int = 0
    repaired: int = 0
    missing: int = 0
    mismatched: int = 0
    corrupt: int = 0
    failed: int = 0
    extra: int = 0
    vanished: int = 0
    seconds: float = 0.0
    failures: list[Failure] = field(default_factory=list)
    by_kind: dict[str, VerifyResult] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return not (self.missing or self.mismatched or self.corrupt or self.failed)

    @classmethod
    def combine(cls, mode: str, parts: dict[str, VerifyResult]) -> VerifyResult:
        total = cls(mode=mode, by_kind=dict(parts))
        for part in parts.values():
            for name in (
                "checked",
                "ok",
                "repaired",
                "missing",
                "mismatched",
                "corrupt",
                "failed",
                "extra",
                "vanished",
            ):
                setattr(total, name, getattr(total, name) + getattr(part, name))
            total.seconds += part.seconds
            total.failures.extend(part.failures[: MAX_FAILURES_KEPT - len(total.failures)])
        return total


@dataclass
class MigrationResult:
    """Everything one run did.  ``exit_code``: 0 when everything in scope is copied
    and verified, 1 when anything failed, 130 when interrupted."""

    source: dict[str, str]
    destination: dict[str, str]
    options: dict[str, Any]
    plan: Plan | None = None
    transfer: TransferResult | None = None
    verify: VerifyResult | None = None
    warnings: list[str] = field(default_factory=list)
    fatal: str | None = None
    interrupted: bool = False
    started: float = field(default_factory=time.time)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        if self.interrupted or self.fatal:
            return False
        if self.transfer is not None and self.transfer.failed:
            return False
        return self.verify is None or self.verify.passed

    @property
    def exit_code(self) -> int:
        if self.interrupted:
            return EXIT_INTERRUPTED
        return EXIT_OK if self.ok else EXIT_FAILED

    def to_dict(self) -> dict[str, Any]:
        """The JSON report: plain data, no secrets."""

        def conv(obj: Any) -> Any:
            if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
                return {f.name: conv(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
            if isinstance(obj, dict):
                return {(k.value if isinstance(k, ObjKind) else k): conv(v) for k, v in obj.items()}
            if isinstance(obj, (list, tuple)):
                return [conv(v) for v in obj]
            if isinstance(obj, float):
                return round(obj, 3)
            return obj

        out: dict[str, Any] = conv(self)
        out["exit_code"] = self.exit_code
        out["ok"] = self.ok
        out["started"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.started))
        return out
