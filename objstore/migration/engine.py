"""The migration engine: plan -> copy -> verify between two sets of stores.

* **Plan**: per kind, a merge join of the two sorted listings (both streamed by
  background threads) counts what is missing or different.  No local state.
* **Copy**: the same join again feeds a fixed pool of worker threads through a
  bounded queue (a window of in-flight objects, plus a cap on the bytes held);
  each source object is checked against its id before it is written.  Kinds go
  blocks, then fs, then commits: a kind starts only when the previous one is done.
* **Verify**: ``size`` re-lists both sides (skipped when the run wrote nothing:
  the join that found nothing to do already proved it); ``hash`` re-reads every
  destination object and checks it against its id.

Same-bucket runs with different SSE-C keys are *rotations in place*: the listings
cannot tell old from new, so each object is asked (one HEAD with the new key)
whether it is already stored under the new key, and re-keyed if not.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import io
import logging
import os
import queue
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, BinaryIO, cast

from ..config import (
    FsConfig,
    S3Config,
    StoreConfig,
    backend_location,
    load_config,
    locations_overlap,
)
from ..drivers.base import Driver
from ..errors import (
    AuthError,
    ConfigError,
    CorruptObject,
    NotFound,
    ObjStoreError,
    ServerSideCopyUnsupported,
    StorageFull,
)
from ..formats import verify_object
from ..ids import ObjectInfo, ObjKind
from ..progress import NullProgress, Progress
from ..store import Stores, open_config
from .join import (
    EXTRA,
    MISMATCH,
    MISSING,
    PRESENT,
    Prefetch,
    SizeCheck,
    merge_join,
    same_size,
    scoped_listing,
)
from .limits import ByteBudget, Cancelled, TokenBucket
from .options import MiB, MigrateOptions
from .results import (
    MAX_FAILURES_KEPT,
    Failure,
    KindPlan,
    MigrationResult,
    Plan,
    TransferResult,
    VerifyResult,
)
from .shards import in_shard

if TYPE_CHECKING:
    from ..crypt import StoreCrypt

log = logging.getLogger("objstore.migration")

STREAM_MIN = 16 * MiB
"""Blocks larger than this are streamed source -> destination (hashed on the way)."""
BUDGETED = 1 * MiB
"""Objects larger than this take their size from the in-flight byte budget (smaller
ones are bounded by the window: at most 2 x workers x 1 MiB)."""
MAX_DEFAULT_WORKERS = 64
_FS_CONNECTIONS = 16
_LOGGED_FAILURES = 10


class MigrationInterrupted(KeyboardInterrupt):
    """Ctrl-C (or SIGTERM turned into KeyboardInterrupt) stopped the run; in-flight
    work was cancelled cleanly and ``result`` holds what was done."""

    def __init__(self, result: MigrationResult) -> None:
        super().__init__("migration interrupted")
        self.result = result


_STATE_OUTCOME = {MISSING: "missing", MISMATCH: "mismatched"}
_FOUND = {"missing": "missing in the destination", "mismatched": "size differs in the destination"}


class _Fatal(ObjStoreError):
    """An error that makes every further object fail the same way."""


# --------------------------------------------------------------------------- sizes


def _decrypted_size_fits(enc: int, plain: int) -> bool:
    """AES-CBC with PKCS#7 adds 1 to 16 bytes."""
    return enc % 16 == 0 and enc - 16 <= plain < enc


def _encrypted_size_fits(plain: int, enc: int) -> bool:
    return _decrypted_size_fits(enc, plain)


# --------------------------------------------------------------------------- lanes


@dataclass
class _Lane:
    """How one kind moves: drivers, method, encryption, size rule."""

    kind: ObjKind
    src: Driver
    dst: Driver
    src_conf: str
    dst_conf: str
    rotate: bool
    server_side: bool
    src_crypt: StoreCrypt | None
    dst_crypt: StoreCrypt | None
    passthrough: bool  # write the stored source bytes unchanged
    sizes_match: SizeCheck
    etags: bool  # both listings' ETags are MD5s of the same bytes: compare them too
    put_stream_min: int

    @property
    def method(self) -> str:
        if self.rotate:
            return "rotate in place"
        return "server-side copy" if self.server_side else "copy"

    @property
    def name(self) -> str:
        return self.kind.value


# --------------------------------------------------------------------------- worker pool


