"""seafile.conf reading (GKeyFile semantics), typed validation and the environment form."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

import objstore
from objstore import ConfigError, ObjKind
from objstore.config import FsConfig, MemcachedConfig, RedisConfig, S3Config, load_config

CONF_DIR = Path(__file__).resolve().parent.parent / "conf"
KEY32 = "k" * 32


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "seafile.conf"
    path.write_text(text)
    return path


def s3_block(**opts: str) -> str:
    base = {"name": "s3", "bucket": "blocks", "key_id": "AKID", "key": "SECRETKEY"}
    base.update(opts)
    return "[block_backend]\n" + "".join(f"{k} = {v}\n" for k, v in base.items())


@pytest.mark.parametrize("path", sorted(CONF_DIR.glob("*.conf")), ids=lambda p: p.name)
def test_every_example_parses(path: Path, tmp_path: Path) -> None:
    cfg = load_config(path, data_dir=tmp_path)
    assert set(cfg.backends) == set(ObjKind)
    text = path.read_text()
    for kind in ObjKind:
        backend = cfg.backends[kind]
        if (
            f"[{kind.section}]" in text
            and "name = s3" in text.split(f"[{kind.section}]")[1].split("[")[0]
        ):
            assert isinstance(backend, S3Config)
        else:
            assert isinstance(backend, FsConfig)
    # no secret shows in the repr
    for secret in (
        "wJalrXUtnFEMI",
        "change-me-secret",
        "provider-secret",
        "3kL9vQ2m",
        "change-me-redis",
    ):
        assert secret not in repr(cfg)


def test_examples_cover_each_setup() -> None:
    names = {p.stem for p in CONF_DIR.glob("*.conf")}
    assert {
        "disk",
        "aws",
        "self-hosted",
        "provider",
        "sse-c",
        "redis-cache",
        "memcached-cache",
    } <= names
    assert isinstance(load_config(CONF_DIR / "redis-cache.conf").cache, RedisConfig)
    mc = load_config(CONF_DIR / "memcached-cache.conf").cache
    assert isinstance(mc, MemcachedConfig) and len(mc.servers) == 2
    sse = load_config(CONF_DIR / "sse-c.conf").backends[ObjKind.BLOCK]
    assert isinstance(sse, S3Config) and sse.sse_c_key is not None


def test_s3_values(tmp_path: Path) -> None:
    cfg = load_config(
        write(
            tmp_path,
            s3_block(
                host="s3.example:9000",
                use_v4_signature="true",
                use_https="TRUE",
                path_style_request="1",
                aws_region="eu-west-1",
                sse_c_key=KEY32,
                key_prefix="inst1/blocks/",
                multipart_threshold="32M",
                max_connections="50",
            ),
        ),
        data_dir=tmp_path,
    )
    b = cfg.backends[ObjKind.BLOCK]
    assert isinstance(b, S3Config)
    assert (b.bucket, b.key_id, b.host, b.aws_region) == (
        "blocks",
        "AKID",
        "s3.example:9000",
        "eu-west-1",
    )
    assert b.use_v4_signature and b.use_https and b.path_style_request
    assert b.key is not None and b.key.reveal() == "SECRETKEY"
    assert (b.host, b.use_https) == ("s3.example:9000", True)
    assert b.multipart_threshold == 32 * 1024 * 1024 and b.max_connections == 50
    assert "SECRETKEY" not in repr(b) and KEY32 not in repr(b) and KEY32 not in str(cfg)
    assert isinstance(cfg.backends[ObjKind.COMMIT], FsConfig)  # missing section: data dir


def test_gkeyfile_semantics(tmp_path: Path) -> None:
    text = (
        "# comment line\n"
        "  # indented comment\n"
        "[block_backend]\n"
        "name=fs\n"
        "dir =  /data/%(home)s/x\\sy  \n"  # no % interpolation, \s escape
        "[general]\n"
        "Enable_Syslog = true\n"  # Seafile's own sections are left alone
    )
    cfg = load_config(write(tmp_path, text), data_dir=tmp_path)
    b = cfg.backends[ObjKind.BLOCK]
    assert isinstance(b, FsConfig) and str(b.dir) == "/data/%(home)s/x y"


def test_keys_are_case_sensitive(tmp_path: Path) -> None:
    with pytest.raises(
        ConfigError, match=r"\[block_backend\] Bucket: unknown option; did you mean 'bucket'"
    ):
        load_config(write(tmp_path, s3_block().replace("bucket =", "Bucket =")))


CASES = [
    (s3_block(use_https="maybe"), "use_https", "bad value 'maybe'"),
    (s3_block(bukcet="x"), "bukcet", "did you mean 'bucket'"),
    (
        s3_block(sse_c_key="k" * 31, use_v4_signature="true", use_https="true"),
        "sse_c_key",
        "32 bytes",
    ),
    (
        s3_block(sse_c_key="k" * 33, use_v4_signature="true", use_https="true"),
        "sse_c_key",
        "32 bytes",
    ),
    (s3_block(sse_c_key=KEY32, use_https="true"), "sse_c_key", "use_v4_signature"),
    (s3_block(sse_c_key=KEY32, use_v4_signature="true"), "sse_c_key", "use_https"),
    (s3_block(bucket="no/slash"), "bucket", "cannot work"),
    (s3_block(bucket=""), "bucket", "required"),
    (s3_block(host="http://s3.example"), "host", "without http://"),
    (s3_block(host="s3.example:99999"), "host", "bad port"),
    (s3_block(name="ceph"), "name", "unsupported backend"),
    (s3_block(key=""), "key", "both key_id and key"),
    (s3_block(max_connections="0"), "max_connections", "between 1"),
    (s3_block(multipart_chunksize="1M"), "multipart_chunksize", "5M"),
    (s3_block(key_prefix="/abs/"), "key_prefix", "must not start with '/'"),
    (s3_block(ca_file="/nonexistent/ca.pem"), "ca_file", "no such file"),
    (s3_block(connect_timeout="-1"), "connect_timeout", "positive"),
    ("[block_backend]\nname = fs\n[block_backend]\nname = fs\n", None, "section appears twice"),
    ("[block_backend]\nname = fs\nname = fs\n", "name", "option set twice"),
    ("name = fs\n", "name", "before the first"),
    ("[block_backnd]\nname = fs\n", None, "did you mean 'block_backend'"),
    ("[block_backend\nname = fs\n", None, "malformed group"),
    ("[block_backend]\njust words\n", None, "expected 'key = value'"),
    ("[redis]\nredis_port = http\n", "redis_port", "bad value"),
    ("[memcached]\nmemcached_options = localhost\n", "memcached_options", "--SERVER"),
]


@pytest.mark.parametrize(("text", "option", "message"), CASES)
def test_bad_config_names_file_section_option(
    tmp_path: Path, text: str, option: str | None, message: str
) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_config(path, data_dir=tmp_path)
    err = info.value
    assert str(path) in str(err)
    assert message in str(err)
    if option is not None:
        assert err.option == option and option in str(err)
    assert "SECRETKEY" not in str(err)


def test_secret_values_never_in_errors(tmp_path: Path) -> None:
    path = write(tmp_path, s3_block(sse_c_key="S" * 31, use_v4_signature="true", use_https="true"))
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert "S" * 31 not in str(info.value)


def test_unreadable_inputs(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such file"):
        load_config(tmp_path / "absent.conf")
    with pytest.raises(ConfigError, match=r"has no seafile\.conf"):
        load_config(tmp_path)
    (tmp_path / "d" / "seafile.conf").mkdir(parents=True)
    with pytest.raises(ConfigError, match="directory"):
        load_config(tmp_path / "d" / "seafile.conf")
    bad = tmp_path / "latin1.conf"
    bad.write_bytes(b"[block_backend]\nname = fs\ndir = /caf\xe9\n")
    with pytest.raises(ConfigError, match="UTF-8"):
        load_config(bad)


def test_missing_section_without_data_dir(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"\[commit_object_backend\].*data dir"):
        load_config(write(tmp_path, "[general]\n"), env={})
    cfg = load_config(write(tmp_path, "[general]\n"), env={"SEAFILE_DATA_DIR": str(tmp_path)})
    assert cfg.backends[ObjKind.FS] == FsConfig(tmp_path)


def test_relative_dir_is_relative_to_the_conf(tmp_path: Path) -> None:
    cfg = load_config(
        write(tmp_path, "[block_backend]\nname = fs\ndir = data\n"), data_dir=tmp_path
    )
    assert cfg.backends[ObjKind.BLOCK] == FsConfig(tmp_path / "data")


def test_bucket_name_warning(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="objstore"):
        cfg = load_config(write(tmp_path, s3_block(bucket="My_Bucket")), data_dir=tmp_path)
    assert cfg.warnings and "DNS-compatible" in cfg.warnings[0]
    assert "My_Bucket" in caplog.text


def test_environment_form() -> None:
    env = {
        "SEAF_SERVER_STORAGE_TYPE": "s3",
        "S3_KEY_ID": "AKID",
        "S3_SECRET_KEY": "ENVSECRET",
        "S3_COMMIT_BUCKET": "c",
        "S3_FS_BUCKET": "f",
        "S3_BLOCK_BUCKET": "b",
        "S3_HOST": "127.0.0.1:8333",
        "S3_USE_V4_SIGNATURE": "true",
        "S3_PATH_STYLE_REQUEST": "true",
        "CACHE_PROVIDER": "redis",
        "REDIS_HOST": "127.0.0.1",
        "REDIS_PORT": "6390",
        "REDIS_PASSWORD": "REDISPW",
    }
    cfg = objstore.config_from_env(env)
    b = cfg.backends[ObjKind.BLOCK]
    assert isinstance(b, S3Config) and b.bucket == "b" and b.path_style_request
    assert isinstance(cfg.cache, RedisConfig) and cfg.cache.port == 6390
    assert "ENVSECRET" not in repr(cfg) and "REDISPW" not in repr(cfg)
    with pytest.raises(ConfigError, match="S3_FS_BUCKET"):
        objstore.config_from_env({**env, "S3_FS_BUCKET": ""})
    with pytest.raises(ConfigError, match="S3_USE_HTTPS"):
        objstore.config_from_env({**env, "S3_USE_HTTPS": "sometimes"})
    disk = objstore.config_from_env({"SEAF_SERVER_STORAGE_TYPE": "disk", "SEAFILE_DATA_DIR": "/d"})
    assert disk.backends[ObjKind.BLOCK] == FsConfig(Path("/d"))
    mc = objstore.config_from_env(
        {
            "SEAFILE_DATA_DIR": "/d",
            "CACHE_PROVIDER": "memcached",
            "MEMCACHED_HOST": "mc",
            "MEMCACHED_PORT": "11212",
        }
    )
    assert isinstance(mc.cache, MemcachedConfig) and mc.cache.servers == (("mc", 11212),)


def test_iam_role_blank_credentials(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, s3_block(key_id="", key="")), data_dir=tmp_path)
    b = cfg.backends[ObjKind.BLOCK]
    assert isinstance(b, S3Config) and b.key_id is None and b.key is None


@pytest.mark.parametrize(
    ("given", "used"),
    [("seafile/commits", "seafile/commits/"), ("inst1/blocks/", "inst1/blocks/"), ("x", "x/")],
)
def test_key_prefix_is_a_folder(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, given: str, used: str
) -> None:
    with caplog.at_level(logging.WARNING, logger="objstore"):
        cfg = load_config(write(tmp_path, s3_block(key_prefix=given)), data_dir=tmp_path)
    b = cfg.backends[ObjKind.BLOCK]
    assert isinstance(b, S3Config) and b.key_prefix == used
    (warning,) = [w for w in cfg.warnings if "key_prefix" in w]
    assert warning.startswith(f"[block_backend] key_prefix {used!r}")
    assert "Seafile itself does not read prefixed keys" in warning
    assert ("trailing '/' was added" in warning) == (given != used)
    assert warning in caplog.text
    env = {
        "SEAF_SERVER_STORAGE_TYPE": "s3",
        "S3_COMMIT_BUCKET": "c",
        "S3_FS_BUCKET": "f",
        "S3_BLOCK_BUCKET": "b",
        "S3_KEY_PREFIX": given,
    }
    from_env = objstore.config_from_env(env)
    assert all(b.key_prefix == used for b in from_env.backends.values())  # type: ignore[union-attr]
    assert any(w.startswith("environment (blocks) key_prefix") for w in from_env.warnings)


@pytest.mark.parametrize("prefix", ["/seafile/", "/x", "a//b/", "//"])
def test_key_prefix_leading_slash_refused(tmp_path: Path, prefix: str) -> None:
    with pytest.raises(ConfigError, match="must not start with '/' or contain '//'") as info:
        load_config(write(tmp_path, s3_block(key_prefix=prefix)), data_dir=tmp_path)
    assert info.value.option == "key_prefix"
    with pytest.raises(ConfigError) as info:
        objstore.config_from_env(
            {
                "SEAF_SERVER_STORAGE_TYPE": "s3",
                "S3_COMMIT_BUCKET": "c",
                "S3_FS_BUCKET": "f",
                "S3_BLOCK_BUCKET": "b",
                "S3_KEY_PREFIX": prefix,
            }
        )
    assert info.value.option == "S3_KEY_PREFIX"


def test_libmemcached_options_objstore_does_not_use_are_named(tmp_path: Path) -> None:
    text = "[memcached]\nmemcached_options = --SERVER=mc:11211 --BINARY-PROTOCOL --POOL-MAX=8\n"
    cfg = load_config(write(tmp_path, text), data_dir=tmp_path)
    assert isinstance(cfg.cache, MemcachedConfig) and cfg.cache.pool_max == 8
    assert any("--BINARY-PROTOCOL not used" in w for w in cfg.warnings)
