"""The Seafile database, for the one table objstore needs: ``RepoStorageId(repo_id,
storage_id)``, which storage class each library lives in.

:func:`load_database_config` reads ``[database]`` of seafile.conf as Seafile does
(``type = mysql`` with host, port, user, password, db_name, overridden by the
``SEAFILE_MYSQL_DB_*`` variables of Seafile's Docker images; or ``type = sqlite``:
``seafile.db`` in the data dir).  :class:`SeafileDB` talks to it through SQLAlchemy
Core (PyMySQL for MySQL/MariaDB, the standard library's sqlite3 for SQLite).  Every
database error becomes an objstore error naming the database (never its password).
"""

from __future__ import annotations

from collections.abc import Collection, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, TypeVar

from .config import Secret, _Section, parse_bool, parse_int, parse_port
from .errors import AuthError, BackendUnavailable, ConfigError, ObjStoreError
from .keyfile import KeyFile

T = TypeVar("T")

SECTION = "database"
SQLITE_NAME = "seafile.db"
CONNECT_TIMEOUT = 10
"""Seconds to reach the database server; reads and writes time out after 60."""

_OPTIONS: dict[str, Callable[[str], object]] = {
    "type": str,
    "host": str,
    "port": parse_port,
    "user": str,
    "password": Secret,
    "db_name": str,
    "unix_socket": str,
    "use_ssl": parse_bool,
    "skip_verify": parse_bool,
    "ca_path": str,
    "connection_charset": str,
    "max_connections": lambda t: parse_int(t, 0, 100000),
    "create_tables": parse_bool,
}
# Seafile's Docker images: a non-empty variable wins over seafile.conf (type = mysql).
ENV_OVERRIDES = {
    "SEAFILE_MYSQL_DB_HOST": "host",
    "SEAFILE_MYSQL_DB_PORT": "port",
    "SEAFILE_MYSQL_DB_USER": "user",
    "SEAFILE_MYSQL_DB_PASSWORD": "password",
    "SEAFILE_MYSQL_DB_SEAFILE_DB_NAME": "db_name",
}


@dataclass(frozen=True)
class DatabaseConfig:
    """Where the Seafile database is.  ``type`` is ``mysql`` or ``sqlite`` (``path``)."""

    type: str
    source: str
    path: Path | None = None
    host: str | None = None
    port: int = 3306
    user: str | None = None
    password: Secret | None = None
    db_name: str = "seafile_db"
    unix_socket: str | None = None
    charset: str = "utf8mb4"
    use_ssl: bool = False
    skip_verify: bool = False
    ca_path: str | None = None
    from_env: tuple[str, ...] = ()

    @property
    def location(self) -> str:
        """A secret-free name: ``mysql://user@host:port/db`` or ``sqlite:///path``."""
        if self.type == "sqlite":
            return f"sqlite://{self.path}"
        where = f"{self.host}:{self.port}" if self.unix_socket is None else self.unix_socket
        return f"mysql://{self.user}@{where}/{self.db_name}"


def load_database_config(
    kf: KeyFile, data_dir: Path | None, env: Mapping[str, str]
) -> DatabaseConfig:
    """``[database]`` of a parsed seafile.conf, with Seafile's environment overrides.

    Without the section: MySQL when ``SEAFILE_MYSQL_DB_HOST`` is set (Seafile's Docker
    images), else SQLite (``seafile.db`` in ``data_dir``).  ``type = pgsql`` is refused.
    """
    sec = _Section(kf, SECTION, _OPTIONS)
    present = SECTION in kf.groups
    if present:
        kind = (sec.text("type") or "").lower()
        if not kind:
            raise sec.error(
                "set type = mysql or type = sqlite (Seafile 13 takes a missing type as "
                "mysql, earlier versions as sqlite)",
                "type",
            )
    else:
        kind = "mysql" if (env.get("SEAFILE_MYSQL_DB_HOST") or "").strip() else "sqlite"
    if kind == "sqlite":
        if data_dir is None:
            raise sec.error(
                f"the SQLite database is {SQLITE_NAME} in the data dir, but none was given "
                "(pass data_dir= or set SEAFILE_DATA_DIR)",
                "type",
            )
        path = data_dir / SQLITE_NAME
        if not path.is_file():
            raise sec.error(f"no SQLite database {path}", "type")
        return DatabaseConfig("sqlite", kf.source, path=path)
    if kind != "mysql":
        raise sec.error(
            f"unsupported database type {kind[:20]!r} (objstore reads mysql and sqlite)", "type"
        )
    return _mysql_config(kf, sec, env)


