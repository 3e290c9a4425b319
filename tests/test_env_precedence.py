"""The environment against seafile.conf, decided as Seafile decides (seafobj
``objstore_factory.py``; seafile-server ``common/obj-cache.c``): one test per row of
the README's precedence table, each with a seafile.conf present, plus
``objstore-migrate`` applying the environment to SRC only."""

from __future__ import annotations

import json
import logging
import os
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import objstore
from objstore import ConfigError, ObjKind
from objstore.config import FsConfig, MemcachedConfig, RedisConfig, S3Config, load_config
from objstore.formats import block_id

from .helpers import fs_conf, s3_conf, write_conf
from .test_cache import fs_object, new_repo
from .test_migrate_helpers import build_disk_store, cli_command, cli_env, count_objects

ENV_S3 = "environment (SEAF_SERVER_STORAGE_TYPE=s3)"


def env_s3(server: Any, buckets: dict[ObjKind, str], **extra: str) -> dict[str, str]:
    """Seafile's Docker form for the three kinds on a test S3 server."""
    return {
        "SEAF_SERVER_STORAGE_TYPE": "s3",
        "S3_KEY_ID": server.access_key,
        "S3_SECRET_KEY": server.secret_key,
        "S3_COMMIT_BUCKET": buckets[ObjKind.COMMIT],
        "S3_FS_BUCKET": buckets[ObjKind.FS],
        "S3_BLOCK_BUCKET": buckets[ObjKind.BLOCK],
        "S3_HOST": f"{server.host}:{server.http_port}",
        "S3_USE_V4_SIGNATURE": "true",
        "S3_PATH_STYLE_REQUEST": "true",
        **extra,
    }


def s3_block_section(bucket: str = "blocks", **opts: str) -> str:
    base = {"name": "s3", "bucket": bucket, "key_id": "AKID", "key": "SECRETKEY", **opts}
    return "[block_backend]\n" + "".join(f"{k} = {v}\n" for k, v in base.items())


def fs_except_blocks(data: Path) -> str:
    """fs sections for commits and fs objects (the block section is the test's)."""
    return "".join(
        f"[{k.section}]\nname = fs\ndir = {data}\n" for k in ObjKind if k != ObjKind.BLOCK
    )


def files_under(path: Path) -> list[Path]:
    return sorted(p for p in path.rglob("*") if p.is_file())


# ---------------------------------------------------------------- storage


def test_storage_type_s3_replaces_the_backend_sections(
    tmp_path: Path, seaweed: Any, new_bucket: Any, caplog: pytest.LogCaptureFixture
) -> None:
    file_data = tmp_path / "file-data"
    file_data.mkdir()
    conf = write_conf(tmp_path / "conf", fs_conf(file_data) + "[general]\n")
    buckets = {kind: new_bucket(seaweed, "env") for kind in ObjKind}
    env = env_s3(seaweed, buckets)
    cfg = load_config(conf, env=env)
    for kind in ObjKind:
        backend = cfg.backends[kind]
        assert isinstance(backend, S3Config) and backend.bucket == buckets[kind]
        assert cfg.origins[kind] == ENV_S3
    assert f"[block_backend] is not used: {ENV_S3} wins, as in Seafile" in cfg.warnings
    assert cfg.describe()[2] == f"blocks: {ENV_S3}"

    repo = new_repo()
    data = b"written where Seafile reads"
    with caplog.at_level(logging.INFO, logger="objstore"):
        stores = objstore.open_stores(conf, env=env)
    with stores:
        stores.block.write(repo, block_id(data), data)
    assert f"blocks: {ENV_S3}" in caplog.text
    assert files_under(file_data) == []  # the file's dir was not used
    # the same bucket, described by a seafile.conf read without the environment
    plain = write_conf(tmp_path / "plain", s3_conf(seaweed, buckets, create=False))
    with objstore.open_config(load_config(plain, use_env=False)) as direct:
        assert direct.block.read(repo, block_id(data)) == data


