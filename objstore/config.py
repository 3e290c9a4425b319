"""Typed, validated configuration: seafile.conf (GKeyFile) or the environment form.

One dataclass per driver and cache; :func:`load_config` and :func:`config_from_env`
are the only places that convert and validate.  Every error names the file, the
section and the option.  Secrets are :class:`Secret` values: redacted in every
repr and message.
"""

from __future__ import annotations

import difflib
import ipaddress
import logging
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar, Union

from .errors import ConfigError
from .ids import ObjKind
from .keyfile import KeyFile, read_keyfile

log = logging.getLogger("objstore")

T = TypeVar("T")

CONF_NAME = "seafile.conf"
ENV_SOURCE = "environment"
MiB = 1024 * 1024


class Secret:
    """A secret string that never shows itself in repr, str or format."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        """The secret itself, for the one call that needs it."""
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)

    def __reduce__(self) -> tuple[object, ...]:
        return (Secret, (self._value,))


@dataclass(frozen=True)
class FsConfig:
    """The filesystem driver: objects under ``<dir>/storage/<kind>/``."""

    dir: Path


@dataclass(frozen=True)
class S3Config:
    """The S3 driver.  Blank ``key_id`` and ``key`` mean boto3's default credential chain."""

    bucket: str
    key_id: str | None = None
    key: Secret | None = None
    host: str | None = None
    use_v4_signature: bool = False
    use_https: bool = False
    path_style_request: bool = False
    aws_region: str = "us-east-1"
    sse_c_key: Secret | None = None
    key_prefix: str = ""
    storage_class: str | None = None
    session_token: Secret | None = None
    ca_file: str | None = None
    ca_path: str | None = None
    verify_ssl: bool = True
    proxy_host: str | None = None
    proxy_port: int | None = None
    proxy_user: str | None = None
    proxy_password: Secret | None = None
    proxy_scheme: str = "http"
    connect_timeout: float = 10.0
    read_timeout: float = 60.0
    max_retries: int = 5
    max_connections: int = 32
    multipart_threshold: int = 64 * MiB
    multipart_chunksize: int = 16 * MiB
    multipart_concurrency: int = 4

    @property
    def endpoint_url(self) -> str | None:
        """``scheme://host[:port]``, or None for AWS's default endpoint."""
        if not self.host:
            return None
        return f"{'https' if self.use_https else 'http'}://{self.host}"


BackendConfig = Union[FsConfig, S3Config]


@dataclass(frozen=True)
class RedisConfig:
    """A Redis cache (single server, or a cluster seed with ``redis_cluster``)."""

    host: str = "127.0.0.1"
    port: int = 6379
    password: Secret | None = None
    db: int = 0
    cluster: bool = False
    expiry: int = 86400
    max_connections: int = 100
    kinds: tuple[ObjKind, ...] = (ObjKind.COMMIT, ObjKind.FS)
    local_cache_bytes: int = 0
    local_cache_max_age: float = 300.0
    timeout: float = 1.0


@dataclass(frozen=True)
class MemcachedConfig:
    """memcached servers (several = consistent hashing)."""

    servers: tuple[tuple[str, int], ...] = (("127.0.0.1", 11211),)
    pool_min: int = 10
    pool_max: int = 100
    expiry: int = 86400
    item_limit: int = 1024 * 1024
    kinds: tuple[ObjKind, ...] = (ObjKind.COMMIT, ObjKind.FS)
    local_cache_bytes: int = 0
    local_cache_max_age: float = 300.0
    timeout: float = 1.0


CacheConfig = Union[RedisConfig, MemcachedConfig]


@dataclass(frozen=True)
class StoreConfig:
    """Everything objstore reads from one seafile.conf (or the environment)."""

    source: str
    backends: Mapping[ObjKind, BackendConfig]
    cache: CacheConfig | None = None
    store_crypt_key: Path | None = None
    warnings: tuple[str, ...] = field(default=(), compare=False)


# ---------------------------------------------------------------- value parsing

_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off"}


