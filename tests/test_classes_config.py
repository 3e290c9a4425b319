"""Storage classes: the [storage] section, the JSON file and [database], validated like
seafile.conf (errors name the file, the class, the kind and the option); locations
and overlaps; the example configuration and plan file.  No server needed."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import objstore
from objstore import ConfigError, ObjKind
from objstore.cli import main as migrate_main
from objstore.config import FsConfig, S3Config, backend_location, locations_overlap
from objstore.migration import load_plan_file

from .storage_classes import fs_class, write_classes

REPO_ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = REPO_ROOT / "conf" / "storage-classes"
KEY32 = "0123456789abcdef0123456789abcdef"


def s3_spec(bucket: str = "b", prefix: str = "", **extra: Any) -> dict[str, Any]:
    return {"backend": "s3", "bucket": bucket, "key_prefix": prefix, "key_id": "AKID",
            "key": "SECRETKEY-classes", "host": "s3.example:9000", "use_v4_signature": True,
            "use_https": True, "path_style_request": True, **extra}  # fmt: skip


def s3_only(storage_id: str, bucket: str, **extra: Any) -> dict[str, Any]:
    return {"storage_id": storage_id, "name": storage_id, **extra,
            **{k.value: s3_spec(bucket, f"{k.value}/") for k in ObjKind}}  # fmt: skip


def load(conf: Path, tmp_path: Path, **kw: Any) -> objstore.StorageClassesConfig:
    return objstore.load_storage_classes(conf, data_dir=tmp_path, env={}, **kw)


def test_example_configuration_parses() -> None:
    cfg = objstore.load_storage_classes(EXAMPLE, env={})
    assert list(cfg.classes) == ["local", "s3-standard", "s3-encrypted"]
    assert cfg.default == "local"
    local, standard, encrypted = cfg.classes.values()
    assert all(isinstance(b, FsConfig) for b in local.config.backends.values())
    local_blocks = local.config.backends[ObjKind.BLOCK]
    assert isinstance(local_blocks, FsConfig)
    assert local_blocks.dir == Path("/opt/seafile/seafile-data")
    assert standard.for_new_library and not encrypted.for_new_library
    for sc in (standard, encrypted):
        assert all(isinstance(b, S3Config) for b in sc.config.backends.values())
    block = encrypted.config.backends[ObjKind.BLOCK]
    assert isinstance(block, S3Config) and block.sse_c_key is not None
    plain = standard.config.backends[ObjKind.BLOCK]
    assert isinstance(plain, S3Config) and plain.sse_c_key is None and plain.use_https
    assert cfg.database is not None and cfg.database.type == "mysql"
    assert cfg.database.location == "mysql://seafile@db.internal.example:3306/seafile_db"
    for secret in ("change-me-secret", "3kL9vQ2mX7pR4tW8yB1nC6fH0jD5sG2a", "change-me-db-password"):
        assert secret not in repr(cfg)


def test_open_stores_refuses_storage_classes(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as exc:
        objstore.open_stores(EXAMPLE)
    assert "open_storage_classes" in str(exc.value)
    assert exc.value.section == "storage" and exc.value.option == "enable_storage_classes"
    # Seafile's Docker images turn them on with SEAF_SERVER_STORAGE_TYPE=multiple
    plain = tmp_path / "seafile.conf"
    plain.write_text(f"[block_backend]\nname = fs\ndir = {tmp_path}\n")
    with pytest.raises(ConfigError, match="open_storage_classes"):
        objstore.load_config(plain, data_dir=tmp_path, env={"SEAF_SERVER_STORAGE_TYPE": "multiple"})
    assert objstore.load_config(plain, data_dir=tmp_path, env={}).backends


def test_backend_sections_are_ignored_with_a_warning(tmp_path: Path) -> None:
    conf = write_classes(tmp_path, [c()], "[block_backend]\nname = fs\ndir = /x\n")
    cfg = load(conf, tmp_path, database=False)
    assert cfg.warnings == ("[block_backend] is ignored: storage classes are enabled",)
    conf.write_text(conf.read_text() + "[block_backnd]\nname = fs\n")
    with pytest.raises(ConfigError, match="block_backend"):
        load(conf, tmp_path, database=False)


def test_plain_config_is_not_storage_classes(tmp_path: Path) -> None:
    conf = tmp_path / "seafile.conf"
    conf.write_text("[storage]\nenable_storage_classes = false\n")
    with pytest.raises(ConfigError, match="not enabled"):
        load(conf, tmp_path)


def test_relative_paths_and_json_values(tmp_path: Path) -> None:
    (tmp_path / "conf" / "data").mkdir(parents=True)
    entry = fs_class("local", Path("data"), is_default=True)
    entry["blocks"] = s3_spec("blocks", use_https="true", max_retries=7)
    conf = write_classes(tmp_path / "conf", [entry])
    cfg = load(conf, tmp_path, database=False)
    assert cfg.classes_file == str(tmp_path / "conf" / "classes.json")
    local = cfg.classes["local"].config.backends
    assert local[ObjKind.FS] == FsConfig(tmp_path / "conf" / "data")
    blocks = local[ObjKind.BLOCK]
    assert isinstance(blocks, S3Config) and blocks.use_https and blocks.max_retries == 7
    assert cfg.default == "local" and cfg.database is None


def test_cache_and_store_crypt_of_seafile_conf_apply_to_every_class(tmp_path: Path) -> None:
    conf = write_classes(
        tmp_path,
        [fs_class("a", tmp_path / "a", is_default=True), fs_class("b", tmp_path / "b")],
        "[redis]\nredis_host = 127.0.0.1\nredis_port = 6390\n\n[store_crypt]\nkey_path = k.ini\n",
    )
    cfg = load(conf, tmp_path, database=False)
    caches = [sc.config.cache for sc in cfg.classes.values()]
    assert caches[0] is not None and caches[0] == caches[1]
    keys = {sc.config.store_crypt_key for sc in cfg.classes.values()}
    assert keys == {tmp_path / "k.ini"}


def test_seaf_server_storage_type_multiple_turns_classes_on(tmp_path: Path) -> None:
    conf = write_classes(tmp_path, [c()])
    conf.write_text("[storage]\nstorage_classes_file = classes.json\n")
    with pytest.raises(ConfigError, match="not enabled"):
        load(conf, tmp_path, database=False)
    env = {"SEAF_SERVER_STORAGE_TYPE": "multiple"}
    cfg = objstore.load_storage_classes(conf, env=env, database=False)
    assert list(cfg.classes) == ["a"]


def test_sqlalchemy_is_loaded_only_for_storage_classes() -> None:
    code = "import sys, objstore; assert 'sqlalchemy' not in sys.modules, 'loaded'"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO_ROOT)


def c(sid: str = "a", **kw: Any) -> dict[str, Any]:
    return {"storage_id": sid, "name": sid, **{k.value: {"backend": "fs", "dir": f"/d/{sid}"}
                                               for k in ObjKind}, **kw}  # fmt: skip


def without(entry: dict[str, Any], key: str) -> dict[str, Any]:
    return {k: v for k, v in entry.items() if k != key}


# (JSON text or data, substrings the error must contain)
BAD_FILES: list[tuple[str, Any, tuple[str, ...]]] = [
    ("broken JSON", '[{"storage_id": "a",, }]', ("classes.json", "not valid JSON", "line 1")),
    ("comments", '[{"storage_id": "a"} // hot\n]', ("not valid JSON",)),
    ("not a list", {"storage_id": "a"}, ("non-empty JSON list",)),
    ("empty list", [], ("non-empty JSON list",)),
    ("class not an object", ["a"], ("[class 1]",)),
    ("no storage_id", [without(c(), "storage_id")], ("[class 1] storage_id", "required")),
    ("storage_id not a string", [c(sid=3)], ("[class 1] storage_id",)),  # type: ignore[arg-type]
    ("without blocks", [without(c(), "blocks")], ("[class 'a'] blocks", "required")),
    ("without commits", [without(c(), "commits")], ("[class 'a'] commits", "required")),
    ("two defaults", [c("a", is_default=True), c("b", is_default=True)],
     ("[class 'b'] is_default", "'a', 'b'")),
    ("duplicate ids", [c("a"), c("a")], ("[class 'a'] storage_id", "two classes")),
    ("unknown class key", [c(is_defualt=True)], ("[class 'a'] is_defualt", "is_default")),
    ("is_default as text", [c(is_default="true")], ("[class 'a'] is_default", "JSON boolean")),
    ("duplicate JSON key", '[{"storage_id": "a", "storage_id": "b"}]', ("appears twice",)),
    ("swift", [c(fs={"backend": "swift", "container": "x"})],
     ("[class 'a' fs] backend", "swift", "not supported")),
    ("ceph", [c(blocks={"backend": "ceph", "pool": "x"})], ("[class 'a' blocks] backend", "ceph")),
    ("oss", [c(commits={"backend": "oss", "bucket": "x"})], ("[class 'a' commits] backend", "oss")),
    ("unknown backend", [c(blocks={"backend": "nfs"})], ("[class 'a' blocks] name", "nfs")),
    ("no backend", [c(blocks={"dir": "/x"})], ("[class 'a' blocks] backend", "required")),
    ("name instead of backend", [c(blocks={"backend": "fs", "name": "fs", "dir": "/x"})],
     ("[class 'a' blocks] name", "backend")),
    ("fs without dir", [c(blocks={"backend": "fs"})], ("[class 'a' blocks] dir", "required")),
    ("unknown s3 option", [c(blocks=s3_spec(bukcet="x"))], ("[class 'a' blocks] bukcet", "bucket")),
    ("s3 without bucket", [c(blocks=without(s3_spec(), "bucket"))],
     ("[class 'a' blocks] bucket",)),
    ("bad boolean", [c(blocks=s3_spec(use_https="maybe"))], ("[class 'a' blocks] use_https",)),
    ("list value", [c(blocks=s3_spec(host=["a"]))], ("[class 'a' blocks] host",)),
    ("short sse_c_key", [c(blocks=s3_spec(sse_c_key="x" * 31))],
     ("[class 'a' blocks] sse_c_key", "32 bytes")),
    ("SSE-C over http", [c(blocks=s3_spec(sse_c_key=KEY32, use_https=False))],
     ("[class 'a' blocks] sse_c_key", "use_https")),
    ("same bucket and prefix in two classes", [s3_only("a", "shared"), s3_only("b", "shared")],
     ("[class 'a' commits]", "class 'b' commits", "s3://s3.example:9000/shared/commits/")),
    ("bucket root contains a prefix", [s3_only("a", "x"), c("b", blocks=s3_spec("x", ""))],
     ("class 'b' blocks", "overlaps")),
    ("two kinds in one bucket without prefix",
     [c(fs=s3_spec("one"), blocks=s3_spec("one"))], ("[class 'a' fs]", "class 'a' blocks")),
    ("fs dir inside another class's objects",
     [c("a"), c("b", blocks={"backend": "fs", "dir": "/d/a/storage/blocks/x"})],
     ("[class 'a' blocks]", "class 'b' blocks")),
]  # fmt: skip


@pytest.mark.parametrize(("what", "classes", "expect"), BAD_FILES, ids=[b[0] for b in BAD_FILES])
def test_bad_classes_file(tmp_path: Path, what: str, classes: Any, expect: tuple[str, ...]) -> None:
    text = classes if isinstance(classes, str) else json.dumps(classes)
    conf = write_classes(tmp_path, text)
    with pytest.raises(ConfigError) as exc:
        load(conf, tmp_path, database=False)
    message = str(exc.value)
    assert message.startswith(str(tmp_path / "classes.json")), message
    for part in expect:
        assert part in message, (part, message)
    assert "SECRETKEY-classes" not in message and KEY32 not in message
    # the CLI: exit 2, one line, no traceback
    assert migrate_main([str(conf), "--from-class", "a", "--to-class", "b"]) == 2


def test_fs_dirs_of_one_class_do_not_overlap(tmp_path: Path) -> None:
    """Seafile keeps the three kinds under <dir>/storage/<kind>: one dir for all is fine."""
    conf = write_classes(tmp_path, [c("a"), c("b")])
    assert set(load(conf, tmp_path, database=False).classes) == {"a", "b"}


BAD_CONFS = [
    ("no classes file", "[storage]\nenable_storage_classes = true\n",
     ("[storage] storage_classes_file", "required")),
    ("missing classes file", "[storage]\nenable_storage_classes = true\n"
     "storage_classes_file = nope.json\n", ("nope.json", "no such file")),
    ("typo in [storage]", "[storage]\nenable_storage_clases = true\n",
     ("[storage] enable_storage_clases", "enable_storage_classes")),
    ("bad boolean", "[storage]\nenable_storage_classes = sure\n",
     ("[storage] enable_storage_classes", "true or false")),
]  # fmt: skip


@pytest.mark.parametrize(("what", "text", "expect"), BAD_CONFS, ids=[b[0] for b in BAD_CONFS])
def test_bad_storage_section(tmp_path: Path, what: str, text: str, expect: tuple[str, ...]) -> None:
    conf = tmp_path / "seafile.conf"
    conf.write_text(text)
    with pytest.raises(ConfigError) as exc:
        load(conf, tmp_path, database=False)
    for part in expect:
        assert part in str(exc.value), (part, str(exc.value))
    with pytest.raises(ConfigError):  # open_stores refuses it too, never opens fs defaults
        objstore.open_stores(conf, data_dir=tmp_path, env={})


DB_PASSWORD = "db-pass-7f3c1e"
BAD_DATABASES = [
    ("pgsql", "type = pgsql\nhost = h\nuser = u\n", ("[database] type", "pgsql")),
    ("no type", "host = h\nuser = u\n", ("[database] type", "Seafile 13")),
    ("no host", "type = mysql\nuser = u\n", ("[database] host", "required")),
    ("no user", "type = mysql\nhost = h\n", ("[database] user", "required")),
    ("bad port", "type = mysql\nhost = h\nuser = u\nport = 0\n", ("[database] port",)),
    ("unknown option", "type = mysql\nhost = h\nuser = u\ndbname = x\n",
     ("[database] dbname", "db_name")),
    ("tls without ca", "type = mysql\nhost = h\nuser = u\nuse_ssl = true\n",
     ("[database] ca_path",)),
    ("sqlite without the file", "type = sqlite\n", ("[database] type", "seafile.db")),
]  # fmt: skip


BAD_DB_IDS = [b[0] for b in BAD_DATABASES]


@pytest.mark.parametrize(("what", "body", "expect"), BAD_DATABASES, ids=BAD_DB_IDS)
def test_bad_database_section(
    tmp_path: Path, what: str, body: str, expect: tuple[str, ...]
) -> None:
    conf = write_classes(tmp_path, [c()], f"[database]\npassword = {DB_PASSWORD}\n{body}")
    with pytest.raises(ConfigError) as exc:
        load(conf, tmp_path)
    for part in expect:
        assert part in str(exc.value), (part, str(exc.value))
    assert DB_PASSWORD not in str(exc.value)


def test_database_section_and_environment(tmp_path: Path) -> None:
    section = (
        f"[database]\ntype = MySQL\nhost = db\nuser = seafile\npassword = {DB_PASSWORD}\n"
        "max_connections = 5\ncreate_tables = true\nconnection_charset = utf8\n"
    )
    conf = write_classes(tmp_path, [c()], section)
    db = load(conf, tmp_path).database
    assert db is not None and (db.host, db.port, db.user, db.db_name) == (
        "db", 3306, "seafile", "seafile_db",
    )  # fmt: skip
    assert db.password is not None and db.password.reveal() == DB_PASSWORD
    assert db.charset == "utf8"
    assert DB_PASSWORD not in repr(db)
    env = {
        "SEAFILE_MYSQL_DB_HOST": "db2",
        "SEAFILE_MYSQL_DB_PORT": "3307",
        "SEAFILE_MYSQL_DB_USER": "u2",
        "SEAFILE_MYSQL_DB_PASSWORD": "p2",
        "SEAFILE_MYSQL_DB_SEAFILE_DB_NAME": "sdb",
        "SEAFILE_MYSQL_DB_CCNET_DB_NAME": "x",
    }
    db = objstore.load_storage_classes(conf, data_dir=tmp_path, env=env).database
    assert db is not None and (db.host, db.port, db.user, db.db_name) == ("db2", 3307, "u2", "sdb")
    assert db.password is not None and db.password.reveal() == "p2"
    assert "SEAFILE_MYSQL_DB_HOST" in db.from_env
    with pytest.raises(ConfigError) as exc:
        objstore.load_storage_classes(conf, env={"SEAFILE_MYSQL_DB_PORT": "33o6"})
    assert exc.value.option == "SEAFILE_MYSQL_DB_PORT"
    # no [database]: the variables alone (Seafile's Docker images), else SQLite in the data dir
    bare = write_classes(tmp_path / "bare", [c()])
    db = objstore.load_storage_classes(bare, env=env).database
    assert db is not None and db.type == "mysql" and db.host == "db2"
    (tmp_path / "seafile.db").write_bytes(b"")
    db = objstore.load_storage_classes(bare, env={"SEAFILE_DATA_DIR": str(tmp_path)}).database
    assert db is not None and db.type == "sqlite" and db.path == tmp_path / "seafile.db"


def test_locations_and_overlaps(tmp_path: Path) -> None:
    s3 = S3Config(bucket="b", host="S3.Example:9000", key_prefix="seafile/blocks/")
    assert backend_location(s3, ObjKind.BLOCK) == "s3://s3.example:9000/b/seafile/blocks/"
    assert backend_location(S3Config(bucket="b"), ObjKind.FS) == "s3://aws/b/"
    fs = FsConfig(tmp_path)
    assert backend_location(fs, ObjKind.FS) == f"file://{tmp_path.resolve()}/storage/fs"
    other = S3Config(bucket="b", host="s3.example:9000", key_prefix="seafile/")
    assert locations_overlap(s3, ObjKind.BLOCK, other, ObjKind.FS)
    assert not locations_overlap(s3, ObjKind.BLOCK, S3Config(bucket="b", host="s3.example:9000",
                                 key_prefix="seafile/fs/"), ObjKind.FS)  # fmt: skip
    assert not locations_overlap(s3, ObjKind.BLOCK, S3Config(bucket="c", host="s3.example:9000",
                                 key_prefix="seafile/blocks/"), ObjKind.BLOCK)  # fmt: skip
    assert not locations_overlap(fs, ObjKind.FS, fs, ObjKind.BLOCK)
    assert locations_overlap(fs, ObjKind.FS, fs, ObjKind.FS)
    inner = FsConfig(tmp_path / "storage" / "fs" / "nested")
    assert locations_overlap(fs, ObjKind.FS, inner, ObjKind.BLOCK)
    assert not locations_overlap(fs, ObjKind.FS, s3, ObjKind.FS)


def test_class_move_plan_file_parses() -> None:
    plan = load_plan_file(REPO_ROOT / "migrations" / "storage-class-move.toml")
    assert plan.destination is None
    assert plan.values["from_class"] and plan.values["to_class"]
    assert plan.values["update_mapping"] is True


USAGE = [
    (["conf", "--from-class", "a"], "go together"),
    (["conf", "dest", "--from-class", "a", "--to-class", "b"], "no DEST"),
    (["conf", "dest", "--update-mapping"], "--update-mapping needs"),
    (["conf", "--from-class", "a", "--to-class", "b", "--update-mapping", "--shard", "0/2"],
     "cannot be combined"),
    (["conf", "--from-class", "a", "--to-class", "b", "--update-mapping", "--verify-only"],
     "cannot be combined"),
]  # fmt: skip


@pytest.mark.parametrize(("args", "message"), USAGE, ids=[u[1] for u in USAGE])
def test_class_move_usage_errors(args: list[str], message: str, capsys: Any) -> None:
    with pytest.raises(SystemExit) as exc:
        migrate_main(args)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