def test_storage_type_disk_replaces_dir_and_s3_sections(tmp_path: Path) -> None:
    data_dir, other = tmp_path / "data", tmp_path / "other"
    data_dir.mkdir()
    other.mkdir()
    text = fs_except_blocks(other) + s3_block_section()
    conf = write_conf(tmp_path / "conf", text)
    env = {"SEAF_SERVER_STORAGE_TYPE": "disk", "SEAFILE_DATA_DIR": str(data_dir)}
    cfg = load_config(conf, env=env)
    assert all(cfg.backends[kind] == FsConfig(data_dir) for kind in ObjKind)
    assert cfg.origins[ObjKind.BLOCK] == (
        f"environment (SEAF_SERVER_STORAGE_TYPE=disk, data dir SEAFILE_DATA_DIR={data_dir})"
    )
    repo, data = new_repo(), b"a block"
    with objstore.open_stores(conf, env=env) as stores:
        stores.block.write(repo, block_id(data), data)
    oid = block_id(data)
    assert files_under(data_dir) == [data_dir / "storage/blocks" / repo / oid[:2] / oid[2:]]
    assert files_under(other) == []
    with pytest.raises(ConfigError, match="SEAFILE_DATA_DIR") as info:
        load_config(conf, env={"SEAF_SERVER_STORAGE_TYPE": "disk"})
    assert info.value.option == "SEAFILE_DATA_DIR"


def test_storage_type_multiple_and_storage_classes_are_refused(tmp_path: Path) -> None:
    conf = write_conf(tmp_path / "conf", fs_conf(tmp_path))
    with pytest.raises(ConfigError, match="storage classes") as info:
        load_config(conf, env={"SEAF_SERVER_STORAGE_TYPE": "multiple"})
    assert info.value.option == "SEAF_SERVER_STORAGE_TYPE"
    for value in ("true", "True", "1"):  # seafobj reads 'true' in any case, GKeyFile also 1
        enabled = write_conf(
            tmp_path / value,
            fs_conf(tmp_path) + f"[storage]\nenable_storage_classes = {value}\n"
            "storage_classes_file = /etc/seafile/classes.json\n",
        )
        with pytest.raises(ConfigError, match="storage classes") as info:
            load_config(enabled, env={})
        assert str(enabled) in str(info.value)
        assert (info.value.section, info.value.option) == ("storage", "enable_storage_classes")
    off = write_conf(
        tmp_path / "off", fs_conf(tmp_path) + "[storage]\nenable_storage_classes = false\n"
    )
    assert isinstance(load_config(off, env={}).backends[ObjKind.BLOCK], FsConfig)
    bad = write_conf(
        tmp_path / "bad", fs_conf(tmp_path) + "[storage]\nenable_storage_classes = on-ish\n"
    )
    with pytest.raises(ConfigError, match="enable_storage_classes: bad value"):
        load_config(bad, env={})
    # SEAF_SERVER_STORAGE_TYPE=disk wins over the file's storage classes, as in seafobj
    cfg = load_config(
        enabled, env={"SEAF_SERVER_STORAGE_TYPE": "disk", "SEAFILE_DATA_DIR": str(tmp_path)}
    )
    assert any("[storage] enable_storage_classes is not used" in w for w in cfg.warnings)


@pytest.mark.parametrize("env", [{}, {"SEAF_SERVER_STORAGE_TYPE": ""}])
def test_storage_type_unset_or_blank_reads_the_file(tmp_path: Path, env: dict[str, str]) -> None:
    conf = write_conf(tmp_path / "conf", fs_except_blocks(tmp_path) + s3_block_section())
    cfg = load_config(conf, env={**env, "S3_BLOCK_BUCKET": "ignored", "S3_HOST": "x:1"})
    block = cfg.backends[ObjKind.BLOCK]
    assert isinstance(block, S3Config) and block.bucket == "blocks" and block.host is None
    assert cfg.origins[ObjKind.BLOCK] == f"{conf} [block_backend]"
    assert cfg.origins[ObjKind.FS] == f"{conf} [fs_object_backend]"


@pytest.mark.parametrize("value", ["floppy", "S3", "fs", " s3", "Disk", "multiple "])
def test_unknown_storage_type_names_the_variable(tmp_path: Path, value: str) -> None:
    conf = write_conf(tmp_path / "conf", fs_conf(tmp_path))
    calls: list[Callable[[], object]] = [
        lambda: load_config(conf, env={"SEAF_SERVER_STORAGE_TYPE": value}),
        lambda: objstore.config_from_env({"SEAF_SERVER_STORAGE_TYPE": value}),
    ]
    for call in calls:
        with pytest.raises(ConfigError, match="must be s3, disk or multiple") as info:
            call()
        assert info.value.option == "SEAF_SERVER_STORAGE_TYPE"
        assert "SEAF_SERVER_STORAGE_TYPE" in str(info.value)