def parse_bool(text: str) -> bool:
    """GKeyFile booleans (``true``/``false``/``1``/``0``), plus yes/no/on/off, any case."""
    low = text.strip().lower()
    if low in _TRUE:
        return True
    if low in _FALSE:
        return False
    raise ValueError("expected true or false")


def parse_int(text: str, lo: int = 0, hi: int = 2**63 - 1) -> int:
    """A decimal integer within ``[lo, hi]``."""
    if not re.fullmatch(r"[+-]?\d+", text.strip()):
        raise ValueError("expected a whole number")
    value = int(text)
    if not lo <= value <= hi:
        raise ValueError(f"must be between {lo} and {hi}")
    return value


def parse_size(text: str) -> int:
    """A byte count: ``8388608``, ``8M``, ``8MiB``, ``64k`` (powers of 1024)."""
    m = re.fullmatch(r"\s*(\d+)\s*([kKmMgG]?)(?:i?[bB])?\s*", text)
    if not m:
        raise ValueError("expected a size such as 16M or 1048576")
    exponent = " kmg".index(m.group(2).lower() or " ")
    return int(m.group(1)) * int(1024**exponent)


def parse_seconds(text: str) -> float:
    """A positive number of seconds."""
    try:
        value = float(text)
    except ValueError:
        raise ValueError("expected a number of seconds") from None
    if not value > 0 or value != value or value == float("inf"):
        raise ValueError("must be a positive number of seconds")
    return value


def parse_port(text: str) -> int:
    return parse_int(text, 1, 65535)


def parse_kinds(text: str) -> tuple[ObjKind, ...]:
    kinds = tuple(dict.fromkeys(ObjKind.parse(p) for p in text.split(",") if p.strip()))
    return kinds


def parse_host(text: str) -> str:
    """``host[:port]`` without scheme or path, as Seafile takes it."""
    host = text.strip()
    if "://" in host:
        raise ValueError("give host[:port] without http:// or https:// (use use_https)")
    if not host or "/" in host or any(c.isspace() for c in host):
        raise ValueError("expected host[:port]")
    if host.startswith("["):
        m = re.fullmatch(r"\[([0-9a-fA-F:.]+)\](?::(\d+))?", host)
        if not m:
            raise ValueError("malformed IPv6 host, expected [addr]:port")
        if m.group(2):
            parse_port(m.group(2))
        return host
    name, sep, port = host.rpartition(":")
    if sep:
        if not name:
            raise ValueError("expected host[:port]")
        try:
            parse_port(port)
        except ValueError:
            raise ValueError(f"bad port {port!r} (1-65535)") from None
    return host


def check_sse_c_key(text: str) -> Secret:
    if len(text.encode("utf-8")) != 32:
        raise ValueError(
            f"must be exactly 32 bytes (it is {len(text.encode('utf-8'))}); "
            "Seafile uses the 32 characters as the raw 256-bit key"
        )
    return Secret(text)


_BUCKET_RE = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]\Z")
_LEGACY_BUCKET_RE = re.compile(r"[A-Za-z0-9._-]{1,255}\Z")


def check_bucket(name: str) -> tuple[str, list[str]]:
    """Return the bucket name and warnings; raise ValueError if it cannot work anywhere."""
    if not _LEGACY_BUCKET_RE.match(name):
        raise ValueError(
            f"bucket name {name[:70]!r} cannot work: use 3-63 lowercase letters, digits, '.' or '-'"
        )
    warnings = []
    dns_ok = bool(_BUCKET_RE.match(name)) and ".." not in name
    try:
        ipaddress.ip_address(name)
        dns_ok = False
    except ValueError:
        pass
    if not dns_ok:
        warnings.append(
            f"bucket name {name!r} is not DNS-compatible: it works only with "
            "path_style_request = true"
        )
    elif "." in name:
        warnings.append(
            f"bucket name {name!r} contains '.': virtual-hosted requests over HTTPS "
            "will fail certificate checks; use path_style_request = true"
        )
    return name, warnings


# ---------------------------------------------------------------- section schemas

Conv = Callable[[str], object]

