"""objstore-migrate as an operator runs it: exit codes, reports, plan files, and
the runs that go wrong (SIGKILL then resume, Ctrl-C, corrupt source objects,
wrong keys, bad configuration)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import uuid
from pathlib import Path
from typing import Any

import pytest

import objstore
from objstore import ObjKind
from objstore.cli import main
from objstore.library import import_folder
from objstore.migration import load_plan_file, migrate, shard_of

from .helpers import fs_conf, wait_until, write_conf
from .test_migrate_helpers import (
    REPO_ROOT,
    SSE_A,
    SSE_B,
    assert_same_objects,
    build_disk_store,
    cli_command,
    cli_env,
    count_objects,
    listing,
    prefixed_conf,
    read_report,
    run_cli,
    s3_dest,
    stop_cli_after_blocks,
)

MiB = 1024 * 1024


@pytest.fixture(scope="module")
def disk_source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_disk_store(tmp_path_factory.mktemp("cli-source"), repos=4, seed=2)


def disk_dest(tmp: Path, name: str = "dest") -> Path:
    data = tmp / name / "data"
    data.mkdir(parents=True)
    return write_conf(tmp / name / "conf", fs_conf(data))


def error_lines(stderr: str) -> list[str]:
    """stderr without the configuration's WARNING log lines (here: key_prefix, which
    Seafile does not read); what is left must be the one error line."""
    return [line for line in stderr.strip().splitlines() if " WARNING" not in line]


def secrets_of(server: Any) -> list[str]:
    return [server.secret_key, SSE_A, SSE_B]


def test_cli_disk_to_s3_report_and_rerun(
    tmp_path: Path, disk_source: Path, seaweed: Any, new_bucket: Any
) -> None:
    dst = s3_dest(tmp_path, "cli", seaweed, new_bucket, https=True, sse_c_key=SSE_A)
    total = count_objects(disk_source)
    report = tmp_path / "reports" / "run1.json"
    proc = run_cli([disk_source, dst.parent, "--report", report, "--verify", "hash"])
    assert proc.returncode == 0, proc.stderr
    assert f"copy: {total} copied" in proc.stdout
    assert "result: OK (exit 0)" in proc.stdout
    data = read_report(report)
    assert data["exit_code"] == 0 and data["ok"] is True
    assert data["transfer"]["copied"] == total
    assert data["transfer"]["failures"] == []
    assert data["verify"]["mode"] == "hash" and data["verify"]["ok"] == total
    assert data["plan"]["kinds"]["blocks"]["to_copy"] > 0
    assert list(data["plan"]["kinds"]) == ["blocks", "fs", "commits"]
    text = report.read_text() + proc.stdout + proc.stderr
    for secret in secrets_of(seaweed):
        assert secret not in text
    assert assert_same_objects(disk_source, dst) == total

    again = run_cli([disk_source, dst, "--report", report])
    assert again.returncode == 0, again.stderr
    assert f"copy: 0 copied, {total} already there, 0 failed" in again.stdout
    check = run_cli([disk_source, dst, "--verify-only"])
    assert check.returncode == 0
    assert f"{total} checked, {total} ok, 0 missing" in check.stdout


def test_cli_killed_run_resumes(
    tmp_path: Path, disk_source: Path, seaweed: Any, new_bucket: Any
) -> None:
    """SIGKILL mid-run (slowed down by --bwlimit); the re-run copies only the rest."""
    dst = s3_dest(tmp_path, "kill", seaweed, new_bucket)
    total = count_objects(disk_source)
    with objstore.open_stores(dst) as stores:
        proc = subprocess.Popen(
            cli_command([disk_source, dst, "--bwlimit", "40k", "--workers", "4"]),
            env=cli_env(), cwd=REPO_ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        try:

            def twenty_blocks() -> bool:
                assert proc.poll() is None, "finished before it could be killed"
                return len(listing(stores, ObjKind.BLOCK)) >= 20

            wait_until(twenty_blocks, "20 blocks in the destination")
        finally:
            proc.kill()
            proc.wait()
        assert proc.returncode == -signal.SIGKILL
        arrived = len(listing(stores, ObjKind.BLOCK))
    assert 20 <= arrived < total
    report = tmp_path / "resume.json"
    resumed = run_cli([disk_source, dst, "--report", report])
    assert resumed.returncode == 0, resumed.stderr
    data = read_report(report)["transfer"]
    assert data["skipped"] >= arrived
    assert data["copied"] + data["skipped"] == total
    assert data["copied"] == total - data["skipped"] > 0
    assert assert_same_objects(disk_source, dst) == total


def test_cli_sigint_aborts_multipart_and_reports(
    tmp_path: Path, seaweed: Any, new_bucket: Any
) -> None:
    """Ctrl-C while a 24 MiB block streams into a multipart upload (slowed by
    --bwlimit so the upload is open for seconds): the upload is aborted, the
    report is written, exit 130."""
    data = tmp_path / "data"
    data.mkdir()
    src = write_conf(tmp_path / "src", fs_conf(data))
    tree = tmp_path / "tree"
    tree.mkdir()
    (tree / "big.bin").write_bytes(bytes(range(256)) * (24 * MiB // 256))
    with objstore.open_stores(src) as stores:
        import_folder(stores, str(uuid.uuid4()), tree, block_size=32 * MiB)
    dst = s3_dest(tmp_path, "sigint", seaweed, new_bucket)
    with objstore.open_stores(dst) as stores:
        bucket = stores.block.driver.bucket  # type: ignore[attr-defined]
    client = seaweed.client()
    report = tmp_path / "interrupted.json"
    proc = subprocess.Popen(
        cli_command([src, dst, "--bwlimit", "4M", "--report", report]),
        env=cli_env(), cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:

        def uploading() -> bool:
            assert proc.poll() is None, proc.communicate()
            return bool(client.list_multipart_uploads(Bucket=bucket).get("Uploads"))

        wait_until(uploading, "a multipart upload in flight")
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, err
    assert "INTERRUPTED" in out
    assert "Traceback" not in err
    assert not client.list_multipart_uploads(Bucket=bucket).get("Uploads")
    data_ = read_report(report)
    assert data_["interrupted"] is True and data_["exit_code"] == 130
    assert data_["transfer"]["copied"] == 0


def test_cli_sigterm_stops_like_ctrl_c(
    tmp_path: Path, disk_source: Path, seaweed: Any, new_bucket: Any
) -> None:
    """Kubernetes stops a pod with SIGTERM: clean stop, report, exit 130."""
    dst = s3_dest(tmp_path, "term", seaweed, new_bucket)
    report = tmp_path / "term.json"
    # the first 64 KiB go at once (the rate limit's burst), the rest at 20 kB/s
    args: list[str | os.PathLike[str]] = [disk_source, dst, "--bwlimit", "20k", "--report", report]
    code, out, err = stop_cli_after_blocks(args, dst, 5, signal.SIGTERM)
    assert code == 130, err
    assert "Traceback" not in err
    assert "run the same command again" in out
    data = read_report(report)
    assert data["interrupted"] is True
    assert 5 <= data["transfer"]["copied"] < count_objects(disk_source)


def test_cli_corrupt_source_object(
    tmp_path: Path, disk_source: Path, seaweed: Any, new_bucket: Any
) -> None:
    """Corrupt source objects are reported (not copied), the rest is copied, exit 1."""
    src_root = tmp_path / "src"
    shutil.copytree(disk_source.parent.parent, src_root)
    src = write_conf(src_root / "conf", fs_conf(src_root / "data"))
    with objstore.open_stores(src) as stores:
        block_repo, block_id, _ = listing(stores, ObjKind.BLOCK)[3]
        fs_repo, fs_id, _ = listing(stores, ObjKind.FS)[2]
    for kind, repo, obj in ((ObjKind.BLOCK, block_repo, block_id), (ObjKind.FS, fs_repo, fs_id)):
        path = src_root / "data" / "storage" / kind.value / repo / obj[:2] / obj[2:]
        raw = bytearray(path.read_bytes())
        raw[len(raw) // 2] ^= 0xFF
        path.write_bytes(bytes(raw))
    dst = s3_dest(tmp_path, "corrupt", seaweed, new_bucket)
    total = count_objects(src)
    report = tmp_path / "corrupt.json"
    proc = run_cli([src, dst, "--report", report])
    assert proc.returncode == 1, proc.stderr
    assert "result: FAILED (exit 1)" in proc.stdout
    assert block_id in proc.stdout and fs_id in proc.stdout
    data = read_report(report)
    failures = {(f["kind"], f["obj_id"]): f for f in data["transfer"]["failures"]}
    assert set(failures) == {("blocks", block_id), ("fs", fs_id)}
    assert "does not match" in failures[("blocks", block_id)]["reason"]
    assert failures[("blocks", block_id)]["attempts"] == 1  # corrupt: not retried
    assert data["transfer"]["copied"] == total - 2
    assert data["verify"]["missing"] == 2
    assert count_objects(dst) == total - 2


def test_cli_shards_cover_every_object_once(tmp_path: Path, seaweed: Any, new_bucket: Any) -> None:
    src = build_disk_store(tmp_path / "src", repos=8, seed=3, files=2)
    dst = s3_dest(tmp_path, "shards", seaweed, new_bucket)
    total = count_objects(src)
    with objstore.open_stores(src) as stores:
        repos = {r for kind in ObjKind for r, _, _ in listing(stores, kind)}
    assert len({shard_of(r, 3) for r in repos}) > 1  # the shards really split the work
    copied = planned = 0
    for k in range(3):
        proc = run_cli([src, dst, "--shard", f"{k}/3", "--report", tmp_path / "run.json"])
        assert proc.returncode == 0, proc.stderr
        data = read_report(tmp_path / f"run.shard-{k}-of-3.json")  # one report per shard
        assert data["transfer"]["skipped"] == 0  # no shard saw another shard's objects
        copied += data["transfer"]["copied"]
        planned += sum(kp["objects"] for kp in data["plan"]["kinds"].values())
    assert copied == planned == total
    assert assert_same_objects(src, dst) == total


def test_cli_dry_run_writes_nothing(
    tmp_path: Path, disk_source: Path, seaweed: Any, new_bucket: Any, capsys: Any
) -> None:
    dst = s3_dest(tmp_path, "dry", seaweed, new_bucket)
    total = count_objects(disk_source)
    report = tmp_path / "dry.json"
    args = [str(disk_source), str(dst), "--dry-run", "--progress", "none", "--report", str(report)]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "dry run: nothing was written" in out and "to copy" in out
    with objstore.open_stores(dst) as stores:
        bucket = stores.block.driver.bucket  # type: ignore[attr-defined]
    assert seaweed.client().list_objects_v2(Bucket=bucket).get("KeyCount") == 0
    data = read_report(report)
    assert data["transfer"] is None and data["verify"] is None
    assert sum(kp["to_copy"] for kp in data["plan"]["kinds"].values()) == total


def test_cli_wrong_destination_credentials_exit_2(
    tmp_path: Path, disk_source: Path, seaweed: Any, new_bucket: Any
) -> None:
    dst = s3_dest(tmp_path, "auth", seaweed, new_bucket, secret="not-the-secret-key")
    proc = run_cli([disk_source, dst])
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    lines = error_lines(proc.stderr)
    assert len(lines) == 1, proc.stderr
    assert "credentials rejected" in lines[0] and str(dst) in lines[0]
    assert "not-the-secret-key" not in proc.stderr and seaweed.secret_key not in proc.stderr


def test_cli_missing_destination_bucket_exit_2(
    tmp_path: Path, disk_source: Path, seaweed: Any, capsys: Any
) -> None:
    dst = write_conf(tmp_path / "nobucket", prefixed_conf(seaweed, "no-such-bucket-here"))
    assert main([str(disk_source), str(dst), "--progress", "none"]) == 2
    err = capsys.readouterr().err
    (line,) = error_lines(err)
    assert "no-such-bucket-here" in line and "does not exist" in line and str(dst) in line


def test_cli_wrong_destination_sse_c_key_exit_2(
    tmp_path: Path, disk_source: Path, seaweed: Any, new_bucket: Any, capsys: Any
) -> None:
    """The destination already holds objects written with key A; DEST says key B."""
    bucket = new_bucket(seaweed, "wrongkey")
    conf_a = write_conf(tmp_path / "a", prefixed_conf(seaweed, bucket, https=True, sse_c_key=SSE_A))
    conf_b = write_conf(tmp_path / "b", prefixed_conf(seaweed, bucket, https=True, sse_c_key=SSE_B))
    assert migrate(disk_source, conf_a, kinds=(ObjKind.COMMIT,)).exit_code == 0
    code = main([str(disk_source), str(conf_b), "--kinds", "commit", "--progress", "none"])
    err = capsys.readouterr().err
    assert code == 2
    assert "sse_c_key" in err and "does not open" in err and str(conf_b) in err
    assert SSE_A not in err and SSE_B not in err


def test_cli_config_errors_exit_2(tmp_path: Path, disk_source: Path, capsys: Any) -> None:
    bad = write_conf(tmp_path / "bad", "[block_backend]\nname = s3\nbucket = b\nhots = x\n")
    assert main([str(disk_source), str(bad)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert str(bad) in err and "[block_backend]" in err and "hots" in err
    assert main([str(disk_source), str(tmp_path / "missing.conf")]) == 2
    assert "missing.conf" in capsys.readouterr().err
    dst = disk_dest(tmp_path)
    assert main([str(disk_source), str(dst), "--repo", "not-a-uuid"]) == 2
    assert "invalid repo id" in capsys.readouterr().err


@pytest.mark.parametrize(
    "args",
    [[], ["only-one"], ["a", "b", "--bwlimit", "fast"],
     ["a", "b", "--verify", "maybe"], ["a", "b", "--dry-run", "--verify-only"]],
)  # fmt: skip
def test_cli_usage_errors_exit_2(args: list[str], capsys: Any) -> None:
    with pytest.raises(SystemExit) as exc:
        main(args)
    assert exc.value.code == 2
    assert "error:" in capsys.readouterr().err


def test_cli_plan_file(tmp_path: Path, disk_source: Path, capsys: Any) -> None:
    disk_dest(tmp_path)  # ../dest/conf from the plan's directory
    repos = tmp_path / "repos.txt"
    with objstore.open_stores(disk_source) as stores:
        repo = listing(stores, ObjKind.COMMIT)[0][0]
        expected = sum(1 for k in ObjKind for r, _, _ in listing(stores, k) if r == repo)
    repos.write_text(f"# one library\n{repo}\n")
    plan = tmp_path / "plans" / "one.toml"
    plan.parent.mkdir()
    plan.write_text(
        f'description = "one library"\nsource = "{disk_source}"\ndestination = "../dest/conf"\n'
        'repos_from = "../repos.txt"\nverify = "hash"\nprogress = "none"\n'
        'report = "out/report.json"\n'
    )
    assert main(["--plan", str(plan)]) == 0
    data = read_report(plan.parent / "out" / "report.json")
    assert data["transfer"]["copied"] == expected
    assert data["options"]["repos"] == [repo] and data["verify"]["mode"] == "hash"
    capsys.readouterr()
    # the command line wins over the file
    assert (
        main(["--plan", str(plan), "--verify", "size", "--report", str(tmp_path / "r.json")]) == 0
    )
    assert read_report(tmp_path / "r.json")["verify"]["mode"] == "size"
    bad = tmp_path / "bad.toml"
    bad.write_text('source = "a"\ndestination = "b"\nworkerz = 3\n')
    assert main(["--plan", str(bad)]) == 2
    assert "workerz" in capsys.readouterr().err


@pytest.mark.parametrize("path", sorted((REPO_ROOT / "migrations").glob("*.toml")), ids=str)
def test_shipped_plan_files_parse(path: Path) -> None:
    plan = load_plan_file(path)
    assert plan.description and plan.source != plan.destination


def test_shipped_plan_files_exist() -> None:
    names = {p.name for p in (REPO_ROOT / "migrations").glob("*.toml")}
    assert {"disk-to-s3.toml", "s3-to-sse-c.toml", "sse-c-key-rotation.toml"} <= names
