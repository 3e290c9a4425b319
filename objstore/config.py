"""Typed, validated configuration: seafile.conf (GKeyFile) or the environment form.

One dataclass per driver and cache; :func:`load_config` and :func:`config_from_env`
are the only places that convert and validate.  Every error names the file, the
section and the option.  Secrets are :class:`Secret` values: redacted in every
repr and message.
"""

from __future__ import annotations

import dataclasses
import difflib
import ipaddress
import logging
import os
import re
import stat
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
    request_timeout: float = 120.0
    max_object_size: int = 64 * MiB
    max_retries: int = 5
    max_connections: int = 32
    multipart_threshold: int = 64 * MiB
    multipart_chunksize: int = 16 * MiB
    multipart_concurrency: int = 4


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
    secret: Secret | None = None


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
    secret: Secret | None = None


CacheConfig = Union[RedisConfig, MemcachedConfig]
"""Both carry ``secret`` (``cache_secret``): the key that authenticates cached values."""


@dataclass(frozen=True)
class StoreConfig:
    """Everything objstore reads from one seafile.conf and the environment.

    ``origins`` says, per kind, where its backend came from (``environment
    (SEAF_SERVER_STORAGE_TYPE=s3)``, ``/etc/seafile/seafile.conf [block_backend]``...);
    ``cache_origin`` the same for the cache (None: no cache)."""

    source: str
    backends: Mapping[ObjKind, BackendConfig]
    cache: CacheConfig | None = None
    store_crypt_key: Path | None = None
    warnings: tuple[str, ...] = field(default=(), compare=False)
    origins: Mapping[ObjKind, str] = field(default_factory=dict, compare=False)
    cache_origin: str | None = field(default=None, compare=False)

    def describe(self) -> list[str]:
        """One line per kind and one for the cache: which source each came from."""
        lines = [f"{kind.value}: {self.origins.get(kind, self.source)}" for kind in ObjKind]
        return [*lines, f"cache: {self.cache_origin or 'none'}"]


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