_S3_OPTIONS: dict[str, Conv] = {
    "name": str,
    "bucket": str,
    "key_id": str,
    "key": Secret,
    "host": parse_host,
    "use_v4_signature": parse_bool,
    "use_https": parse_bool,
    "path_style_request": parse_bool,
    "aws_region": str,
    "sse_c_key": check_sse_c_key,
    "key_prefix": str,
    "storage_class": str,
    "session_token": Secret,
    "ca_file": str,
    "ca_path": str,
    "verify_ssl": parse_bool,
    "proxy_host": str,
    "proxy_port": parse_port,
    "proxy_user": str,
    "proxy_password": Secret,
    "proxy_scheme": str,
    "connect_timeout": parse_seconds,
    "read_timeout": parse_seconds,
    "max_retries": lambda t: parse_int(t, 0, 100),
    "max_connections": lambda t: parse_int(t, 1, 1024),
    "multipart_threshold": parse_size,
    "multipart_chunksize": parse_size,
    "multipart_concurrency": lambda t: parse_int(t, 1, 256),
    "use_iam_role": parse_bool,
}
_FS_OPTIONS: dict[str, Conv] = {"name": str, "dir": str}
_REDIS_OPTIONS: dict[str, Conv] = {
    "redis_host": str,
    "redis_port": parse_port,
    "redis_password": Secret,
    "redis_db": lambda t: parse_int(t, 0, 10000),
    "redis_cluster": parse_bool,
    "redis_expiry": lambda t: parse_int(t, 0),
    "max_connections": lambda t: parse_int(t, 1, 100000),
    "redis_timeout": parse_seconds,
    "cached_kinds": parse_kinds,
    "local_cache_size": parse_size,
    "local_cache_max_age": parse_seconds,
}
_MEMCACHED_OPTIONS: dict[str, Conv] = {
    "memcached_options": str,
    "memcached_expiry": lambda t: parse_int(t, 0),
    "memcached_item_limit": parse_size,
    "memcached_timeout": parse_seconds,
    "cached_kinds": parse_kinds,
    "local_cache_size": parse_size,
    "local_cache_max_age": parse_seconds,
}
_STORE_CRYPT_OPTIONS: dict[str, Conv] = {"key_path": str}
STORAGE_OPTIONS: dict[str, Conv] = {
    "enable_storage_classes": parse_bool,
    "storage_classes_file": str,
}

_SCHEMAS: dict[str, dict[str, Conv]] = {
    "redis": _REDIS_OPTIONS,
    "memcached": _MEMCACHED_OPTIONS,
    "store_crypt": _STORE_CRYPT_OPTIONS,
    "storage": STORAGE_OPTIONS,
}
_BACKEND_SECTIONS = {kind.section: kind for kind in ObjKind}

# Sections Seafile itself reads from seafile.conf; left alone, never reported.
_SEAFILE_SECTIONS = {
    "general", "fileserver", "database", "quota", "history", "library_trash",
    "web_copy", "zip", "notification", "cluster", "file_lock", "virus_scan",
    "backup", "memory_cache", "metadata_server", "server", "client",
    "ccnet", "seahub", "seafdav", "audit", "slow_log", "gc", "repo_trash",
    "block_backend_cache", "commit_object_backend_cache", "fs_object_backend_cache",
    "elasticsearch", "office_converter", "events", "statistics", "monitor", "db",
}  # fmt: skip


def _suggest(word: str, choices: object) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.75)  # type: ignore[call-overload]
    return f"; did you mean {close[0]!r}?" if close else ""


