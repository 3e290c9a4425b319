"""objstore-migrate the operator can trust (issue 11): corrupt destination objects
repaired by ``--verify hash`` (and found by a listing where ETags are MD5s),
overlapping locations refused, locations and keys' fingerprints shown before
copying, ``--data-dir``, a ``--repo`` that matches nothing, what can be checked
before copying is checked first, open-time network errors that name file,
section and host, bytes in the hash-verify progress, and what is left after an
interruption."""

from __future__ import annotations

import hashlib
import os
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

import objstore
from objstore import ConfigError, ObjKind
from objstore.migration import MigrateOptions, Migration

from .helpers import fs_conf, s3_section, unique_bucket, write_conf
from .test_migrate_helpers import (
    SSE_A,
    build_disk_store,
    count_objects,
    listing,
    prefixed_conf,
    read_report,
    run_cli,
    s3_dest,
    stop_cli_after_blocks,
)


@pytest.fixture(scope="module")
def small_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_disk_store(tmp_path_factory.mktemp("trust-src"), repos=2, seed=11, files=4)


def _bucket_and_key(dst: Path, kind: ObjKind, repo: str, obj: str) -> tuple[str, str]:
    cfg = objstore.load_config(dst, use_env=False).backends[kind]
    return cfg.bucket, f"{cfg.key_prefix}{repo}/{obj}"  # type: ignore[union-attr]


def _spoil(seaweed: Any, dst: Path, kind: ObjKind, repo: str, obj: str) -> bytes:
    """Overwrite a destination object with other bytes of the same size (what a
    broken tool or a bit flip leaves: a size check cannot see it)."""
    bucket, key = _bucket_and_key(dst, kind, repo, obj)
    client = seaweed.client()
    good: bytes = client.get_object(Bucket=bucket, Key=key)["Body"].read()
    bad = bytes(b ^ 0x5A for b in good)
    client.put_object(Bucket=bucket, Key=key, Body=bad)
    return good


def test_hash_verify_repairs_a_corrupt_destination_object(
    tmp_path: Path, small_store: Path, seaweed: Any, new_bucket: Any
) -> None:
    dst = s3_dest(tmp_path, "repair", seaweed, new_bucket)
    assert run_cli([small_store, dst]).returncode == 0
    with objstore.open_stores(dst) as stores:
        repo, obj, _ = listing(stores, ObjKind.BLOCK)[1]
    good = _spoil(seaweed, dst, ObjKind.BLOCK, repo, obj)

    # a plain re-run sees the right size and copies nothing; it says what it checked
    rerun = run_cli([small_store, dst])
    assert rerun.returncode == 0 and "verified by size" in rerun.stdout, rerun.stdout
    # --verify-only only reports
    report = tmp_path / "check.json"
    check = run_cli([small_store, dst, "--verify-only", "--verify", "hash", "--report", report])
    assert check.returncode == 1, check.stdout
    assert read_report(report)["verify"]["corrupt"] == 1
    with objstore.open_stores(dst) as stores:
        assert stores.block.read(repo, obj) != good  # untouched
    # --verify hash copies it again, checks it again, exit 0
    report = tmp_path / "repair.json"
    fixed = run_cli([small_store, dst, "--verify", "hash", "--report", report])
    assert fixed.returncode == 0, fixed.stdout + fixed.stderr
    data = read_report(report)
    assert (data["verify"]["repaired"], data["verify"]["corrupt"]) == (1, 0)
    assert "1 copied again and then right" in fixed.stdout
    assert "verified by hash" in fixed.stdout
    with objstore.open_stores(dst) as stores:
        assert stores.block.read(repo, obj) == good


def test_md5_etags_find_a_wrong_object_without_reading_it(
    tmp_path: Path, small_store: Path, seaweed: Any, new_bucket: Any
) -> None:
    """S3 -> S3, neither side SSE-C: both listings' ETags are MD5s of the bytes, so a
    same-size object with other content is found by the join and copied again."""
    src = s3_dest(tmp_path, "etag-src", seaweed, new_bucket)
    dst = s3_dest(tmp_path, "etag-dst", seaweed, new_bucket)
    assert objstore.migrate(small_store, src).exit_code == 0
    first = objstore.migrate(src, dst, server_side_copy="never")
    assert first.exit_code == 0
    again = objstore.migrate(src, dst)
    assert again.plan is not None and again.plan.to_copy == 0  # ETags agree after a copy
    with objstore.open_stores(dst) as stores:
        repo, obj, _ = listing(stores, ObjKind.FS)[0]
    good = _spoil(seaweed, dst, ObjKind.FS, repo, obj)
    result = objstore.migrate(src, dst)
    assert result.exit_code == 0
    assert result.plan is not None
    assert (result.plan.kinds[ObjKind.FS].mismatched, result.plan.to_copy) == (1, 1)
    with objstore.open_stores(dst) as stores:
        assert stores.fs.read(repo, obj) == good


