"""Small helpers shared by tests: seafile.conf text for the test servers, and a
subprocess runner that measures time and peak memory."""

from __future__ import annotations

import os
import signal
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from objstore import ObjKind


def unique_bucket(prefix: str = "t") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def s3_section(
    server: Any,
    kind: ObjKind,
    bucket: str,
    *,
    https: bool = False,
    virtual: bool = False,
    v2: bool = False,
    sse_c_key: str | None = None,
    key_prefix: str | None = None,
    secret: str | None = None,
    host: str | None = None,
    extra: Mapping[str, object] | None = None,
) -> str:
    """One ``[<kind>_backend]`` section pointing at a test S3 server (``host``: another
    name for it; ``extra``: more options, or other values for the ones set here)."""
    name = host or (server.domain_name if virtual else server.host)
    port = server.https_port if https else server.http_port
    options: dict[str, object] = {
        "name": "s3",
        "bucket": bucket,
        "key_id": server.access_key,
        "key": secret if secret is not None else server.secret_key,
        "host": f"{name}:{port}",
        "use_v4_signature": "false" if v2 else "true",
        "path_style_request": "false" if virtual else "true",
        "use_https": "true" if https else "false",
        "multipart_threshold": "8M",
        "multipart_chunksize": "5M",
    }
    if https:
        options["ca_file"] = server.ca_file
    if sse_c_key is not None:
        options["sse_c_key"] = sse_c_key
    if key_prefix is not None:
        options["key_prefix"] = key_prefix
    options.update(extra or {})
    return f"[{kind.section}]\n" + "".join(f"{k} = {v}\n" for k, v in options.items())


def s3_conf(
    server: Any, buckets: Mapping[ObjKind, str] | None = None, *, create: bool = True, **kw: Any
) -> str:
    """A seafile.conf with all three kinds on ``server`` (new buckets unless given)."""
    if buckets is None:
        base = unique_bucket()
        buckets = {kind: f"{base}-{kind.value}" for kind in ObjKind}
    if create:
        for name in set(buckets.values()):
            server.create_bucket(name)
    return "\n".join(s3_section(server, kind, buckets[kind], **kw) for kind in ObjKind)


def fs_conf(data_dir: Path) -> str:
    """A seafile.conf with all three kinds on the filesystem under ``data_dir``."""
    return "\n".join(f"[{kind.section}]\nname = fs\ndir = {data_dir}\n" for kind in ObjKind)


def write_conf(directory: Path, text: str) -> Path:
    """Write ``seafile.conf`` into ``directory`` (created) and return its path."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "seafile.conf"
    path.write_text(text)
    return path


def wait_until(cond: Callable[[], bool], what: str, timeout: float = 60.0) -> None:
    """Poll a state until ``cond()`` is true; the timeout only guards against hanging."""
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


@dataclass(frozen=True)
class Measured:
    """How a process ended (see :func:`run_measured`)."""

    returncode: int
    stdout: str
    stderr: str
    seconds: float
    peak_rss_mb: float
    killed: str | None
    """Why it was killed (too slow, too big), or None."""

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


def _peak_rss_mb(pid: int) -> float | None:
    """The process's resident-memory high-water mark (VmHWM), or None once it is gone.
    (Not ``wait4``'s ``ru_maxrss``: on Linux a child's figure starts from the RSS of
    the process that forked it, here pytest's.)"""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def run_measured(
    argv: Sequence[str | os.PathLike[str]],
    *,
    timeout: float,
    rss_limit_mb: float = 1024,
    env: Mapping[str, str] | None = None,
    cwd: str | os.PathLike[str] | None = None,
) -> Measured:
    """Run a command in its own process group and return its exit code, output,
    wall time and peak resident memory (sampled every 20 ms).  It is killed when it
    runs past ``timeout`` seconds or its RSS passes ``rss_limit_mb`` (a guard for the
    machine, far above what tests allow)."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(
            [os.fspath(a) for a in argv], stdin=subprocess.DEVNULL, stdout=out, stderr=err,
            env=None if env is None else dict(env), cwd=cwd, start_new_session=True,
        )  # fmt: skip
        started = time.monotonic()
        killed: str | None = None
        peak = 0.0
        while proc.poll() is None:
            seconds = time.monotonic() - started
            peak = max(peak, _peak_rss_mb(proc.pid) or 0.0)
            if killed is None and (seconds > timeout or peak > rss_limit_mb):
                killed = (
                    f"still running after {timeout:.0f} s" if seconds > timeout
                    else f"RSS {peak:.0f} MB over {rss_limit_mb:.0f} MB"
                )  # fmt: skip
                os.killpg(proc.pid, signal.SIGKILL)
            time.sleep(0.02)
        seconds = time.monotonic() - started
        out.seek(0)
        err.seek(0)
        return Measured(
            proc.returncode,
            out.read().decode("utf-8", "replace"),
            err.read().decode("utf-8", "replace"),
            seconds,
            peak,
            killed,
        )