def test_data_dir_precedence(tmp_path: Path) -> None:
    """data_dir= > SEAFILE_DATA_DIR > SEAFILE_CONF_DIR, for a missing section and an
    fs section without dir; never the environment when use_env=False."""
    conf = write_conf(tmp_path / "conf", "[block_backend]\nname = fs\n[general]\n")
    a, b, c = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    both = {"SEAFILE_DATA_DIR": str(b), "SEAFILE_CONF_DIR": str(c)}
    assert load_config(conf, data_dir=a, env=both).backends[ObjKind.BLOCK] == FsConfig(a)
    cfg = load_config(conf, env=both)
    assert all(cfg.backends[kind] == FsConfig(b) for kind in ObjKind)
    assert cfg.origins[ObjKind.COMMIT] == (
        f"{conf} (no [commit_object_backend]: data dir SEAFILE_DATA_DIR={b})"
    )
    assert cfg.origins[ObjKind.BLOCK] == (
        f"{conf} [block_backend] (no dir: data dir SEAFILE_DATA_DIR={b})"
    )
    only_conf_dir = load_config(conf, env={"SEAFILE_CONF_DIR": str(c)})
    assert only_conf_dir.backends[ObjKind.FS] == FsConfig(c)
    with pytest.raises(ConfigError, match="read without the environment"):
        load_config(conf, env=both, use_env=False)


def test_iam_role_from_the_environment_applies_to_the_file(tmp_path: Path) -> None:
    with_keys = write_conf(tmp_path / "keys", s3_block_section() + "[general]\n")
    with pytest.raises(ConfigError, match="S3_USE_IAM_ROLE=true") as info:
        load_config(with_keys, env={"S3_USE_IAM_ROLE": "true", "SEAFILE_DATA_DIR": "/d"})
    assert (info.value.section, info.value.option) == ("block_backend", "key_id")
    no_keys = write_conf(tmp_path / "nokeys", s3_block_section(key_id="", key=""))
    cfg = load_config(no_keys, env={"S3_USE_IAM_ROLE": "true", "SEAFILE_DATA_DIR": "/d"})
    block = cfg.backends[ObjKind.BLOCK]
    assert isinstance(block, S3Config) and block.key_id is None and block.key is None
    # 'false' and unset leave explicit keys alone
    for env in ({"S3_USE_IAM_ROLE": "false"}, {}):
        got = load_config(with_keys, env={**env, "SEAFILE_DATA_DIR": "/d"})
        assert isinstance(got.backends[ObjKind.BLOCK], S3Config)
        assert got.backends[ObjKind.BLOCK].key_id == "AKID"  # type: ignore[union-attr]
    file_role = write_conf(tmp_path / "filerole", s3_block_section(use_iam_role="true"))
    with pytest.raises(ConfigError, match="use_iam_role = true and key_id/key exclude"):
        load_config(file_role, env={"SEAFILE_DATA_DIR": "/d"})


@pytest.mark.parametrize("var", ["S3_USE_HTTPS", "S3_USE_V4_SIGNATURE", "S3_USE_IAM_ROLE"])
@pytest.mark.parametrize("value", ["TRUE", "1", "yes", "True"])
def test_environment_booleans_are_exactly_true_or_false(
    tmp_path: Path, var: str, value: str
) -> None:
    """Seafile compares with 'true': 'TRUE' would silently be false there."""
    conf = write_conf(tmp_path / "conf", s3_block_section(key_id="", key=""))
    buckets = {"S3_COMMIT_BUCKET": "c", "S3_FS_BUCKET": "f", "S3_BLOCK_BUCKET": "b"}
    for env in (
        {"SEAF_SERVER_STORAGE_TYPE": "s3", **buckets, var: value},
        *([{var: value, "SEAFILE_DATA_DIR": "/d"}] if var == "S3_USE_IAM_ROLE" else []),
    ):
        with pytest.raises(ConfigError, match="must be true or false") as info:
            load_config(conf, env=env)
        assert info.value.option == var


