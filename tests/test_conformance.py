"""Every driver configuration against real servers: the conformance suite, plus
authentication, bucket and SSE-C errors, and SSE-C interop with rclone."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

import objstore
from objstore import AuthError, BucketNotFound, EncryptionKeyError, NotFound, ObjKind, Stores

from .conformance import ConformanceSuite, block, new_repo
from .helpers import fs_conf, s3_conf, s3_section, unique_bucket, write_conf

SSE_KEY_A = "0123456789abcdef0123456789abcdef"
SSE_KEY_B = "fedcba9876543210fedcba9876543210"


class _Configured(ConformanceSuite):
    """Buckets (or the data dir) are made once per class; each test opens fresh stores
    and works in its own new repos."""

    @pytest.fixture
    def stores(self, conf_path: Path) -> Iterator[Stores]:
        with objstore.open_stores(conf_path) as stores:
            yield stores


def _conf(factory: pytest.TempPathFactory, text: str) -> Path:
    return write_conf(factory.mktemp("conf"), text)


class TestFs(_Configured):
    @pytest.fixture(scope="class")
    @classmethod
    def conf_path(cls, tmp_path_factory: pytest.TempPathFactory) -> Path:
        data = tmp_path_factory.mktemp("data")
        return _conf(tmp_path_factory, fs_conf(data))


class TestS3V4Path(_Configured):
    @pytest.fixture(scope="class")
    @classmethod
    def conf_path(cls, tmp_path_factory: pytest.TempPathFactory, seaweed: Any) -> Path:
        return _conf(tmp_path_factory, s3_conf(seaweed))


class TestS3V4Virtual(_Configured):
    @pytest.fixture(scope="class")
    @classmethod
    def conf_path(cls, tmp_path_factory: pytest.TempPathFactory, seaweed: Any) -> Path:
        return _conf(tmp_path_factory, s3_conf(seaweed, virtual=True))


class TestS3V2Path(_Configured):
    @pytest.fixture(scope="class")
    @classmethod
    def conf_path(cls, tmp_path_factory: pytest.TempPathFactory, seaweed: Any) -> Path:
        return _conf(tmp_path_factory, s3_conf(seaweed, v2=True))


class TestS3SseCHttps(_Configured):
    supports_sse_c = True

    @pytest.fixture(scope="class")
    @classmethod
    def conf_path(cls, tmp_path_factory: pytest.TempPathFactory, seaweed: Any) -> Path:
        return _conf(tmp_path_factory, s3_conf(seaweed, https=True, sse_c_key=SSE_KEY_A))


class TestS3SharedBucketPrefix(_Configured):
    """All three kinds in one bucket, separated by key_prefix (given without the
    trailing '/', which objstore adds)."""

    @pytest.fixture(scope="class")
    @classmethod
    def conf_path(cls, tmp_path_factory: pytest.TempPathFactory, seaweed: Any) -> Path:
        bucket = seaweed.create_bucket(unique_bucket("shared"))
        text = "\n".join(
            s3_section(seaweed, kind, bucket, key_prefix=f"install1/{kind.value}")
            for kind in ObjKind
        )
        return _conf(tmp_path_factory, text)

    def test_prefix_is_respected(self, stores: Stores, seaweed: Any, tmp_path: Path) -> None:
        repo = new_repo()
        obj_id, data = block(b"prefixed")
        stores.fs.write(repo, obj_id, data)
        bucket = stores.config.backends[ObjKind.FS].bucket  # type: ignore[union-attr]
        keys = [o["Key"] for o in seaweed.client().list_objects_v2(Bucket=bucket)["Contents"]]
        assert f"install1/fs/{repo}/{obj_id}" in keys
        assert not stores.block.exists(repo, obj_id)
        # Seafile's layout, <repo_id>/<obj_id> in the bucket: the object is not there
        buckets = {kind: unique_bucket("other") for kind in ObjKind}
        buckets[ObjKind.FS] = bucket
        seafile_view = write_conf(tmp_path, s3_conf(seaweed, buckets, create=False))
        with objstore.open_stores(seafile_view, check=False) as seafile:
            assert not seafile.fs.exists(repo, obj_id)
            assert list(seafile.fs.list(repo)) == []


class TestRclone(_Configured):
    """rclone serve s3: a second, independent S3 implementation (SigV4 path-style)."""

    @pytest.fixture(scope="class")
    @classmethod
    def conf_path(cls, tmp_path_factory: pytest.TempPathFactory, rclone_s3: Any) -> Path:
        return _conf(tmp_path_factory, s3_conf(rclone_s3))


# ---------------------------------------------------------------- errors on open


# One request path; the open-time check is signed with SigV4 or SigV2.
SIGNATURES = ("sigv4", "sigv2")


def _open(tmp_path: Path, server: Any, signature: str, **kw: Any) -> Stores:
    conf = write_conf(tmp_path, s3_conf(server, v2=signature == "sigv2", **kw))
    return objstore.open_stores(conf)


@pytest.mark.parametrize("signature", SIGNATURES)
def test_wrong_secret_is_auth_error(tmp_path: Path, seaweed: Any, signature: str) -> None:
    with pytest.raises(AuthError) as info:
        _open(tmp_path, seaweed, signature, secret="not-the-secret")
    assert "not-the-secret" not in str(info.value)
    assert "commit_object_backend" in str(info.value)


def test_wrong_secret_on_rclone_is_auth_error(tmp_path: Path, rclone_s3: Any) -> None:
    with pytest.raises(AuthError):
        _open(tmp_path, rclone_s3, "sigv4", secret="not-the-secret")


@pytest.mark.parametrize("signature", SIGNATURES)
def test_missing_bucket(tmp_path: Path, seaweed: Any, signature: str) -> None:
    buckets = {kind: unique_bucket("missing") for kind in ObjKind}
    with pytest.raises(BucketNotFound) as info:
        _open(tmp_path, seaweed, signature, buckets=buckets, create=False)
    assert str(tmp_path / "seafile.conf") in str(info.value) and "bucket" in str(info.value)


def test_s3_store_never_loads_boto3_or_botocore(tmp_path: Path, seaweed: Any) -> None:
    """With key_id/key, opening (with the bucket check), writing, reading and
    listing load neither boto3 nor botocore (about 0.3 s of CPU); SigV2 alike.
    Only the credential chain (no key_id/key) needs botocore."""
    code = (
        "import sys, objstore\n"
        "with objstore.open_stores(sys.argv[1]) as stores:\n"
        "    repo, obj = '1b4e28ba-2fa1-11d2-883f-0016d3cca427', 'a' * 40\n"
        "    stores.block.write(repo, obj, b'x')\n"
        "    assert stores.block.read(repo, obj) == b'x'\n"
        "    assert [i.obj_id for i in stores.block.list()] == [obj]\n"
        "print(sorted(m for m in ('boto3', 'botocore') if m in sys.modules))\n"
    )
    for name, v2 in (("v4", False), ("v2", True)):
        conf = write_conf(tmp_path / name, s3_conf(seaweed, v2=v2))
        out = subprocess.run(
            [sys.executable, "-c", code, str(conf)], capture_output=True, text=True, check=True
        )
        assert out.stdout.strip() == "[]", name


def test_missing_fs_dir(tmp_path: Path) -> None:
    conf = write_conf(tmp_path, fs_conf(tmp_path / "typo"))
    with pytest.raises(objstore.ConfigError, match=r"\[commit_object_backend\] dir"):
        objstore.open_stores(conf)


# ---------------------------------------------------------------- SSE-C


@pytest.fixture
def sse_buckets(seaweed: Any, new_bucket: Callable[..., str]) -> dict[ObjKind, str]:
    return {kind: new_bucket(seaweed, "sse") for kind in ObjKind}


def _stores(
    tmp_path: Path, name: str, server: Any, buckets: dict[ObjKind, str], **kw: Any
) -> Stores:
    conf = write_conf(tmp_path / name, s3_conf(server, buckets, create=False, https=True, **kw))
    return objstore.open_stores(conf)


def test_wrong_sse_c_key(tmp_path: Path, seaweed: Any, sse_buckets: dict[ObjKind, str]) -> None:
    repo = new_repo()
    obj_id, data = block(os.urandom(1000))
    big_id, big = block(os.urandom(9 * 1024 * 1024))
    with _stores(tmp_path, "a", seaweed, sse_buckets, sse_c_key=SSE_KEY_A) as a:
        a.block.write(repo, obj_id, data)
        a.block.write(repo, big_id, big)  # multipart with SSE-C
    with _stores(tmp_path, "b", seaweed, sse_buckets, sse_c_key=SSE_KEY_B) as b:
        for call in (b.block.read, b.block.stat, b.block.exists):
            with pytest.raises(EncryptionKeyError) as info:
                call(repo, obj_id)
            assert SSE_KEY_B not in str(info.value) and SSE_KEY_A not in str(info.value)
        with pytest.raises(EncryptionKeyError):
            b.block.read(repo, big_id)
        with pytest.raises(NotFound):
            b.block.read(repo, block(b"absent")[0])
    with _stores(tmp_path, "a2", seaweed, sse_buckets, sse_c_key=SSE_KEY_A) as a:
        assert a.block.read(repo, obj_id) == data  # nothing was overwritten
        assert a.block.read(repo, big_id) == big


def test_sse_c_object_read_without_key(
    tmp_path: Path, seaweed: Any, sse_buckets: dict[ObjKind, str]
) -> None:
    repo = new_repo()
    obj_id, data = block(b"secret block")
    with _stores(tmp_path, "a", seaweed, sse_buckets, sse_c_key=SSE_KEY_A) as a:
        a.block.write(repo, obj_id, data)
    with (
        _stores(tmp_path, "plain", seaweed, sse_buckets) as plain,
        pytest.raises(EncryptionKeyError),
    ):
        plain.block.read(repo, obj_id)


@pytest.mark.parametrize("server_name", ["seaweed", "rclone_s3"])
def test_plain_object_read_with_key_returns_the_bytes(
    tmp_path: Path, new_bucket: Callable[..., str], request: pytest.FixtureRequest,
    server_name: str,
) -> None:  # fmt: skip
    """Neither SeaweedFS nor rclone serve s3 refuses an SSE-C key on an object stored
    without one: every read returns the plain bytes (the README says so per server)."""
    server = request.getfixturevalue(server_name)
    buckets = {kind: new_bucket(server, "plain") for kind in ObjKind}
    repo = new_repo()
    obj_id, data = block(b"plain block " * 100)
    with _stores(tmp_path, "plain", server, buckets) as plain:
        plain.block.write(repo, obj_id, data)
    with _stores(tmp_path, "keyed", server, buckets, sse_c_key=SSE_KEY_A) as keyed:
        assert keyed.block.read(repo, obj_id) == data
        assert keyed.block.read_many(repo, [obj_id]) == {obj_id: data}
        with keyed.block.open_read(repo, obj_id) as fh:
            assert fh.read() == data
        assert keyed.block.exists(repo, obj_id)
        assert keyed.block.stat(repo, obj_id).size == len(data)


def test_sse_c_data_is_encrypted_at_rest(
    tmp_path: Path, seaweed: Any, sse_buckets: dict[ObjKind, str]
) -> None:
    """A plain client (no key) cannot read what we stored with SSE-C."""
    repo = new_repo()
    obj_id, data = block(b"top secret " * 100)
    with _stores(tmp_path, "a", seaweed, sse_buckets, sse_c_key=SSE_KEY_A) as a:
        a.block.write(repo, obj_id, data)
    client = seaweed.client()
    with pytest.raises(ClientError) as info:
        client.get_object(Bucket=sse_buckets[ObjKind.BLOCK], Key=f"{repo}/{obj_id}")
    assert info.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400


# ---------------------------------------------------------------- interop with rclone as a client


def test_rclone_reads_our_sse_c_objects_and_we_read_its(
    tmp_path: Path, seaweed: Any, sse_buckets: dict[ObjKind, str]
) -> None:
    repo = new_repo()
    small_id, small = block(os.urandom(5000))
    big_id, big = block(os.urandom(12 * 1024 * 1024))
    bucket = sse_buckets[ObjKind.BLOCK]
    remote = seaweed.rclone_remote(https=True, sse_customer_key=SSE_KEY_A)
    with _stores(tmp_path, "a", seaweed, sse_buckets, sse_c_key=SSE_KEY_A) as a:
        a.block.write(repo, small_id, small)
        a.block.write(repo, big_id, big)  # multipart
        assert remote.cat(bucket, f"{repo}/{small_id}") == small
        assert hashlib.sha1(remote.cat(bucket, f"{repo}/{big_id}")).hexdigest() == big_id
        theirs_id, theirs = block(os.urandom(7000))
        remote.rcat(bucket, f"{repo}/{theirs_id}", theirs)
        assert a.block.read(repo, theirs_id) == theirs
        assert a.block.stat(repo, theirs_id).size == len(theirs)


def test_rejected_session_token_is_auth_error(tmp_path: Path, seaweed: Any) -> None:
    """An expired (here: unknown) session token is a credentials error, and secret."""
    token = "FwoGZXIvYXdzEXPIREDTOKEN-zz9"
    conf = write_conf(tmp_path, s3_conf(seaweed, extra={"session_token": token}))
    with pytest.raises(AuthError) as info:
        objstore.open_stores(conf)
    assert token not in str(info.value) and "credentials rejected" in str(info.value)
