"""The S3 driver against an independent client (boto3) on a real server: what one
writes the other reads (plain, SSE-C over HTTPS, virtual-hosted with a key
prefix), listings across pages skip foreign keys, errors map to objstore errors,
kept-alive connections the server dropped are replaced, and the SSE-C key check
used by key rotation is right for every combination of keys."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

import objstore
from objstore import AuthError, BucketNotFound, EncryptionKeyError, NotFound, ObjKind, Stores
from objstore.drivers import s3 as s3_driver

from .helpers import s3_section, write_conf
from .proxy import Fault, FaultProxy
from .test_migrate_helpers import SSE_A, SSE_B


def block(data: bytes) -> tuple[str, bytes]:
    return hashlib.sha1(data).hexdigest(), data


def open_block_store(tmp: Path, name: str, server: Any, bucket: str, **kw: Any) -> Stores:
    """Stores on one bucket: blocks under ``key_prefix`` (default ``blocks/``), the
    other kinds under ``x-<kind>/`` apart from it."""
    prefix = kw.pop("key_prefix", "blocks/")
    text = "".join(
        s3_section(server, kind, bucket, **kw,
                   key_prefix=prefix if kind is ObjKind.BLOCK else f"x-{kind.value}/{prefix or ''}")
        for kind in ObjKind
    )  # fmt: skip
    return objstore.open_stores(write_conf(tmp / name, text))


CONFIGS = {
    "http-path": {},
    "https-sse-c": {"https": True, "sse_c_key": SSE_A},
    "virtual-prefix": {"virtual": True, "key_prefix": "seafile/blocks/"},
}


@pytest.fixture(params=list(CONFIGS), ids=list(CONFIGS))
def stores(request: Any, tmp_path: Path, seaweed: Any, new_bucket: Any) -> Iterator[Stores]:
    s = open_block_store(
        tmp_path, "c", seaweed, new_bucket(seaweed, "drv"), **CONFIGS[request.param]
    )
    yield s
    s.close()


def _boto3_args(stores: Stores) -> dict[str, Any]:
    cfg = stores.config.backends[ObjKind.BLOCK]
    key = getattr(cfg, "sse_c_key", None)
    if key is None:
        return {}
    return {"SSECustomerAlgorithm": "AES256", "SSECustomerKey": key.reveal()}


@pytest.fixture
def boto3_client(request: Any, stores: Stores, seaweed: Any) -> Any:
    cfg = stores.config.backends[ObjKind.BLOCK]
    return seaweed.client(https=cfg.use_https, virtual=not cfg.path_style_request)  # type: ignore[union-attr]


def test_driver_and_boto3_interoperate(stores: Stores, boto3_client: Any) -> None:
    driver = stores.block.driver
    bucket = stores.config.backends[ObjKind.BLOCK].bucket  # type: ignore[union-attr]
    sse = _boto3_args(stores)
    repo = str(uuid.uuid4())
    written = {}
    for i in range(5):
        obj, data = block(b"driver-%d" % i * (i * 300 + 1))
        stores.block.write(repo, obj, data)
        written[obj] = data
        got = boto3_client.get_object(Bucket=bucket, Key=driver.key(repo, obj), **sse)  # type: ignore[attr-defined]
        assert got["Body"].read() == data  # boto3 reads what the driver wrote
    obj, data = block(b"written by boto3")
    boto3_client.put_object(Bucket=bucket, Key=driver.key(repo, obj), Body=data, **sse)  # type: ignore[attr-defined]
    written[obj] = data
    assert stores.block.read(repo, obj) == data  # and the driver reads what boto3 wrote
    assert stores.block.stat(repo, obj).size == len(data)
    listed = boto3_client.list_objects_v2(Bucket=bucket)["Contents"]
    assert sorted(o["Key"] for o in listed) == sorted(driver.key(repo, o) for o in written)  # type: ignore[attr-defined]
    assert sorted(i.obj_id for i in stores.block.list()) == sorted(written)
    assert [i.obj_id for i in stores.block.list(repo)] == sorted(written)


def test_listing_pages_and_skips_foreign_keys(
    tmp_path: Path, seaweed: Any, new_bucket: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    bucket = new_bucket(seaweed, "pages")
    stores = open_block_store(tmp_path, "c", seaweed, bucket, key_prefix="b/")
    client = seaweed.client()
    repos = sorted(str(uuid.uuid4()) for _ in range(3))
    keys = [f"b/{repo}/{i + r:040x}" for r, repo in enumerate(repos) for i in range(90)]
    keys += ["b/readme.txt", "b/not-a-repo/" + "a" * 40, f"b/{repos[0]}/short", "other/x"]
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda k: client.put_object(Bucket=bucket, Key=k, Body=b"x" * len(k)), keys))
    monkeypatch.setattr(s3_driver, "PAGE_SIZE", 40)  # 7 pages
    got = list(stores.block.list())
    expected = sorted(k for k in keys if k.startswith("b/") and len(k) == 2 + 36 + 1 + 40
                      and "not-a-repo" not in k)  # fmt: skip
    assert [stores.block.driver.key(i.repo_id, i.obj_id) for i in got] == expected  # type: ignore[attr-defined]
    assert all(i.size == len(stores.block.driver.key(i.repo_id, i.obj_id)) for i in got)  # type: ignore[attr-defined]
    assert len(got) == 270
    assert [i.repo_id for i in stores.block.list(repos[1])] == [repos[1]] * 90
    stores.close()


def test_errors_map_to_objstore_errors(tmp_path: Path, seaweed: Any, new_bucket: Any) -> None:
    bucket = new_bucket(seaweed, "leanerr")
    good = open_block_store(tmp_path, "good", seaweed, bucket, https=True, sse_c_key=SSE_A)
    repo = str(uuid.uuid4())
    obj, data = block(b"secret data")
    good.block.write(repo, obj, data)
    with pytest.raises(NotFound):
        good.block.read(repo, "0" * 39 + "1")
    with (
        open_block_store(
            tmp_path, "other-key", seaweed, bucket, https=True, sse_c_key=SSE_B
        ) as wrong_key,
        pytest.raises(EncryptionKeyError),
    ):
        wrong_key.block.read(repo, obj)
    conf = write_conf(tmp_path / "bad-secret", "".join(
        s3_section(seaweed, k, bucket, secret="wrong-secret", key_prefix=f"{k.value}/")
        for k in ObjKind
    ))  # fmt: skip
    with objstore.open_stores(conf, check=False) as bad:
        with pytest.raises(AuthError) as exc:
            bad.block.write(repo, obj, data)
        assert "wrong-secret" not in str(exc.value)
    conf = write_conf(tmp_path / "no-bucket", "".join(
        s3_section(seaweed, k, f"{bucket}-missing-{k.value}") for k in ObjKind
    ))  # fmt: skip
    with (
        objstore.open_stores(conf, check=False) as missing,
        pytest.raises(BucketNotFound),
    ):
        list(missing.block.list())
    good.close()


def test_dropped_keepalive_connections_are_replaced(
    tmp_path: Path, seaweed: Any, new_bucket: Any
) -> None:
    proxy = FaultProxy(seaweed.http_port)
    try:
        server = type("S", (), {"host": "127.0.0.1", "http_port": proxy.port, "https_port": None,
                                "access_key": seaweed.access_key, "secret_key": seaweed.secret_key,
                                "domain_name": None})()  # fmt: skip
        stores = open_block_store(tmp_path, "p", server, new_bucket(seaweed, "keepalive"))
        repo = str(uuid.uuid4())
        obj, data = block(b"first")
        stores.block.write(repo, obj, data)
        before = proxy.connections
        proxy.set(Fault("pass"))  # closes every open connection (the pooled one too)
        obj2, data2 = block(b"second")
        stores.block.write(repo, obj2, data2)  # the dead pooled connection is replaced
        assert proxy.connections == before + 1
        assert stores.block.read(repo, obj2) == data2
        stores.close()
    finally:
        proxy.close()


def test_matches_encryption_for_every_combination_of_keys(
    tmp_path: Path, seaweed: Any, new_bucket: Any
) -> None:
    """Which SSE-C key (if any) an object has, as rotation asks it, for every
    combination of object key and client key."""
    bucket = new_bucket(seaweed, "keycheck")
    repo = str(uuid.uuid4())
    objects = {}
    stores = {}
    for name, key in (("plain", None), ("a", SSE_A), ("b", SSE_B)):
        extra = {"sse_c_key": key} if key else {}
        stores[name] = open_block_store(tmp_path, name, seaweed, bucket, https=True, **extra)
        obj, data = block(f"stored {name}".encode())
        stores[name].block.write(repo, obj, data)
        objects[name] = obj
    try:
        for client_name, st in stores.items():
            for obj_name, obj in objects.items():
                expected = client_name == obj_name
                got = st.block.driver.matches_encryption(repo, obj)
                assert got is expected, (client_name, obj_name)
            with pytest.raises(NotFound):
                st.block.driver.matches_encryption(repo, "0" * 39 + "2")
    finally:
        for st in stores.values():
            st.close()


def test_credentials_from_botocores_chain(tmp_path: Path, seaweed: Any, new_bucket: Any) -> None:
    """Without key_id/key the credentials come from botocore's chain (here the
    environment); with nothing in the chain, an AuthError that says so.  The
    instance-metadata source is switched off (no traffic beyond loopback)."""
    bucket = new_bucket(seaweed, "chain")
    text = "".join(
        s3_section(seaweed, k, bucket, key_prefix=f"{k.value}/")
        .replace(f"key_id = {seaweed.access_key}\n", "")
        .replace(f"key = {seaweed.secret_key}\n", "")
        for k in ObjKind
    )
    conf = write_conf(tmp_path / "chain", text)
    code = (
        "import sys, objstore\n"
        "try:\n"
        "    with objstore.open_stores(sys.argv[1]) as s:\n"
        "        s.block.write('1b4e28ba-2fa1-11d2-883f-0016d3cca427', 'b' * 40, b'x')\n"
        "        print('ok', 'botocore' in sys.modules)\n"
        "except objstore.AuthError as exc:\n"
        "    print('auth', exc)\n"
    )
    base = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    base.update(AWS_EC2_METADATA_DISABLED="true", AWS_CONFIG_FILE=str(tmp_path / "none"),
                AWS_SHARED_CREDENTIALS_FILE=str(tmp_path / "none"))  # fmt: skip
    with_env = {**base, "AWS_ACCESS_KEY_ID": seaweed.access_key,
                "AWS_SECRET_ACCESS_KEY": seaweed.secret_key}  # fmt: skip
    run = [sys.executable, "-c", code, str(conf)]
    out = subprocess.run(run, env=with_env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "ok True", out.stderr
    out = subprocess.run(run, env=base, capture_output=True, text=True, check=True)
    assert out.stdout.startswith("auth ") and "no credentials found" in out.stdout, out.stdout
