"""Secrets never leak: every error path driven with distinctive secret values, and
no key, secret, sse_c_key or password may appear in log records, exception
messages or reprs.  (The migration CLI's output and JSON reports are checked in
the migration tests.)"""

from __future__ import annotations

import base64
import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import objstore
from objstore import ObjKind, ObjStoreError

from .conformance import block, new_repo
from .helpers import s3_conf, write_conf

S3_SECRET = "S3SECRETzq9xx-never-shown"
SSE_A = "SSEKEYAAAAAAAAAAAAAAAAAAAAAAAAAA"
SSE_B = "SSEKEYBBBBBBBBBBBBBBBBBBBBBBBBBB"
REDIS_PW = "REDISPASSWORDqq7-never-shown"
PROXY_PW = "PROXYPASSWORDkk3-never-shown"
TOKEN = "SESSIONTOKENpp1-never-shown"
SECRETS = [S3_SECRET, SSE_A, SSE_B, REDIS_PW, PROXY_PW, TOKEN]
FORMS = [
    *SECRETS,
    *(base64.b64encode(s.encode()).decode() for s in SECRETS),
    *(s.encode().hex() for s in SECRETS),
]


def assert_clean(text: str) -> None:
    for secret in FORMS:
        assert secret not in text, f"a secret leaked: {text[:300]!r}"