def test_store_crypt_with_environment_storage_is_refused(tmp_path: Path) -> None:
    text = fs_conf(tmp_path) + "[store_crypt]\nkey_path = /etc/seafile/seaf-key.txt\n"
    conf = write_conf(tmp_path / "conf", text)
    assert load_config(conf, env={}).store_crypt_key == Path("/etc/seafile/seaf-key.txt")
    env = {"SEAF_SERVER_STORAGE_TYPE": "disk", "SEAFILE_DATA_DIR": str(tmp_path)}
    with pytest.raises(ConfigError, match="without \\[store_crypt\\]") as info:
        load_config(conf, env=env)
    assert (info.value.section, info.value.option) == ("store_crypt", "key_path")
    assert "SEAF_SERVER_STORAGE_TYPE=disk" in str(info.value)


# ---------------------------------------------------------------- cache


FILE_CACHE = {
    "redis": "[redis]\nredis_host = 127.0.0.1\nredis_port = 9\n",
    "memcached": "[memcached]\nmemcached_options = --SERVER=127.0.0.1:9\n",
}


@pytest.mark.parametrize("provider", ["redis", "memcached"])
def test_cache_provider_replaces_the_file_cache(
    tmp_path: Path, provider: str, request: pytest.FixtureRequest
) -> None:
    """The file names a dead cache of the other kind; the environment's server is used."""
    server = request.getfixturevalue(f"{provider}_server")
    other = "memcached" if provider == "redis" else "redis"
    (tmp_path / "data").mkdir()
    conf = write_conf(tmp_path / "conf", fs_conf(tmp_path / "data") + FILE_CACHE[other])
    var = provider.upper()
    env = {"CACHE_PROVIDER": provider, f"{var}_HOST": "127.0.0.1", f"{var}_PORT": str(server.port)}
    cfg = load_config(conf, env=env)
    expected = RedisConfig if provider == "redis" else MemcachedConfig
    assert isinstance(cfg.cache, expected)
    assert cfg.cache_origin == f"environment (CACHE_PROVIDER={provider})"
    assert cfg.describe()[-1] == f"cache: environment (CACHE_PROVIDER={provider})"
    assert any(w.startswith(f"[{other}] is not used: environment") for w in cfg.warnings)
    repo = new_repo()
    obj_id, data = fs_object()
    with objstore.open_stores(conf, env=env) as stores:
        stores.fs.write(repo, obj_id, data)
        assert stores.fs.read(repo, obj_id) == data
        assert stores.cache_stats()["fs"]["hits"] == 1  # served by the environment's server


@pytest.mark.parametrize(
    ("env", "var"),
    [
        ({"CACHE_PROVIDER": "redis"}, "REDIS_HOST"),
        ({"CACHE_PROVIDER": "redis", "REDIS_HOST": "", "REDIS_PORT": "6380"}, "REDIS_HOST"),
        ({"CACHE_PROVIDER": "memcached", "MEMCACHED_PORT": "11212"}, "MEMCACHED_HOST"),
    ],
)
def test_cache_provider_without_its_host_is_refused(
    tmp_path: Path, env: dict[str, str], var: str
) -> None:
    """seafobj then runs without a cache; objstore never guesses 127.0.0.1."""
    text = fs_conf(tmp_path) + "[redis]\nredis_host = 10.0.0.5\n"
    conf = write_conf(tmp_path / "conf", text)
    calls: list[Callable[[], object]] = [
        lambda: load_config(conf, env=env),
        lambda: objstore.config_from_env({**env, "SEAFILE_DATA_DIR": str(tmp_path)}),
    ]
    for call in calls:
        with pytest.raises(ConfigError, match=r"refuses to guess 127\.0\.0\.1") as info:
            call()
        assert info.value.option == var


def test_cache_provider_unset_reads_the_file(tmp_path: Path) -> None:
    both = fs_conf(tmp_path) + (
        "[redis]\nredis_host = 10.0.0.5\n[memcached]\nmemcached_options = --SERVER=10.0.0.6:11211\n"
    )
    conf = write_conf(tmp_path / "both", both)
    cfg = load_config(conf, env={"CACHE_PROVIDER": ""})
    assert isinstance(cfg.cache, RedisConfig) and cfg.cache.host == "10.0.0.5"
    assert cfg.cache_origin == f"{conf} [redis]"
    assert "[memcached] is not used: [redis] wins, as in Seafile" in cfg.warnings
    mc_only = write_conf(
        tmp_path / "mc", fs_conf(tmp_path) + both.split("[redis]")[1].split("\n", 2)[2]
    )
    cfg = load_config(mc_only, env={})
    assert isinstance(cfg.cache, MemcachedConfig) and cfg.cache_origin == f"{mc_only} [memcached]"
    assert load_config(write_conf(tmp_path / "none", fs_conf(tmp_path)), env={}).cache is None
    no_host = write_conf(
        tmp_path / "nohost", both.replace("redis_host = 10.0.0.5", "redis_port = 6379")
    )
    with pytest.raises(ConfigError, match="redis_host: required") as info:
        load_config(no_host, env={})
    assert (info.value.section, info.value.option) == ("redis", "redis_host")


