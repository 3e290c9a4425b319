"""A library moved between storage classes as an operator would: from an fs class to
an SSE-C S3 class (SeaweedFS over HTTPS) and back, the first copy interrupted
(Ctrl-C) and resumed, RepoStorageId updated (MariaDB and SQLite), the old class cleaned with
``objstore-admin remove-objs``; the library read through the file-server API
(``for_repo``) before and after every step."""

from __future__ import annotations

import json
import signal
import subprocess
import uuid
from pathlib import Path
from typing import Any

import objstore
from objstore import ObjKind, StorageClasses
from objstore.admin import main as admin_main
from objstore.formats import verify_object
from objstore.library import import_folder, restore_folder, walk

from .helpers import wait_until
from .storage_classes import SeafileTestDB, fs_class, s3_class, write_classes
from .test_migrate_helpers import REPO_ROOT, SSE_A, cli_command, cli_env, make_tree


def read_library(sc: StorageClasses, repo: str, head: str, tree: Path, dest: Path) -> int:
    """Read every object of the library through ``for_repo`` (each checked against its
    id), restore its files and compare them with the original folder; the object count."""
    stores = sc.for_repo(repo)
    n = 0
    for _path, kind, obj_id in walk(stores, repo, head, unique=True):
        verify_object(kind, obj_id, stores[kind].read(repo, obj_id))
        n += 1
    restore_folder(stores, repo, head, dest)
    files = sorted(p.relative_to(tree) for p in tree.rglob("*") if p.is_file())
    assert sorted(p.relative_to(dest) for p in dest.rglob("*") if p.is_file()) == files
    for rel in files:
        assert (dest / rel).read_bytes() == (tree / rel).read_bytes(), rel
    return n


def count(sc: StorageClasses, storage_id: str, repo: str) -> int:
    stores = sc.classes[storage_id]
    return sum(1 for kind in ObjKind for _ in stores[kind].list(repo))