class _Pool:
    """``n`` threads handling objects, at most ``2n`` in flight (a window of slots),
    and objects over :data:`BUDGETED` also take their size from the shared byte
    budget.  Threads are made once per step.

    The per-object path uses only ``queue.SimpleQueue`` (C, no Python-level
    condition variables).  Waiting for the workers uses a condition on the count
    of live ones, never ``Thread.join``: a join interrupted by Ctrl-C marks a
    still-running thread as finished (CPython bpo-45274), and the clients would
    be closed under its feet."""

    def __init__(
        self,
        n: int,
        handle: Callable[[ObjectInfo, str], None],
        cancel: threading.Event,
        budget: ByteBudget,
        name: str,
    ) -> None:
        self._handle = handle
        self._cancel = cancel
        self._budget = budget
        self._work_queue: queue.SimpleQueue[tuple[ObjectInfo, int, str] | None] = (
            queue.SimpleQueue()
        )
        self._slots: queue.SimpleQueue[None] = queue.SimpleQueue()
        for _ in range(2 * n):
            self._slots.put(None)
        self._n = n
        self._alive = n
        self._cond = threading.Condition()
        for i in range(n):
            threading.Thread(target=self._work, name=f"objstore-{name}-{i}", daemon=True).start()

    def submit(self, info: ObjectInfo, note: str = "") -> None:
        """Queue one object (``note`` goes to the handler with it); blocks while the
        window (or, for a large object, the byte budget) is full."""
        self._slots.get()
        try:
            held = self._budget.acquire(info.size) if info.size > BUDGETED else 0
        except BaseException:
            self._slots.put(None)
            raise
        self._work_queue.put((info, held, note))

    def _work(self) -> None:
        try:
            while True:
                item = self._work_queue.get()
                if item is None:
                    return
                info, held, note = item
                try:
                    if not self._cancel.is_set():
                        self._handle(info, note)
                except Cancelled:
                    pass
                except BaseException:  # handle() records its own errors; this is a bug
                    log.exception("unexpected error in a migration worker")
                finally:
                    if held:
                        self._budget.release(held)
                    self._slots.put(None)
        finally:
            with self._cond:
                self._alive -= 1
                self._cond.notify_all()

    def _wait(self, timeout: float | None = None) -> bool:
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while self._alive:
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return False
                self._cond.wait(left)
        return True

    def finish(self) -> None:
        """Wait until every queued object is handled."""
        for _ in range(self._n):
            self._work_queue.put(None)
        self._wait()

    def abort(self, timeout: float = 30.0) -> None:
        """Cancel: drop queued objects, let running ones stop (streams raise
        Cancelled, so multipart uploads are aborted), wait up to ``timeout``."""
        self._cancel.set()
        while True:
            try:
                item = self._work_queue.get_nowait()
            except queue.Empty:
                break
            if item is not None:
                if item[1]:
                    self._budget.release(item[1])
                self._slots.put(None)
        for _ in range(self._n):
            self._work_queue.put(None)
        if not self._wait(timeout):
            log.warning("%d migration workers did not stop within %.0fs", self._alive, timeout)


class _Ticker:
    """Calls ``progress.update`` a few times per second from one thread."""

    def __init__(self, progress: Progress, read: Callable[[], tuple[int, int]]) -> None:
        self._progress = progress
        self._read = read
        self._stop = threading.Event()
        self._stopped = threading.Event()
        if isinstance(progress, NullProgress):
            self._stopped.set()
        else:
            threading.Thread(target=self._run, name="objstore-progress", daemon=True).start()

    def _run(self) -> None:
        try:
            while not self._stop.wait(0.25):
                self._progress.update(*self._read())
        finally:
            self._stopped.set()

    def stop(self) -> None:
        self._stop.set()
        self._stopped.wait(5)
        self._progress.update(*self._read())


# --------------------------------------------------------------------------- streams


class _GuardedReader:
    """A source stream for ``put_stream``: stops with Cancelled when the run is
    cancelled (so a multipart upload is aborted), spends bandwidth tokens, and for
    blocks checks the sha1 at EOF (CorruptObject before the upload completes)."""

    def __init__(
        self,
        inner: BinaryIO,
        cancel: threading.Event,
        bucket: TokenBucket | None,
        expect_sha1: str | None = None,
    ) -> None:
        self._inner = inner
        self._cancel = cancel
        self._bucket = bucket
        self._expect = expect_sha1
        self._sha1 = hashlib.sha1() if expect_sha1 else None
        self.count = 0

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        if self._cancel.is_set():
            raise Cancelled()
        data = self._inner.read(size if size is not None and size >= 0 else 8 * MiB)
        if data:
            self.count += len(data)
            if self._sha1 is not None:
                self._sha1.update(data)
            if self._bucket is not None:
                self._bucket.consume(len(data))
        elif self._sha1 is not None and size != 0:
            if self._sha1.hexdigest() != self._expect:
                raise CorruptObject(
                    f"block {self._expect}: sha1 of the content does not match the id"
                )
            self._sha1 = None
        return data

    def close(self) -> None:
        pass


# --------------------------------------------------------------------------- the engine