def _mysql_config(kf: KeyFile, sec: _Section, env: Mapping[str, str]) -> DatabaseConfig:
    values: dict[str, Any] = {}
    for option in ("host", "user", "db_name", "unix_socket", "ca_path", "connection_charset"):
        values[option] = sec.text(option)
    values["port"] = sec.get("port", 3306)
    values["password"] = sec.get("password", None) if sec.text("password") else None
    used: list[str] = []
    for var, option in ENV_OVERRIDES.items():
        text = (env.get(var) or "").strip()
        if not text:
            continue
        used.append(var)
        try:
            values[option] = _OPTIONS[option](text)
        except ValueError as exc:
            raise ConfigError(f"bad value: {exc}", file="environment", option=var) from None
    if not (values["host"] or values["unix_socket"]):
        raise sec.error("required for type = mysql (or SEAFILE_MYSQL_DB_HOST)", "host")
    if not values["user"]:
        raise sec.error("required for type = mysql (or SEAFILE_MYSQL_DB_USER)", "user")
    use_ssl, skip_verify = sec.get("use_ssl", False), sec.get("skip_verify", False)
    if use_ssl and not skip_verify and not values["ca_path"]:
        raise sec.error("required with use_ssl = true (unless skip_verify = true)", "ca_path")
    return DatabaseConfig(
        "mysql",
        kf.source,
        host=values["host"],
        port=values["port"],
        user=values["user"],
        password=values["password"],
        db_name=values["db_name"] or "seafile_db",
        unix_socket=values["unix_socket"],
        charset=values["connection_charset"] or "utf8mb4",
        use_ssl=use_ssl,
        skip_verify=skip_verify,
        ca_path=values["ca_path"],
        from_env=tuple(used),
    )


