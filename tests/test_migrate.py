"""objstore.migrate against real servers, every direction: disk -> S3, S3 -> disk,
S3 -> SSE-C S3 (HTTPS), SSE-C key A -> key B in the same buckets, plain -> SSE-C
in place, S3 -> rclone serve s3, and [store_crypt] -> plain.

Each direction: every object arrives byte-identical (read back and verified), a
re-run copies nothing, and verify-only finds nothing missing."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

import objstore
from objstore import ConfigError, ObjectInfo, ObjKind
from objstore.drivers.base import Driver, WrappingDriver
from objstore.library import import_folder
from objstore.migration import MigrateOptions, Migration, MigrationResult, migrate
from objstore.store import ObjectStore, Stores

from .helpers import write_conf
from .test_migrate_helpers import (
    SSE_A,
    SSE_B,
    assert_same_objects,
    build_disk_store,
    count_objects,
    encrypt_store,
    listing,
    prefixed_conf,
    s3_dest,
    write_crypt_key,
)

MiB = 1024 * 1024


@pytest.fixture(scope="module")
def disk_source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A disk store with 4 libraries (a few hundred objects); read-only for tests."""
    return build_disk_store(tmp_path_factory.mktemp("disk-source"), repos=4, seed=1)


def check_full_run(result: MigrationResult, total: int) -> None:
    assert result.exit_code == 0, result.to_dict()
    assert result.plan is not None and result.transfer is not None
    assert result.plan.to_copy == total
    assert result.transfer.copied == total
    assert result.transfer.failed == 0
    assert result.verify is not None and result.verify.passed
    assert result.verify.checked == total


def check_rerun_and_verify_only(src: Path, dst: Path, total: int, **options: Any) -> None:
    again = migrate(src, dst, **options)
    assert again.exit_code == 0
    assert again.plan is not None and again.plan.to_copy == 0
    assert again.transfer is not None
    assert (again.transfer.copied, again.transfer.skipped) == (0, total)
    check = migrate(src, dst, verify_only=True, verify="hash", **options)
    assert check.exit_code == 0
    assert check.transfer is None
    assert check.verify is not None
    assert (check.verify.missing, check.verify.mismatched, check.verify.corrupt) == (0, 0, 0)
    assert check.verify.ok == total


def test_disk_to_s3(tmp_path: Path, disk_source: Path, seaweed: Any, new_bucket: Any) -> None:
    dst = s3_dest(tmp_path, "d2s", seaweed, new_bucket)
    total = count_objects(disk_source)
    assert total > 100
    result = migrate(disk_source, dst)
    check_full_run(result, total)
    assert result.transfer is not None
    assert result.transfer.bytes == result.plan.to_copy_bytes if result.plan else False
    assert result.plan is not None
    assert {kp.method for kp in result.plan.kinds.values()} == {"copy"}
    assert assert_same_objects(disk_source, dst) == total
    check_rerun_and_verify_only(disk_source, dst, total)


