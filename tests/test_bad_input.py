"""A corpus of malformed configurations: each gives a ConfigError naming the file
(and the section and option where there is one), and objstore-migrate exits 2
with one readable line, never a traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from objstore import ConfigError
from objstore.cli import main
from objstore.config import load_config

GOOD_S3 = {
    "name": "s3",
    "bucket": "blocks",
    "key_id": "AKID",
    "key": "CORPUSSECRET-7",
    "host": "127.0.0.1:9",
    "use_v4_signature": "true",
    "use_https": "true",
    "path_style_request": "true",
}
KEY32 = "C" * 32


def s3(section: str = "block_backend", drop: tuple[str, ...] = (), **opts: str) -> str:
    values = {k: v for k, v in {**GOOD_S3, **opts}.items() if k not in drop}
    return f"[{section}]\n" + "".join(f"{k} = {v}\n" for k, v in values.items())


# (id, text or bytes, section, option); section/option None = not applicable
CORPUS: list[tuple[str, str | bytes, str | None, str | None]] = [
    ("missing-bucket", s3(drop=("bucket",)), "block_backend", "bucket"),
    ("blank-bucket", s3(bucket=""), "block_backend", "bucket"),
    ("bucket-slash", s3(bucket="a/b"), "block_backend", "bucket"),
    ("bucket-space", s3(bucket="a b"), "block_backend", "bucket"),
    ("bucket-too-long", s3(bucket="b" * 300), "block_backend", "bucket"),
    ("unknown-option", s3(colour="blue"), "block_backend", "colour"),
    ("option-typo", s3(use_http="true"), "block_backend", "use_http"),
    ("option-case", s3(drop=("bucket",), Bucket="b"), "block_backend", "Bucket"),
    ("section-typo", s3("block_backnd"), "block_backnd", None),
    ("section-typo-fs", "[fs_object_backnd]\nname = fs\n", "fs_object_backnd", None),
    ("section-typo-redis", "[rediss]\nredis_host = h\n", "rediss", None),
    ("bad-bool-https", s3(use_https="yes please"), "block_backend", "use_https"),
    ("bad-bool-v4", s3(use_v4_signature="2"), "block_backend", "use_v4_signature"),
    ("bad-bool-path", s3(path_style_request="ture"), "block_backend", "path_style_request"),
    ("bad-bool-verify", s3(verify_ssl="maybe"), "block_backend", "verify_ssl"),
    ("bad-port-host", s3(host="h:99999"), "block_backend", "host"),
    ("bad-port-zero", s3(host="h:0"), "block_backend", "host"),
    ("bad-port-text", s3(host="h:http"), "block_backend", "host"),
    ("host-with-scheme", s3(host="https://h"), "block_backend", "host"),
    ("host-with-path", s3(host="h/x"), "block_backend", "host"),
    ("bad-proxy-port", s3(proxy_host="p", proxy_port="-1"), "block_backend", "proxy_port"),
    ("redis-port", "[redis]\nredis_port = 70000\n", "redis", "redis_port"),
    ("redis-port-text", "[redis]\nredis_port = six\n", "redis", "redis_port"),
    (
        "memcached-no-server",
        "[memcached]\nmemcached_options = --POOL-MIN=1\n",
        "memcached",
        "memcached_options",
    ),
    (
        "memcached-bad-port",
        "[memcached]\nmemcached_options = --SERVER=h:x\n",
        "memcached",
        "memcached_options",
    ),
    ("sse-c-31", s3(sse_c_key=KEY32[:31]), "block_backend", "sse_c_key"),
    ("sse-c-33", s3(sse_c_key=KEY32 + "C"), "block_backend", "sse_c_key"),
    ("sse-c-over-http", s3(sse_c_key=KEY32, use_https="false"), "block_backend", "sse_c_key"),
    ("sse-c-with-v2", s3(sse_c_key=KEY32, use_v4_signature="false"), "block_backend", "sse_c_key"),
    ("half-credentials", s3(key=""), "block_backend", "key"),
    ("unsupported-backend", s3(name="swift"), "block_backend", "name"),
    ("fs-no-dir", "[block_backend]\nname = fs\n", "block_backend", "dir"),
    ("bad-timeout", s3(read_timeout="soon"), "block_backend", "read_timeout"),
    ("bad-retries", s3(max_retries="-3"), "block_backend", "max_retries"),
    ("bad-chunksize", s3(multipart_chunksize="1k"), "block_backend", "multipart_chunksize"),
    ("bad-threshold", s3(multipart_threshold="lots"), "block_backend", "multipart_threshold"),
    ("bad-region", s3(aws_region="EU West"), "block_backend", "aws_region"),
    ("prefix-leading-slash", s3(key_prefix="/x/"), "block_backend", "key_prefix"),
    ("missing-ca-file", s3(ca_file="/nonexistent/ca.pem"), "block_backend", "ca_file"),
    ("duplicate-section", s3() + s3(), "block_backend", None),
    ("duplicate-option", s3() + "bucket = other\n", "block_backend", "bucket"),
    ("key-before-section", "bucket = b\n" + s3(), None, "bucket"),
    ("no-equals", "[block_backend]\nname s3\n", "block_backend", None),
    ("unclosed-section", "[block_backend\nname = s3\n", None, None),
    ("bad-escape", s3(key_id="AK\\xID"), "block_backend", "key_id"),
    ("non-utf8", b"[block_backend]\nname = s3\nbucket = caf\xe9\n", None, None),
    ("nul-byte", b"[block_backend]\nname = s3\x00\n", None, None),
    ("empty-file", "", "commit_object_backend", None),
    ("store-crypt-no-key", "[store_crypt]\n" + s3(), "store_crypt", "key_path"),
]
SPECIAL = ["a-directory", "unreadable", "missing-file"]


def _make(tmp_path: Path, name: str) -> Path:
    if name == "a-directory":
        path = tmp_path / "dir.conf"
        path.mkdir()
        return path
    if name == "missing-file":
        return tmp_path / "absent" / "seafile.conf"
    if name == "unreadable":
        path = tmp_path / "unreadable.conf"
        path.write_text(s3())
        return path
    text = dict((c[0], c[1]) for c in CORPUS)[name]
    path = tmp_path / f"{name}.conf"
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text)
    return path


def test_corpus_is_large_enough() -> None:
    assert len(CORPUS) + len(SPECIAL) >= 40


@pytest.mark.parametrize(("name", "text", "section", "option"), CORPUS, ids=[c[0] for c in CORPUS])
def test_config_error_names_file_section_option(
    tmp_path: Path, name: str, text: str | bytes, section: str | None, option: str | None
) -> None:
    path = _make(tmp_path, name)
    with pytest.raises(ConfigError) as info:
        load_config(path, env={})
    message = str(info.value)
    assert str(path) in message
    if section is not None:
        assert f"[{section}]" in message
    if option is not None:
        assert option in message
    assert "CORPUSSECRET" not in message and KEY32[:31] not in message


@pytest.mark.parametrize("name", SPECIAL)
def test_unusable_files(tmp_path: Path, name: str) -> None:
    path = _make(tmp_path, name)
    with pytest.raises(ConfigError) as info:
        load_config(path, env={})
    assert str(path.parent if name == "missing-file" else path).split("/")[-1] in str(info.value)


def _run_cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = main(argv)
    err = capsys.readouterr().err
    return code, err


@pytest.mark.parametrize("name", [c[0] for c in CORPUS] + SPECIAL)
def test_cli_exits_2_with_one_line(
    tmp_path: Path, name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = _make(tmp_path, name)
    good = tmp_path / "good"
    (good / "data").mkdir(parents=True)
    (good / "seafile.conf").write_text(
        "".join(f"[{s}]\nname = fs\ndir = {good / 'data'}\n"
                for s in ("commit_object_backend", "fs_object_backend", "block_backend"))
    )  # fmt: skip
    for argv in ([str(bad), str(good), "--dry-run", "--progress", "none"],
                 [str(good), str(bad), "--dry-run", "--progress", "none"]):  # fmt: skip
        code, err = _run_cli(argv, capsys)
        assert code == 2
        lines = [line for line in err.splitlines() if line.strip()]
        assert len(lines) == 1, err
        assert "Traceback" not in err and "CORPUSSECRET" not in err


@pytest.mark.parametrize("name", ["sse-c-31", "non-utf8", "a-directory"])
def test_cli_process_exits_2_without_traceback(tmp_path: Path, name: str) -> None:
    bad = _make(tmp_path, name)
    proc = subprocess.run(
        [sys.executable, "-m", "objstore.cli", str(bad), str(tmp_path), "--dry-run"],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONWARNINGS": "ignore"},
        timeout=120,
    )
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr


def _tree(root: Path) -> dict[str, tuple[bool, int, float]]:
    return {
        str(p.relative_to(root)): (p.is_dir(), p.stat().st_size, p.stat().st_mtime)
        for p in root.rglob("*")
    }


def test_bad_ids_touch_nothing_on_disk(tmp_path: Path) -> None:
    """Every API that takes an id, with traversal and look-alike ids: InvalidId, and
    the directory tree around and inside the store is unchanged."""
    import io

    import objstore
    from objstore import InvalidId, ObjKind

    from .conformance import BAD_IDS, BAD_REPOS, block, new_repo

    data = tmp_path / "data"
    data.mkdir()
    (tmp_path / "outside.txt").write_text("do not touch")
    conf = tmp_path / "conf" / "seafile.conf"
    conf.parent.mkdir()
    conf.write_text("".join(f"[{k.section}]\nname = fs\ndir = {data}\n" for k in ObjKind))
    with objstore.open_stores(conf) as stores:
        repo = new_repo()
        good_id, payload = block(b"present")
        stores.block.write(repo, good_id, payload)
        before = _tree(tmp_path)
        for store in stores.values():
            for bad in BAD_IDS:
                calls: list[tuple[Callable[..., object], tuple[object, ...]]] = [
                    (store.write, (repo, bad, payload)),
                    (store.read, (repo, bad)),
                    (store.exists, (repo, bad)),
                    (store.stat, (repo, bad)),
                    (store.delete, (repo, bad)),
                    (store.read_many, (repo, [good_id, bad])),
                    (store.copy, (repo, new_repo(), bad)),
                    (store.open_read, (repo, bad)),
                    (store.write_from, (repo, bad, io.BytesIO(payload))),
                ]
                for fn, args in calls:
                    with pytest.raises(InvalidId):
                        fn(*args)
            for bad in BAD_REPOS:
                calls = [
                    (store.write, (bad, good_id, payload)),
                    (store.read, (bad, good_id)),
                    (store.delete, (bad, good_id)),
                    (store.list, (bad,)),
                    (store.remove_repo, (bad,)),
                    (store.copy, (repo, bad, good_id)),
                    (store.write_from, (bad, good_id, io.BytesIO(payload))),
                ]
                for fn, args in calls:
                    with pytest.raises(InvalidId):
                        fn(*args)
        assert _tree(tmp_path) == before
        assert stores.block.read(repo, good_id) == payload
