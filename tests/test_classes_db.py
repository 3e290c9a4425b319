"""Where libraries live: RepoStorageId read from a real MariaDB and from SQLite, the
default class, unknown classes, the mapping update, the SEAFILE_MYSQL_DB_* overrides,
and a database that is unreachable or refuses the credentials."""

from __future__ import annotations

import json
import logging
import uuid
from pathlib import Path
from typing import Any

import pytest

import objstore
from objstore import AuthError, BackendUnavailable, ConfigError, ObjStoreError
from objstore.classmove import ClassMove
from objstore.cli import main as migrate_main

from .servers import MariaDBServer, TestCA, free_port
from .storage_classes import SeafileTestDB, fs_class, write_classes

R1, R2, R3, R4, R5 = (str(uuid.uuid4()) for _ in range(5))


def three_classes(tmp_path: Path, default: str | None = "a") -> list[dict[str, Any]]:
    out = []
    for sid in ("a", "b", "c"):
        (tmp_path / sid).mkdir(exist_ok=True)
        extra = {"is_default": True} if sid == default else {}
        out.append(fs_class(sid, tmp_path / sid, **extra))
    return out


def open_classes(conf: Path, db: SeafileTestDB, **kw: Any) -> objstore.StorageClasses:
    return objstore.open_storage_classes(conf, data_dir=db.data_dir, env={}, **kw)


def test_mapping_default_class_and_update(tmp_path: Path, seafile_db: SeafileTestDB) -> None:
    db = seafile_db
    db.add_library(R1)  # no row: the default class
    db.add_library(R2, "b")
    db.add_library(R3, "c", trash=True)  # in the trash: still a library of class c
    db.add_library(R4, "gone")  # a class the JSON file does not define
    conf = write_classes(tmp_path / "conf", three_classes(tmp_path), db.section)
    with open_classes(conf, db) as sc:
        assert set(sc.classes) == {"a", "b", "c"}
        assert sc.default is sc.classes["a"] and sc.default_id == "a"
        assert sc.for_repo(R1) is sc.classes["a"]
        assert sc.for_repo(R2) is sc.classes["b"]
        assert sc.for_repo(R3) is sc.classes["c"]
        assert sc.for_repo(str(uuid.uuid4())) is sc.classes["a"]  # unknown library: default
        with pytest.raises(ConfigError) as exc:
            sc.for_repo(R4)
        assert "'gone'" in str(exc.value) and "classes.json" in str(exc.value)
        assert sc.libraries_in("a") == [R1]
        assert sc.libraries_in("c") == [R3]
        assert ClassMove(sc, "a", "b").repos == [R1]
        with pytest.raises(ConfigError, match="lives in class 'b', not 'a'"):
            ClassMove(sc, "a", "c", [R2])
        with pytest.raises(ConfigError, match="no storage class 'nope'"):
            ClassMove(sc, "nope", "a")
        db.execute("UPDATE RepoStorageId SET storage_id = %s WHERE repo_id = %s", ["a", R2])
        assert sc.for_repo(R2) is sc.classes["a"]  # read on each call, never cached
        sc.mapping.set_storage_id([R1, R2], "c")  # R1 gets a row, R2's row changes
        assert sc.for_repo(R1) is sc.classes["c"] and sc.for_repo(R2) is sc.classes["c"]
    assert db.rows() == {R1: "c", R2: "c", R3: "c", R4: "gone"}
    # the CLI: a library mapped to an unknown class is a one-line error, exit 2
    assert migrate_main([str(conf), "--from-class", "a", "--to-class", "b", "--repo", R4]) == 2


def test_no_default_class(tmp_path: Path, seafile_db: SeafileTestDB) -> None:
    seafile_db.add_library(R1)
    conf = write_classes(tmp_path / "conf", three_classes(tmp_path, None), seafile_db.section)
    with open_classes(conf, seafile_db) as sc:
        assert sc.default is None
        with pytest.raises(ConfigError, match="no RepoStorageId row and no class is the default"):
            sc.for_repo(R1)