def test_large_block_goes_multipart(tmp_path: Path, seaweed: Any, new_bucket: Any) -> None:
    """A 9 MiB block crosses the destination's 8M multipart threshold."""
    data = tmp_path / "data"
    src = write_conf(tmp_path / "src", "".join(
        f"[{k.section}]\nname = fs\ndir = {data}\n" for k in ObjKind
    ))  # fmt: skip
    data.mkdir()
    tree = tmp_path / "tree"
    tree.mkdir()
    (tree / "big.bin").write_bytes(hashlib.sha256(b"x").digest() * (9 * MiB // 32))
    with objstore.open_stores(src) as stores:
        import_folder(stores, str(uuid.uuid4()), tree, block_size=16 * MiB)
    dst = s3_dest(tmp_path, "big", seaweed, new_bucket)
    total = count_objects(src)  # the block, a file and a dir object, the commit
    result = migrate(src, dst, verify="hash")
    check_full_run(result, total)
    assert result.transfer is not None and result.transfer.bytes > 9 * MiB
    assert assert_same_objects(src, dst) == total


def test_s3_to_disk(tmp_path: Path, disk_source: Path, seaweed: Any, new_bucket: Any) -> None:
    s3 = s3_dest(tmp_path, "s2d", seaweed, new_bucket)
    assert migrate(disk_source, s3).exit_code == 0
    (tmp_path / "disk").mkdir()
    dst = write_conf(tmp_path / "dst", "".join(
        f"[{k.section}]\nname = fs\ndir = {tmp_path / 'disk'}\n" for k in ObjKind
    ))  # fmt: skip
    total = count_objects(s3)
    result = migrate(s3, dst, verify="hash")
    check_full_run(result, total)
    assert assert_same_objects(s3, dst) == total
    check_rerun_and_verify_only(s3, dst, total)


def test_s3_to_sse_c_server_side(
    tmp_path: Path, disk_source: Path, seaweed: Any, new_bucket: Any
) -> None:
    """Plain buckets -> SSE-C buckets on the same HTTPS endpoint: CopyObject with the
    new key, no bytes through the client; the data is unreadable without the key."""
    plain = s3_dest(tmp_path, "plain", seaweed, new_bucket, https=True)
    assert migrate(disk_source, plain).exit_code == 0
    enc = s3_dest(tmp_path, "enc", seaweed, new_bucket, https=True, sse_c_key=SSE_A)
    total = count_objects(plain)
    result = migrate(plain, enc, verify="hash")
    check_full_run(result, total)
    assert result.plan is not None
    assert {kp.method for kp in result.plan.kinds.values()} == {"server-side copy"}
    assert result.transfer is not None and result.transfer.server_side == total
    assert assert_same_objects(plain, enc) == total
    # encrypted at rest: no key -> refused
    with objstore.open_stores(enc) as stores:
        repo, obj, _ = listing(stores, ObjKind.BLOCK)[0]
        bucket = stores.block.driver.bucket  # type: ignore[attr-defined]
    with pytest.raises(ClientError):
        seaweed.client(https=True).get_object(Bucket=bucket, Key=f"blocks/{repo}/{obj}")
    check_rerun_and_verify_only(plain, enc, total)


def test_s3_to_sse_c_get_put(
    tmp_path: Path, disk_source: Path, seaweed: Any, new_bucket: Any
) -> None:
    """HTTP plain source -> HTTPS SSE-C destination: different endpoints, so GET+PUT."""
    plain = s3_dest(tmp_path, "plainh", seaweed, new_bucket)
    assert migrate(disk_source, plain, kinds=(ObjKind.FS, ObjKind.COMMIT)).exit_code == 0
    enc = s3_dest(tmp_path, "ench", seaweed, new_bucket, https=True, sse_c_key=SSE_A)
    kinds = (ObjKind.FS, ObjKind.COMMIT)
    total = count_objects(plain, kinds)
    result = migrate(plain, enc, kinds=kinds)
    check_full_run(result, total)
    assert result.transfer is not None and result.transfer.server_side == 0
    assert assert_same_objects(plain, enc, kinds) == total


def _rotation_conf(tmp: Path, name: str, seaweed: Any, bucket: str, key: str | None) -> Path:
    extra = {"sse_c_key": key} if key else {}
    return write_conf(tmp / name, prefixed_conf(seaweed, bucket, https=True, **extra))


def test_rotate_sse_c_key_in_place(
    tmp_path: Path, disk_source: Path, seaweed: Any, new_bucket: Any
) -> None:
    """SRC and DEST name the same buckets with keys A and B: every object is re-keyed
    in place; a partial rotation resumes; a re-run re-keys nothing."""
    bucket = new_bucket(seaweed, "rot")
    conf_a = _rotation_conf(tmp_path, "a", seaweed, bucket, SSE_A)
    conf_b = _rotation_conf(tmp_path, "b", seaweed, bucket, SSE_B)
    assert migrate(disk_source, conf_a).exit_code == 0
    total = count_objects(conf_a)

    # first, one library only: a partly rotated store
    with objstore.open_stores(conf_a) as stores:
        first_repo = listing(stores, ObjKind.BLOCK)[0][0]
        in_first = sum(1 for k in ObjKind for r, _, _ in listing(stores, k) if r == first_repo)
    part = migrate(conf_a, conf_b, repos=frozenset([first_repo]))
    assert part.exit_code == 0, part.to_dict()
    assert part.plan is not None
    assert {kp.method for kp in part.plan.kinds.values()} == {"rotate in place"}
    assert part.transfer is not None and part.transfer.copied == in_first

    # the rest: objects already under B are recognised and skipped
    result = migrate(conf_a, conf_b, verify="hash")
    assert result.exit_code == 0, result.to_dict()
    assert result.transfer is not None
    assert result.transfer.copied == total - in_first
    assert result.transfer.skipped == in_first
    assert result.verify is not None and result.verify.ok == total

    with objstore.open_stores(conf_b) as stores_b, objstore.open_stores(conf_a) as stores_a:
        for kind in ObjKind:
            for repo, obj, _ in listing(stores_b, kind):
                objstore.verify_object(kind, obj, stores_b[kind].read(repo, obj))
            repo, obj, _ = listing(stores_a, kind)[0]
            with pytest.raises(objstore.EncryptionKeyError):
                stores_a[kind].read(repo, obj)  # key A no longer opens it

    again = migrate(conf_a, conf_b)
    assert again.exit_code == 0
    assert again.transfer is not None and (again.transfer.copied, again.transfer.skipped) == (
        0,
        total,
    )
    check = migrate(conf_a, conf_b, verify_only=True)
    assert check.exit_code == 0 and check.verify is not None
    assert (check.verify.ok, check.verify.missing) == (total, 0)
    # the old key is now wrong for the source side too: verify-only from B's view fails
    back = migrate(conf_b, conf_a, verify_only=True, kinds=(ObjKind.COMMIT,))
    assert back.exit_code == 1 and back.verify is not None
    assert back.verify.missing == count_objects(conf_b, (ObjKind.COMMIT,))


def test_encrypt_plain_bucket_in_place(
    tmp_path: Path, disk_source: Path, seaweed: Any, new_bucket: Any
) -> None:
    """Plain -> SSE-C in the same buckets.  SeaweedFS answers a HEAD carrying a key
    for a plaintext object with 200, so 'already rotated' must come from the
    object's key fingerprint, not from the HEAD succeeding."""
    kinds = (ObjKind.FS, ObjKind.COMMIT)
    bucket = new_bucket(seaweed, "inpl")
    conf_plain = _rotation_conf(tmp_path, "plain", seaweed, bucket, None)
    conf_key = _rotation_conf(tmp_path, "key", seaweed, bucket, SSE_B)
    assert migrate(disk_source, conf_plain, kinds=kinds).exit_code == 0
    total = count_objects(conf_plain, kinds)
    result = migrate(conf_plain, conf_key, kinds=kinds, verify="hash")
    assert result.exit_code == 0
    assert result.transfer is not None and result.transfer.copied == total
    with objstore.open_stores(conf_key) as stores:
        repo, obj, _ = listing(stores, ObjKind.FS)[0]
    with pytest.raises(ClientError):
        seaweed.client(https=True).get_object(Bucket=bucket, Key=f"fs/{repo}/{obj}")
    again = migrate(conf_plain, conf_key, kinds=kinds)
    assert again.transfer is not None and again.transfer.copied == 0


def test_s3_to_rclone(
    tmp_path: Path, disk_source: Path, seaweed: Any, rclone_s3: Any, new_bucket: Any
) -> None:
    src = s3_dest(tmp_path, "src", seaweed, new_bucket)
    assert migrate(disk_source, src).exit_code == 0
    dst = s3_dest(tmp_path, "rcl", rclone_s3, new_bucket)
    total = count_objects(src)
    result = migrate(src, dst, verify="hash")
    check_full_run(result, total)
    assert assert_same_objects(src, dst) == total
    check_rerun_and_verify_only(src, dst, total)


def test_store_crypt_decrypt(tmp_path: Path, disk_source: Path) -> None:
    """A legacy [store_crypt] store -> plain objects with --decrypt; without it, refused."""
    key_path = tmp_path / "crypt.key"
    crypt = write_crypt_key(key_path)
    enc = encrypt_store(disk_source, tmp_path / "enc", crypt, key_path)
    (tmp_path / "out").mkdir()
    dst = write_conf(tmp_path / "dst", "".join(
        f"[{k.section}]\nname = fs\ndir = {tmp_path / 'out'}\n" for k in ObjKind
    ))  # fmt: skip
    with pytest.raises(ConfigError, match="--decrypt"):
        migrate(enc, dst)
    total = count_objects(disk_source)
    result = migrate(enc, dst, decrypt=True, verify="hash")
    check_full_run(result, total)
    assert assert_same_objects(disk_source, dst) == total
    again = migrate(enc, dst, decrypt=True)  # sizes compared modulo the padding
    assert again.transfer is not None and again.transfer.copied == 0


def test_same_location_same_key_is_refused(tmp_path: Path, disk_source: Path) -> None:
    with pytest.raises(ConfigError, match="same location"):
        migrate(disk_source, disk_source)


def test_steps_return_values(tmp_path: Path, disk_source: Path) -> None:
    """plan, copy and verify are separate steps that return result values."""
    (tmp_path / "out").mkdir()
    dst = write_conf(tmp_path / "dst", "".join(
        f"[{k.section}]\nname = fs\ndir = {tmp_path / 'out'}\n" for k in ObjKind
    ))  # fmt: skip
    opts = MigrateOptions(kinds=(ObjKind.COMMIT, ObjKind.BLOCK))
    with Migration.open(disk_source, dst, opts) as m:
        assert [lane.kind for lane in m.lanes] == [ObjKind.BLOCK, ObjKind.COMMIT]
        plan = m.plan()
        blocks = plan.kinds[ObjKind.BLOCK]
        assert blocks.to_copy == blocks.missing == blocks.objects > 0
        done = m.copy(plan)
        assert done.copied == plan.to_copy
        assert done.by_kind["blocks"].copied == blocks.to_copy
        check = m.verify(plan, done)
        assert check.passed and check.checked == plan.to_copy
        assert m.plan().to_copy == 0


class _ListCounter(WrappingDriver):
    """Forwards everything; counts the listings asked of it."""

    def __init__(self, inner: Driver) -> None:
        super().__init__(inner)
        self.listings = 0

    def list(self, repo_id: str | None = None) -> Iterator[ObjectInfo]:
        self.listings += 1
        return super().list(repo_id)

    def list_prefix(self, prefix: str) -> Iterator[ObjectInfo]:
        self.listings += 1
        return super().list_prefix(prefix)


def test_copy_lists_the_destination_again_only_where_the_plan_found_objects(
    tmp_path: Path, disk_source: Path
) -> None:
    """A kind the plan found without any of the source's objects at the destination
    (fs here) is copied whole without listing the destination again; a kind with
    some there (blocks: one library copied before) is joined against a fresh
    listing, and only what is missing is copied."""
    (tmp_path / "out").mkdir()
    dst = write_conf(tmp_path / "dst", "".join(
        f"[{k.section}]\nname = fs\ndir = {tmp_path / 'out'}\n" for k in ObjKind
    ))  # fmt: skip
    source, dest = objstore.open_stores(disk_source), objstore.open_stores(dst)
    try:
        first_repo = next(iter(source.block.list())).repo_id
        early = migrate(disk_source, dst, kinds=(ObjKind.BLOCK,), repos=frozenset({first_repo}))
        assert early.exit_code == 0
        counters = {kind: _ListCounter(dest[kind].driver) for kind in ObjKind}
        wrapped = Stores(dest.config, {kind: ObjectStore(counters[kind]) for kind in ObjKind})
        m = Migration(source, wrapped, MigrateOptions(kinds=(ObjKind.BLOCK, ObjKind.FS)))
        plan = m.plan()
        blocks, fs = plan.kinds[ObjKind.BLOCK], plan.kinds[ObjKind.FS]
        assert 0 < blocks.present < blocks.objects and fs.present == 0 < fs.objects
        before = {kind: c.listings for kind, c in counters.items()}
        done = m.copy(plan)
        assert counters[ObjKind.FS].listings == before[ObjKind.FS]  # not listed again
        assert counters[ObjKind.BLOCK].listings > before[ObjKind.BLOCK]
        assert done.by_kind["fs"].copied == fs.objects
        assert (done.by_kind["blocks"].copied, done.by_kind["blocks"].skipped) == (
            blocks.to_copy,
            blocks.present,
        )
        check = m.verify(plan, done)
        assert check.passed and check.checked == plan.objects
    finally:
        source.close()
        dest.close()