def check_cache_secret(text: str) -> Secret:
    if len(text.encode("utf-8")) < 16:
        raise ValueError("must be at least 16 bytes (a random string: it keys an HMAC)")
    return Secret(text)


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
    "request_timeout": parse_seconds,
    "max_object_size": parse_size,
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
    "cache_secret": check_cache_secret,
}
_MEMCACHED_OPTIONS: dict[str, Conv] = {
    "memcached_options": str,
    "memcached_expiry": lambda t: parse_int(t, 0),
    "memcached_item_limit": parse_size,
    "memcached_timeout": parse_seconds,
    "cached_kinds": parse_kinds,
    "local_cache_size": parse_size,
    "local_cache_max_age": parse_seconds,
    "cache_secret": check_cache_secret,
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
_SECRET_CONVERTERS = (Secret, check_sse_c_key, check_cache_secret)

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
    """Typed access to one section, recording which options were read.  ``where``
    names the section in warnings (``[block_backend]``, or the environment)."""

    def __init__(
        self, kf: KeyFile, name: str, schema: Mapping[str, Conv], where: str | None = None
    ) -> None:
        self.kf, self.name, self.schema = kf, name, schema
        self.where = where or f"[{name}]"
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
            shown = "" if self.schema[option] in _SECRET_CONVERTERS else f" {raw[:60]!r}"
            raise self.kf.error(f"bad value{shown}: {exc}", self.name, option) from None

    def text(self, option: str) -> str | None:
        """A string option; blank counts as absent."""
        value = self.values.get(option, "").strip()
        return value or None

    def error(self, message: str, option: str | None = None) -> ConfigError:
        return self.kf.error(message, self.name, option)


# ---------------------------------------------------------------- loaders


class _DataDir:
    """Where fs backends without ``dir`` keep their objects, and who said so."""

    def __init__(self, path: Path | None, origin: str, how_to_give: str = "") -> None:
        self.path, self.origin, self.how_to_give = path, origin, how_to_give

    @classmethod
    def find(
        cls, data_dir: str | os.PathLike[str] | None, env: Mapping[str, str], use_env: bool
    ) -> _DataDir:
        """``data_dir=``, else ``SEAFILE_DATA_DIR``, else ``SEAFILE_CONF_DIR`` (seafobj's
        fallback: Seafile's scripts point it at the data dir)."""
        if data_dir is not None:
            return cls(Path(data_dir), f"data_dir={os.fspath(data_dir)}")
        for var in DATA_DIR_VARS:
            if env.get(var):
                return cls(Path(env[var]), f"{var}={env[var]}")
        if use_env:
            return cls(
                None, "", "give the data dir (data_dir=, objstore-migrate --data-dir, or "
                "SEAFILE_DATA_DIR)",
            )  # fmt: skip
        return cls(
            None, "", "give the data dir (data_dir=, or objstore-migrate --dest-data-dir: this "
            "configuration is read without the environment)",
        )  # fmt: skip


def _fs_config(sec: _Section, base: Path, data: _DataDir) -> FsConfig:
    raw = sec.text("dir")
    if raw is not None:
        path = Path(os.path.expanduser(raw))
        return FsConfig(path if path.is_absolute() else (base / path))
    if data.path is None:
        raise sec.error(f"the fs backend needs a directory: set 'dir' or {data.how_to_give}", "dir")
    return FsConfig(data.path)


def _key_prefix(sec: _Section, warnings: list[str]) -> str:
    """``key_prefix`` as a folder: a missing trailing '/' is added, a leading '/' refused."""
    prefix = sec.text("key_prefix") or ""
    if not prefix:
        return ""
    if prefix.startswith("/") or "//" in prefix:
        raise sec.error("must not start with '/' or contain '//'", "key_prefix")
    added = "" if prefix.endswith("/") else " (a trailing '/' was added)"
    prefix = prefix if not added else prefix + "/"
    warnings.append(
        f"{sec.where} key_prefix {prefix!r}{added}: Seafile itself does not read prefixed "
        "keys, so objects written under a prefix are invisible to a Seafile server"
    )
    return prefix


def _s3_config(sec: _Section, warnings: list[str], iam_role_env: bool = False) -> S3Config:
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
    if key_id is not None and (iam_role_env or sec.get("use_iam_role", False)):
        by = (
            f"{IAM_ROLE_VAR}=true (environment, which Seafile applies to seafile.conf too)"
            if iam_role_env
            else "use_iam_role = true"
        )
        raise sec.error(
            f"{by} and key_id/key exclude each other: remove key_id and key to use the "
            "role, or drop use_iam_role",
            "key_id",
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
        key_prefix=_key_prefix(sec, warnings),
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
        request_timeout=sec.get("request_timeout", 120.0),
        max_object_size=sec.get("max_object_size", 64 * MiB),
        max_retries=sec.get("max_retries", 5),
        max_connections=sec.get("max_connections", 32),
        multipart_threshold=sec.get("multipart_threshold", 64 * MiB),
        multipart_chunksize=sec.get("multipart_chunksize", 16 * MiB),
        multipart_concurrency=sec.get("multipart_concurrency", 4),
    )
    _check_s3(cfg, sec.error)
    if not cfg.path_style_request:
        warnings.extend(f"{sec.where} {w}" for w in bucket_warnings)
    return cfg


def _path_problem(path: str, want_dir: bool) -> str | None:
    """Why ``path`` cannot be used as a file (or directory), or None."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return "no such directory" if want_dir else "no such file"
    except OSError as exc:
        return f"cannot access {path}: {exc.strerror or exc}"
    if stat.S_ISDIR(st.st_mode) != want_dir:
        return "not a directory" if want_dir else "not a file"
    return None


def _check_s3(cfg: S3Config, error: Callable[[str, str], ConfigError]) -> None:
    """Cross-option rules for S3."""
    if cfg.sse_c_key is not None:
        if not cfg.use_v4_signature:
            raise error("SSE-C needs use_v4_signature = true", "sse_c_key")
        if not cfg.use_https:
            raise error("SSE-C needs use_https = true (the key travels in headers)", "sse_c_key")
    if cfg.proxy_scheme not in ("http", "https"):
        raise error("must be http or https", "proxy_scheme")
    if cfg.proxy_port is not None and cfg.proxy_host is None:
        raise error("proxy_port without proxy_host", "proxy_port")
    if (cfg.proxy_user is None) != (cfg.proxy_password is None):
        raise error("give both proxy_user and proxy_password, or neither", "proxy_user")
    for option, path, want_dir in (("ca_file", cfg.ca_file, False), ("ca_path", cfg.ca_path, True)):
        problem = _path_problem(path, want_dir) if path else None
        if problem:
            raise error(problem, option)
    if (cfg.ca_file or cfg.ca_path) and not cfg.use_https:
        log.debug("ca_file/ca_path given without use_https: they are unused")
    if cfg.request_timeout < cfg.connect_timeout:
        raise error("must be at least connect_timeout", "request_timeout")
    if cfg.max_object_size < 1:
        raise error("must be at least 1 byte", "max_object_size")
    if cfg.multipart_chunksize < 5 * MiB:
        raise error("must be at least 5M (the S3 minimum part size)", "multipart_chunksize")
    if cfg.multipart_threshold < cfg.multipart_chunksize:
        raise error("must be at least multipart_chunksize", "multipart_threshold")
    if not re.fullmatch(r"[a-z0-9-]+", cfg.aws_region):
        raise error(f"bad region {cfg.aws_region[:40]!r}", "aws_region")


def _backend(
    kf: KeyFile, kind: ObjKind, base: Path, data: _DataDir, warnings: list[str],
    iam_role_env: bool = False,
) -> tuple[BackendConfig, str]:  # fmt: skip
    """One kind's backend from its section, and where it came from."""
    section = kind.section
    if section not in kf.groups:
        if data.path is None:
            raise kf.error(
                "section missing, so objects live under the data dir, but none was given "
                f"({data.how_to_give})",
                section=section,
            )
        return FsConfig(data.path), f"{kf.source} (no [{section}]: data dir {data.origin})"
    origin = f"{kf.source} [{section}]"
    name = (kf.groups[section].get("name") or "fs").strip()
    if name == "fs":
        sec = _Section(kf, section, _FS_OPTIONS)
        if sec.text("dir") is None and data.path is not None:
            origin += f" (no dir: data dir {data.origin})"
        return _fs_config(sec, base, data), origin
    if name == "s3":
        return _s3_config(_Section(kf, section, _S3_OPTIONS), warnings, iam_role_env), origin
    raise kf.error(
        f"unsupported backend {name[:30]!r} (objstore supports fs and s3)", section, "name"
    )


def _parse_memcached_options(
    text: str, unused: list[str]
) -> tuple[list[tuple[str, int]], dict[str, int]]:
    """Servers and pool sizes; libmemcached's other options go to ``unused``."""
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
            unused.append(opt)  # libmemcached tuning that pymemcache has no use for
        else:
            raise ValueError(f"unexpected {token[:40]!r}; expected --SERVER=host:port ...")
    if not servers:
        raise ValueError("no --SERVER=host:port given")
    return servers, pool


def _cache(kf: KeyFile, warnings: list[str]) -> CacheConfig | None:
    """The cache from seafile.conf: ``[redis]`` (which needs ``redis_host``) wins over
    ``[memcached]``, as in seafobj."""
    if "redis" in kf.groups:
        sec = _Section(kf, "redis", _REDIS_OPTIONS)
        redis = RedisConfig(
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
            secret=sec.get("cache_secret", None),
        )
        host = sec.text("redis_host")
        if host is None:
            raise sec.error(
                "required: the Redis server (Seafile ignores a [redis] section without "
                "redis_host; objstore refuses to guess 127.0.0.1)",
                "redis_host",
            )
        if redis.cluster and redis.db != 0:
            raise sec.error("a Redis Cluster has only database 0", "redis_db")
        if "memcached" in kf.groups:
            warnings.append("[memcached] is not used: [redis] wins, as in Seafile")
        return dataclasses.replace(redis, host=host)
    if "memcached" in kf.groups:
        sec = _Section(kf, "memcached", _MEMCACHED_OPTIONS)
        raw = sec.text("memcached_options")
        if raw is None:
            raise sec.error("required: --SERVER=host:port [--SERVER=...]", "memcached_options")
        unused: list[str] = []
        try:
            servers, pool = _parse_memcached_options(raw, unused)
        except ValueError as exc:
            raise sec.error(str(exc), "memcached_options") from None
        if unused:
            warnings.append(
                f"[memcached] memcached_options: {', '.join(unused)} not used (libmemcached "
                "options; objstore talks to memcached with pymemcache)"
            )
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
            secret=sec.get("cache_secret", None),
        )
    return None


