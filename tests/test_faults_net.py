"""Network faults between the S3 driver and a real SeaweedFS, injected by a TCP
proxy: reads return the right bytes or raise BackendUnavailable after retries,
writes are never half-visible, and nothing hangs past the configured timeouts
(each test has a hard pytest timeout)."""

from __future__ import annotations

import io
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import objstore
from objstore import BackendUnavailable, ObjKind, Stores

from .conformance import block, new_repo
from .helpers import s3_section, unique_bucket, write_conf
from .proxy import Fault, FaultProxy

TIMEOUTS = {"connect_timeout": 1, "read_timeout": 2, "max_retries": 2}


@pytest.fixture
def proxy(seaweed: Any) -> Iterator[FaultProxy]:
    p = FaultProxy(seaweed.http_port)
    yield p
    p.close()


@pytest.fixture
def stores(tmp_path: Path, seaweed: Any, proxy: FaultProxy) -> Iterator[Stores]:
    base = unique_bucket("net")
    sections = []
    for kind in ObjKind:
        bucket = seaweed.create_bucket(f"{base}-{kind.value}")
        text = s3_section(seaweed, kind, bucket, extra=TIMEOUTS)
        sections.append(
            text.replace(f"{seaweed.host}:{seaweed.http_port}", f"127.0.0.1:{proxy.port}")
        )
    with objstore.open_stores(write_conf(tmp_path, "\n".join(sections))) as s:
        yield s


@pytest.mark.timeout(120)
def test_read_recovers_from_bodies_cut_midway(stores: Stores, proxy: FaultProxy) -> None:
    repo = new_repo()
    obj_id, data = block(os.urandom(1024 * 1024))
    stores.block.write(repo, obj_id, data)
    proxy.set(Fault("cut_response", after=200_000, count=2))
    assert stores.block.read(repo, obj_id) == data
    assert proxy.faulted == 2


@pytest.mark.timeout(120)
def test_read_always_cut_raises_backend_unavailable(stores: Stores, proxy: FaultProxy) -> None:
    repo = new_repo()
    obj_id, data = block(os.urandom(1024 * 1024))
    stores.block.write(repo, obj_id, data)
    proxy.set(Fault("cut_response", after=200_000))
    with pytest.raises(BackendUnavailable):
        stores.block.read(repo, obj_id)
    proxy.set(Fault())
    assert stores.block.read(repo, obj_id) == data


@pytest.mark.timeout(120)
def test_slow_server_times_out(stores: Stores, proxy: FaultProxy) -> None:
    repo = new_repo()
    obj_id, data = block(b"slow")
    stores.block.write(repo, obj_id, data)
    proxy.set(Fault("delay", delay=5))
    with pytest.raises(BackendUnavailable):
        stores.block.read(repo, obj_id)


@pytest.mark.timeout(120)
def test_refused_connections_are_an_outage_not_missing(stores: Stores, proxy: FaultProxy) -> None:
    repo = new_repo()
    obj_id, data = block(b"refused")
    stores.block.write(repo, obj_id, data)
    proxy.set(Fault("refuse"))
    with pytest.raises(BackendUnavailable):
        stores.block.exists(repo, obj_id)
    with pytest.raises(BackendUnavailable):
        stores.block.read(repo, obj_id)
    with pytest.raises(BackendUnavailable):
        list(stores.block.list(repo))
    proxy.set(Fault())
    assert stores.block.exists(repo, obj_id)


@pytest.mark.timeout(120)
def test_write_cut_once_is_retried(stores: Stores, proxy: FaultProxy) -> None:
    repo = new_repo()
    obj_id, data = block(os.urandom(2 * 1024 * 1024))
    proxy.set(Fault("cut_request", after=300_000, count=1))
    stores.block.write(repo, obj_id, data)
    assert proxy.faulted == 1
    assert stores.block.read(repo, obj_id) == data


@pytest.mark.timeout(120)
def test_write_always_cut_is_never_half_visible(
    stores: Stores, proxy: FaultProxy, seaweed: Any
) -> None:
    repo = new_repo()
    small_id, small = block(os.urandom(2 * 1024 * 1024))
    big_id, big = block(os.urandom(20 * 1024 * 1024))  # multipart (threshold 8M, parts 5M)
    proxy.set(Fault("cut_request", after=300_000))
    with pytest.raises(BackendUnavailable):
        stores.block.write(repo, small_id, small)
    with pytest.raises(BackendUnavailable):
        stores.block.write_from(repo, big_id, io.BytesIO(big))
    proxy.set(Fault())
    assert not stores.block.exists(repo, small_id)
    assert not stores.block.exists(repo, big_id)
    assert list(stores.block.list(repo)) == []
    bucket = stores.config.backends[ObjKind.BLOCK].bucket  # type: ignore[union-attr]
    uploads = seaweed.client().list_multipart_uploads(Bucket=bucket).get("Uploads", [])
    assert uploads == []  # the failed multipart upload was aborted