@pytest.mark.parametrize("value", ["Redis", "memcache", "none", "redis "])
def test_unknown_cache_provider_names_the_variable(tmp_path: Path, value: str) -> None:
    conf = write_conf(tmp_path / "conf", fs_conf(tmp_path))
    with pytest.raises(ConfigError, match="must be redis or memcached") as info:
        load_config(conf, env={"CACHE_PROVIDER": value})
    assert info.value.option == "CACHE_PROVIDER"


# ---------------------------------------------------------------- objstore-migrate


def run_cli_env(args: list[Any], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        cli_command(args), capture_output=True, text=True, timeout=300,
        env={**cli_env(), **env}, check=False,
    )  # fmt: skip


def test_cli_environment_applies_to_src_only(tmp_path: Path) -> None:
    """The deployment's environment says disk under DATA; SRC's seafile.conf names a
    stale directory and DEST's its own: objects go DATA -> DEST's dir."""
    deployment = build_disk_store(tmp_path / "deploy", repos=2, seed=5, files=4)
    data_dir = tmp_path / "deploy" / "data"
    stale = tmp_path / "stale"
    stale.mkdir()
    src = write_conf(tmp_path / "src", fs_conf(stale))
    dest_data = tmp_path / "dest-data"
    dest_data.mkdir()
    dest = write_conf(tmp_path / "dest", fs_conf(dest_data))
    env = {"SEAF_SERVER_STORAGE_TYPE": "disk", "SEAFILE_DATA_DIR": str(data_dir)}
    report = tmp_path / "report.json"
    proc = run_cli_env([src, dest, "--report", report], env)
    assert proc.returncode == 0, proc.stderr
    total = count_objects(deployment)
    assert total > 0 and f"copy: {total} copied" in proc.stdout
    assert count_objects(dest) == total
    assert files_under(stale) == []
    origin = f"environment (SEAF_SERVER_STORAGE_TYPE=disk, data dir SEAFILE_DATA_DIR={data_dir})"
    assert f"  blocks   {origin}\n" in proc.stdout
    assert f"  blocks   {dest} [block_backend]\n" in proc.stdout
    assert "[block_backend] is not used" in proc.stderr  # the warning about SRC's sections
    origins = json.loads(report.read_text())["origins"]
    assert origins["source"]["fs"] == origin
    assert origins["destination"]["fs"] == f"{dest} [fs_object_backend]"


def test_cli_unknown_environment_value_exits_2(tmp_path: Path) -> None:
    src = write_conf(tmp_path / "src", fs_conf(tmp_path))
    dest = write_conf(tmp_path / "dest", fs_conf(tmp_path))
    for env, var in (
        ({"SEAF_SERVER_STORAGE_TYPE": "floppy"}, "SEAF_SERVER_STORAGE_TYPE"),
        ({"CACHE_PROVIDER": "redis"}, "REDIS_HOST"),
    ):
        proc = run_cli_env([src, dest], env)
        assert proc.returncode == 2
        assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr
        assert var in proc.stderr


def test_library_migrate_applies_the_environment_to_the_source_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    deployment = build_disk_store(tmp_path / "deploy", repos=1, seed=6, files=3)
    stale = tmp_path / "stale"
    stale.mkdir()
    dest_data = tmp_path / "dest-data"
    dest_data.mkdir()
    src = write_conf(tmp_path / "src", fs_conf(stale))
    dest = write_conf(tmp_path / "dest", fs_conf(dest_data))
    monkeypatch.setenv("SEAF_SERVER_STORAGE_TYPE", "disk")
    monkeypatch.setenv("SEAFILE_DATA_DIR", str(tmp_path / "deploy" / "data"))
    result = objstore.migrate(src, dest)
    assert result.exit_code == 0
    monkeypatch.delenv("SEAF_SERVER_STORAGE_TYPE")
    monkeypatch.delenv("SEAFILE_DATA_DIR")
    assert count_objects(dest) == count_objects(deployment) > 0
    assert files_under(stale) == []
    assert os.listdir(dest_data) == ["storage"]