UNAUTHENTICATED_CACHE = (
    "cached values are not authenticated (no cache_secret): each is checked against its "
    "object id only, and a commit id covers only root_id, creator, creator_name, "
    "description and ctime, so whoever can write to the cache can change a cached "
    "commit's other fields (parent_id, repo_name, encryption fields...); set cache_secret "
    "(OBJSTORE_CACHE_SECRET in the environment form)"
)


def _cache_warnings(cache: CacheConfig | None, origin: str | None) -> list[str]:
    if cache is None or cache.secret is not None:
        return []
    return [f"{origin}: {UNAUTHENTICATED_CACHE}"]


def _check_sections(kf: KeyFile) -> list[str]:
    """A section name close to one of objstore's is an error (a typo); the
    warnings for other names neither objstore nor Seafile reads."""
    ours = [*_BACKEND_SECTIONS, *_SCHEMAS]
    warnings = []
    for name in kf.groups:
        if name in ours or name in _SEAFILE_SECTIONS:
            continue
        hint = _suggest(name, ours)
        if hint:
            raise kf.error(f"unknown section{hint}", section=name)
        warnings.append(
            f"[{name}] is not a section objstore or Seafile reads: it is ignored (a backend "
            "section of another name would leave that kind on the data dir)"
        )
    return warnings