class SeafileDB:
    """``RepoStorageId`` in a Seafile database: a :class:`~objstore.classes.RepoMapping`.

    Thread-safe (a small connection pool, checked before use).  Each call is one
    short transaction; nothing is cached.
    """

    def __init__(self, config: DatabaseConfig) -> None:
        import sqlalchemy as sa

        self.config = config
        md = sa.MetaData()
        self._rows = sa.Table(
            "RepoStorageId",
            md,
            sa.Column("repo_id", sa.String(40)),
            sa.Column("storage_id", sa.String(255)),
        )
        self._repos = sa.Table("Repo", md, sa.Column("repo_id", sa.String(37)))
        self._trash = sa.Table("RepoTrash", md, sa.Column("repo_id", sa.String(36)))
        if config.type == "sqlite":
            url = sa.URL.create("sqlite+pysqlite", database=str(config.path))
            self._engine = sa.create_engine(url, connect_args={"timeout": CONNECT_TIMEOUT})
            return
        args: dict[str, Any] = {
            "connect_timeout": CONNECT_TIMEOUT,
            "read_timeout": 60,
            "write_timeout": 60,
            "charset": config.charset,
        }
        if config.password is not None:
            args["password"] = config.password.reveal()  # never part of the URL
        if config.unix_socket:
            args["unix_socket"] = config.unix_socket
        args["ssl_disabled"] = not config.use_ssl  # as Seafile: TLS only with use_ssl
        if config.use_ssl:
            args["ssl_verify_cert"] = not config.skip_verify
            args["ssl_verify_identity"] = not config.skip_verify
            if config.ca_path:
                args["ssl_ca"] = config.ca_path
        url = sa.URL.create(
            "mysql+pymysql",
            username=config.user,
            host=config.host if not config.unix_socket else None,
            port=config.port if not config.unix_socket else None,
            database=config.db_name,
        )
        self._engine = sa.create_engine(
            url,
            connect_args=args,
            pool_size=2,
            max_overflow=6,
            pool_pre_ping=True,
            pool_recycle=300,
        )

    def __repr__(self) -> str:
        return f"SeafileDB({self.config.location!r})"

    def _run(self, doing: str, fn: Callable[[Any], T], *, write: bool = False) -> T:
        import sqlalchemy.exc as sa_exc

        try:
            with self._engine.begin() if write else self._engine.connect() as conn:
                return fn(conn)
        except sa_exc.SQLAlchemyError as exc:
            raise self._translate(exc, doing) from None

    def _translate(self, exc: Exception, doing: str) -> ObjStoreError:
        cfg = self.config
        orig = getattr(exc, "orig", None) or exc
        args: tuple[object, ...] = tuple(getattr(orig, "args", ()))
        code = args[0] if args and isinstance(args[0], int) else None
        text = str(args[1] if code is not None and len(args) > 1 else orig)
        if cfg.password is not None:
            text = text.replace(cfg.password.reveal(), "***")
        text = " ".join(text.split())[:300]
        where = f"database {cfg.location} ([{SECTION}] of {cfg.source})"
        if cfg.from_env:
            where += f" with {', '.join(cfg.from_env)}"
        if code in (1044, 1045, 1698):
            return AuthError(f"{where}: access denied ({text}); check user and password")
        if code == 1049:
            return ConfigError(f"no such database ({text})", file=where, option="db_name")
        if code == 1146 or "no such table" in text:
            return ConfigError(
                f"{text}: is this Seafile's database (db_name)?", file=where, option="db_name"
            )
        return BackendUnavailable(f"{where}: {doing}: {text}")

    def check(self) -> None:
        """Reach the database and its ``RepoStorageId`` table (else an error naming it)."""
        import sqlalchemy as sa

        stmt = sa.select(self._rows.c.storage_id).limit(1)
        self._run("reading RepoStorageId", lambda conn: conn.execute(stmt).all())

    def storage_id(self, repo_id: str) -> str | None:
        import sqlalchemy as sa

        stmt = sa.select(self._rows.c.storage_id).where(self._rows.c.repo_id == repo_id)
        rows = self._run("reading RepoStorageId", lambda conn: conn.execute(stmt).all())
        return str(rows[0][0]) if rows else None

    def libraries(self) -> Iterator[tuple[str, str | None]]:
        """Every library (``Repo`` and ``RepoTrash``, as Seafile's migrate-repo.py
        counts them) with its ``RepoStorageId`` row, sorted by repo id."""
        import sqlalchemy as sa

        def read(conn: Any) -> tuple[set[str], dict[str, str]]:
            repos = {str(r[0]) for r in conn.execute(sa.select(self._repos.c.repo_id))}
            repos |= {str(r[0]) for r in conn.execute(sa.select(self._trash.c.repo_id))}
            rows = conn.execute(sa.select(self._rows.c.repo_id, self._rows.c.storage_id))
            return repos, {str(r[0]): str(r[1]) for r in rows}

        repos, rows = self._run("listing libraries", read)
        for repo in sorted(repos):
            yield repo, rows.get(repo)

    def set_storage_id(self, repo_ids: Collection[str], storage_id: str) -> None:
        """Point every library at ``storage_id`` (update or insert its row), all in one
        transaction: either every row changes or none does."""
        import sqlalchemy as sa

        table = self._rows
        wanted = sorted(set(repo_ids))

        def write(conn: Any) -> None:
            for start in range(0, len(wanted), 500):
                chunk = wanted[start : start + 500]
                query = sa.select(table.c.repo_id).where(table.c.repo_id.in_(chunk))
                have = {str(r[0]) for r in conn.execute(query)}
                if have:
                    conn.execute(
                        sa.update(table)
                        .where(table.c.repo_id.in_(sorted(have)))
                        .values(storage_id=storage_id)
                    )
                new = [{"repo_id": r, "storage_id": storage_id} for r in chunk if r not in have]
                if new:
                    conn.execute(sa.insert(table), new)

        self._run("updating RepoStorageId", write, write=True)

    def close(self) -> None:
        self._engine.dispose()