def test_callers_own_mapping(tmp_path: Path) -> None:
    """No database is read when the caller passes the mapping ([database] may be absent)."""
    conf = write_classes(tmp_path / "conf", three_classes(tmp_path))
    with objstore.open_storage_classes(conf, mapping={R1: "b", R2: None}, env={}) as sc:
        assert sc.for_repo(R1) is sc.classes["b"]
        assert sc.for_repo(R2) is sc.classes["a"]
        assert sc.libraries_in("a") == [R2]
        sc.mapping.set_storage_id([R2], "c")
        assert sc.for_repo(R2) is sc.classes["c"]


def test_mapping_update_is_one_transaction(tmp_path: Path, mariadb: MariaDBServer) -> None:
    """MariaDB only: SQLite does not enforce VARCHAR lengths, so nothing fails there."""
    db = SeafileTestDB("mariadb", tmp_path / "data", mariadb)
    db.add_library(R1, "a")
    db.add_library(R2)
    conf = write_classes(tmp_path / "conf", three_classes(tmp_path), db.section)
    with open_classes(conf, db) as sc, pytest.raises(ObjStoreError):
        sc.mapping.set_storage_id([R1, R2], "x" * 300)  # R1's update, then R2's insert fails
    assert db.rows() == {R1: "a"}


def test_environment_overrides_reach_mariadb(tmp_path: Path, mariadb: MariaDBServer) -> None:
    db = SeafileTestDB("mariadb", tmp_path / "data", mariadb)
    db.add_library(R1, "b")
    wrong = "[database]\ntype = mysql\nhost = 192.0.2.1\nport = 1\nuser = nobody\n"
    wrong += "password = wrong\ndb_name = nothing\n"
    conf = write_classes(tmp_path / "conf", three_classes(tmp_path), wrong)
    env = {
        "SEAFILE_MYSQL_DB_HOST": mariadb.host,
        "SEAFILE_MYSQL_DB_PORT": str(mariadb.port),
        "SEAFILE_MYSQL_DB_USER": mariadb.user,
        "SEAFILE_MYSQL_DB_PASSWORD": mariadb.password,
        "SEAFILE_MYSQL_DB_SEAFILE_DB_NAME": db.name,
    }
    with objstore.open_storage_classes(conf, env=env) as sc:
        assert sc.for_repo(R1) is sc.classes["b"]


def test_unix_socket(tmp_path: Path, mariadb: MariaDBServer) -> None:
    db = SeafileTestDB("mariadb", tmp_path / "data", mariadb)
    db.add_library(R1, "c")
    section = (
        f"[database]\ntype = mysql\nunix_socket = {mariadb.socket}\nuser = {mariadb.user}\n"
        f"password = {mariadb.password}\ndb_name = {db.name}\n"
    )
    conf = write_classes(tmp_path / "conf", three_classes(tmp_path), section)
    with open_classes(conf, db) as sc:
        assert sc.for_repo(R1) is sc.classes["c"]


def cli_one_line_error(conf: Path, capsys: Any, tmp_path: Path, *secrets: str) -> str:
    report = tmp_path / "report.json"
    code = migrate_main(
        [str(conf), "--from-class", "a", "--to-class", "b", "--report", str(report)]
    )
    err: str = capsys.readouterr().err
    assert code == 2
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    text = err + report.read_text()
    for secret in secrets:
        assert secret not in text
    assert json.loads(report.read_text())["exit_code"] == 2
    return err