def storage_classes_enabled(kf: KeyFile | None, env: Mapping[str, str]) -> bool:
    """``SEAF_SERVER_STORAGE_TYPE=multiple`` (how Seafile's Docker images turn storage
    classes on), or ``[storage] enable_storage_classes = true``."""
    if env.get(STORAGE_TYPE_VAR) == "multiple":
        return True
    if kf is None or "storage" not in kf.groups:
        return False
    return bool(_Section(kf, "storage", STORAGE_OPTIONS).get("enable_storage_classes", False))


def refuse_storage_classes(kf: KeyFile | None, env: Mapping[str, str]) -> None:
    """The one place that turns a storage-classes configuration away from
    :func:`load_config` (one store per kind cannot describe it): a ConfigError
    naming :func:`objstore.open_storage_classes`."""
    if not storage_classes_enabled(kf, env):
        return
    why = (
        "storage classes are enabled: open this configuration with "
        "objstore.open_storage_classes() (objstore-migrate: CONF --from-class A --to-class B)"
    )
    if env.get(STORAGE_TYPE_VAR) == "multiple":
        raise ConfigError(why, file=ENV_SOURCE, option=STORAGE_TYPE_VAR)
    assert kf is not None
    raise kf.error(why, "storage", "enable_storage_classes")


def shared_settings(
    kf: KeyFile, conf: Path, env: Mapping[str, str], warnings: list[str]
) -> tuple[CacheConfig | None, str | None, Path | None]:
    """The settings every store of a seafile.conf shares: the object cache and
    where it came from (``CACHE_PROVIDER`` wins over ``[redis]``/``[memcached]``,
    as in Seafile), and the ``[store_crypt]`` key file."""
    env_cache = _env_cache(env)
    if env_cache is None:
        cache, cache_origin = _cache(kf, warnings), None
        if cache is not None:
            cache_origin = f"{conf} [{'redis' if 'redis' in kf.groups else 'memcached'}]"
    else:
        cache, cache_origin = env_cache
        warnings.extend(
            f"[{name}] is not used: {cache_origin} wins, as in Seafile"
            for name in ("redis", "memcached")
            if name in kf.groups
        )
    warnings.extend(_cache_warnings(cache, cache_origin))
    return cache, cache_origin, _store_crypt(kf, conf)


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
        return _fs_config(sec, base, _DataDir(None, ""))
    if name == "s3":
        return _s3_config(_Section(kf, section, _S3_OPTIONS), warnings)
    raise kf.error(
        f"unsupported backend {name[:30]!r} (objstore supports fs and s3)", section, "name"
    )


