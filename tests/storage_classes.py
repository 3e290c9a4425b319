"""Shared pieces of the storage-class tests (no tests here): a Seafile database with
its ``Repo``, ``RepoTrash`` and ``RepoStorageId`` tables (Seafile's own column
definitions) on MariaDB or SQLite, and storage-class configurations for the test
servers."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from objstore import ObjKind

from .servers import MariaDBServer

MYSQL_SCHEMA: tuple[str, ...] = (
    "CREATE TABLE Repo (id BIGINT NOT NULL PRIMARY KEY AUTO_INCREMENT, repo_id CHAR(37), "
    "UNIQUE INDEX (repo_id)) ENGINE=INNODB",
    "CREATE TABLE RepoTrash (id BIGINT NOT NULL PRIMARY KEY AUTO_INCREMENT, repo_id CHAR(36), "
    "repo_name VARCHAR(255), head_id CHAR(40), owner_id VARCHAR(255), size BIGINT(20), "
    "org_id INTEGER, del_time BIGINT, UNIQUE INDEX(repo_id), INDEX(owner_id), INDEX(org_id)) "
    "ENGINE=INNODB",
    "CREATE TABLE RepoStorageId (id BIGINT NOT NULL PRIMARY KEY AUTO_INCREMENT, "
    "repo_id CHAR(40) NOT NULL, storage_id VARCHAR(255) NOT NULL, UNIQUE INDEX(repo_id)) "
    "ENGINE=INNODB",
)
SQLITE_SCHEMA: tuple[str, ...] = (
    "CREATE TABLE Repo (repo_id CHAR(37) PRIMARY KEY)",
    "CREATE TABLE RepoTrash (repo_id CHAR(36) PRIMARY KEY, repo_name VARCHAR(255), "
    "head_id CHAR(40), owner_id VARCHAR(255), size BIGINT, org_id INTEGER, del_time BIGINT)",
    "CREATE TABLE RepoStorageId (repo_id CHAR(40) NOT NULL, storage_id VARCHAR(255) NOT NULL)",
    "CREATE UNIQUE INDEX repo_storage_id_index ON RepoStorageId (repo_id)",
)


class SeafileTestDB:
    """A fresh Seafile database: ``kind`` is ``mariadb`` or ``sqlite`` (``seafile.db``
    in ``data_dir``).  :attr:`section` is the ``[database]`` text pointing at it."""

    def __init__(self, kind: str, data_dir: Path, mariadb: MariaDBServer | None = None) -> None:
        self.kind, self.data_dir, self.server = kind, data_dir, mariadb
        data_dir.mkdir(parents=True, exist_ok=True)
        if kind == "sqlite":
            self.path = data_dir / "seafile.db"
            self.section = "[database]\ntype = sqlite\n"
            schema = SQLITE_SCHEMA
        else:
            assert mariadb is not None
            self.name = mariadb.create_database()
            self.section = (
                f"[database]\ntype = mysql\nhost = {mariadb.host}\nport = {mariadb.port}\n"
                f"user = {mariadb.user}\npassword = {mariadb.password}\ndb_name = {self.name}\n"
            )
            schema = MYSQL_SCHEMA
        for statement in schema:
            self.execute(statement)

    def execute(self, sql: str, params: Iterable[Any] = ()) -> list[tuple[Any, ...]]:
        if self.kind == "sqlite":
            with sqlite3.connect(self.path) as conn:
                return list(conn.execute(sql.replace("%s", "?"), tuple(params)))
        assert self.server is not None
        conn = self.server.connect(self.name)
        try:
            with conn.cursor() as cur:
                cur.execute(sql, tuple(params))
                return list(cur.fetchall())
        finally:
            conn.close()

    def add_library(self, repo_id: str, storage_id: str | None = None, trash: bool = False) -> None:
        """A library (in Repo, or RepoTrash), mapped to ``storage_id`` if given."""
        table = "RepoTrash" if trash else "Repo"
        self.execute(f"INSERT INTO {table} (repo_id) VALUES (%s)", [repo_id])
        if storage_id is not None:
            self.execute(
                "INSERT INTO RepoStorageId (repo_id, storage_id) VALUES (%s, %s)",
                [repo_id, storage_id],
            )

    def rows(self) -> dict[str, str]:
        return {r: s for r, s in self.execute("SELECT repo_id, storage_id FROM RepoStorageId")}


def fs_class(storage_id: str, data_dir: Path, **extra: Any) -> dict[str, Any]:
    return {
        "storage_id": storage_id,
        "name": storage_id.title(),
        **extra,
        **{kind.value: {"backend": "fs", "dir": str(data_dir)} for kind in ObjKind},
    }


def s3_class(
    storage_id: str, server: Any, bucket: str, sse_c_key: str | None = None, **extra: Any
) -> dict[str, Any]:
    """A class with the three kinds in one bucket on ``server`` over HTTPS, under
    ``<kind>/`` prefixes."""

    def spec(kind: ObjKind) -> dict[str, Any]:
        out: dict[str, Any] = {
            "backend": "s3",
            "bucket": bucket,
            "key_prefix": f"{kind.value}/",
            "key_id": server.access_key,
            "key": server.secret_key,
            "host": f"{server.host}:{server.https_port}",
            "use_v4_signature": True,
            "path_style_request": True,
            "use_https": True,
            "ca_file": str(server.ca_file),
        }
        if sse_c_key is not None:
            out["sse_c_key"] = sse_c_key
        return out

    return {
        "storage_id": storage_id,
        "name": storage_id.title(),
        **extra,
        **{kind.value: spec(kind) for kind in ObjKind},
    }


def write_classes(
    conf_dir: Path, classes: Sequence[Mapping[str, Any]] | str, extra: str = ""
) -> Path:
    """seafile.conf with storage classes (``classes`` as JSON data or raw text) in
    ``conf_dir``; returns the seafile.conf path."""
    conf_dir.mkdir(parents=True, exist_ok=True)
    text = classes if isinstance(classes, str) else json.dumps(classes, indent=2)
    (conf_dir / "classes.json").write_text(text)
    conf = conf_dir / "seafile.conf"
    conf.write_text(
        "[storage]\nenable_storage_classes = true\nstorage_classes_file = classes.json\n\n" + extra
    )
    return conf