def test_unreachable_database(tmp_path: Path, capsys: Any, caplog: Any) -> None:
    caplog.set_level(logging.DEBUG)
    port = free_port()  # nothing listens there
    section = (
        f"[database]\ntype = mysql\nhost = 127.0.0.1\nport = {port}\nuser = seafile\n"
        "password = db-secret-unreachable\n"
    )
    classes = three_classes(tmp_path)
    conf = write_classes(tmp_path / "conf", classes, section)
    (tmp_path / "a" / "storage" / "blocks" / R1 / "ab").mkdir(parents=True)
    (tmp_path / "a" / "storage" / "blocks" / R1 / "ab" / ("c" * 38)).write_bytes(b"x")
    with pytest.raises(BackendUnavailable) as exc:
        objstore.open_storage_classes(conf, env={})
    message = str(exc.value)
    assert f"mysql://seafile@127.0.0.1:{port}/seafile_db" in message
    assert "[database]" in message and "db-secret-unreachable" not in message
    err = cli_one_line_error(conf, capsys, tmp_path, "db-secret-unreachable")
    assert f"127.0.0.1:{port}" in err
    assert not (tmp_path / "b" / "storage").exists()  # nothing moved
    assert "db-secret-unreachable" not in caplog.text


def test_wrong_password_and_missing_table(
    tmp_path: Path, mariadb: MariaDBServer, capsys: Any
) -> None:
    db = SeafileTestDB("mariadb", tmp_path / "data", mariadb)
    bad = db.section.replace(mariadb.password, "wrong-db-password-42")
    conf = write_classes(tmp_path / "conf", three_classes(tmp_path), bad)
    with pytest.raises(AuthError) as exc:
        objstore.open_storage_classes(conf, env={})
    assert "access denied" in str(exc.value) and "wrong-db-password-42" not in str(exc.value)
    assert "access denied" in cli_one_line_error(conf, capsys, tmp_path, "wrong-db-password-42")
    empty = mariadb.create_database()
    conf = write_classes(tmp_path / "conf2", three_classes(tmp_path),
                         db.section.replace(db.name, empty))  # fmt: skip
    with pytest.raises(ConfigError, match="RepoStorageId") as cexc:
        objstore.open_storage_classes(conf, env={})
    assert cexc.value.option == "db_name"
    conf = write_classes(tmp_path / "conf3", three_classes(tmp_path),
                         db.section.replace(db.name, "no_such_db"))  # fmt: skip
    with pytest.raises(ConfigError, match="no such database"):
        objstore.open_storage_classes(conf, env={})


def test_tls_to_the_database(tmp_path: Path, mariadb: MariaDBServer, test_ca: Any) -> None:
    """use_ssl, ca_path and skip_verify as Seafile reads them, against a user that MariaDB
    lets in only over TLS."""
    db = SeafileTestDB("mariadb", tmp_path / "data", mariadb)
    db.add_library(R1, "b")
    mariadb.create_user("tlsonly", "tls-pass-5c2a", require_ssl=True)
    base = (
        f"[database]\ntype = mysql\nhost = {mariadb.host}\nport = {mariadb.port}\n"
        f"user = tlsonly\npassword = tls-pass-5c2a\ndb_name = {db.name}\n"
    )
    classes = three_classes(tmp_path)
    for name, extra in (
        ("verified", f"use_ssl = true\nca_path = {test_ca.ca_file}\n"),
        ("unverified", "use_ssl = true\nskip_verify = true\n"),
    ):
        conf = write_classes(tmp_path / name, classes, base + extra)
        with objstore.open_storage_classes(conf, env={}) as sc:
            assert sc.for_repo(R1) is sc.classes["b"]
    plain = write_classes(tmp_path / "plain", classes, base)
    with pytest.raises(AuthError):
        objstore.open_storage_classes(plain, env={})
    other_ca = TestCA()
    try:
        wrong = write_classes(
            tmp_path / "wrong-ca", classes, base + f"use_ssl = true\nca_path = {other_ca.ca_file}\n"
        )
        with pytest.raises(BackendUnavailable, match="certificate"):
            objstore.open_storage_classes(wrong, env={})
    finally:
        other_ca.close()
