"""``objstore-admin``: operator commands for a Seafile storage configuration.

    objstore-admin cache-flush [CONF] [--repo ID] [--kind KIND]
    objstore-admin cache-stats [CONF] [--kind KIND] [--json]
    objstore-admin remove-objs CONF --class ID --repo ID [--dry-run]

CONF is a seafile.conf or the directory holding it; without it the environment
form is read (``SEAF_SERVER_STORAGE_TYPE``, ``CACHE_PROVIDER``, ``REDIS_*``...).
Only this store's cache namespace is touched (see :mod:`objstore.cache`), never
the rest of a shared Redis or memcached.  Exit status: 0 done, 1 refused
(remove-objs: the class the library lives in lacks some of its objects), 2 error
(one line on stderr).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import NoReturn

from .cache import CachedDriver
from .config import StoreConfig, config_from_env, load_config
from .errors import ConfigError, ObjStoreError
from .ids import ObjKind, check_repo_id
from .store import build_driver

PROG = "objstore-admin"


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line and exit status 2."""

    def error(self, message: str) -> NoReturn:
        sys.stderr.write(f"{self.prog}: error: {message} (see --help)\n")
        raise SystemExit(2)


def _kind(text: str) -> ObjKind:
    try:
        return ObjKind.parse(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _load(args: argparse.Namespace) -> StoreConfig:
    if args.conf is None:
        return config_from_env()
    return load_config(args.conf, data_dir=args.data_dir)


@contextmanager
def _cached_drivers(args: argparse.Namespace) -> Iterator[tuple[str, list[CachedDriver]]]:
    """The cache-wrapped driver of each cached kind (``--kind`` narrows), closed after."""
    config = _load(args)
    if config.cache is None:
        raise ConfigError(
            "no [redis] or [memcached] section: no cache is configured", file=config.source
        )
    kinds = [k for k in ObjKind if k in config.cache.kinds]
    if args.kind is not None:
        kind: ObjKind = args.kind
        if kind not in kinds:
            raise ConfigError(
                f"{kind.value} objects are not cached (cached_kinds)", file=config.source
            )
        kinds = [kind]
    drivers: list[CachedDriver] = []
    try:
        for kind in kinds:
            driver = build_driver(config.backends[kind], kind, config.cache)
            if not isinstance(driver, CachedDriver):  # pragma: no cover - build_driver wraps
                driver.close()
                continue
            drivers.append(driver)
        name = drivers[0].remote.name if drivers else "cache"
        yield name, drivers
    finally:
        for driver in drivers:
            driver.close()


def cmd_cache_flush(args: argparse.Namespace) -> int:
    repo = None if args.repo is None else check_repo_id(args.repo)
    with _cached_drivers(args) as (name, drivers):
        counts = {d.kind.value: d.flush(repo) for d in drivers}
    what = f" of repo {repo}" if repo else ""
    detail = ", ".join(f"{k}: {n}" for k, n in counts.items())
    print(f"flushed {sum(counts.values())} cached objects{what} from {name} ({detail})")
    return 0


def cmd_cache_stats(args: argparse.Namespace) -> int:
    with _cached_drivers(args) as (name, drivers):
        kinds: dict[str, dict[str, object]] = {}
        for d in drivers:
            entries, size = d.cached_entries()
            kinds[d.kind.value] = {
                "identity": d.identity,
                "key_prefix": d.prefix,
                "entries": entries,
                "bytes": size,
            }
        try:
            servers = drivers[0].remote.server_stats() if drivers else {}
        except Exception as exc:
            raise ObjStoreError(
                f"{name}: cannot read server stats: {type(exc).__name__}: {str(exc)[:200]}"
            ) from None
    if args.json:
        print(json.dumps({"cache": name, "kinds": kinds, "servers": servers}, indent=2))
        return 0
    print(f"cache: {name}")
    for kind, info in kinds.items():
        print(
            f"  {kind:8} {info['entries']:>10} entries {info['bytes']:>14} bytes  "
            f"keys {info['key_prefix']}*  ({info['identity']})"
        )
    for server, figures in servers.items():
        shown = ", ".join(f"{k}={v}" for k, v in figures.items())
        print(f"  server {server}: {shown}")
    return 0


def cmd_remove_objs(args: argparse.Namespace) -> int:
    from .classes import open_storage_classes
    from .classmove import remove_objects

    with open_storage_classes(args.conf, data_dir=args.data_dir) as classes:
        result = remove_objects(classes, args.storage_class, args.repo, dry_run=args.dry_run)
    if result.refused:
        sys.stderr.write(f"{PROG}: refused: {result.refused}\n")
        return 1
    done = "would delete" if args.dry_run else "deleted"
    detail = ", ".join(f"{k}: {n}" for k, n in result.objects.items())
    print(
        f"library {result.repo_id} lives in class {result.lives_in!r}; hash verification "
        f"there: {result.verify.ok if result.verify else 0} objects ok"
    )
    print(
        f"{done} {sum(result.objects.values())} objects ({result.bytes} bytes) of library "
        f"{result.repo_id} from class {result.storage_id!r} ({detail})"
    )
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog=PROG, description="Operator commands for objstore / Seafile storage.")
    sub = parser.add_subparsers(
        dest="command", required=True, metavar="COMMAND", parser_class=_Parser
    )

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "conf",
            nargs="?",
            metavar="CONF",
            help="seafile.conf or its directory (default: the environment form)",
        )
        p.add_argument("--data-dir", help="Seafile data dir for fs backends without 'dir'")
        p.add_argument("--kind", type=_kind, help="only this kind (commit or fs)")
        p.add_argument("--traceback", action="store_true", help="show tracebacks of errors")

    flush = sub.add_parser(
        "cache-flush",
        help="delete this store's cached objects (one repo or all)",
        description="Delete this store's objects from Redis/memcached (found by scanning "
        "the cache for this store's key prefix; nothing else is touched).",
    )
    common(flush)
    flush.add_argument("--repo", metavar="ID", help="only this repo (library) id")
    flush.set_defaults(func=cmd_cache_flush)

    stats = sub.add_parser(
        "cache-stats",
        help="entries and bytes this store has in the cache, server figures",
        description="Count this store's cache entries (scans the cache) and show the "
        "cache servers' own figures (hits, misses, memory, evictions).",
    )
    common(stats)
    stats.add_argument("--json", action="store_true", help="machine-readable output")
    stats.set_defaults(func=cmd_cache_stats)

    remove = sub.add_parser(
        "remove-objs",
        help="delete a library's objects from a storage class it no longer lives in",
        description="Delete library ID's objects from storage class --class, after checking "
        "that RepoStorageId no longer points there and that a hash verification finds every "
        "one of them, intact, at the class the library lives in now.  Run with --dry-run first.",
    )
    remove.add_argument("conf", metavar="CONF", help="seafile.conf naming the storage classes")
    remove.add_argument("--class", dest="storage_class", required=True, metavar="ID",
                        help="the storage class to delete from")  # fmt: skip
    remove.add_argument("--repo", required=True, metavar="ID", help="the library (repo id)")
    remove.add_argument("--dry-run", action="store_true", help="count, delete nothing")
    remove.add_argument("--data-dir", help="Seafile data dir (SQLite seafile.db)")
    remove.add_argument("--traceback", action="store_true", help="show tracebacks of errors")
    remove.set_defaults(func=cmd_remove_objs)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``objstore-admin``; returns the exit status."""
    args = build_parser().parse_args(argv)
    try:
        status: int = args.func(args)
        return status
    except KeyboardInterrupt:
        sys.stderr.write(f"{PROG}: interrupted\n")
        return 130
    except Exception as exc:
        if args.traceback:
            raise
        message = str(exc) if isinstance(exc, ObjStoreError) else f"{type(exc).__name__}: {exc}"
        first = (message.strip().splitlines() or [type(exc).__name__])[0]
        sys.stderr.write(f"{PROG}: error: {first}\n")
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
