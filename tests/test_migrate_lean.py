"""The lean SigV4 client the migration uses for per-object PUT/GET and listings:
interoperable with the boto3 driver both ways (plain, SSE-C over HTTPS,
virtual-hosted, key prefixes, rclone serve s3), the same listing, the same errors,
and kept-alive connections the server dropped are replaced."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

import objstore
from objstore import AuthError, BucketNotFound, EncryptionKeyError, NotFound, ObjKind, Stores
from objstore.drivers.lean import LeanS3, lean_client

from .helpers import s3_section, write_conf
from .proxy import Fault, FaultProxy
from .test_migrate_helpers import SSE_A, SSE_B


def block(data: bytes) -> tuple[str, bytes]:
    return hashlib.sha1(data).hexdigest(), data


def open_block_store(tmp: Path, name: str, server: Any, bucket: str, **kw: Any) -> Stores:
    text = "".join(s3_section(server, kind, bucket, **kw) for kind in ObjKind)
    return objstore.open_stores(write_conf(tmp / name, text))


def lean_for(stores: Stores) -> LeanS3:
    lean = lean_client(stores.block.driver, 4)
    assert lean is not None
    return lean


CONFIGS = {
    "http-path": {},
    "https-sse-c": {"https": True, "sse_c_key": SSE_A},
    "virtual-prefix": {"virtual": True, "key_prefix": "seafile/blocks/"},
}


@pytest.fixture(params=list(CONFIGS), ids=list(CONFIGS))
def stores(request: Any, tmp_path: Path, seaweed: Any, new_bucket: Any) -> Iterator[Stores]:
    s = open_block_store(
        tmp_path, "c", seaweed, new_bucket(seaweed, "lean"), **CONFIGS[request.param]
    )
    yield s
    s.close()


def test_lean_and_driver_interoperate(stores: Stores) -> None:
    lean = lean_for(stores)
    repo = str(uuid.uuid4())
    written = {}
    for i in range(5):
        obj, data = block(b"lean-%d" % i * (i * 300 + 1))
        lean.put(repo, obj, data)
        written[obj] = data
        assert stores.block.read(repo, obj) == data  # boto3 reads what lean wrote
    obj, data = block(b"written by boto3")
    stores.block.write(repo, obj, data)
    written[obj] = data
    assert lean.get(repo, obj) == data  # and lean reads what boto3 wrote
    assert list(lean.list(repo)) == list(stores.block.list(repo))
    assert sorted(i.obj_id for i in lean.list()) == sorted(written)
    lean.close()


def test_lean_listing_pages_and_skips_foreign_keys(
    tmp_path: Path, seaweed: Any, new_bucket: Any
) -> None:
    bucket = new_bucket(seaweed, "leanlist")
    stores = open_block_store(tmp_path, "c", seaweed, bucket, key_prefix="b/")
    client = seaweed.client()
    repos = sorted(str(uuid.uuid4()) for _ in range(3))
    keys = [f"b/{repo}/{i + r:040x}" for r, repo in enumerate(repos) for i in range(90)]
    keys += ["b/readme.txt", "b/not-a-repo/" + "a" * 40, f"b/{repos[0]}/short", "other/x"]
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda k: client.put_object(Bucket=bucket, Key=k, Body=b"x" * len(k)), keys))
    lean = lean_for(stores)
    lean.page_size = 40  # 7 pages
    got = list(lean.list())
    assert got == list(stores.block.list())  # same entries, same order, across pages
    assert len(got) == 270
    assert list(lean.list(repos[1])) == list(stores.block.list(repos[1]))
    lean.close()
    stores.close()


def test_lean_errors_are_the_drivers_errors(tmp_path: Path, seaweed: Any, new_bucket: Any) -> None:
    bucket = new_bucket(seaweed, "leanerr")
    good = open_block_store(tmp_path, "good", seaweed, bucket, https=True, sse_c_key=SSE_A)
    lean = lean_for(good)
    repo = str(uuid.uuid4())
    obj, data = block(b"secret data")
    lean.put(repo, obj, data)
    with pytest.raises(NotFound):
        lean.get(repo, "0" * 39 + "1")
    with (
        objstore.open_stores(
            write_conf(
                tmp_path / "other-key",
                "".join(
                    s3_section(seaweed, k, bucket, https=True, sse_c_key=SSE_B) for k in ObjKind
                ),
            )
        ) as wrong_key,
        pytest.raises(EncryptionKeyError),
    ):
        lean_for(wrong_key).get(repo, obj)
    with objstore.open_stores(
        write_conf(
            tmp_path / "bad-secret",
            "".join(s3_section(seaweed, k, bucket, secret="wrong-secret") for k in ObjKind),
        ),
        check=False,
    ) as bad:
        with pytest.raises(AuthError) as exc:
            lean_for(bad).put(repo, obj, data)
        assert "wrong-secret" not in str(exc.value)
    with (
        objstore.open_stores(
            write_conf(
                tmp_path / "no-bucket",
                "".join(s3_section(seaweed, k, bucket + "-missing") for k in ObjKind),
            ),
            check=False,
        ) as missing,
        pytest.raises(BucketNotFound),
    ):
        list(lean_for(missing).list())
    good.close()


def test_lean_is_not_used_where_it_does_not_fit(
    tmp_path: Path, seaweed: Any, new_bucket: Any
) -> None:
    bucket = new_bucket(seaweed, "leanv2")
    with open_block_store(tmp_path, "v2", seaweed, bucket, v2=True) as v2:
        assert lean_client(v2.block.driver, 4) is None
    with open_block_store(tmp_path, "v4", seaweed, bucket) as v4:
        assert lean_client(v4.block.driver, 4) is not None
    data = tmp_path / "data"
    data.mkdir()
    with objstore.open_stores(
        write_conf(
            tmp_path / "fs", "".join(f"[{k.section}]\nname = fs\ndir = {data}\n" for k in ObjKind)
        )
    ) as fs:
        assert lean_client(fs.block.driver, 4) is None


def test_lean_replaces_dropped_keepalive_connections(
    tmp_path: Path, seaweed: Any, new_bucket: Any
) -> None:
    proxy = FaultProxy(seaweed.http_port)
    try:
        server = type("S", (), {"host": "127.0.0.1", "http_port": proxy.port, "https_port": None,
                                "access_key": seaweed.access_key, "secret_key": seaweed.secret_key,
                                "domain_name": None})()  # fmt: skip
        stores = open_block_store(tmp_path, "p", server, new_bucket(seaweed, "leanka"))
        lean = lean_for(stores)
        repo = str(uuid.uuid4())
        obj, data = block(b"first")
        lean.put(repo, obj, data)
        before = proxy.connections
        proxy.set(Fault("pass"))  # closes every open connection (the pooled one too)
        obj2, data2 = block(b"second")
        lean.put(repo, obj2, data2)  # the dead pooled connection is replaced, no error
        assert proxy.connections == before + 1
        assert stores.block.read(repo, obj2) == data2
        lean.close()
        stores.close()
    finally:
        proxy.close()


def test_lean_key_fingerprint_check_matches_the_driver(
    tmp_path: Path, seaweed: Any, new_bucket: Any
) -> None:
    """Which SSE-C key (if any) an object has, as rotation asks it: lean and driver
    agree for every combination of object key and client key."""
    bucket = new_bucket(seaweed, "leankey")
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
            lean = lean_for(st)
            for obj_name, obj in objects.items():
                expected = client_name == obj_name
                assert st.block.driver.stored_with_own_key(repo, obj) is expected  # type: ignore[attr-defined]
                assert lean.stored_with_own_key(repo, obj) is expected, (client_name, obj_name)
            with pytest.raises(NotFound):
                lean.stored_with_own_key(repo, "0" * 39 + "2")
            lean.close()
    finally:
        for st in stores.values():
            st.close()
