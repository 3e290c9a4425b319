"""A seafile.conf, or an fs data dir, inside a directory the process cannot enter:
a ConfigError / PermissionDenied naming the path, never a raw PermissionError, in
the library and in objstore-migrate (exit 2, one line).

Root enters any directory whatever its mode, so the checks run in a forked child
that drops to ``nobody`` first when the tests run as root (CI does); otherwise the
child keeps the caller's uid and ``chmod 000`` denies it.  The child is forked,
not exec'ed: the interpreter and its modules may live where ``nobody`` cannot
read them, so everything the child needs is imported before the fork.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import select
import shutil
import signal
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import objstore
import objstore.cli
import objstore.migration.engine  # imported before the fork (see above)

from .helpers import fs_conf, write_conf

NOBODY = 65534


def run_unprivileged(fn: Callable[[], object], timeout: float = 60.0) -> dict[str, object]:
    """Run ``fn`` in a forked child without root; returns what it returned
    (``{"result": ...}``), or the exception it raised (``{"error": type, "message"}``),
    plus what it wrote to stdout and stderr."""
    rfd, wfd = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns
        status = 1
        try:
            os.close(rfd)
            if os.geteuid() == 0:
                os.setgroups([])
                os.setgid(NOBODY)
                os.setuid(NOBODY)
            out, err = io.StringIO(), io.StringIO()
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
                try:
                    report: dict[str, object] = {"result": fn()}
                except Exception as exc:
                    report = {"error": type(exc).__name__, "message": str(exc)}
            report.update(stdout=out.getvalue(), stderr=err.getvalue(), uid=os.geteuid())
            os.write(wfd, json.dumps(report, default=repr).encode())
            status = 0
        finally:
            os._exit(status)
    os.close(wfd)
    data = b""
    deadline = time.monotonic() + timeout
    try:
        while True:
            ready, _, _ = select.select([rfd], [], [], max(0.0, deadline - time.monotonic()))
            if not ready:
                os.kill(pid, signal.SIGKILL)
                raise AssertionError("the unprivileged child did not finish")
            chunk = os.read(rfd, 65536)
            if not chunk:
                break
            data += chunk
    finally:
        os.close(rfd)
        _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, data
    result: dict[str, object] = json.loads(data)
    assert result["uid"] != 0, "the check must not run as root"
    return result


@pytest.fixture
def tree() -> Iterator[Path]:
    """``open/`` (anyone may enter) and ``locked/`` (mode 000) under a fresh dir."""
    base = Path(tempfile.mkdtemp(prefix="objstore-perm-"))
    base.chmod(0o755)
    (base / "open").mkdir(mode=0o755)
    (base / "open").chmod(0o755)
    locked = base / "locked"
    (locked / "conf").mkdir(parents=True)
    (locked / "data").mkdir()
    yield base
    locked.chmod(0o755)
    shutil.rmtree(base)


def lock(tree: Path) -> Path:
    locked = tree / "locked"
    locked.chmod(0o000)
    return locked


def test_unprivileged_child_is_really_denied(tree: Path) -> None:
    """The mechanism itself: the child cannot list the locked dir."""
    locked = lock(tree)
    got = run_unprivileged(lambda: os.listdir(locked))
    assert got["error"] == "PermissionError"


def test_conf_in_a_locked_dir_is_a_config_error(tree: Path) -> None:
    conf = write_conf(tree / "locked" / "conf", fs_conf(tree / "open"))
    locked = lock(tree)
    for path in (conf, conf.parent):
        for call in (
            lambda p=path: objstore.load_config(p, env={}),  # type: ignore[misc]
            lambda p=path: objstore.open_stores(p, env={}),  # type: ignore[misc]
        ):
            got = run_unprivileged(call)
            assert got["error"] == "ConfigError", got
            message = str(got["message"])
            assert str(path) in message and "permission denied" in message.lower()
    assert locked.stat().st_mode & 0o777 == 0


@pytest.mark.parametrize("how", ["dir", "SEAFILE_DATA_DIR", "SEAF_SERVER_STORAGE_TYPE=disk"])
def test_data_dir_in_a_locked_dir_is_permission_denied(tree: Path, how: str) -> None:
    data = tree / "locked" / "data"
    if how == "dir":
        conf, env = write_conf(tree / "open", fs_conf(data)), {}
        origin = f"{tree / 'open' / 'seafile.conf'} [commit_object_backend]"
    else:
        conf = write_conf(tree / "open", "[general]\n")
        env = {"SEAFILE_DATA_DIR": str(data)}
        origin = "data dir SEAFILE_DATA_DIR="
        if how.startswith("SEAF_SERVER"):
            env["SEAF_SERVER_STORAGE_TYPE"] = "disk"
            origin = "environment (SEAF_SERVER_STORAGE_TYPE=disk"
    lock(tree)
    got = run_unprivileged(lambda: objstore.open_stores(conf, env=env))
    assert got["error"] == "PermissionDenied", got
    message = str(got["message"])
    assert f"cannot enter {tree / 'locked'}" in message and origin in message

    # without the open-time check the first read says the same kind of thing
    def read_without_check() -> object:
        with objstore.open_stores(conf, env=env, check=False) as stores:
            return stores.block.exists("1b4e28ba-2fa1-41d2-883f-0016d3cca427", "0" * 40)

    got = run_unprivileged(read_without_check)
    assert got["error"] == "PermissionDenied", got


def test_data_dir_that_cannot_be_entered_itself(tree: Path) -> None:
    data = tree / "open" / "data"
    data.mkdir()
    conf = write_conf(tree / "open" / "conf", fs_conf(data))
    data.chmod(0o000)
    try:
        got = run_unprivileged(lambda: objstore.open_stores(conf, env={}))
    finally:
        data.chmod(0o755)
    assert got["error"] == "PermissionDenied", got
    assert f"cannot enter {data}" in str(got["message"])


@pytest.mark.parametrize("where", ["src conf", "dest conf", "src data", "dest data"])
def test_cli_exits_2_with_one_line(tree: Path, where: str) -> None:
    open_data = tree / "open" / "data"
    open_data.mkdir()
    locked_data = tree / "locked" / "data"
    good = write_conf(tree / "open" / "good", fs_conf(open_data))
    paths = {
        "src conf": (write_conf(tree / "locked" / "conf", fs_conf(open_data)), good),
        "dest conf": (good, write_conf(tree / "locked" / "conf", fs_conf(open_data))),
        "src data": (write_conf(tree / "open" / "src", fs_conf(locked_data)), good),
        "dest data": (good, write_conf(tree / "open" / "dst", fs_conf(locked_data))),
    }
    src, dest = paths[where]
    lock(tree)
    got = run_unprivileged(lambda: objstore.cli.main([str(src), str(dest), "--progress", "none"]))
    assert got["result"] == 2, got
    stderr = str(got["stderr"])
    assert stderr.count("\n") == 1 and "Traceback" not in stderr, stderr
    assert str(tree / "locked") in stderr and "permission denied" in stderr.lower()