def resolve_conf_path(path: str | os.PathLike[str]) -> Path:
    """A seafile.conf file, or a directory holding one.  ConfigError (naming the path)
    when it, or a directory on the way, cannot be entered."""
    p = Path(path)
    try:
        if p.is_dir():
            inner = p / CONF_NAME
            if not inner.exists():
                raise ConfigError(f"directory has no {CONF_NAME}", file=str(p))
            return inner
    except PermissionError as exc:
        raise ConfigError(
            f"cannot access {exc.filename or p}: permission denied", file=str(p)
        ) from None
    return p


def _store_crypt(kf: KeyFile, conf: Path) -> Path | None:
    if "store_crypt" not in kf.groups:
        return None
    sec = _Section(kf, "store_crypt", _STORE_CRYPT_OPTIONS)
    raw = sec.text("key_path")
    if raw is None:
        raise sec.error("required: the file holding enc_key and enc_iv", "key_path")
    return Path(raw) if Path(raw).is_absolute() else conf.parent / raw


def load_config(
    path: str | os.PathLike[str], *, data_dir: str | os.PathLike[str] | None = None,
    env: Mapping[str, str] | None = None, use_env: bool = True,
) -> StoreConfig:  # fmt: skip
    """Read and validate a seafile.conf (or a directory holding one), with the
    environment applied as Seafile applies it (``use_env``, the default).

    The environment (``env``, default ``os.environ``) wins where Seafile lets it:
    ``SEAF_SERVER_STORAGE_TYPE=s3|disk`` replaces the three backend sections,
    ``CACHE_PROVIDER=redis|memcached`` replaces ``[redis]``/``[memcached]``,
    ``S3_USE_IAM_ROLE=true`` applies to s3 sections; unknown values are ConfigErrors
    naming the variable (see the README's precedence table).  ``use_env=False``
    reads the file as written and nothing else (not even ``SEAFILE_DATA_DIR``): a
    migration's destination.

    ``data_dir`` (default: ``SEAFILE_DATA_DIR``, then ``SEAFILE_CONF_DIR``) is where fs
    backends without ``dir`` keep their objects.  Relative ``dir`` values are taken
    relative to the directory holding the file.
    """
    environ: Mapping[str, str] = (os.environ if env is None else env) if use_env else {}
    conf = resolve_conf_path(path)
    kf = read_keyfile(conf)
    warnings = _check_sections(kf)
    data = _DataDir.find(data_dir, environ, use_env)
    # Sections that are present first (cache, store_crypt, then backends), so their
    # mistakes are reported before a missing data dir.
    cache, cache_origin, crypt = shared_settings(kf, conf, environ, warnings)
    env_storage = _env_storage(environ, data)
    if env_storage is None:
        refuse_storage_classes(kf, environ)
        iam_role_env = _env_bool(environ, IAM_ROLE_VAR) == "true"
        order = sorted(ObjKind, key=lambda kind: kind.section not in kf.groups)
        built = {
            kind: _backend(kf, kind, conf.parent, data, warnings, iam_role_env) for kind in order
        }
        backends = {kind: built[kind][0] for kind in ObjKind}
        origins = {kind: built[kind][1] for kind in ObjKind}
    else:
        backends, origins, env_warnings = env_storage
        warnings.extend(env_warnings)
        origin = origins[ObjKind.COMMIT]
        if crypt is not None:
            raise kf.error(
                f"{origin} replaces the backend sections, and Seafile then reads objects "
                "without [store_crypt]: unset the variable or remove [store_crypt]",
                "store_crypt",
                "key_path",
            )
        overridden = [f"[{k.section}]" for k in ObjKind if k.section in kf.groups]
        if "enable_storage_classes" in kf.groups.get("storage", {}):
            overridden.append("[storage] enable_storage_classes")
        warnings.extend(f"{s} is not used: {origin} wins, as in Seafile" for s in overridden)
    for w in warnings:
        log.warning("%s: %s", conf, w)
    config = StoreConfig(str(conf), backends, cache, crypt, tuple(warnings), origins, cache_origin)
    check_kinds_apart(config)
    return config