class _Section:
    """Typed access to one section, recording which options were read."""

    def __init__(self, kf: KeyFile, name: str, schema: Mapping[str, Conv]) -> None:
        self.kf, self.name, self.schema = kf, name, schema
        self.values = dict(kf.groups.get(name, {}))
        for option in self.values:
            if option not in schema:
                raise kf.error(
                    f"unknown option{_suggest(option, schema)}", section=name, option=option
                )

    def get(self, option: str, default: T) -> T:
        raw = self.values.get(option)
        if raw is None:
            return default
        try:
            return self.schema[option](raw)  # type: ignore[return-value]
        except ValueError as exc:
            shown = "" if self.schema[option] in (Secret, check_sse_c_key) else f" {raw[:60]!r}"
            raise self.kf.error(f"bad value{shown}: {exc}", self.name, option) from None

    def text(self, option: str) -> str | None:
        """A string option; blank counts as absent."""
        value = self.values.get(option, "").strip()
        return value or None

    def error(self, message: str, option: str | None = None) -> ConfigError:
        return self.kf.error(message, self.name, option)


# ---------------------------------------------------------------- loaders


def _fs_config(sec: _Section, base: Path, data_dir: Path | None) -> FsConfig:
    raw = sec.text("dir")
    if raw is not None:
        path = Path(os.path.expanduser(raw))
        return FsConfig(path if path.is_absolute() else (base / path))
    if data_dir is None:
        raise sec.error(
            "the fs backend needs a directory: set 'dir', pass data_dir= or set SEAFILE_DATA_DIR",
            "dir",
        )
    return FsConfig(data_dir)


def _s3_config(sec: _Section, warnings: list[str]) -> S3Config:
    bucket = sec.text("bucket")
    if bucket is None:
        raise sec.error("required for name = s3 (the bucket holding this kind)", "bucket")
    try:
        bucket, bucket_warnings = check_bucket(bucket)
    except ValueError as exc:
        raise sec.error(str(exc), "bucket") from None
    key_id = sec.text("key_id")
    key = sec.get("key", None) if sec.text("key") else None
    if (key_id is None) != (key is None):
        raise sec.error(
            "give both key_id and key, or neither (then boto3's credential chain is used)",
            "key" if key is None else "key_id",
        )
    cfg = S3Config(
        bucket=bucket,
        key_id=key_id,
        key=key,
        host=sec.get("host", None),
        use_v4_signature=sec.get("use_v4_signature", False),
        use_https=sec.get("use_https", False),
        path_style_request=sec.get("path_style_request", False),
        aws_region=sec.text("aws_region") or "us-east-1",
        sse_c_key=sec.get("sse_c_key", None),
        key_prefix=sec.text("key_prefix") or "",
        storage_class=sec.text("storage_class"),
        session_token=sec.get("session_token", None) if sec.text("session_token") else None,
        ca_file=sec.text("ca_file"),
        ca_path=sec.text("ca_path"),
        verify_ssl=sec.get("verify_ssl", True),
        proxy_host=sec.text("proxy_host"),
        proxy_port=sec.get("proxy_port", None),
        proxy_user=sec.text("proxy_user"),
        proxy_password=sec.get("proxy_password", None) if sec.text("proxy_password") else None,
        proxy_scheme=sec.text("proxy_scheme") or "http",
        connect_timeout=sec.get("connect_timeout", 10.0),
        read_timeout=sec.get("read_timeout", 60.0),
        max_retries=sec.get("max_retries", 5),
        max_connections=sec.get("max_connections", 32),
        multipart_threshold=sec.get("multipart_threshold", 64 * MiB),
        multipart_chunksize=sec.get("multipart_chunksize", 16 * MiB),
        multipart_concurrency=sec.get("multipart_concurrency", 4),
    )
    _check_s3(cfg, sec.error)
    if not cfg.path_style_request:
        warnings.extend(f"[{sec.name}] {w}" for w in bucket_warnings)
    return cfg