def migrate_cli(
    conf: Path, env: dict[str, str], *args: str, wait: bool = True
) -> subprocess.CompletedProcess[str] | subprocess.Popen[str]:
    cmd = cli_command([conf, *args])
    if not wait:
        return subprocess.Popen(cmd, env=env, cwd=REPO_ROOT, text=True,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    return subprocess.run(cmd, env=env, cwd=REPO_ROOT, capture_output=True, text=True,
                          timeout=300, check=False)  # fmt: skip


def test_move_fs_to_sse_c_s3_and_back(
    tmp_path: Path, seafile_db: SeafileTestDB, seaweed: Any, new_bucket: Any, capsys: Any
) -> None:
    db = seafile_db
    local = tmp_path / "local"
    local.mkdir()
    bucket = new_bucket(seaweed, "vault")
    conf = write_classes(
        tmp_path / "conf",
        [fs_class("local", local, is_default=True), s3_class("vault", seaweed, bucket, SSE_A)],
        db.section,
    )
    moved, stays = str(uuid.uuid4()), str(uuid.uuid4())
    db.add_library(moved)
    db.add_library(stays)
    env = {**cli_env(), "SEAFILE_DATA_DIR": str(db.data_dir)}
    secrets = [seaweed.secret_key, SSE_A] + ([db.server.password] if db.server else [])
    trees = {moved: make_tree(tmp_path / "t1", 31, files=40), stays: make_tree(tmp_path / "t2", 32)}
    sc = objstore.open_storage_classes(conf, data_dir=db.data_dir, env={})
    try:
        heads = {r: import_folder(sc.for_repo(r), r, t, block_size=4096) for r, t in trees.items()}
        total = read_library(sc, moved, heads[moved], trees[moved], tmp_path / "before")
        assert total == count(sc, "local", moved) > 40
        kept = count(sc, "local", stays)

        # 1. the copy, interrupted part way (slowed down by --bwlimit), leaves the mapping alone
        move = ["--from-class", "local", "--to-class", "vault", "--repo", moved]
        stopped = tmp_path / "interrupted.json"
        proc = migrate_cli(conf, env, *move, "--bwlimit", "20k", "--workers", "2",
                           "--update-mapping", "--report", str(stopped), wait=False)  # fmt: skip
        assert isinstance(proc, subprocess.Popen)
        try:

            def some_blocks() -> bool:
                assert proc.poll() is None, "finished before it could be killed"
                return sum(1 for _ in sc.classes["vault"].block.list(moved)) >= 5

            wait_until(some_blocks, "5 blocks in class vault")
            proc.send_signal(signal.SIGINT)
            proc.wait(timeout=60)
        finally:
            proc.kill()
            proc.wait()
        assert proc.returncode == 130
        data = json.loads(stopped.read_text())
        assert data["exit_code"] == 130 and data["class_move"]["mapping_updated"] is False
        assert [run["interrupted"] for run in data["runs"]] == [True]
        arrived = count(sc, "vault", moved)
        assert 0 < arrived < total
        assert db.rows() == {} and sc.for_repo(moved) is sc.classes["local"]

        # 2. resumed, with the final delta copy and verify, then the mapping update
        report = tmp_path / "move.json"
        done = migrate_cli(conf, env, *move, "--update-mapping", "--verify", "hash",
                           "--report", str(report))  # fmt: skip
        assert isinstance(done, subprocess.CompletedProcess)
        assert done.returncode == 0, done.stdout + done.stderr
        out = done.stdout
        assert "moving 1 library from class 'local' to class 'vault'" in out
        assert "the file server must not write to 1 library until the mapping is updated" in out
        assert "mapping: RepoStorageId now points 1 library at class 'vault'" in out
        assert "objstore-admin remove-objs" in out
        data = json.loads(report.read_text())
        assert data["exit_code"] == 0 and data["class_move"]["mapping_updated"] is True
        first, final = data["runs"]
        assert first["transfer"]["skipped"] >= arrived
        assert first["transfer"]["copied"] + first["transfer"]["skipped"] == total
        assert first["verify"]["mode"] == "hash" and first["verify"]["ok"] == total
        assert final["transfer"]["copied"] == 0 and final["verify"]["ok"] == total
        assert final["verify"]["mode"] == "hash"
        for secret in secrets:
            assert secret not in out + done.stderr + report.read_text()
        assert db.rows() == {moved: "vault"}
        assert sc.for_repo(moved) is sc.classes["vault"]
        assert read_library(sc, moved, heads[moved], trees[moved], tmp_path / "after") == total

        # 3. the old class is cleaned only when the new one holds everything, intact
        admin = [str(conf), "--repo", moved, "--data-dir", str(db.data_dir)]
        assert admin_main(["remove-objs", *admin, "--class", "vault"]) == 2
        assert "still lives in class 'vault'" in capsys.readouterr().err
        vault_block = sc.classes["vault"].block
        victim = next(iter(vault_block.list(moved))).obj_id
        original = vault_block.read(moved, victim)
        vault_block.delete(moved, victim)
        assert admin_main(["remove-objs", *admin, "--class", "local"]) == 1
        assert "1 missing" in capsys.readouterr().err
        vault_block.write(moved, victim, original[:-1] + bytes([original[-1] ^ 1]))
        assert admin_main(["remove-objs", *admin, "--class", "local"]) == 1
        assert "1 corrupt" in capsys.readouterr().err
        vault_block.write(moved, victim, original)
        assert count(sc, "local", moved) == total
        assert admin_main(["remove-objs", *admin, "--class", "local", "--dry-run"]) == 0
        assert f"would delete {total} objects" in capsys.readouterr().out
        assert count(sc, "local", moved) == total
        assert admin_main(["remove-objs", *admin, "--class", "local"]) == 0
        assert f"deleted {total} objects" in capsys.readouterr().out
        assert count(sc, "local", moved) == 0
        assert count(sc, "local", stays) == kept
        assert read_library(sc, moved, heads[moved], trees[moved], tmp_path / "cleaned") == total
        assert read_library(sc, stays, heads[stays], trees[stays], tmp_path / "stays") > 0

        # 4. and back to the fs class: a copy that leaves the mapping alone, then the switch
        back = ["--from-class", "vault", "--to-class", "local", "--repo", moved]
        copy = migrate_cli(conf, env, *back)
        assert isinstance(copy, subprocess.CompletedProcess)
        assert copy.returncode == 0, copy.stdout + copy.stderr
        assert f"copy: {total} copied" in copy.stdout
        assert "re-run with --update-mapping" in copy.stdout
        assert db.rows() == {moved: "vault"}
        report = tmp_path / "back.json"
        switch = migrate_cli(conf, env, *back, "--update-mapping", "--report", str(report))
        assert isinstance(switch, subprocess.CompletedProcess)
        assert switch.returncode == 0, switch.stdout + switch.stderr
        first, final = json.loads(report.read_text())["runs"]
        assert first["transfer"]["skipped"] == total and final["transfer"]["copied"] == 0
        assert first["verify"]["mode"] == final["verify"]["mode"] == "size"
        assert db.rows() == {moved: "local"}
        assert admin_main(["remove-objs", *admin, "--class", "vault"]) == 0
        assert count(sc, "vault", moved) == 0
        assert read_library(sc, moved, heads[moved], trees[moved], tmp_path / "back") == total
    finally:
        sc.close()
