"""Small helpers shared by tests: seafile.conf text for the test servers."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Mapping
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
    extra: Mapping[str, object] | None = None,
) -> str:
    """One ``[<kind>_backend]`` section pointing at a test S3 server."""
    host = server.domain_name if virtual else server.host
    port = server.https_port if https else server.http_port
    lines = [
        f"[{kind.section}]",
        "name = s3",
        f"bucket = {bucket}",
        f"key_id = {server.access_key}",
        f"key = {secret if secret is not None else server.secret_key}",
        f"host = {host}:{port}",
        f"use_v4_signature = {'false' if v2 else 'true'}",
        f"path_style_request = {'false' if virtual else 'true'}",
        f"use_https = {'true' if https else 'false'}",
        "multipart_threshold = 8M",
        "multipart_chunksize = 5M",
    ]
    if https:
        lines.append(f"ca_file = {server.ca_file}")
    if sse_c_key is not None:
        lines.append(f"sse_c_key = {sse_c_key}")
    if key_prefix is not None:
        lines.append(f"key_prefix = {key_prefix}")
    for k, v in (extra or {}).items():
        lines.append(f"{k} = {v}")
    return "\n".join(lines) + "\n"


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