def _check_s3(cfg: S3Config, error: Callable[[str, str], ConfigError]) -> None:
    """Cross-option rules for S3."""
    if cfg.sse_c_key is not None:
        if not cfg.use_v4_signature:
            raise error("SSE-C needs use_v4_signature = true", "sse_c_key")
        if not cfg.use_https:
            raise error("SSE-C needs use_https = true (the key travels in headers)", "sse_c_key")
    if cfg.key_prefix.startswith("/") or "//" in cfg.key_prefix:
        raise error("must not start with '/' or contain '//'", "key_prefix")
    if cfg.key_prefix and not cfg.key_prefix.endswith("/"):
        raise error("must end with '/' (e.g. 'seafile/blocks/')", "key_prefix")
    if cfg.proxy_scheme not in ("http", "https"):
        raise error("must be http or https", "proxy_scheme")
    if cfg.proxy_port is not None and cfg.proxy_host is None:
        raise error("proxy_port without proxy_host", "proxy_port")
    if (cfg.proxy_user is None) != (cfg.proxy_password is None):
        raise error("give both proxy_user and proxy_password, or neither", "proxy_user")
    if cfg.ca_file and not os.path.isfile(cfg.ca_file):
        raise error("no such file", "ca_file")
    if cfg.ca_path and not os.path.isdir(cfg.ca_path):
        raise error("no such directory", "ca_path")
    if (cfg.ca_file or cfg.ca_path) and not cfg.use_https:
        log.debug("ca_file/ca_path given without use_https: they are unused")
    if cfg.multipart_chunksize < 5 * MiB:
        raise error("must be at least 5M (the S3 minimum part size)", "multipart_chunksize")
    if cfg.multipart_threshold < cfg.multipart_chunksize:
        raise error("must be at least multipart_chunksize", "multipart_threshold")
    if not re.fullmatch(r"[a-z0-9-]+", cfg.aws_region):
        raise error(f"bad region {cfg.aws_region[:40]!r}", "aws_region")


def _backend(kf: KeyFile, kind: ObjKind, base: Path, data_dir: Path | None,
             warnings: list[str]) -> BackendConfig:  # fmt: skip
    section = kind.section
    if section not in kf.groups:
        if data_dir is None:
            raise kf.error(
                "section missing, so objects live under the data dir, but none was given "
                "(pass data_dir= or set SEAFILE_DATA_DIR)",
                section=section,
            )
        return FsConfig(data_dir)
    name = (kf.groups[section].get("name") or "fs").strip()
    if name == "fs":
        return _fs_config(_Section(kf, section, _FS_OPTIONS), base, data_dir)
    if name == "s3":
        return _s3_config(_Section(kf, section, _S3_OPTIONS), warnings)
    raise kf.error(
        f"unsupported backend {name[:30]!r} (objstore supports fs and s3)", section, "name"
    )


def _parse_memcached_options(text: str) -> tuple[list[tuple[str, int]], dict[str, int]]:
    servers: list[tuple[str, int]] = []
    pool: dict[str, int] = {}
    for token in text.split():
        opt, _, value = token.partition("=")
        opt = opt.upper()
        if opt == "--SERVER":
            host, _, port = value.rpartition(":")
            if not host:
                host, port = value, "11211"
            servers.append((host.strip("[]"), parse_port(port)))
        elif opt in ("--POOL-MIN", "--POOL-MAX"):
            pool[opt] = parse_int(value, 1, 100000)
        elif opt.startswith("--"):
            continue  # libmemcached tuning options Seafile passes through; no effect here
        else:
            raise ValueError(f"unexpected {token[:40]!r}; expected --SERVER=host:port ...")
    if not servers:
        raise ValueError("no --SERVER=host:port given")
    return servers, pool