@pytest.fixture
def logs(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    caplog.set_level(logging.DEBUG, logger="objstore")
    caplog.set_level(logging.INFO)
    yield caplog
    assert_clean(caplog.text)
    for record in caplog.records:
        assert_clean(record.getMessage())


def _error_text(exc: BaseException) -> str:
    parts = [str(exc), repr(exc)]
    cause = exc.__cause__ or exc.__context__
    while cause is not None:
        parts += [str(cause), repr(cause)]
        cause = cause.__cause__ or cause.__context__
    return "\n".join(parts)


def test_config_reprs_and_errors(tmp_path: Path, logs: Any) -> None:
    text = (
        "[block_backend]\nname = s3\nbucket = b\nkey_id = AKID\n"
        f"key = {S3_SECRET}\nsession_token = {TOKEN}\nproxy_host = proxy.invalid\n"
        f"proxy_user = u\nproxy_password = {PROXY_PW}\nuse_v4_signature = true\nuse_https = true\n"
        f"sse_c_key = {SSE_A}\n"
        f"[redis]\nredis_host = 127.0.0.1\nredis_password = {REDIS_PW}\n"
    )
    cfg = objstore.load_config(write_conf(tmp_path, text), data_dir=tmp_path)
    assert_clean(repr(cfg))
    assert_clean(str(cfg.backends[ObjKind.BLOCK]))
    assert_clean(repr(cfg.cache))
    for bad in (
        text.replace("use_https = true", "use_https = nope"),
        text.replace(f"sse_c_key = {SSE_A}", f"sse_c_key = {SSE_A}x"),
        text.replace(f"sse_c_key = {SSE_A}", f"sse_c_key = {SSE_A[:-1]}"),
        text.replace("use_v4_signature = true", "use_v4_signature = false"),
        text.replace("key_id = AKID\n", ""),
        text + f"[redis]\nredis_password = {REDIS_PW}\n",
        text.replace("proxy_user = u\n", ""),
        text.replace(f"key = {S3_SECRET}", f"key = {S3_SECRET}\nkey = {S3_SECRET}"),
        text.replace(f"key = {S3_SECRET}", f"key = {S3_SECRET}\\q"),
    ):
        with pytest.raises(objstore.ConfigError) as info:
            objstore.load_config(write_conf(tmp_path / "bad", bad), data_dir=tmp_path)
        assert_clean(_error_text(info.value))


def test_s3_error_paths(tmp_path: Path, seaweed: Any, logs: Any) -> None:
    # wrong secret
    conf = write_conf(tmp_path / "wrong", s3_conf(seaweed, secret=S3_SECRET))
    with pytest.raises(objstore.AuthError) as info:
        objstore.open_stores(conf)
    assert_clean(_error_text(info.value))
    # SSE-C: wrong key
    good = s3_conf(seaweed, https=True, sse_c_key=SSE_A)
    repo = new_repo()
    obj_id, data = block(os.urandom(100))
    with objstore.open_stores(write_conf(tmp_path / "a", good)) as a:
        a.block.write(repo, obj_id, data)
        assert_clean(repr(a) + repr(a.block) + repr(a.block.driver) + repr(a.config))
    with objstore.open_stores(write_conf(tmp_path / "b", good.replace(SSE_A, SSE_B))) as b:
        for call in (b.block.read, b.block.stat, b.block.exists, b.block.open_read):
            with pytest.raises(ObjStoreError) as err:
                call(repo, obj_id)
            assert isinstance(err.value, objstore.EncryptionKeyError)
            assert_clean(_error_text(err.value))
        with pytest.raises(ObjStoreError) as err:
            b.block.read_many(repo, [obj_id])
        assert_clean(_error_text(err.value))


def test_cache_with_wrong_redis_password(tmp_path: Path, server_factory: Any, logs: Any) -> None:
    from .servers import RedisServer

    server = server_factory(RedisServer, password="the-right-password")
    (tmp_path / "data").mkdir()
    text = (
        f"[redis]\nredis_host = 127.0.0.1\nredis_port = {server.port}\n"
        f"redis_password = {REDIS_PW}\nredis_timeout = 0.5\ncached_kinds = fs\n"
        + "".join(f"[{k.section}]\nname = fs\ndir = {tmp_path / 'data'}\n" for k in ObjKind)
    )
    with objstore.open_stores(write_conf(tmp_path, text)) as stores:
        repo = new_repo()
        from objstore.formats import Dirent, SeafDir, encode_dir

        obj_id, data = encode_dir(SeafDir([Dirent("1" * 40, 0o100644, 1, "f", "m", 3)]))
        stores.fs.write(repo, obj_id, data)  # the cache refuses us; the write still lands
        for _ in range(3):
            assert stores.fs.read(repo, obj_id) == data
        stats = stores.cache_stats()["fs"]
        assert stats["errors"] >= 1
        assert_clean(repr(stores.fs.driver) + str(stats))


def test_migration_output_and_reports(
    tmp_path: Path, seaweed: Any, capsys: pytest.CaptureFixture[str], logs: Any
) -> None:
    """A failing migration (a corrupt source object) into SSE-C buckets, verbose, with
    log progress and a JSON report; then a wrong destination SSE-C key (exit 2)."""
    from objstore.cli import main

    data = tmp_path / "src-data"
    data.mkdir()
    src = write_conf(
        tmp_path / "src", "".join(f"[{k.section}]\nname = fs\ndir = {data}\n" for k in ObjKind)
    )
    repo = new_repo()
    with objstore.open_stores(src) as stores:
        for n in range(5):
            stores.block.write(repo, *block(b"block %d" % n))
        stores.block.write(repo, block(b"the id of this")[0], b"but other bytes")
    text = s3_conf(seaweed, https=True, sse_c_key=SSE_A)
    dest = write_conf(tmp_path / "dest", text)
    report = tmp_path / "report.json"
    argv = [str(src), str(dest), "--report", str(report), "--progress", "log", "-v"]
    assert main([*argv, "--verify", "hash"]) == 1
    out = capsys.readouterr()
    secrets = [seaweed.secret_key]
    for blob in (report.read_text(), out.out, out.err):
        assert_clean(blob)
        assert not any(s in blob for s in secrets)
    assert "corrupt" in report.read_text().lower()
    wrong = write_conf(tmp_path / "wrong", text.replace(SSE_A, SSE_B))
    assert main([str(src), str(wrong), "--report", str(report), "--progress", "log", "-v"]) == 2
    out = capsys.readouterr()
    for blob in (report.read_text() if report.exists() else "", out.out, out.err):
        assert_clean(blob)
        assert not any(s in blob for s in secrets)


def test_debug_logs_of_every_logger_hold_no_secret_in_a_key_rotation(
    tmp_path: Path, seaweed: Any, caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    """DEBUG on for every logger (objstore, botocore, urllib3, the root): an SSE-C
    key rotation in place, run by the CLI with -v, logs no key in any form."""
    from objstore.cli import main

    caplog.set_level(logging.DEBUG)
    for name in ("objstore", "botocore", "urllib3", "boto3"):
        caplog.set_level(logging.DEBUG, logger=name)
    text_a = s3_conf(seaweed, https=True, sse_c_key=SSE_A)
    src = write_conf(tmp_path / "a", text_a)
    repo = new_repo()
    with objstore.open_stores(src) as stores:
        for n in range(20):
            stores.block.write(repo, *block(b"rotate %d" % n))
    dest = write_conf(tmp_path / "b", text_a.replace(SSE_A, SSE_B))
    assert main([str(src), str(dest), "--verify", "hash", "-v", "--progress", "log"]) == 0
    out = capsys.readouterr()
    records = [r.getMessage() for r in caplog.records]
    assert any("HEAD" in m or "PUT" in m for m in records)  # the requests were logged
    for blob in (caplog.text, out.out, out.err, *records):
        assert_clean(blob)
        assert seaweed.secret_key not in blob