# ---------------------------------------------------------------- overlaps


def test_two_kinds_in_one_bucket_and_prefix_is_a_config_error(
    tmp_path: Path, seaweed: Any, new_bucket: Any
) -> None:
    bucket = new_bucket(seaweed, "shared")
    text = "".join(s3_section(seaweed, kind, bucket) for kind in ObjKind)
    with pytest.raises(ConfigError) as info:
        objstore.load_config(write_conf(tmp_path / "one", text))
    message = str(info.value)
    assert "[commit_object_backend]" in message and "[fs_object_backend]" in message
    # a prefix that contains another's is the same mistake
    text = "".join(
        s3_section(seaweed, kind, bucket, key_prefix=p)
        for kind, p in zip(ObjKind, ("seafile/", "seafile/fs/", "seafile/blocks/"))
    )
    with pytest.raises(ConfigError, match="would mix"):
        objstore.load_config(write_conf(tmp_path / "nested", text))
    # one prefix per kind is fine, and so is one fs dir (objects under storage/<kind>)
    objstore.load_config(write_conf(tmp_path / "ok", prefixed_conf(seaweed, bucket)))
    objstore.load_config(write_conf(tmp_path / "fs", fs_conf(tmp_path)))


def test_environment_buckets_shared_by_two_kinds_name_the_variables() -> None:
    env = {
        "SEAF_SERVER_STORAGE_TYPE": "s3", "S3_COMMIT_BUCKET": "seafile",
        "S3_FS_BUCKET": "seafile", "S3_BLOCK_BUCKET": "blocks", "S3_KEY_ID": "k",
        "S3_SECRET_KEY": "s", "S3_HOST": "127.0.0.1:1",
    }  # fmt: skip
    with pytest.raises(ConfigError) as info:
        objstore.config_from_env(env)
    assert "S3_COMMIT_BUCKET" in str(info.value) and "S3_FS_BUCKET" in str(info.value)


def test_source_and_destination_that_overlap_are_refused(
    tmp_path: Path, small_store: Path, seaweed: Any, new_bucket: Any
) -> None:
    src = s3_dest(tmp_path, "ovl-src", seaweed, new_bucket)
    assert objstore.migrate(small_store, src).exit_code == 0
    bucket = objstore.load_config(src).backends[ObjKind.BLOCK].bucket  # type: ignore[union-attr]
    # the destination's blocks inside the source's blocks/ prefix
    nested = "".join(
        s3_section(seaweed, kind, bucket, key_prefix=f"blocks/copy-{kind.value}/")
        for kind in ObjKind
    )
    dst = write_conf(tmp_path / "nested", nested)
    proc = run_cli([src, dst])
    assert proc.returncode == 2 and "overlaps" in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr
    # the destination's commits where the source keeps its blocks
    prefixes = {ObjKind.COMMIT: "blocks/", ObjKind.FS: "x-fs/", ObjKind.BLOCK: "x-blocks/"}
    text = "".join(s3_section(seaweed, k, bucket, key_prefix=p) for k, p in prefixes.items())
    with pytest.raises(ConfigError, match="overlaps the source's blocks location"):
        Migration.open(src, write_conf(tmp_path / "cross", text), MigrateOptions())
    # a key rotation in place (same location, another key) is the one exception:
    # covered by test_migrate.py's rotation tests
    assert count_objects(src) > 0


# ---------------------------------------------------------------- what the plan shows


