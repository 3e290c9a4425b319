"""Plan files: a migration written down in TOML so it can be reviewed and re-run.

    # migrations/disk-to-s3.toml
    description = "Move the store from local disk to S3"
    source = "/opt/seafile/conf"                 # a seafile.conf, or a dir holding one
    destination = "/opt/seafile/conf-s3/seafile.conf"
    kinds = ["block", "fs", "commit"]
    verify = "hash"
    bwlimit = "50M"

Keys are the command-line options with ``_`` for ``-``: ``kinds``, ``repos``,
``repos_from``, ``workers``, ``verify``, ``verify_only``, ``dry_run``, ``bwlimit``,
``shard``, ``server_side_copy``, ``decrypt``, ``retries``, ``progress``,
``report``, ``data_dir``, ``dest_data_dir``, plus ``description``.  Relative paths are
relative to the plan file.  ``shard`` is ``"K/N"`` or ``"env:VAR/N"`` (K read from the
environment when the file is loaded: a ConfigError naming the variable if it is unset
or not a K).
Options given on the command line win over the file.  A storage-class move
(``objstore-migrate CONF --from-class A --to-class B``) has ``source`` (the CONF),
``from_class``, ``to_class``, optionally ``update_mapping``, and no ``destination``.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import ConfigError, InvalidId
from .options import SERVER_SIDE_COPY_MODES, VERIFY_MODES, parse_rate, parse_shard

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

PROGRESS_MODES = ("auto", "bar", "log", "none")


@dataclass(frozen=True)
class PlanFile:
    """A parsed plan file: where from, where to, and the option values it sets
    (already converted: ``bwlimit`` in bytes/s, ``shard`` as ``(k, n)``, paths
    resolved against the file's directory)."""

    path: Path
    source: Path
    destination: Path | None
    description: str = ""
    values: Mapping[str, Any] = field(default_factory=dict)


def _str(value: object) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError("expected a non-empty string")
    return value


def _bool(value: object) -> bool:
    if not isinstance(value, bool):
        raise ValueError("expected true or false")
    return value


def _int(lo: int, hi: int) -> Callable[[object], int]:
    def conv(value: object) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
            raise ValueError(f"expected a whole number from {lo} to {hi}")
        return value

    return conv


def _choice(choices: tuple[str, ...]) -> Callable[[object], str]:
    def conv(value: object) -> str:
        if value not in choices:
            raise ValueError(f"expected one of {', '.join(choices)}")
        return str(value)

    return conv


def _str_list(value: object) -> list[str]:
    if isinstance(value, str):
        return [value]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValueError("expected a list of strings")
    return list(value)


def _rate(value: object) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        if value <= 0:
            raise ValueError("must be positive")
        return value
    return parse_rate(_str(value))


def _shard(value: object) -> tuple[int, int]:
    return parse_shard(_str(value))


_CONVERTERS: dict[str, Callable[[object], object]] = {
    "kinds": _str_list,
    "repos": _str_list,
    "repos_from": _str,
    "workers": _int(1, 1024),
    "verify": _choice(VERIFY_MODES),
    "verify_only": _bool,
    "dry_run": _bool,
    "bwlimit": _rate,
    "shard": _shard,
    "server_side_copy": _choice(SERVER_SIDE_COPY_MODES),
    "decrypt": _bool,
    "retries": _int(0, 100),
    "progress": _choice(PROGRESS_MODES),
    "report": _str,
    "data_dir": _str,
    "dest_data_dir": _str,
    "from_class": _str,
    "to_class": _str,
    "update_mapping": _bool,
}
_PATHS = ("repos_from", "report", "data_dir", "dest_data_dir")


def load_plan_file(path: str | os.PathLike[str]) -> PlanFile:
    """Read and check a plan file; ConfigError naming the file and the key."""
    file = Path(path)
    where = str(file)
    try:
        with open(file, "rb") as fh:
            data = tomllib.load(fh)
    except OSError as exc:
        raise ConfigError(f"cannot read plan file: {exc.strerror or exc}", file=where) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"not valid TOML: {exc}", file=where) from None
    base = file.resolve().parent
    values: dict[str, Any] = {}
    ends: dict[str, Path] = {}
    description = ""
    for key, raw in data.items():
        if key in ("source", "destination"):
            try:
                ends[key] = base / os.path.expanduser(_str(raw))
            except ValueError as exc:
                raise ConfigError(str(exc), file=where, option=key) from None
        elif key == "description":
            if not isinstance(raw, str):
                raise ConfigError("expected a string", file=where, option=key)
            description = raw
        elif key in _CONVERTERS:
            try:
                value = _CONVERTERS[key](raw)
            except (ValueError, InvalidId) as exc:
                raise ConfigError(str(exc), file=where, option=key) from None
            if key in _PATHS:
                value = base / os.path.expanduser(str(value))
            values[key] = value
        else:
            known = ", ".join(["source", "destination", "description", *_CONVERTERS])
            raise ConfigError(f"unknown key (known: {known})", file=where, option=key)
    needed = ("source",) if "from_class" in values else ("source", "destination")
    for key in needed:
        if key not in ends:
            raise ConfigError("required", file=where, option=key)
    return PlanFile(file, ends["source"], ends.get("destination"), description, values)
