"""Storage classes: several storage backends in one Seafile installation.

seafile.conf turns them on with ``[storage] enable_storage_classes = true`` (or
``SEAF_SERVER_STORAGE_TYPE=multiple``) and names a JSON file
(``storage_classes_file``, relative to the directory holding seafile.conf): a list
of classes, each with ``storage_id``, ``name``, optional ``is_default`` and
``for_new_library``, and ``commits``, ``fs``, ``blocks`` backends (``"backend":
"fs"`` with ``dir``, or ``"s3"`` with the keys of a ``[..._backend]`` section).
The file is validated like seafile.conf: errors name the file, the class, the
kind and the option.

Which class holds a library is Seafile's table ``RepoStorageId(repo_id,
storage_id)``; a library without a row lives in the default class.

    >>> with objstore.open_storage_classes("/opt/seafile/conf") as sc:
    ...     sc.for_repo(repo_id).block.read(repo_id, block_id)
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Collection, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from .config import (
    STORAGE_OPTIONS,
    BackendConfig,
    CacheConfig,
    StoreConfig,
    _check_sections,
    _Section,
    _suggest,
    backend_from_options,
    backend_location,
    locations_overlap,
    resolve_conf_path,
    shared_settings,
    storage_classes_enabled,
)
from .errors import ConfigError
from .ids import ObjKind, check_repo_id
from .keyfile import read_keyfile
from .store import Stores, open_config

if TYPE_CHECKING:  # without importing SQLAlchemy
    from .seafdb import DatabaseConfig

log = logging.getLogger("objstore")

_CLASS_KEYS = ("storage_id", "name", "is_default", "for_new_library", "commits", "fs", "blocks")
_UNSUPPORTED = ("swift", "ceph", "oss")


@dataclass(frozen=True)
class StorageClass:
    """One class of the JSON file; ``config`` holds its three backends (plus the
    cache and ``[store_crypt]`` of seafile.conf, which every class shares)."""

    storage_id: str
    name: str
    config: StoreConfig
    is_default: bool = False
    for_new_library: bool = False


@dataclass(frozen=True)
class StorageClassesConfig:
    """A seafile.conf with storage classes: the classes in file order, the default
    one's id (None when no class has ``is_default``), and the database holding
    ``RepoStorageId`` (None until :func:`load_storage_classes` is asked for it)."""

    source: str
    classes_file: str
    classes: Mapping[str, StorageClass]
    default: str | None
    database: DatabaseConfig | None = None
    warnings: tuple[str, ...] = field(default=(), compare=False)


class RepoMapping(Protocol):
    """Where libraries live: Seafile's ``RepoStorageId`` (:class:`objstore.seafdb.SeafileDB`)
    or a caller's own (:class:`DictMapping`)."""

    def storage_id(self, repo_id: str) -> str | None:
        """The library's storage id; None when it has no row (it lives in the default class)."""

    def libraries(self) -> Iterator[tuple[str, str | None]]:
        """Every library of the installation with its row (None: no row), sorted."""

    def set_storage_id(self, repo_ids: Collection[str], storage_id: str) -> None:
        """Point the libraries at ``storage_id``, all in one transaction."""

    def close(self) -> None:
        """Release connections."""


class DictMapping:
    """A :class:`RepoMapping` in memory: ``{repo_id: storage_id or None}``; the keys
    are the installation's libraries."""

    def __init__(self, rows: Mapping[str, str | None]) -> None:
        self.rows = {check_repo_id(repo): sid for repo, sid in rows.items()}

    def storage_id(self, repo_id: str) -> str | None:
        return self.rows.get(repo_id)

    def libraries(self) -> Iterator[tuple[str, str | None]]:
        return iter(sorted(self.rows.items()))

    def set_storage_id(self, repo_ids: Collection[str], storage_id: str) -> None:
        self.rows.update(dict.fromkeys(repo_ids, storage_id))

    def close(self) -> None:
        pass


# --------------------------------------------------------------------------- loading