# ---------------------------------------------------------------- the environment (Seafile's rules)

STORAGE_TYPE_VAR = "SEAF_SERVER_STORAGE_TYPE"
CACHE_PROVIDER_VAR = "CACHE_PROVIDER"
IAM_ROLE_VAR = "S3_USE_IAM_ROLE"
DATA_DIR_VARS = ("SEAFILE_DATA_DIR", "SEAFILE_CONF_DIR")

_ENV_S3 = {
    "S3_KEY_ID": "key_id", "S3_SECRET_KEY": "key", "S3_HOST": "host",
    "S3_AWS_REGION": "aws_region", "S3_USE_V4_SIGNATURE": "use_v4_signature",
    "S3_USE_HTTPS": "use_https", "S3_PATH_STYLE_REQUEST": "path_style_request",
    "S3_SSE_C_KEY": "sse_c_key", IAM_ROLE_VAR: "use_iam_role",
    "S3_KEY_PREFIX": "key_prefix", "S3_STORAGE_CLASS": "storage_class",
    "S3_SESSION_TOKEN": "session_token", "S3_CA_FILE": "ca_file",
}  # fmt: skip
_ENV_BOOLS = {"S3_USE_V4_SIGNATURE", "S3_USE_HTTPS", "S3_PATH_STYLE_REQUEST", IAM_ROLE_VAR}
_ENV_BUCKETS = {
    ObjKind.COMMIT: "S3_COMMIT_BUCKET",
    ObjKind.FS: "S3_FS_BUCKET",
    ObjKind.BLOCK: "S3_BLOCK_BUCKET",
}
CACHE_SECRET_VAR = "OBJSTORE_CACHE_SECRET"
_ENV_REDIS = {
    "REDIS_HOST": "redis_host", "REDIS_PORT": "redis_port", "REDIS_PASSWORD": "redis_password",
    "REDIS_MAX_CONNECTIONS": "max_connections", "REDIS_EXPIRY": "redis_expiry",
    CACHE_SECRET_VAR: "cache_secret",
}  # fmt: skip
_ENV_MEMCACHED = {"MEMCACHED_EXPIRY": "memcached_expiry", CACHE_SECRET_VAR: "cache_secret"}


def _env_error(message: str, var: str) -> ConfigError:
    return ConfigError(message, file=ENV_SOURCE, option=var)


def _env_bool(env: Mapping[str, str], var: str) -> str | None:
    """``true``/``false`` exactly, or None when unset or blank: Seafile compares with
    ``"true"``, so anything else would silently mean false there."""
    raw = env.get(var, "")
    if raw == "":
        return None
    if raw not in ("true", "false"):
        raise _env_error(
            f"must be true or false, not {raw[:20]!r} (Seafile reads anything but 'true' as false)",
            var,
        )
    return raw


def _env_group(env: Mapping[str, str], names: Mapping[str, str]) -> dict[str, str]:
    """The options set by the given variables (blank values count as unset)."""
    group = {}
    for var, option in names.items():
        value = _env_bool(env, var) if var in _ENV_BOOLS else env.get(var, "").strip()
        if value:
            group[option] = value
    return group


def _reraise_for_env(exc: ConfigError) -> ConfigError:
    """A ConfigError from the synthetic key file, renamed to the variable that set it."""
    return ConfigError(exc.reason, file=ENV_SOURCE, option=_env_name(exc.option, exc.section))


_EnvStorage = tuple[dict[ObjKind, BackendConfig], dict[ObjKind, str], list[str]]


def _all_fs(path: Path, origin: str) -> _EnvStorage:
    """Every kind on the filesystem under ``path``."""
    return {k: FsConfig(path) for k in ObjKind}, dict.fromkeys(ObjKind, origin), []