def _cache(kf: KeyFile) -> CacheConfig | None:
    if "redis" in kf.groups:
        sec = _Section(kf, "redis", _REDIS_OPTIONS)
        return RedisConfig(
            host=sec.text("redis_host") or "127.0.0.1",
            port=sec.get("redis_port", 6379),
            password=sec.get("redis_password", None) if sec.text("redis_password") else None,
            db=sec.get("redis_db", 0),
            cluster=sec.get("redis_cluster", False),
            expiry=sec.get("redis_expiry", 86400),
            max_connections=sec.get("max_connections", 100),
            kinds=sec.get("cached_kinds", (ObjKind.COMMIT, ObjKind.FS)),
            local_cache_bytes=sec.get("local_cache_size", 0),
            local_cache_max_age=sec.get("local_cache_max_age", 300.0),
            timeout=sec.get("redis_timeout", 1.0),
        )
    if "memcached" in kf.groups:
        sec = _Section(kf, "memcached", _MEMCACHED_OPTIONS)
        raw = sec.text("memcached_options")
        if raw is None:
            raise sec.error("required: --SERVER=host:port [--SERVER=...]", "memcached_options")
        try:
            servers, pool = _parse_memcached_options(raw)
        except ValueError as exc:
            raise sec.error(str(exc), "memcached_options") from None
        return MemcachedConfig(
            servers=tuple(servers),
            pool_min=pool.get("--POOL-MIN", 10),
            pool_max=pool.get("--POOL-MAX", 100),
            expiry=sec.get("memcached_expiry", 86400),
            item_limit=sec.get("memcached_item_limit", 1024 * 1024),
            kinds=sec.get("cached_kinds", (ObjKind.COMMIT, ObjKind.FS)),
            local_cache_bytes=sec.get("local_cache_size", 0),
            local_cache_max_age=sec.get("local_cache_max_age", 300.0),
            timeout=sec.get("memcached_timeout", 1.0),
        )
    return None


def _check_sections(kf: KeyFile) -> None:
    ours = [*_BACKEND_SECTIONS, *_SCHEMAS]
    for name in kf.groups:
        if name in ours or name in _SEAFILE_SECTIONS:
            continue
        hint = _suggest(name, ours)
        if hint:
            raise kf.error(f"unknown section{hint}", section=name)


def storage_classes_enabled(kf: KeyFile, env: Mapping[str, str]) -> bool:
    """``[storage] enable_storage_classes = true``, or ``SEAF_SERVER_STORAGE_TYPE=multiple``
    (how Seafile's Docker images turn storage classes on)."""
    if (env.get("SEAF_SERVER_STORAGE_TYPE") or "").strip().lower() == "multiple":
        return True
    return bool(_Section(kf, "storage", STORAGE_OPTIONS).get("enable_storage_classes", False))


def shared_settings(kf: KeyFile, conf: Path) -> tuple[CacheConfig | None, Path | None]:
    """The settings every store of a seafile.conf shares: the object cache
    (``[redis]``/``[memcached]``) and the ``[store_crypt]`` key file."""
    cache = _cache(kf)
    crypt = None
    if "store_crypt" in kf.groups:
        sec = _Section(kf, "store_crypt", _STORE_CRYPT_OPTIONS)
        raw = sec.text("key_path")
        if raw is None:
            raise sec.error("required: the file holding enc_key and enc_iv", "key_path")
        crypt = Path(raw) if Path(raw).is_absolute() else conf.parent / raw
    return cache, crypt


def backend_from_options(
    source: str, section: str, options: Mapping[str, str], base: Path, warnings: list[str]
) -> BackendConfig:
    """One backend (``name`` = ``fs`` with ``dir``, or ``s3``) from option text, converted
    and validated exactly as a seafile.conf backend section; errors name ``source``,
    ``section`` and the option.  Relative ``dir`` values are relative to ``base``."""
    kf = KeyFile(source, {section: dict(options)})
    name = (options.get("name") or "fs").strip()
    if name == "fs":
        sec = _Section(kf, section, _FS_OPTIONS)
        if sec.text("dir") is None:
            raise sec.error("required: the directory holding storage/<kind>/", "dir")
        return _fs_config(sec, base, None)
    if name == "s3":
        return _s3_config(_Section(kf, section, _S3_OPTIONS), warnings)
    raise kf.error(
        f"unsupported backend {name[:30]!r} (objstore supports fs and s3)", section, "name"
    )


def resolve_conf_path(path: str | os.PathLike[str]) -> Path:
    """A seafile.conf file, or a directory holding one."""
    p = Path(path)
    if p.is_dir():
        inner = p / CONF_NAME
        if not inner.exists():
            raise ConfigError(f"directory has no {CONF_NAME}", file=str(p))
        return inner
    return p