class Migration:
    """One migration between two opened sets of stores (``source`` -> ``dest``).

    Use :meth:`open` to open them from seafile.conf paths sized for the migration,
    or pass already opened :class:`Stores`.  :meth:`plan`, :meth:`copy` and
    :meth:`verify` are separate steps returning result values; :meth:`run` does
    all three as the options say.  The engine never prints; it reports through
    ``progress`` and logs to ``objstore.migration``.  Not reusable concurrently.
    """

    def __init__(
        self,
        source: Stores,
        dest: Stores,
        options: MigrateOptions | None = None,
        *,
        progress: Progress | None = None,
        workers: int | None = None,
        owns_stores: bool = False,
    ) -> None:
        self.source = source
        self.dest = dest
        self.options = options or MigrateOptions()
        self.progress: Progress = progress or NullProgress()
        self._owns = owns_stores
        self.workers = self.options.workers or workers or self._default_workers()
        self.warnings: list[str] = []
        self._warned: set[str] = set()
        self._lock = threading.Lock()
        self._cancel = threading.Event()
        self._fatal: str | None = None
        self._failures_logged = 0
        self._bucket = (
            TokenBucket(self.options.bwlimit, self._cancel) if self.options.bwlimit else None
        )
        self._budget = ByteBudget(self.options.max_inflight_bytes, self._cancel)
        self._plan = Plan()
        self._transfer: dict[str, TransferResult] = {}
        self._verify: dict[str, VerifyResult] = {}
        self._ssc_works: dict[str, bool] = {}
        self._ssc_lock = threading.Lock()
        src_crypt, dst_crypt = self._crypts()
        self.lanes = [self._lane(kind, src_crypt, dst_crypt) for kind in self.options.kinds]
        self._check_apart()
        self._seen_repos: set[str] = set()

    # ------------------------------------------------------------------ setup

    @classmethod
    def open(
        cls,
        source: str | os.PathLike[str] | StoreConfig,
        dest: str | os.PathLike[str] | StoreConfig,
        options: MigrateOptions | None = None,
        *,
        progress: Progress | None = None,
    ) -> Migration:
        """Open both seafile.conf files (or loaded configs) for a migration (the
        environment applies to the source only; the destination is read as written): caches
        are left out (a migration must not fill or read Redis/memcached), each S3
        client's connection pool is sized to the workers, and every bucket and
        directory is checked (ConfigError, BucketNotFound, AuthError)."""
        opts = options or MigrateOptions()
        src_cfg = source if isinstance(source, StoreConfig) else load_config(source)
        dst_cfg = dest if isinstance(dest, StoreConfig) else load_config(dest, use_env=False)
        workers = opts.workers or _default_workers_for(src_cfg, dst_cfg, opts.kinds)
        src = open_config(_migration_config(src_cfg, workers, opts.retries), check=True)
        try:
            dst = open_config(_migration_config(dst_cfg, workers, opts.retries), check=True)
        except BaseException:
            src.close()
            raise
        try:
            return cls(src, dst, opts, progress=progress, workers=workers, owns_stores=True)
        except BaseException:
            src.close()
            dst.close()
            raise

    def close(self) -> None:
        """Close the stores if :meth:`open` opened them."""
        if self._owns:
            self.source.close()
            self.dest.close()

    def __enter__(self) -> Migration:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _default_workers(self) -> int:
        caps = []
        for kind in self.options.kinds:
            for stores in (self.source, self.dest):
                caps.append(stores[kind].driver.properties.max_connections)
        return max(1, min([*caps, MAX_DEFAULT_WORKERS]))

    def _crypts(self) -> tuple[StoreCrypt | None, StoreCrypt | None]:
        src_path = self.source.config.store_crypt_key
        dst_path = self.dest.config.store_crypt_key
        if src_path or dst_path:
            from ..crypt import StoreCrypt  # cryptography only when needed

        src = StoreCrypt.load(src_path) if src_path else None
        dst = StoreCrypt.load(dst_path) if dst_path else None
        if self.options.decrypt and src is None:
            raise ConfigError(
                "--decrypt needs [store_crypt] key_path in the source configuration",
                file=self.source.config.source,
                section="store_crypt",
                option="key_path",
            )
        if src is not None and dst is None and not self.options.decrypt:
            raise ConfigError(
                "the source is encrypted with [store_crypt] but the destination is not: "
                "pass --decrypt to write plain objects, or give the destination the same "
                "[store_crypt]",
                file=self.dest.config.source,
                section="store_crypt",
            )
        if self.options.decrypt and dst is not None:
            raise ConfigError(
                "--decrypt writes plain objects but the destination has [store_crypt]",
                file=self.dest.config.source,
                section="store_crypt",
            )
        return src, dst

    def _lane(
        self, kind: ObjKind, src_crypt: StoreCrypt | None, dst_crypt: StoreCrypt | None
    ) -> _Lane:
        src = self.source[kind].driver
        dst = self.dest[kind].driver
        src_conf, dst_conf = self.source.config.source, self.dest.config.source
        rotate = False
        if src.identity == dst.identity:
            if src.encryption != dst.encryption:
                rotate = True
            else:
                raise ConfigError(
                    f"source and destination are the same location ({dst.identity}) with "
                    "the same encryption: nothing to migrate",
                    file=dst_conf,
                    section=kind.section,
                )
            if src_crypt is not None or dst_crypt is not None:
                raise ConfigError(
                    "rotating SSE-C keys in place is not supported together with [store_crypt]",
                    file=dst_conf,
                    section="store_crypt",
                )
        probe = b"objstore-migrate"
        same_crypt = (
            src_crypt is not None
            and dst_crypt is not None
            and src_crypt.encrypt(probe) == dst_crypt.encrypt(probe)
        )
        passthrough = (src_crypt is None and dst_crypt is None) or same_crypt
        sizes: SizeCheck = same_size
        if not passthrough:
            if src_crypt is not None and dst_crypt is None:
                sizes = _decrypted_size_fits
            elif src_crypt is None and dst_crypt is not None:
                sizes = _encrypted_size_fits
        mode = self.options.server_side_copy
        can_ssc = passthrough and dst.can_copy_from(src)
        if mode == "always" and not can_ssc:
            why = (
                "the objects are re-encrypted with [store_crypt]"
                if not passthrough
                else "source and destination are not S3 buckets on the same endpoint "
                "with the same credentials"
            )
            raise ConfigError(
                f"--server-side-copy always is impossible: {why}",
                file=dst_conf,
                section=kind.section,
            )
        threshold = dst.properties.multipart_threshold
        return _Lane(
            kind=kind,
            src=src,
            dst=dst,
            src_conf=src_conf,
            dst_conf=dst_conf,
            rotate=rotate,
            server_side=can_ssc and mode != "never",
            src_crypt=src_crypt,
            dst_crypt=dst_crypt,
            passthrough=passthrough,
            sizes_match=sizes,
            etags=passthrough and src.encryption is None and dst.encryption is None,
            put_stream_min=threshold if threshold is not None else 1 << 62,
        )

    def _check_apart(self) -> None:
        """No destination kind may overlap a location of the source (its objects
        would mix with what is being read), except one kind rotated in place."""
        src_cfg, dst_cfg = self.source.config, self.dest.config
        for lane in self.lanes:
            dst = dst_cfg.backends[lane.kind]
            for kind in ObjKind:
                src = src_cfg.backends[kind]
                if kind is lane.kind and lane.rotate:
                    continue
                if locations_overlap(src, kind, dst, lane.kind):
                    raise ConfigError(
                        f"the destination's {lane.kind.value} location "
                        f"({backend_location(dst, lane.kind)}) overlaps the source's "
                        f"{kind.value} location ({backend_location(src, kind)}): objects would "
                        "mix; only a key rotation in place (same bucket and key_prefix, another "
                        "sse_c_key) may read and write one location",
                        file=dst_cfg.source,
                        section=lane.kind.section,
                    )

    # ------------------------------------------------------------------ helpers

    def _listing(self, driver: Driver, name: str) -> Prefetch:
        opts = self.options
        return Prefetch(scoped_listing(driver, opts.repos, opts.shard), name=f"list-{name}")

    def warn_once(self, key: str, message: str) -> None:
        """Log a warning and keep it for the report, once per ``key``."""
        with self._lock:
            if key in self._warned:
                return
            self._warned.add(key)
            self.warnings.append(message)
        log.warning("%s", message)

    def _set_fatal(self, message: str) -> None:
        with self._lock:
            if self._fatal is None:
                self._fatal = message
        self._cancel.set()

    def _record_failure(self, tally: TransferResult | VerifyResult, failure: Failure) -> None:
        # caller holds self._lock
        if len(tally.failures) < MAX_FAILURES_KEPT:
            tally.failures.append(failure)
        if self._failures_logged < _LOGGED_FAILURES:
            self._failures_logged += 1
            log.warning(
                "%s %s %s/%s failed after %d attempt(s): %s",
                failure.phase,
                failure.kind,
                failure.repo_id,
                failure.obj_id,
                failure.attempts,
                failure.reason,
            )
            if self._failures_logged == _LOGGED_FAILURES:
                log.warning("further failures are only counted and listed in the report")

    def _attempt(
        self,
        fn: Callable[[], None],
        on_fail: Callable[[Exception, int], None],
        on_missing: Callable[[], None],
    ) -> None:
        """Run ``fn`` once (drivers retry each request under the one retry policy;
        nothing is retried on top); report an error through ``on_fail(error,
        attempts)``, a missing object through ``on_missing``.  Errors that would
        fail every object (credentials, missing bucket, full disk) also stop the run."""
        try:
            fn()
        except NotFound:
            on_missing()
        except (AuthError, ConfigError, StorageFull, _Fatal) as exc:
            self._set_fatal(str(exc))
            on_fail(exc, exc.attempts)
        except ObjStoreError as exc:
            on_fail(exc, exc.attempts)
        except Exception as exc:
            on_fail(exc, 1)

    # ------------------------------------------------------------------ plan

    def plan(self) -> Plan:
        """Count, per kind, what the destination lacks (one streaming pass over both
        listings).  Also checks, on the first objects met, that each side's SSE-C
        key or [store_crypt] key opens them (ConfigError otherwise)."""
        self._plan = Plan()
        self._seen_repos = set()
        # every listing starts now (bounded read-ahead), so their waits overlap
        listings = [
            (lane, self._listing(lane.src, "source"),
             None if lane.rotate else self._listing(lane.dst, "destination"))
            for lane in self.lanes
        ]  # fmt: skip
        try:
            for lane, src_it, dst_it in listings:
                self._plan.kinds[lane.kind] = self._plan_kind(lane, src_it, dst_it)
        finally:
            with contextlib.ExitStack() as cleanup:  # all closed, even if Ctrl-C lands
                for _, src_it, dst_it in listings:
                    cleanup.callback(src_it.close)
                    if dst_it is not None:
                        cleanup.callback(dst_it.close)
        return self._plan

    def _plan_kind(self, lane: _Lane, src_it: Prefetch, dst_it: Prefetch | None) -> KindPlan:
        kp = KindPlan(
            kind=lane.name,
            source=lane.src.identity,
            destination=lane.dst.identity,
            method=lane.method,
            source_encryption=lane.src.encryption,
            destination_encryption=lane.dst.encryption,
        )
        seen = self._seen_repos if self.options.repos is not None else None
        self._plan.kinds[lane.kind] = kp
        started = time.monotonic()
        self.progress.start("plan", lane.name, 0, 0)
        ticker = _Ticker(self.progress, lambda: (kp.objects, kp.bytes))
        complete = False
        try:
            if dst_it is None:
                for info in src_it:
                    kp.objects += 1
                    kp.bytes += info.size
                    if seen is not None:
                        seen.add(info.repo_id)
                kp.to_copy, kp.to_copy_bytes = kp.objects, kp.bytes
            else:
                src_items = self._key_check(lane, src_it, "source")
                dst_items = self._key_check(lane, dst_it, "destination")
                for state, info in merge_join(src_items, dst_items, lane.sizes_match, lane.etags):
                    if state == EXTRA:
                        kp.extra += 1
                        continue
                    kp.objects += 1
                    kp.bytes += info.size
                    if seen is not None:
                        seen.add(info.repo_id)
                    if state == PRESENT:
                        kp.present += 1
                        continue
                    if state == MISSING:
                        kp.missing += 1
                    else:
                        kp.mismatched += 1
                    kp.to_copy += 1
                    kp.to_copy_bytes += info.size
            complete = True
        finally:
            with contextlib.ExitStack() as cleanup:  # both run, even if Ctrl-C lands
                cleanup.callback(lambda: self.progress.end(complete))
                cleanup.callback(ticker.stop)
        kp.seconds = time.monotonic() - started
        return kp

    def _key_check(
        self, lane: _Lane, items: Iterator[ObjectInfo], side: str
    ) -> Iterator[ObjectInfo]:
        """Pass ``items`` through; on the first objects, check that the configured
        keys open them: up to three tries, one success is enough (a single corrupt
        object must not look like a wrong key).  ConfigError naming the option."""
        driver = lane.src if side == "source" else lane.dst
        crypt = lane.src_crypt if side == "source" else lane.dst_crypt
        failed: list[ObjectInfo] = []
        opened = False
        for info in items:
            opened = self._opens(lane, driver, crypt, info)
            yield info
            if opened:
                break
            failed.append(info)
            if len(failed) == 3:
                break
        if failed and not opened:
            raise ConfigError(
                f"the {side} key does not open the objects already stored in "
                f"{driver.identity} (checked {len(failed)}, e.g. "
                f"{failed[0].repo_id}/{failed[0].obj_id})",
                file=lane.src_conf if side == "source" else lane.dst_conf,
                section=lane.kind.section if crypt is None else "store_crypt",
                option="sse_c_key" if crypt is None else "key_path",
            )
        yield from items  # checked: the rest streams through untouched

    def _opens(
        self,
        lane: _Lane,
        driver: Driver,
        crypt: StoreCrypt | None,
        info: ObjectInfo,
    ) -> bool:
        try:
            if not driver.matches_encryption(info.repo_id, info.obj_id):
                return False
            if crypt is not None:
                data = crypt.decrypt(driver.get(info.repo_id, info.obj_id))
                verify_object(lane.kind, info.obj_id, data)
        except NotFound:
            return True  # deleted meanwhile: proves nothing either way
        except CorruptObject:
            return False
        return True

    # ------------------------------------------------------------------ copy

    def copy(self, plan: Plan | None = None) -> TransferResult:
        """Copy what the destination lacks, kind after kind.  With a ``plan``, kinds
        it found complete are not listed again, and progress shows its totals.
        Stops early (partial result, ``fatal`` set) on errors that would fail every
        object (credentials, missing bucket, full disk)."""
        self._transfer = {}
        for lane in self.lanes:
            if self._fatal is not None:
                break
            kp = plan.kinds.get(lane.kind) if plan is not None else None
            self._transfer[lane.name] = self._copy_kind(lane, kp)
        return TransferResult.combine(self._transfer)

    @property
    def fatal(self) -> str | None:
        """The error that stopped the run early, if any."""
        return self._fatal

    def _copy_kind(self, lane: _Lane, kp: KindPlan | None) -> TransferResult:
        tr = TransferResult()
        self._transfer[lane.name] = tr
        if kp is not None and not lane.rotate and kp.to_copy == 0:
            tr.skipped = kp.present
            return tr
        started = time.monotonic()
        handled = [0]
        lock = self._lock
        kind_name = lane.name

        def record_copied(nbytes: int, server_side: bool) -> None:
            with lock:
                tr.copied += 1
                tr.bytes += nbytes
                tr.server_side += server_side
                handled[0] += 1

        def handle(info: ObjectInfo, _: str) -> None:
            def once() -> None:
                if lane.rotate and lane.dst.matches_encryption(info.repo_id, info.obj_id):
                    with lock:
                        tr.skipped += 1
                        handled[0] += 1
                    return
                nbytes, server_side = self._transfer_one(lane, info)
                record_copied(nbytes, server_side)

            def failed(exc: Exception, n: int) -> None:
                with lock:
                    tr.failed += 1
                    handled[0] += 1
                    self._record_failure(
                        tr, Failure(kind_name, info.repo_id, info.obj_id, _reason(exc), n, "copy")
                    )

            def vanished() -> None:
                with lock:
                    tr.vanished += 1
                    handled[0] += 1

            self._attempt(once, failed, vanished)

        total = kp.to_copy if kp is not None else 0
        self.progress.start("copy", lane.name, total, kp.to_copy_bytes if kp else 0)
        ticker = _Ticker(self.progress, lambda: (handled[0], tr.bytes))
        pool = _Pool(self.workers, handle, self._cancel, self._budget, f"copy-{lane.name}")
        # a destination the plan found without any of the source's objects is not
        # listed again: everything is copied (a PUT of an object written meanwhile
        # writes the same bytes; ids are content hashes)
        none_there = kp is not None and not (kp.present or kp.mismatched)
        listings = self._pass(lane, pool, ticker, tr, started, destination=not none_there)
        with listings as (src_it, dst_it):
            if dst_it is None:
                for info in src_it:
                    if self._cancel.is_set():
                        break
                    pool.submit(info)
            else:
                for state, info in merge_join(src_it, dst_it, lane.sizes_match, lane.etags):
                    if state == PRESENT:
                        tr.skipped += 1
                    elif state != EXTRA:
                        if self._cancel.is_set():
                            break
                        pool.submit(info)
        return tr

    @contextlib.contextmanager
    def _pass(
        self,
        lane: _Lane,
        pool: _Pool | None,
        ticker: _Ticker,
        result: TransferResult | VerifyResult,
        started: float,
        *,
        destination: bool = True,
    ) -> Iterator[tuple[Iterator[ObjectInfo], Iterator[ObjectInfo] | None]]:
        """One pass over a lane: yields its listings (no destination listing when
        rotating in place or without ``destination``); afterwards the pool is
        finished (or aborted on cancel or error), the listings closed, the
        progress step ended and ``result.seconds`` set.  A cancellation caused by
        a fatal error ends the pass quietly (the fatal error is reported by the
        run)."""
        src_it = self._listing(lane.src, "source")
        dst_it = None if lane.rotate or not destination else self._listing(lane.dst, "destination")
        complete = False
        try:
            try:
                yield src_it, dst_it
            except Cancelled:
                if self._fatal is None:
                    raise
            if pool is not None:
                if self._cancel.is_set():
                    pool.abort()
                else:
                    pool.finish()
            complete = not self._cancel.is_set()
        except BaseException:
            if pool is not None:
                pool.abort()
            raise
        finally:
            # every step runs even when Ctrl-C lands inside an earlier one
            with contextlib.ExitStack() as cleanup:
                cleanup.callback(lambda: setattr(result, "seconds", time.monotonic() - started))
                cleanup.callback(lambda: self.progress.end(complete))
                cleanup.callback(ticker.stop)
                if dst_it is not None:
                    cleanup.callback(dst_it.close)
                cleanup.callback(src_it.close)

    def _transfer_one(self, lane: _Lane, info: ObjectInfo) -> tuple[int, bool]:
        """Copy one object; returns (bytes written, whether server-side)."""
        repo, obj, size = info.repo_id, info.obj_id, info.size
        bucket = self._bucket
        if lane.server_side:
            if bucket is not None:
                bucket.consume(size)
            if self._server_side_copy(lane, repo, obj):
                return size, True
            bucket = None  # this object's bytes were already counted
        if (
            lane.kind is ObjKind.BLOCK
            and lane.src_crypt is None
            and lane.passthrough
            and size > STREAM_MIN
        ):
            with lane.src.open_read(repo, obj) as fh:
                reader = _GuardedReader(fh, self._cancel, bucket, expect_sha1=obj)
                lane.dst.put_stream(repo, obj, cast(BinaryIO, reader))
            return reader.count, False
        data = lane.src.get(repo, obj)
        plain = data
        if lane.src_crypt is not None:
            plain = lane.src_crypt.decrypt(data, kind=lane.kind, obj_id=obj)
        verify_object(lane.kind, obj, plain)
        out = data
        if not lane.passthrough:
            out = lane.dst_crypt.encrypt(plain) if lane.dst_crypt is not None else plain
        if len(out) > lane.put_stream_min:
            # multipart: stream it so a cancel aborts the upload part-way
            reader = _GuardedReader(io.BytesIO(out), self._cancel, bucket)
            lane.dst.put_stream(repo, obj, cast(BinaryIO, reader))
        else:
            if bucket is not None:
                bucket.consume(len(out))
            if self._cancel.is_set():
                raise Cancelled()
            lane.dst.put(repo, obj, out)
        return len(out), False

    def _server_side_copy(self, lane: _Lane, repo: str, obj: str) -> bool:
        """CopyObject; False when the server refuses it (then GET+PUT).  The first
        copy to an endpoint goes alone, so a refusing server is asked once."""
        endpoint = lane.dst.endpoint
        if endpoint not in self._ssc_works:
            with self._ssc_lock:
                if endpoint not in self._ssc_works:
                    try:
                        lane.dst.copy_from(lane.src, repo, obj)
                    except ServerSideCopyUnsupported as exc:
                        self._ssc_works[endpoint] = False
                        self._server_side_refused(lane, exc)
                        return False
                    self._ssc_works[endpoint] = True
                    return True
        if not lane.server_side:
            return False
        try:
            return lane.dst.copy_from(lane.src, repo, obj)
        except ServerSideCopyUnsupported as exc:
            self._server_side_refused(lane, exc)
            return False

    def _server_side_refused(self, lane: _Lane, exc: Exception) -> None:
        """The server refused CopyObject: every kind on that endpoint copies by
        GET+PUT from now on (said once), unless ``always`` was asked for."""
        if self.options.server_side_copy == "always":
            raise _Fatal(f"{exc} (--server-side-copy always)")
        endpoint = lane.dst.endpoint
        for other in self.lanes:
            if other.dst.endpoint == endpoint:
                other.server_side = False
        self.warn_once(
            f"ssc-{endpoint}",
            f"{endpoint}: the server refused server-side copy ({exc}); "
            "copying by GET+PUT instead (the bytes go through this machine)",
        )

    # ------------------------------------------------------------------ verify

    def verify(
        self,
        plan: Plan | None = None,
        transfer: TransferResult | None = None,
        mode: str | None = None,
    ) -> VerifyResult:
        """Check the destination: ``size`` (present with the right size; for a
        rotation, stored under the new key) or ``hash`` (re-read, checked against
        its id).  With a ``transfer`` that wrote nothing to a kind, or a ``plan``
        and no transfer (verify-only), the listing join already done stands in
        for the ``size`` check of that kind."""
        mode = mode or self.options.verify
        if mode == "none":
            return VerifyResult(mode=mode)
        self._verify = {}
        for lane in self.lanes:
            kp = plan.kinds.get(lane.kind) if plan is not None else None
            tr = transfer.by_kind.get(lane.name) if transfer is not None else None
            self._verify[lane.name] = self._verify_kind(lane, mode, kp, tr)
        return VerifyResult.combine(mode, self._verify)

    def _verify_kind(
        self, lane: _Lane, mode: str, kp: KindPlan | None, tr: TransferResult | None
    ) -> VerifyResult:
        vr = VerifyResult(mode=mode)
        self._verify[lane.name] = vr
        if mode == "size" and tr is not None and not (tr.copied or tr.failed or tr.vanished):
            # The copy step wrote nothing: the join (or, for a rotation, the HEAD of
            # every object) that found nothing to do already checked every object.
            vr.checked = vr.ok = tr.skipped
            vr.extra = kp.extra if kp is not None else 0
            return vr
        if mode == "size" and tr is None and kp is not None and not lane.rotate:
            # verify-only: the plan's join is the size check
            vr.checked, vr.ok = kp.objects, kp.present
            vr.missing, vr.mismatched, vr.extra = kp.missing, kp.mismatched, kp.extra
            return vr
        started = time.monotonic()
        lock = self._lock
        kind_name = lane.name
        read = mode == "hash"
        repair = not self.options.verify_only
        crypt = lane.dst_crypt
        bucket = self._bucket  # re-reading counts against --bwlimit too
        read_bytes = [0]

        def note(info: ObjectInfo, outcome: str, reason: str = "", attempts: int = 1) -> None:
            with lock:
                vr.checked += 1
                if outcome == "ok":
                    vr.ok += 1
                    return
                setattr(vr, outcome, getattr(vr, outcome) + 1)
                self._record_failure(
                    vr, Failure(kind_name, info.repo_id, info.obj_id, reason, attempts, "verify")
                )

        def inspect(info: ObjectInfo, *, size: bool = False) -> tuple[str, str]:
            """(outcome, reason) for one destination object, as ``mode`` checks it
            (``size``: also its size, from a HEAD)."""
            repo, obj = info.repo_id, info.obj_id
            try:
                if lane.rotate and not lane.dst.matches_encryption(repo, obj):
                    return "missing", "not stored under the new key"
                if read:
                    if bucket is not None:
                        bucket.consume(info.size)
                    data = lane.dst.get(repo, obj)
                    with lock:
                        read_bytes[0] += len(data)
                    if crypt is not None:
                        data = crypt.decrypt(data, kind=lane.kind, obj_id=obj)
                    verify_object(lane.kind, obj, data)
                elif size and not lane.sizes_match(info.size, lane.dst.head(repo, obj).size):
                    return "mismatched", _FOUND["mismatched"]
            except CorruptObject as exc:
                return "corrupt", _reason(exc)
            except NotFound:
                return "missing", _FOUND["missing"]
            return "ok", ""

        def handle(info: ObjectInfo, found: str) -> None:
            """``found``: what the join already found wrong (missing, mismatched),
            or nothing (check the object).  Not verify-only: an object of the wrong
            size or content is copied again from the source and checked again (a
            missing one was already tried by the copy step, or is new since)."""

            def once() -> None:
                outcome, reason = (found, _FOUND[found]) if found else inspect(info)
                if outcome in ("ok", "missing") or not repair:
                    note(info, outcome, reason)
                    return
                try:
                    self._transfer_one(lane, info)
                except (AuthError, ConfigError, StorageFull, NotFound):
                    raise  # stops the run / the source object is gone
                except ObjStoreError as exc:
                    note(info, outcome, f"{reason}; copying it again failed: {_reason(exc)}",
                         exc.attempts)  # fmt: skip
                    return
                again, why = inspect(info, size=True)
                if again == "ok":
                    with lock:
                        vr.repaired += 1
                    note(info, "ok")
                else:
                    note(info, again, f"{reason}; copied again, still: {why}")

            def failed(exc: Exception, n: int) -> None:
                note(
                    info, "corrupt" if isinstance(exc, CorruptObject) else "failed", _reason(exc), n
                )

            def vanished() -> None:  # deleted from the source meanwhile (Seafile's GC)
                with lock:
                    vr.vanished += 1

            self._attempt(once, failed, vanished)

        needs_pool = read or lane.rotate
        total = kp.objects if kp is not None and needs_pool else 0
        total_bytes = kp.bytes if kp is not None and read else 0
        self.progress.start(f"verify-{mode}", lane.name, total, total_bytes)
        ticker = _Ticker(self.progress, lambda: (vr.checked, read_bytes[0]))
        pool = (
            _Pool(self.workers, handle, self._cancel, self._budget, f"verify-{lane.name}")
            if needs_pool or repair
            else None
        )
        with self._pass(lane, pool, ticker, vr, started) as (src_it, dst_it):
            if dst_it is None:
                assert pool is not None
                for info in src_it:
                    if self._cancel.is_set():
                        break
                    pool.submit(info)
            else:
                for state, info in merge_join(src_it, dst_it, lane.sizes_match, lane.etags):
                    if state == EXTRA:
                        vr.extra += 1
                    elif state == PRESENT and not needs_pool:
                        note(info, "ok")
                    elif pool is None or state == MISSING:
                        note(info, _STATE_OUTCOME[state], _FOUND[_STATE_OUTCOME[state]])
                    else:
                        if self._cancel.is_set():
                            break
                        pool.submit(info, "" if state == PRESENT else _STATE_OUTCOME[state])
        return vr

    # ------------------------------------------------------------------ run

    def _new_result(self) -> MigrationResult:
        opts = self.options
        return MigrationResult(
            source={lane.name: lane.src.identity for lane in self.lanes},
            destination={lane.name: lane.dst.identity for lane in self.lanes},
            options={
                "kinds": [k.value for k in opts.kinds],
                "repos": sorted(opts.repos) if opts.repos is not None else None,
                "shard": f"{opts.shard[0]}/{opts.shard[1]}" if opts.shard else None,
                "workers": self.workers,
                "verify": "none" if opts.dry_run else opts.verify,
                "verify_only": opts.verify_only,
                "dry_run": opts.dry_run,
                "bwlimit": opts.bwlimit,
                "server_side_copy": opts.server_side_copy,
                "decrypt": opts.decrypt,
                "retries": opts.retries,
                "methods": {lane.name: lane.method for lane in self.lanes},
            },
        )

    def run(self, on_plan: Callable[[Plan], None] | None = None) -> MigrationResult:
        """Plan, then (unless dry-run) copy and verify, or only verify (verify-only).
        ``on_plan`` sees the plan before anything is copied (the CLI prints it).

        A ``repos`` selection with a library that has no object in the source stops
        the run after planning (``fatal``, exit 1): an id that matches nothing is a
        mistake, not an empty success.  Returns the result; raises
        MigrationInterrupted (a KeyboardInterrupt carrying the partial result) on
        Ctrl-C, and ConfigError when a key does not open the stored objects."""
        result = self._new_result()
        started = time.monotonic()
        opts = self.options
        try:
            result.plan = self.plan()
            if opts.repos is not None:
                in_scope = {r for r in opts.repos if in_shard(r, opts.shard)}
                unmatched = sorted(in_scope - self._seen_repos)
                if unmatched:
                    kinds = ", ".join(lane.name for lane in self.lanes)
                    self._set_fatal(
                        f"no {kinds} object of library {', '.join(unmatched[:5])}"
                        f"{' ...' if len(unmatched) > 5 else ''} in the source (check the id): "
                        "nothing was copied"
                    )
                    return result
            if not result.plan.objects:
                self.warn_once("empty", "the source has no objects in scope: nothing to copy")
            if on_plan is not None:
                on_plan(result.plan)
            if opts.dry_run:
                return result
            if opts.verify_only:
                mode = "size" if opts.verify == "none" else opts.verify
                result.verify = self.verify(result.plan, mode=mode)
                return result
            result.transfer = self.copy(result.plan)
            if self._fatal is None and opts.verify != "none":
                result.verify = self.verify(result.plan, result.transfer)
            return result
        except (ConfigError, AuthError):
            raise
        except ObjStoreError as exc:
            # e.g. a listing that kept failing: nothing more can be done this run
            self._set_fatal(_reason(exc))
            if self._transfer and result.transfer is None:
                result.transfer = TransferResult.combine(self._transfer)
            if self._verify and result.verify is None:
                result.verify = VerifyResult.combine(opts.verify, self._verify)
            return result
        except (KeyboardInterrupt, Cancelled):
            result.interrupted = True
            result.plan = result.plan or self._plan
            if self._transfer and result.transfer is None:
                result.transfer = TransferResult.combine(self._transfer)
            if self._verify and result.verify is None:
                result.verify = VerifyResult.combine(opts.verify, self._verify)
            raise MigrationInterrupted(result) from None
        finally:
            result.fatal = self._fatal
            result.warnings = list(self.warnings)
            result.seconds = time.monotonic() - started


