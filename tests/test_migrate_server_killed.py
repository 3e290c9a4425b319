"""The S3 server SIGKILLed in the middle of a migration (during blocks, fs and
commits), then restarted: the run ends with exit code 1 and a summary naming the
failures, the re-run completes, and hash verification finds nothing missing or
corrupt."""

from __future__ import annotations

import io
import os
import threading
import time
from pathlib import Path
from typing import Any

import pytest

import objstore
from objstore import ObjKind
from objstore.cli import print_summary
from objstore.formats import Commit, Dirent, SeafDir, encode_commit, encode_dir

from .conformance import block, new_repo
from .helpers import s3_conf, write_conf
from .servers import SeaweedS3


class KillDuring:
    """A progress sink that SIGKILLs the server once ``kind`` has copied ``after`` objects."""

    def __init__(self, server: SeaweedS3, kind: ObjKind, after: int) -> None:
        self.server, self.kind, self.after = server, kind.value, after
        self.current = ""
        self.killed = threading.Event()

    def start(self, phase: str, kind: str, total: int, total_bytes: int) -> None:
        self.current = f"{phase}:{kind}"

    def update(self, done: int, done_bytes: int) -> None:
        if self.current == f"copy:{self.kind}" and done >= self.after and not self.killed.is_set():
            self.killed.set()
            self.server.kill()

    def end(self, complete: bool = True) -> None:
        pass


def _source(tmp_path: Path) -> Path:
    """A disk store with 60 blocks, 60 fs objects and 60 commits in two repos."""
    data = tmp_path / "src-data"
    data.mkdir()
    conf = write_conf(
        tmp_path / "src", "".join(f"[{k.section}]\nname = fs\ndir = {data}\n" for k in ObjKind)
    )
    with objstore.open_stores(conf) as stores:
        repos = [new_repo(), new_repo()]
        for n in range(60):
            repo = repos[n % 2]
            stores.block.write(repo, *block(os.urandom(20_000 + n)))
            dirents = [Dirent(os.urandom(20).hex(), 0o100644, 1_700_000_000, f"f{n}", "m@x", n)]
            stores.fs.write(repo, *encode_dir(SeafDir(dirents)))
            commit = Commit.create(
                repo_id=repo, root_id=os.urandom(20).hex(), ctime=1_700_000_000 + n,
                creator_name="m@x", description=f"commit {n}",
            )  # fmt: skip
            stores.commit.write(repo, *encode_commit(commit))
    return conf


def _wait_until_readable(dest: Path) -> None:
    """After a SIGKILL SeaweedFS answers before its volumes are back: poll that state."""
    deadline = time.monotonic() + 60
    while True:
        try:
            with objstore.open_stores(dest) as stores:
                for info in stores.block.list():
                    stores.block.read(info.repo_id, info.obj_id)
                    break
            return
        except objstore.ObjStoreError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


@pytest.mark.timeout(600)
@pytest.mark.parametrize("kind", [ObjKind.BLOCK, ObjKind.FS, ObjKind.COMMIT], ids=lambda k: k.name)
def test_server_killed_mid_migration_then_rerun(
    tmp_path: Path, server_factory: Any, kind: ObjKind
) -> None:
    server: SeaweedS3 = server_factory(SeaweedS3, https=False)
    src = _source(tmp_path)
    dest = write_conf(
        tmp_path / "dest", s3_conf(server, extra={"max_retries": 1, "connect_timeout": 1})
    )
    killer = KillDuring(server, kind, after=10)
    result = objstore.migrate(src, dest, workers=2, bwlimit=200_000, retries=1,
                              progress=killer)  # fmt: skip
    assert killer.killed.is_set()
    assert result.exit_code == 1
    out = io.StringIO()
    print_summary(result, out)
    summary = out.getvalue()
    assert "fail" in summary.lower()
    server.restart()
    _wait_until_readable(dest)
    again = objstore.migrate(src, dest, workers=4, verify="hash")
    assert again.exit_code == 0, again.to_dict()
    assert again.transfer is not None and again.transfer.copied > 0
    check = objstore.migrate(src, dest, verify_only=True, verify="hash")
    assert check.exit_code == 0
    assert check.verify is not None
    assert (check.verify.missing, check.verify.corrupt, check.verify.mismatched) == (0, 0, 0)
    assert check.verify.checked == 180