def load_config(
    path: str | os.PathLike[str], *, data_dir: str | os.PathLike[str] | None = None,
    env: Mapping[str, str] | None = None,
) -> StoreConfig:  # fmt: skip
    """Read and validate a seafile.conf (or a directory holding one).

    ``data_dir`` (default: ``SEAFILE_DATA_DIR`` from ``env``) is where fs backends
    without ``dir`` keep their objects.  Relative ``dir`` values are taken
    relative to the directory holding the file.
    """
    env = os.environ if env is None else env
    conf = resolve_conf_path(path)
    kf = read_keyfile(conf)
    _check_sections(kf)
    if storage_classes_enabled(kf, env):
        raise kf.error(
            "storage classes are enabled: open this configuration with "
            "objstore.open_storage_classes() (objstore-migrate: CONF --from-class A --to-class B)",
            "storage",
            "enable_storage_classes",
        )
    data = data_dir if data_dir is not None else env.get("SEAFILE_DATA_DIR") or None
    data_path = Path(data) if data is not None else None
    # Sections that are present first (cache, store_crypt, then backends), so their
    # mistakes are reported before a missing data dir.
    cache, crypt = shared_settings(kf, conf)
    warnings: list[str] = []
    order = sorted(ObjKind, key=lambda kind: kind.section not in kf.groups)
    built = {kind: _backend(kf, kind, conf.parent, data_path, warnings) for kind in order}
    backends = {kind: built[kind] for kind in ObjKind}
    for w in warnings:
        log.warning("%s: %s", conf, w)
    return StoreConfig(str(conf), backends, cache, crypt, tuple(warnings))


# ---------------------------------------------------------------- environment form

_ENV_S3 = {
    "S3_KEY_ID": "key_id", "S3_SECRET_KEY": "key", "S3_HOST": "host",
    "S3_AWS_REGION": "aws_region", "S3_USE_V4_SIGNATURE": "use_v4_signature",
    "S3_USE_HTTPS": "use_https", "S3_PATH_STYLE_REQUEST": "path_style_request",
    "S3_SSE_C_KEY": "sse_c_key", "S3_USE_IAM_ROLE": "use_iam_role",
    "S3_KEY_PREFIX": "key_prefix", "S3_STORAGE_CLASS": "storage_class",
    "S3_SESSION_TOKEN": "session_token", "S3_CA_FILE": "ca_file",
}  # fmt: skip
_ENV_BUCKETS = {
    ObjKind.COMMIT: "S3_COMMIT_BUCKET",
    ObjKind.FS: "S3_FS_BUCKET",
    ObjKind.BLOCK: "S3_BLOCK_BUCKET",
}