# --------------------------------------------------------------------------- config


def _reason(exc: BaseException) -> str:
    """A one-line, secret-free reason (our errors never carry secrets)."""
    if isinstance(exc, ObjStoreError):
        return str(exc) or type(exc).__name__
    return f"{type(exc).__name__}: {str(exc)[:300]}"


def _connections(backend: object) -> int:
    if isinstance(backend, S3Config):
        return backend.max_connections
    return _FS_CONNECTIONS


def _default_workers_for(src: StoreConfig, dst: StoreConfig, kinds: Iterable[ObjKind]) -> int:
    """The smallest connection limit of the drivers involved (capped)."""
    caps = [_connections(cfg.backends[k]) for cfg in (src, dst) for k in kinds]
    return max(1, min([*caps, MAX_DEFAULT_WORKERS]))


def _migration_config(cfg: StoreConfig, workers: int, retries: int | None) -> StoreConfig:
    """No cache; S3 connection pools big enough for every worker (+ multipart
    parts); ``retries`` (if given) replaces every S3 backend's ``max_retries``."""
    backends: dict[ObjKind, object] = {}
    for kind, backend in cfg.backends.items():
        if isinstance(backend, S3Config):
            need = workers + backend.multipart_concurrency
            if backend.max_connections < need:
                backend = dataclasses.replace(backend, max_connections=need)
            if retries is not None:
                backend = dataclasses.replace(backend, max_retries=retries)
        elif not isinstance(backend, FsConfig):  # pragma: no cover
            raise TypeError(type(backend).__name__)
        backends[kind] = backend
    return dataclasses.replace(cfg, cache=None, backends=backends)  # type: ignore[arg-type]


def migrate(
    source: str | os.PathLike[str] | StoreConfig,
    dest: str | os.PathLike[str] | StoreConfig,
    options: MigrateOptions | None = None,
    *,
    progress: Progress | None = None,
    **option_fields: Any,
) -> MigrationResult:
    """Migrate every selected object from ``source`` to ``dest`` (seafile.conf paths,
    or directories holding one, or loaded configs) and return the result.

    Options come as ``options`` or as keyword fields of :class:`MigrateOptions`
    (``kinds=``, ``verify="hash"``, ``bwlimit=``...).  Safe to re-run: only what the
    destination lacks is copied.  Raises ConfigError/AuthError for configuration
    problems and MigrationInterrupted on Ctrl-C; object failures are in the result.
    """
    if options is not None and option_fields:
        options = dataclasses.replace(options, **option_fields)
    elif options is None:
        options = MigrateOptions(**option_fields)
    with Migration.open(source, dest, options, progress=progress) as migration:
        return migration.run()