def test_plan_shows_locations_and_key_fingerprints_before_copying(
    tmp_path: Path, small_store: Path, seaweed: Any, new_bucket: Any
) -> None:
    dst = s3_dest(tmp_path, "show", seaweed, new_bucket, https=True, sse_c_key=SSE_A)
    proc = run_cli([small_store, dst, "--progress", "log"])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout
    plan_at, copy_at = out.index("plan:"), out.index("copy:")
    assert plan_at < copy_at  # printed before the copy's summary...
    data = small_store.parent.parent / "data" / "storage" / "blocks"
    assert f"file://{os.path.realpath(data)}" in out[plan_at:copy_at]
    bucket = objstore.load_config(dst).backends[ObjKind.BLOCK].bucket  # type: ignore[union-attr]
    assert f"s3://127.0.0.1:{seaweed.https_port}/{bucket}/blocks/" in out[plan_at:copy_at]
    fingerprint = hashlib.sha256(b"objstore-sse-c:" + SSE_A.encode()).hexdigest()[:12]
    assert f"SSE-C, key fingerprint {fingerprint}" in out[plan_at:copy_at]
    assert SSE_A not in out + proc.stderr
    assert "locations:" in out[copy_at - 2000 :]  # ...and repeated in the summary
    # ...and before any object is copied: the copy step logs after the plan
    assert proc.stderr.find("copy blocks") > -1


def test_empty_source_warns_and_unknown_repo_fails(
    tmp_path: Path, small_store: Path, seaweed: Any, new_bucket: Any
) -> None:
    empty = tmp_path / "empty-data"
    empty.mkdir()
    src = write_conf(tmp_path / "empty", fs_conf(empty))
    dst = s3_dest(tmp_path, "nothing", seaweed, new_bucket)
    proc = run_cli([src, dst])
    assert proc.returncode == 0
    assert proc.stdout.count("no objects in scope") == 2  # in the plan and the summary
    typo = "1b4e28ba-2fa1-41d2-883f-0016d3cca427"
    report = tmp_path / "typo.json"
    proc = run_cli([small_store, dst, "--repo", typo, "--report", report])
    assert proc.returncode == 1, proc.stdout
    assert typo in proc.stdout and "nothing was copied" in proc.stdout
    assert read_report(report)["fatal"]
    assert count_objects(dst) == 0


def test_data_dir_for_a_stock_seafile_conf(
    tmp_path: Path, small_store: Path, seaweed: Any, new_bucket: Any
) -> None:
    """A seafile.conf without backend sections keeps its objects under the data dir."""
    stock = write_conf(tmp_path / "stock", "[fileserver]\nport = 8082\n")
    data = small_store.parent.parent / "data"
    dst = s3_dest(tmp_path, "stock-dst", seaweed, new_bucket)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SEAFILE_", "SEAF_"))}
    base = [sys.executable, "-m", "objstore.cli"]
    missing = subprocess.run([*base, str(stock), str(dst), "--dry-run"], env=env,
                             capture_output=True, text=True, check=False)  # fmt: skip
    assert missing.returncode == 2 and "--data-dir" in missing.stderr, missing.stderr
    ok = subprocess.run([*base, str(stock), str(dst), "--data-dir", str(data)], env=env,
                        capture_output=True, text=True, check=False)  # fmt: skip
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert count_objects(dst) == count_objects(small_store)
    plan = tmp_path / "plan.toml"
    plan.write_text(f'source = "{stock}"\ndestination = "{dst}"\ndata_dir = "{data}"\n'
                    'verify_only = true\n')  # fmt: skip
    again = subprocess.run([*base, "--plan", str(plan)], env=env, capture_output=True,
                           text=True, check=False)  # fmt: skip
    assert again.returncode == 0, again.stdout + again.stderr
    helptext = subprocess.run([*base, "--help"], capture_output=True, text=True, check=True)
    assert "SEAFILE_DATA_DIR" in helptext.stdout and "--data-dir" in helptext.stdout


# ---------------------------------------------------------------- checked before copying


def test_unwritable_report_fails_before_anything_is_copied(
    tmp_path: Path, small_store: Path, seaweed: Any, new_bucket: Any
) -> None:
    dst = s3_dest(tmp_path, "noreport", seaweed, new_bucket)
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    proc = run_cli([small_store, dst, "--report", blocker / "run.json"])
    assert proc.returncode == 2, proc.stdout
    assert "cannot write the report" in proc.stderr and "Traceback" not in proc.stderr
    assert "result:" not in proc.stdout
    assert count_objects(dst) == 0


def test_open_time_network_error_names_file_section_and_host(
    tmp_path: Path, small_store: Path
) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed once the block ends: connections are refused
    text = "".join(
        f"[{kind.section}]\nname = s3\nbucket = {unique_bucket()}\nkey_id = k\nkey = s\n"
        f"host = 127.0.0.1:{port}\nuse_v4_signature = true\npath_style_request = true\n"
        "max_retries = 0\nconnect_timeout = 2\n"
        for kind in ObjKind
    )
    dst = write_conf(tmp_path / "refused", text)
    proc = run_cli([small_store, dst])
    assert proc.returncode == 2, proc.stdout
    line = proc.stderr.strip().splitlines()[-1]
    assert str(dst) in line and "[commit_object_backend]" in line
    assert f"127.0.0.1:{port}" in line and "Refused" in line, line


