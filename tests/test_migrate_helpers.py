"""Shared pieces of the migration tests (no tests here): small source stores built
with the library, configs for the test servers, and checks that read every
object back."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import objstore
from objstore import ObjKind, Stores
from objstore.crypt import StoreCrypt
from objstore.formats import verify_object
from objstore.library import import_folder

from .helpers import fs_conf, s3_section, write_conf

REPO_ROOT = Path(__file__).resolve().parent.parent
SSE_A = "0123456789abcdef0123456789abcdef"
SSE_B = "fedcba9876543210fedcba9876543210"
BLOCK_SIZE = 4096


def make_tree(root: Path, seed: int, files: int = 10) -> Path:
    """A folder of ``files`` deterministic random files (0 B to 20 KiB) in a few dirs."""
    rng = random.Random(seed)
    dirs = [root, root / "docs", root / "docs" / "deep", root / "media"]
    for d in dirs:
        d.mkdir(parents=True, exist_ok=True)
    for i in range(files):
        size = rng.choice([0, 1, 300, 4096, 5000, 9000, 20000])
        rng.choice(dirs).joinpath(f"file-{seed}-{i}.bin").write_bytes(rng.randbytes(size))
    return root


def build_disk_store(
    base: Path, repos: int = 4, seed: int = 0, files: int = 10, block_size: int = BLOCK_SIZE
) -> Path:
    """A disk store under ``base/data`` holding ``repos`` libraries; returns its conf."""
    data = base / "data"
    data.mkdir(parents=True, exist_ok=True)
    conf = write_conf(base / "conf", fs_conf(data))
    with objstore.open_stores(conf) as stores:
        for i in range(repos):
            tree = make_tree(base / "trees" / str(i), seed * 1000 + i, files)
            repo = uuid.UUID(int=random.Random(seed * 1000 + i).getrandbits(128), version=4)
            import_folder(stores, str(repo), tree, block_size=block_size)
    return conf


def s3_dest(tmp: Path, name: str, server: Any, new_bucket: Callable[..., str], **kw: Any) -> Path:
    """A seafile.conf with the three kinds in one fresh bucket on ``server``, under
    ``blocks/``, ``fs/`` and ``commits/`` (one bucket: SeaweedFS allocates volumes
    per bucket, about a second each).  The bucket is removed after the test."""
    bucket = new_bucket(server, name)
    return write_conf(tmp / name, prefixed_conf(server, bucket, **kw))


def prefixed_conf(server: Any, bucket: str, **kw: Any) -> str:
    return "\n".join(
        s3_section(server, kind, bucket, key_prefix=f"{kind.value}/", **kw) for kind in ObjKind
    )


def listing(stores: Stores, kind: ObjKind) -> list[tuple[str, str, int]]:
    return [(i.repo_id, i.obj_id, i.size) for i in stores[kind].list()]


def count_objects(conf: Path, kinds: Iterable[ObjKind] = tuple(ObjKind)) -> int:
    with objstore.open_stores(conf) as stores:
        return sum(len(listing(stores, kind)) for kind in kinds)


def assert_same_objects(
    src_conf: Path, dst_conf: Path, kinds: Iterable[ObjKind] = tuple(ObjKind)
) -> int:
    """Every source object is in the destination, byte for byte, and passes
    verify_object; both list the same objects.  Returns how many were compared."""
    n = 0
    with objstore.open_stores(src_conf) as src, objstore.open_stores(dst_conf) as dst:
        for kind in kinds:
            src_list = listing(src, kind)
            dst_list = listing(dst, kind)
            assert [(r, o) for r, o, _ in dst_list] == [(r, o) for r, o, _ in src_list], kind
            for repo, obj, _ in src_list:
                data = dst[kind].read(repo, obj)
                assert data == src[kind].read(repo, obj), (kind, repo, obj)
                verify_object(kind, obj, data)
                n += 1
    return n


def write_crypt_key(path: Path, seed: int = 7) -> StoreCrypt:
    rng = random.Random(seed)
    key, iv = rng.randbytes(32), rng.randbytes(16)
    path.write_text(f"[store_crypt]\nenc_key = {key.hex()}\nenc_iv = {iv.hex()}\n")
    return StoreCrypt(key, iv)


def encrypt_store(plain_conf: Path, base: Path, crypt: StoreCrypt, key_path: Path) -> Path:
    """A copy of a disk store with every object [store_crypt]-encrypted; returns its conf."""
    data = base / "data"
    data.mkdir(parents=True, exist_ok=True)
    conf = write_conf(base / "conf", fs_conf(data) + f"\n[store_crypt]\nkey_path = {key_path}\n")
    plain_only = write_conf(base / "plain-conf", fs_conf(data))
    with objstore.open_stores(plain_conf) as src, objstore.open_stores(plain_only) as dst:
        for kind in ObjKind:
            for repo, obj, _ in listing(src, kind):
                dst[kind].write(repo, obj, crypt.encrypt(src[kind].read(repo, obj)))
    return conf


# --------------------------------------------------------------------------- CLI


def cli_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env["PYTHONPATH"] = str(REPO_ROOT)
    env["PYTHONUNBUFFERED"] = "1"
    return env


def cli_command(args: Sequence[str | os.PathLike[str]]) -> list[str]:
    return [sys.executable, "-m", "objstore.cli", *(os.fspath(a) for a in args)]


def run_cli(
    args: Sequence[str | os.PathLike[str]], timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    """Run objstore-migrate in a subprocess (as an operator would)."""
    return subprocess.run(
        cli_command(args),
        capture_output=True,
        text=True,
        timeout=timeout,
        env=cli_env(),
        cwd=REPO_ROOT,
        check=False,
    )


def read_report(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text())
    return data


def stop_cli_after_blocks(
    args: Sequence[str | os.PathLike[str]], dest: Path, blocks: int, sig: int
) -> tuple[int, str, str]:
    """Run objstore-migrate, send ``sig`` once ``blocks`` blocks are in ``dest``;
    (exit code, stdout, stderr)."""
    from .helpers import wait_until

    with objstore.open_stores(dest) as stores:
        proc = subprocess.Popen(
            cli_command(args), env=cli_env(), cwd=REPO_ROOT, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        try:

            def enough() -> bool:
                assert proc.poll() is None, "finished before the signal"
                return len(listing(stores, ObjKind.BLOCK)) >= blocks

            wait_until(enough, f"{blocks} blocks in the destination")
            proc.send_signal(sig)
            out, err = proc.communicate(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    return proc.returncode, out, err