def _env_storage(env: Mapping[str, str], data: _DataDir) -> _EnvStorage | None:
    """The backends ``SEAF_SERVER_STORAGE_TYPE`` describes (with their origins and
    warnings), or None when it is unset or blank (seafile.conf then decides)."""
    storage_type = env.get(STORAGE_TYPE_VAR, "")
    if storage_type == "":
        return None
    refuse_storage_classes(None, env)
    warnings: list[str] = []
    if storage_type == "disk":
        if data.path is None:
            raise _env_error(
                f"{STORAGE_TYPE_VAR}=disk needs the data dir (objects under "
                "$SEAFILE_DATA_DIR/storage)",
                "SEAFILE_DATA_DIR",
            )
        return _all_fs(data.path, f"{ENV_SOURCE} ({STORAGE_TYPE_VAR}=disk, data dir {data.origin})")
    if storage_type != "s3":
        raise _env_error(
            f"must be s3, disk or multiple (or unset: seafile.conf decides), not "
            f"{storage_type[:20]!r}",
            STORAGE_TYPE_VAR,
        )
    kf = KeyFile(ENV_SOURCE)
    shared = _env_group(env, _ENV_S3)
    for kind, var in _ENV_BUCKETS.items():
        bucket = env.get(var, "").strip()
        if not bucket:
            raise _env_error(f"required when {STORAGE_TYPE_VAR}=s3", var)
        kf.groups[kind.section] = {"name": "s3", "bucket": bucket, **shared}
    backends: dict[ObjKind, BackendConfig] = {}
    try:
        for kind in ObjKind:
            where = f"{ENV_SOURCE} ({kind.value})"
            sec = _Section(kf, kind.section, _S3_OPTIONS, where)
            backends[kind] = _s3_config(sec, warnings)
    except ConfigError as exc:
        raise _reraise_for_env(exc) from None
    origin = f"{ENV_SOURCE} ({STORAGE_TYPE_VAR}=s3)"
    return backends, dict.fromkeys(ObjKind, origin), warnings


def _env_cache(env: Mapping[str, str]) -> tuple[CacheConfig, str] | None:
    """The cache ``CACHE_PROVIDER`` describes, and its origin; None when it is unset or
    blank (seafile.conf then decides).  Without its host variable it is an error:
    Seafile then runs without a cache, and guessing 127.0.0.1 would be a silent
    difference."""
    provider = env.get(CACHE_PROVIDER_VAR, "")
    if provider == "":
        return None
    origin = f"{ENV_SOURCE} ({CACHE_PROVIDER_VAR}={provider})"
    kf = KeyFile(ENV_SOURCE)
    if provider == "redis":
        if not env.get("REDIS_HOST", "").strip():
            raise _env_error(
                f"{CACHE_PROVIDER_VAR}=redis needs REDIS_HOST (Seafile then runs without "
                "a cache; objstore refuses to guess 127.0.0.1)",
                "REDIS_HOST",
            )
        kf.groups["redis"] = _env_group(env, _ENV_REDIS)
    elif provider == "memcached":
        host = env.get("MEMCACHED_HOST", "").strip()
        if not host:
            raise _env_error(
                f"{CACHE_PROVIDER_VAR}=memcached needs MEMCACHED_HOST (Seafile then runs "
                "without a cache; objstore refuses to guess 127.0.0.1)",
                "MEMCACHED_HOST",
            )
        port = env.get("MEMCACHED_PORT", "").strip() or "11211"
        kf.groups["memcached"] = {
            "memcached_options": f"--SERVER={host}:{port}",
            **_env_group(env, _ENV_MEMCACHED),
        }
    else:
        raise _env_error(
            f"must be redis or memcached (or unset: seafile.conf decides), not {provider[:20]!r}",
            CACHE_PROVIDER_VAR,
        )
    try:
        cache = _cache(kf, [])
    except ConfigError as exc:
        raise _reraise_for_env(exc) from None
    assert cache is not None
    return cache, origin


