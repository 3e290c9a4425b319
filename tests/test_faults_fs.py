"""The fs driver under faults: disk full, read-only filesystem, concurrent writers
(threads and processes), and a writer killed mid-write.  Disk full and read-only
use a real tmpfs mounted by the test (the machine runs tests as root)."""

from __future__ import annotations

import hashlib
import multiprocessing
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import objstore
from objstore import NotFound, PermissionDenied, StorageFull
from objstore.drivers.fs import FsDriver
from objstore.ids import ObjKind
from objstore.store import ObjectStore

from .conformance import block, new_repo


def _files(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()}


@pytest.fixture
def tmpfs(tmp_path: Path) -> Iterator[Path]:
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    proc = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mnt)], capture_output=True, text=True
    )
    if proc.returncode != 0:
        pytest.skip(f"this machine does not allow mounting a tmpfs: {proc.stderr.strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def test_disk_full_leaves_no_partial_object(tmpfs: Path) -> None:
    store = ObjectStore(FsDriver(tmpfs, ObjKind.BLOCK))
    repo = new_repo()
    written: dict[str, bytes] = {}
    with pytest.raises(StorageFull) as info:
        for _ in range(100):
            obj_id, data = block(os.urandom(150 * 1024))
            store.write(repo, obj_id, data)
            written[obj_id] = data
    assert "no space" in str(info.value)
    assert len(written) >= 3
    listed = {i.obj_id for i in store.list()}
    assert listed == set(written)  # the failed object is not there, not even partly
    for obj_id, data in written.items():
        assert store.read(repo, obj_id) == data
    assert not [f for f in _files(tmpfs) if Path(f).name.startswith(".")]  # no temp file left


def test_read_only_filesystem(tmpfs: Path) -> None:
    store = ObjectStore(FsDriver(tmpfs, ObjKind.BLOCK))
    repo = new_repo()
    obj_id, data = block(b"before remount")
    store.write(repo, obj_id, data)
    subprocess.run(["mount", "-o", "remount,ro", str(tmpfs)], check=True)
    new_id, new = block(b"after remount")
    with pytest.raises(PermissionDenied):
        store.write(repo, new_id, new)
    with pytest.raises(PermissionDenied):
        store.delete(repo, obj_id)
    assert store.read(repo, obj_id) == data
    assert [i.obj_id for i in store.list()] == [obj_id]


def _hammer(data_dir: str, repo: str, obj_id: str, data: bytes, rounds: int) -> None:
    store = ObjectStore(FsDriver(data_dir, ObjKind.BLOCK))
    for _ in range(rounds):
        store.write(repo, obj_id, data)


def test_concurrent_writers_threads_and_processes(tmp_path: Path) -> None:
    store = ObjectStore(FsDriver(tmp_path, ObjKind.BLOCK))
    repo = new_repo()
    obj_id, data = block(os.urandom(256 * 1024))
    bad_reads: list[int] = []
    done = threading.Event()

    def reader() -> None:
        while not done.is_set():
            try:
                got = store.read(repo, obj_id)
            except NotFound:
                continue
            if got != data:
                bad_reads.append(len(got))

    readers = [threading.Thread(target=reader) for _ in range(2)]
    for t in readers:
        t.start()
    ctx = multiprocessing.get_context("spawn")
    procs = [
        ctx.Process(target=_hammer, args=(str(tmp_path), repo, obj_id, data, 30)) for _ in range(3)
    ]
    for p in procs:
        p.start()
    threads = [
        threading.Thread(target=_hammer, args=(tmp_path, repo, obj_id, data, 30)) for _ in range(6)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    done.set()
    for t in readers:
        t.join()
    assert bad_reads == []
    assert store.read(repo, obj_id) == data
    assert [i.obj_id for i in store.list()] == [obj_id]
    assert _files(tmp_path) == {f"storage/blocks/{repo}/{obj_id[:2]}/{obj_id[2:]}"}


_SLOW_WRITER = """
import sys, time
from objstore.drivers.fs import FsDriver
from objstore.ids import ObjKind

class Slow:
    def __init__(self):
        self.n = 0
    def read(self, size=-1):
        self.n += 1
        if self.n == 3:
            print("writing", flush=True)
        time.sleep(0.05)
        return b"x" * 65536

FsDriver(sys.argv[1], ObjKind.BLOCK).put_stream(sys.argv[2], sys.argv[3], Slow())
"""


def test_writer_killed_mid_write_leaves_nothing_visible(tmp_path: Path) -> None:
    repo = new_repo()
    obj_id = hashlib.sha1(b"never completes").hexdigest()
    proc = subprocess.Popen(
        [sys.executable, "-c", _SLOW_WRITER, str(tmp_path), repo, obj_id], stdout=subprocess.PIPE
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == b"writing"
    time.sleep(0.2)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    store = objstore.ObjectStore(FsDriver(tmp_path, ObjKind.BLOCK))
    assert not store.exists(repo, obj_id)
    assert list(store.list()) == []
    leftovers = _files(tmp_path)
    assert leftovers and all(Path(f).name.startswith(".") for f in leftovers)  # only the temp file
    # a later write of the same object succeeds and is listed
    obj_id2, data = block(b"after the crash")
    store.write(repo, obj_id2, data)
    assert [i.obj_id for i in store.list()] == [obj_id2]


def test_object_deleted_during_a_listing_drops_only_itself(tmp_path: Path) -> None:
    """A delete racing a listing (the file server's GC during a migration) leaves out
    the deleted object and nothing else of its directory."""
    store = ObjectStore(FsDriver(tmp_path, ObjKind.BLOCK, fsync=False))
    repo = new_repo()
    ids = sorted("ab" + hashlib.sha1(str(i).encode()).hexdigest()[2:] for i in range(5))
    for obj_id in ids:
        store.write(repo, obj_id, b"x" * 10)  # not valid blocks: the listing does not care
    listing = store.list()
    assert next(listing).obj_id == ids[0]  # the directory ab/ is read now
    store.delete(repo, ids[1])
    assert [info.obj_id for info in listing] == ids[2:]


def test_get_reads_to_the_end_when_the_size_changed_since_fstat(tmp_path: Path) -> None:
    """``get`` reads the size ``fstat`` reports, then on to the end of the file: a
    file whose size differs from what fstat said (here a procfs file, which
    reports 0) still comes back whole."""
    driver = FsDriver(tmp_path, ObjKind.BLOCK)
    repo, obj_id = new_repo(), "ab" + "c" * 38
    target = driver.path(repo, obj_id)
    target.parent.mkdir(parents=True)
    target.symlink_to("/proc/self/mountinfo")
    assert os.stat(target).st_size == 0
    expected = Path("/proc/self/mountinfo").read_bytes()
    assert len(expected) > 0
    assert driver.get(repo, obj_id) == expected


def test_get_of_a_directory_is_an_error_not_data(tmp_path: Path) -> None:
    driver = FsDriver(tmp_path, ObjKind.BLOCK)
    repo, obj_id = new_repo(), "ab" + "c" * 38
    driver.path(repo, obj_id).mkdir(parents=True)
    with pytest.raises(objstore.ObjStoreError):
        driver.get(repo, obj_id)