# ---------------------------------------------------------------- progress


class _Recorder:
    def __init__(self) -> None:
        self.phase = ""
        self.bytes: dict[str, int] = {}
        self.ends: list[tuple[str, bool]] = []

    def start(self, phase: str, kind: str, total: int, total_bytes: int) -> None:
        self.phase = f"{phase} {kind}"

    def update(self, done: int, done_bytes: int) -> None:
        self.bytes[self.phase] = max(self.bytes.get(self.phase, 0), done_bytes)

    def end(self, complete: bool = True) -> None:
        self.ends.append((self.phase, complete))


def test_hash_verify_progress_counts_bytes(
    tmp_path: Path, small_store: Path, seaweed: Any, new_bucket: Any
) -> None:
    dst = s3_dest(tmp_path, "vbytes", seaweed, new_bucket)
    progress = _Recorder()
    result = objstore.migrate(small_store, dst, verify="hash", progress=progress)
    assert result.exit_code == 0 and result.transfer is not None
    assert progress.bytes["verify-hash blocks"] == result.transfer.by_kind["blocks"].bytes
    assert all(complete for _, complete in progress.ends)


def test_interrupted_run_says_what_is_left_and_how_to_resume(
    tmp_path: Path, seaweed: Any, new_bucket: Any
) -> None:
    # about 200 KiB of blocks: the first 64 KiB go at once (the rate limit's burst),
    # the rest at 10 kB/s, so the signal sent after the third block lands mid-copy
    src = build_disk_store(tmp_path / "src", repos=3, seed=13, files=12)
    dst = s3_dest(tmp_path, "stop", seaweed, new_bucket)
    args: list[str | os.PathLike[str]] = [
        src, dst, "--bwlimit", "10k", "--workers", "1", "--progress", "log"
    ]  # fmt: skip
    code, out, err = stop_cli_after_blocks(args, dst, 3, signal.SIGINT)
    assert code == 130, err
    stopped = [x for x in err.splitlines() if "stopped before the end" in x]
    assert stopped and "copy blocks stopped before the end" in stopped[0], err
    assert len(stopped) == 1 and "copy blocks done" not in err, err
    line = next(x for x in out.splitlines() if x.startswith("interrupted:"))
    assert "run the same command again" in line and " of " in line, out
    assert "result: INTERRUPTED (exit 130)" in out
    assert run_cli([src, dst]).returncode == 0  # and it does


class _InterruptedAtStepEnd(_Recorder):
    """Ctrl-C lands in the main thread while a copy step is being wound up (the
    ticker's last update), after every object was copied."""

    def update(self, done: int, done_bytes: int) -> None:
        super().update(done, done_bytes)
        main = threading.current_thread() is threading.main_thread()
        if main and self.phase == "copy blocks" and not any(p == self.phase for p, _ in self.ends):
            raise KeyboardInterrupt


def test_ctrl_c_while_a_step_winds_up_still_ends_it(tmp_path: Path, small_store: Path) -> None:
    (tmp_path / "data").mkdir()
    dst = write_conf(tmp_path / "dest", fs_conf(tmp_path / "data"))
    progress = _InterruptedAtStepEnd()
    with pytest.raises(KeyboardInterrupt) as caught:
        objstore.migrate(small_store, dst, progress=progress)
    assert progress.ends[-1] == ("copy blocks", True)  # all copied: the step did end
    result = caught.value.result  # type: ignore[attr-defined]
    assert result.interrupted and result.transfer.by_kind["blocks"].seconds > 0


def test_a_section_neither_objstore_nor_seafile_reads_is_a_warning(tmp_path: Path) -> None:
    """``[s3_blocks]`` instead of ``[block_backend]`` would leave blocks on the data dir:
    the plan shows file:///..., and the configuration warns."""
    text = fs_conf(tmp_path) + "\n[s3_blocks]\nname = s3\nbucket = b\n"
    cfg = objstore.load_config(write_conf(tmp_path / "typo", text), use_env=False)
    assert any("[s3_blocks] is not a section" in w for w in cfg.warnings), cfg.warnings