def config_from_env(
    env: Mapping[str, str] | None = None, *, data_dir: str | os.PathLike[str] | None = None
) -> StoreConfig:
    """The configuration from the environment alone (Seafile's Docker form:
    ``SEAF_SERVER_STORAGE_TYPE``, ``S3_*``, ``CACHE_PROVIDER``, ``REDIS_*``,
    ``MEMCACHED_*``), with the same rules as :func:`load_config`.  Unset
    ``SEAF_SERVER_STORAGE_TYPE`` means disk under the data dir.  Errors name the variable."""
    environ = os.environ if env is None else env
    data = _DataDir.find(data_dir, environ, True)
    env_storage = _env_storage(environ, data)
    if env_storage is None:
        if data.path is None:
            raise _env_error(
                f"set {STORAGE_TYPE_VAR}=s3 with S3_*, or the data dir (SEAFILE_DATA_DIR)",
                "SEAFILE_DATA_DIR",
            )
        env_storage = _all_fs(
            data.path, f"{ENV_SOURCE} ({STORAGE_TYPE_VAR} unset, data dir {data.origin})"
        )
    backends, origins, warnings = env_storage
    cache, cache_origin = _env_cache(environ) or (None, None)
    warnings = [*warnings, *_cache_warnings(cache, cache_origin)]
    for w in warnings:
        log.warning("%s: %s", ENV_SOURCE, w)
    config = StoreConfig(ENV_SOURCE, backends, cache, None, tuple(warnings), origins, cache_origin)
    check_kinds_apart(config)
    return config


def _env_name(option: str | None, section: str | None) -> str | None:
    """Map an option back to the environment variable that set it."""
    if option is None:
        return None
    for names in (_ENV_S3, _ENV_REDIS, _ENV_MEMCACHED):
        for var, opt in names.items():
            if opt == option:
                return var
    if option == "bucket" and section in _BACKEND_SECTIONS:
        return _ENV_BUCKETS[_BACKEND_SECTIONS[section]]
    return {"memcached_options": "MEMCACHED_HOST/MEMCACHED_PORT"}.get(option, option)


# ---------------------------------------------------------------- locations


def _object_dir(backend: FsConfig, kind: ObjKind) -> Path:
    """The directory an fs backend keeps one kind's objects in, symlinks resolved."""
    return Path(os.path.realpath(backend.dir / "storage" / kind.value))


def backend_location(backend: BackendConfig, kind: ObjKind) -> str:
    """Where one kind's objects live, without secrets: ``s3://host/bucket/prefix``
    (``aws`` for AWS's endpoint) or ``file:///dir/storage/<kind>``."""
    if isinstance(backend, S3Config):
        return f"s3://{(backend.host or 'aws').lower()}/{backend.bucket}/{backend.key_prefix}"
    return f"file://{_object_dir(backend, kind)}"


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
        pa, pb = _object_dir(a, a_kind), _object_dir(b, b_kind)
        return pa == pb or pa in pb.parents or pb in pa.parents
    return False


def check_kinds_apart(config: StoreConfig) -> None:
    """Two kinds whose objects could mix (one bucket and key prefix, or one fs
    directory) are a ConfigError naming both sections: each kind would list the
    other's objects, and removing one library's blocks would remove its commits."""
    kinds = list(ObjKind)
    for i, a in enumerate(kinds):
        for b in kinds[i + 1 :]:
            ba, bb = config.backends[a], config.backends[b]
            if not locations_overlap(ba, a, bb, b):
                continue
            if config.source == ENV_SOURCE:
                names, section, option = (_ENV_BUCKETS[a], _ENV_BUCKETS[b]), None, _ENV_BUCKETS[b]
            else:
                names = (f"[{a.section}]", f"[{b.section}]")
                section, option = b.section, "bucket" if isinstance(bb, S3Config) else "dir"
            raise ConfigError(
                f"{names[0]} and {names[1]} share {backend_location(ba, a)}: the objects of "
                f"the two kinds would mix; give each kind its own bucket, or its own "
                "key_prefix (e.g. 'blocks/', 'fs/', 'commits/')",
                file=config.source,
                section=section,
                option=option,
            )