def _pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f"key {key!r} appears twice in one object")
        out[key] = value
    return out


def _read_json(path: Path) -> Any:
    where = str(path)
    try:
        text = path.read_bytes().decode("utf-8")
    except FileNotFoundError:
        raise ConfigError("no such file", file=where) from None
    except IsADirectoryError:
        raise ConfigError(
            "is a directory, expected the storage classes JSON file", file=where
        ) from None
    except OSError as exc:
        raise ConfigError(f"cannot read: {exc.strerror}", file=where) from None
    except UnicodeDecodeError:
        raise ConfigError("not valid UTF-8 text", file=where) from None
    try:
        return json.loads(text.lstrip("\ufeff"), object_pairs_hook=_pairs)
    except json.JSONDecodeError as exc:
        raise ConfigError(
            f"not valid JSON: {exc.msg} (line {exc.lineno} column {exc.colno})", file=where
        ) from None
    except ValueError as exc:
        raise ConfigError(f"not valid JSON: {exc}", file=where) from None


def _option_text(value: object) -> str | None:
    """A JSON value as seafile.conf text (Seafile's files use true/false and numbers too)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (str, int, float)):
        return str(value)
    return None


def _backend(
    where: str, label: str, spec: object, base: Path, warnings: list[str]
) -> BackendConfig:
    if not isinstance(spec, dict):
        raise ConfigError(
            'expected an object such as {"backend": "fs", "dir": "..."}', file=where, section=label
        )
    name = spec.get("backend")
    if not isinstance(name, str) or not name.strip():
        raise ConfigError("required: fs or s3", file=where, section=label, option="backend")
    if name.strip().lower() in _UNSUPPORTED:
        raise ConfigError(
            f"Seafile's {name.strip()} backend is not supported by objstore (fs and s3 only)",
            file=where,
            section=label,
            option="backend",
        )
    options = {"name": name}
    for key, value in spec.items():
        if key == "backend":
            continue
        if key == "name":
            raise ConfigError(
                "unknown option; did you mean 'backend'?", file=where, section=label, option=key
            )
        text = _option_text(value)
        if text is None:
            raise ConfigError(
                "expected a string, a number or true/false", file=where, section=label, option=key
            )
        options[key] = text
    return backend_from_options(where, label, options, base, warnings)


def _flag(where: str, label: str, entry: Mapping[str, Any], key: str) -> bool:
    value = entry.get(key, False)
    if not isinstance(value, bool):
        raise ConfigError(
            "expected true or false (a JSON boolean)", file=where, section=label, option=key
        )
    return value


def _storage_class(
    where: str,
    index: int,
    entry: object,
    base: Path,
    shared: tuple[CacheConfig | None, str | None, Path | None],
    warnings: list[str],
) -> StorageClass:
    label = f"class {index + 1}"
    if not isinstance(entry, dict):
        raise ConfigError(
            "expected an object with storage_id, name, commits, fs and blocks",
            file=where,
            section=label,
        )
    sid = entry.get("storage_id")
    if not isinstance(sid, str) or not sid.strip() or len(sid) > 255:
        raise ConfigError(
            "required: a non-empty string of at most 255 characters",
            file=where,
            section=label,
            option="storage_id",
        )
    label = f"class {sid!r}"
    for key in entry:
        if key not in _CLASS_KEYS:
            raise ConfigError(
                f"unknown key{_suggest(key, _CLASS_KEYS)}", file=where, section=label, option=key
            )
    name = entry.get("name", sid)
    if not isinstance(name, str):
        raise ConfigError("expected a string", file=where, section=label, option="name")
    backends = {}
    for kind in ObjKind:
        if kind.value not in entry:
            raise ConfigError(
                f"required: the backend of the {kind.value} objects",
                file=where,
                section=label,
                option=kind.value,
            )
        backends[kind] = _backend(where, f"{label} {kind.value}", entry[kind.value], base, warnings)
    cache, cache_origin, crypt = shared
    config = StoreConfig(
        f"{where} [{label}]", backends, cache, crypt,
        origins={kind: f"{where} [{label} {kind.value}]" for kind in ObjKind},
        cache_origin=cache_origin,
    )  # fmt: skip
    return StorageClass(
        sid,
        name,
        config,
        _flag(where, label, entry, "is_default"),
        _flag(where, label, entry, "for_new_library"),
    )


def _check_overlaps(where: str, classes: Mapping[str, StorageClass]) -> None:
    places = [
        (sc.storage_id, kind, sc.config.backends[kind])
        for sc in classes.values()
        for kind in ObjKind
    ]
    for i, (a_id, a_kind, a) in enumerate(places):
        for b_id, b_kind, b in places[i + 1 :]:
            if locations_overlap(a, a_kind, b, b_kind):
                raise ConfigError(
                    f"overlaps class {b_id!r} {b_kind.value} "
                    f"({backend_location(b, b_kind)}): their objects would mix; give each "
                    "its own bucket, key_prefix or dir",
                    file=where,
                    section=f"class {a_id!r} {a_kind.value}",
                )


def load_storage_classes(
    path: str | os.PathLike[str],
    *,
    data_dir: str | os.PathLike[str] | None = None,
    env: Mapping[str, str] | None = None,
    database: bool = True,
) -> StorageClassesConfig:
    """Read and validate a seafile.conf with storage classes and its JSON file.

    Unknown keys, a class without ``commits``/``fs``/``blocks``, two defaults,
    duplicate ids and classes whose locations overlap are ConfigErrors naming the
    file, the class, the kind and the option.  With ``database``, ``[database]``
    is read too (see :func:`objstore.seafdb.load_database_config`).
    """
    env = os.environ if env is None else env
    conf = resolve_conf_path(path)
    kf = read_keyfile(conf)
    if not storage_classes_enabled(kf, env):
        raise kf.error(
            "storage classes are not enabled (set enable_storage_classes = true): "
            "open it with objstore.open_stores()",
            "storage",
            "enable_storage_classes",
        )
    _check_sections(kf)
    warnings = [
        f"[{kind.section}] is ignored: storage classes are enabled"
        for kind in ObjKind
        if kind.section in kf.groups
    ]
    sec = _Section(kf, "storage", STORAGE_OPTIONS)
    raw = sec.text("storage_classes_file")
    if raw is None:
        raise sec.error(
            "required with storage classes: the JSON file defining them", "storage_classes_file"
        )
    file = Path(os.path.expanduser(raw))
    file = file if file.is_absolute() else conf.parent / file
    where = str(file)
    shared = shared_settings(kf, conf, env, warnings)
    data = _read_json(file)
    if not isinstance(data, list) or not data:
        raise ConfigError("expected a non-empty JSON list of storage classes", file=where)
    classes: dict[str, StorageClass] = {}
    for index, entry in enumerate(data):
        sc = _storage_class(where, index, entry, conf.parent, shared, warnings)
        if sc.storage_id in classes:
            raise ConfigError(
                "two classes have this storage_id",
                file=where,
                section=f"class {sc.storage_id!r}",
                option="storage_id",
            )
        classes[sc.storage_id] = sc
    defaults = [sc.storage_id for sc in classes.values() if sc.is_default]
    if len(defaults) > 1:
        raise ConfigError(
            f"at most one class may be the default; {', '.join(map(repr, defaults))} all are",
            file=where,
            section=f"class {defaults[1]!r}",
            option="is_default",
        )
    _check_overlaps(where, classes)
    for w in warnings:
        log.warning("%s: %s", conf, w)
    db = None
    if database:
        from .seafdb import load_database_config

        data_path = data_dir if data_dir is not None else env.get("SEAFILE_DATA_DIR") or None
        db = load_database_config(kf, Path(data_path) if data_path else None, env)
    return StorageClassesConfig(
        str(conf), where, classes, defaults[0] if defaults else None, db, tuple(warnings)
    )


# --------------------------------------------------------------------------- opening


class StorageClasses:
    """The opened classes of one installation: ``classes`` (storage_id -> Stores),
    ``default`` (the default class's Stores, or None) and :meth:`for_repo`."""

    def __init__(
        self, config: StorageClassesConfig, classes: Mapping[str, Stores], mapping: RepoMapping
    ) -> None:
        self.config = config
        self.classes = dict(classes)
        self.mapping = mapping
        self.default_id = config.default
        self.default = self.classes[config.default] if config.default else None

    def __repr__(self) -> str:
        return f"StorageClasses({self.config.source!r}, {list(self.classes)})"

    def class_of(self, repo_id: str) -> str:
        """The storage id of the class library ``repo_id`` lives in (ConfigError when
        its row names a class the JSON file lacks, or it has none and no class is the
        default)."""
        repo = check_repo_id(repo_id)
        storage_id = self.mapping.storage_id(repo)
        where = self.config.classes_file
        if storage_id is None:
            if self.default_id is None:
                raise ConfigError(
                    f"library {repo} has no RepoStorageId row and no class is the default "
                    "(is_default)",
                    file=where,
                )
            return self.default_id
        if storage_id not in self.classes:
            raise ConfigError(
                f"library {repo} is mapped to storage class {storage_id[:60]!r} in "
                f"RepoStorageId, which is not defined here (defined: {', '.join(self.classes)})",
                file=where,
            )
        return storage_id

    def for_repo(self, repo_id: str) -> Stores:
        """The stores library ``repo_id`` lives in (one mapping lookup per call)."""
        return self.classes[self.class_of(repo_id)]

    def libraries_in(self, storage_id: str) -> list[str]:
        """Every library that lives in class ``storage_id`` (sorted); libraries mapped
        to classes the file lacks are left out."""
        self.stores_of(storage_id)
        out = []
        for repo, sid in self.mapping.libraries():
            if (sid is None and self.default_id == storage_id) or sid == storage_id:
                out.append(repo)
        return out

    def stores_of(self, storage_id: str) -> Stores:
        """Class ``storage_id``'s stores; ConfigError naming the defined classes if none."""
        if storage_id not in self.classes:
            raise ConfigError(
                f"no storage class {storage_id[:60]!r} (defined: {', '.join(self.classes)})",
                file=self.config.classes_file,
            )
        return self.classes[storage_id]

    def close(self) -> None:
        for stores in self.classes.values():
            stores.close()
        self.mapping.close()

    def __enter__(self) -> StorageClasses:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_storage_classes(
    path: str | os.PathLike[str],
    *,
    data_dir: str | os.PathLike[str] | None = None,
    mapping: RepoMapping | Mapping[str, str | None] | None = None,
    check: bool = True,
    env: Mapping[str, str] | None = None,
) -> StorageClasses:
    """Open every class of a seafile.conf with storage classes (a file, or the dir
    holding one).

    ``mapping``: where libraries live; default Seafile's ``RepoStorageId`` in the
    database of ``[database]`` (or a dict ``{repo_id: storage_id or None}``).  With
    ``check``, every bucket and directory is checked as :func:`objstore.open_stores`
    does, and the database is reached (an unreachable one is BackendUnavailable,
    wrong credentials AuthError, a missing table ConfigError)."""
    config = load_storage_classes(path, data_dir=data_dir, env=env, database=mapping is None)
    repo_map: RepoMapping
    db = None
    if mapping is None:
        from .seafdb import SeafileDB

        assert config.database is not None
        repo_map = db = SeafileDB(config.database)
    elif isinstance(mapping, Mapping):
        repo_map = DictMapping(mapping)
    else:
        repo_map = mapping
    opened: dict[str, Stores] = {}
    try:
        if check and db is not None:
            db.check()
        for sid, sc in config.classes.items():
            opened[sid] = open_config(sc.config, check=check)
    except BaseException:
        for stores in opened.values():
            stores.close()
        repo_map.close()
        raise
    return StorageClasses(config, opened, repo_map)