def config_from_env(env: Mapping[str, str] | None = None) -> StoreConfig:
    """The environment form Seafile's Docker images use (``SEAF_SERVER_STORAGE_TYPE``,
    ``S3_*``, ``CACHE_PROVIDER``, ``REDIS_*``, ``MEMCACHED_*``).  Errors name the variable."""
    env = os.environ if env is None else env
    source = ENV_SOURCE
    kind_of = (env.get("SEAF_SERVER_STORAGE_TYPE") or "").strip().lower()
    kf = KeyFile(source)
    if kind_of == "s3":
        for kind, var in _ENV_BUCKETS.items():
            group = {"name": "s3"}
            bucket = env.get(var, "").strip()
            if not bucket:
                raise ConfigError(
                    "required when SEAF_SERVER_STORAGE_TYPE=s3", file=source, option=var
                )
            group["bucket"] = bucket
            for var_name, option in _ENV_S3.items():
                if env.get(var_name, "").strip():
                    group[option] = env[var_name].strip()
            kf.groups[kind.section] = group
    elif kind_of in ("disk", "fs", ""):
        if not env.get("SEAFILE_DATA_DIR"):
            raise ConfigError(
                "SEAF_SERVER_STORAGE_TYPE=disk needs SEAFILE_DATA_DIR",
                file=source,
                option="SEAFILE_DATA_DIR",
            )
    else:
        raise ConfigError(
            f"must be s3 or disk, not {kind_of[:20]!r}",
            file=source,
            option="SEAF_SERVER_STORAGE_TYPE",
        )
    provider = (env.get("CACHE_PROVIDER") or "").strip().lower()
    if provider == "redis":
        kf.groups["redis"] = {
            option: env[var].strip()
            for var, option in (
                ("REDIS_HOST", "redis_host"), ("REDIS_PORT", "redis_port"),
                ("REDIS_PASSWORD", "redis_password"), ("REDIS_MAX_CONNECTIONS", "max_connections"),
                ("REDIS_EXPIRY", "redis_expiry"),
            )
            if env.get(var, "").strip()
        }  # fmt: skip
    elif provider == "memcached":
        host = env.get("MEMCACHED_HOST", "").strip() or "127.0.0.1"
        port = env.get("MEMCACHED_PORT", "").strip() or "11211"
        kf.groups["memcached"] = {"memcached_options": f"--SERVER={host}:{port}"}
        if env.get("MEMCACHED_EXPIRY", "").strip():
            kf.groups["memcached"]["memcached_expiry"] = env["MEMCACHED_EXPIRY"].strip()
    elif provider:
        raise ConfigError(
            f"must be redis or memcached, not {provider[:20]!r}",
            file=source,
            option="CACHE_PROVIDER",
        )
    data = env.get("SEAFILE_DATA_DIR") or None
    warnings: list[str] = []
    try:
        backends = {
            kind: _backend(kf, kind, Path.cwd(), Path(data) if data else None, warnings)
            for kind in ObjKind
        }
        cache = _cache(kf)
    except ConfigError as exc:
        raise ConfigError(
            exc.reason, file=source, option=_env_name(exc.option, exc.section)
        ) from None
    for w in warnings:
        log.warning("%s: %s", source, w)
    return StoreConfig(source, backends, cache, None, tuple(warnings))


def _env_name(option: str | None, section: str | None) -> str | None:
    """Map an option back to the environment variable that set it."""
    if option is None:
        return None
    for var, opt in _ENV_S3.items():
        if opt == option:
            return var
    if option == "bucket" and section in _BACKEND_SECTIONS:
        return _ENV_BUCKETS[_BACKEND_SECTIONS[section]]
    return {"redis_port": "REDIS_PORT", "max_connections": "REDIS_MAX_CONNECTIONS",
            "redis_expiry": "REDIS_EXPIRY", "memcached_options": "MEMCACHED_HOST/MEMCACHED_PORT",
            "memcached_expiry": "MEMCACHED_EXPIRY"}.get(option, option)  # fmt: skip


# ---------------------------------------------------------------- locations


def backend_location(backend: BackendConfig, kind: ObjKind) -> str:
    """Where one kind's objects live, without secrets: ``s3://host/bucket/prefix``
    (``aws`` for AWS's endpoint) or ``file:///dir/storage/<kind>``."""
    if isinstance(backend, S3Config):
        return f"s3://{(backend.host or 'aws').lower()}/{backend.bucket}/{backend.key_prefix}"
    return "file://" + os.path.realpath(backend.dir / "storage" / kind.value)


def locations_overlap(a: BackendConfig, a_kind: ObjKind, b: BackendConfig, b_kind: ObjKind) -> bool:
    """Can the objects of ``a`` (kind ``a_kind``) and ``b`` (kind ``b_kind``) mix?  S3:
    same endpoint and bucket, and one key prefix starts the other; fs: one object
    directory (``<dir>/storage/<kind>``) is, or contains, the other."""
    if isinstance(a, S3Config) and isinstance(b, S3Config):
        return (
            (a.host or "").lower() == (b.host or "").lower()
            and a.bucket == b.bucket
            and (a.key_prefix.startswith(b.key_prefix) or b.key_prefix.startswith(a.key_prefix))
        )
    if isinstance(a, FsConfig) and isinstance(b, FsConfig):
        pa = Path(backend_location(a, a_kind)[len("file://") :])
        pb = Path(backend_location(b, b_kind)[len("file://") :])
        return pa == pb or pa in pb.parents or pb in pa.parents
    return False
