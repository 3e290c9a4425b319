"""Shards by repo-id prefix: the split (pure), listing one prefix per driver
(fs, S3 path-style and virtual-hosted with a key_prefix, through the cache), the
`--shard env:VAR/N` forms, N shards as N processes each copying its own objects
once and listing only its prefixes, `merge-reports`, and the Kubernetes example."""

from __future__ import annotations

import json
import logging
import os
import random
import re
import shutil
import subprocess
import sys
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import yaml

import objstore
from objstore import ConfigError, ObjectInfo, ObjKind
from objstore.cli import build_parser, main
from objstore.drivers.fs import FsDriver
from objstore.migration import load_plan_file, parse_shard, shard_of, shard_prefixes
from objstore.migration.join import scoped_listing
from objstore.migration.shards import MAX_SHARDS, prefix_digits, shard_report_path

from .conformance import block
from .helpers import fs_conf, s3_section, write_conf
from .test_cache import cache_section
from .test_migrate_helpers import (
    REPO_ROOT,
    build_disk_store,
    cli_command,
    cli_env,
    count_objects,
    listing,
    read_report,
    run_cli,
    s3_dest,
)

SHARD_COUNTS = [1, 2, 3, 4, 7, 16, 17, 100, 256, 1000, 4095, 4096]


def repo_with_prefix(prefix: str, rng: random.Random) -> str:
    """A uuid4 whose first hex digits are ``prefix``."""
    text = str(uuid.UUID(int=rng.getrandbits(128), version=4))
    return prefix + text[len(prefix) :]


# --------------------------------------------------------------------------- the split


def test_prefix_digits_rule() -> None:
    """L is the smallest number of hex digits with 16^L >= 256 N."""
    for n in range(1, MAX_SHARDS + 1):
        digits = prefix_digits(n)
        assert 16**digits >= 256 * n > 16 ** (digits - 1)
    assert [prefix_digits(n) for n in (1, 16, 17, 256, 4096)] == [2, 3, 4, 4, 5]
    for bad in (0, MAX_SHARDS + 1):
        with pytest.raises(ValueError):
            prefix_digits(bad)


@pytest.mark.parametrize("n", SHARD_COUNTS)
def test_shards_partition_the_repo_id_space(n: int) -> None:
    """The prefixes of all K, in order of K, are aligned blocks that tile every
    L-digit hex string exactly once (disjoint, no gap), each shard's list is sorted,
    and each shard's share is 1/N to within one part in 256."""
    digits = prefix_digits(n)
    space = 16**digits
    end = 0
    for k in range(n):
        prefixes = shard_prefixes(k, n)
        assert list(prefixes) == sorted(prefixes)
        start = end
        for prefix in prefixes:
            assert re.fullmatch(r"[0-9a-f]*", prefix) and len(prefix) <= digits
            width = 16 ** (digits - len(prefix))
            lo = int(prefix, 16) * width if prefix else 0
            assert lo == end, (k, prefix)  # the next block starts where the last ended
            end = lo + width
        assert abs((end - start) / space - 1 / n) <= 1 / space
        assert abs((end - start) * n / space - 1) <= 1 / 256
    assert end == space
    everything = [p for k in range(n) for p in shard_prefixes(k, n)]
    assert everything == sorted(everything)  # concatenated listings stay one sorted stream


def test_known_splits() -> None:
    assert shard_prefixes(0, 1) == ("",)
    assert shard_prefixes(3, 16) == ("3",)
    assert shard_prefixes(1, 4) == ("4", "5", "6", "7")
    assert shard_prefixes(0, 3)[-3:] == ("552", "553", "554")
    for n in SHARD_COUNTS:
        for k in range(n):
            lengths = Counter(len(p) for p in shard_prefixes(k, n))
            assert max(lengths.values()) <= 2 * 15  # at most 15 of a length at each end


@pytest.mark.parametrize("n", [1, 3, 16, 100, 4096])
def test_shard_of_is_the_shard_whose_prefixes_match(n: int) -> None:
    rng = random.Random(n)
    for _ in range(100):
        repo = str(uuid.UUID(int=rng.getrandbits(128), version=4))
        owners = [k for k in range(n) if repo.startswith(shard_prefixes(k, n))]
        assert owners == [shard_of(repo, n)]


def test_parse_shard_literal_and_from_the_environment() -> None:
    assert parse_shard("0/4") == (0, 4)
    assert parse_shard(" 3 / 4 ") == (3, 4)
    assert parse_shard("4095/4096") == (4095, 4096)
    env = {"JOB_COMPLETION_INDEX": "15"}
    assert parse_shard("env:JOB_COMPLETION_INDEX/16", env) == (15, 16)
    for bad in ("4/4", "1/0", "a/b", "1", "-1/3", "0/4097", "env:/4", "env:1X/4"):
        with pytest.raises(ValueError):
            parse_shard(bad, env)
    for value, words in ((None, "is not set"), ("x", "not a whole number"),
                         ("-1", "not a whole number"), ("16", "0 <= K < N")):  # fmt: skip
        environ = {} if value is None else {"JOB_COMPLETION_INDEX": value}
        with pytest.raises(ValueError, match=words) as exc:
            parse_shard("env:JOB_COMPLETION_INDEX/16", environ)
        assert "JOB_COMPLETION_INDEX" in str(exc.value)


def test_shard_report_names() -> None:
    assert shard_report_path(Path("out/run.json"), (3, 16)) == Path("out/run.shard-3-of-16.json")
    assert shard_report_path(Path("run"), (0, 1)) == Path("run.shard-0-of-1")


def test_plan_file_shard_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    plan = tmp_path / "p.toml"
    plan.write_text('source = "s"\ndestination = "d"\nshard = "env:JOB_COMPLETION_INDEX/16"\n')
    monkeypatch.delenv("JOB_COMPLETION_INDEX", raising=False)
    with pytest.raises(ConfigError) as exc:
        load_plan_file(plan)
    assert exc.value.option == "shard" and exc.value.file == str(plan)
    assert "JOB_COMPLETION_INDEX is not set" in str(exc.value)
    monkeypatch.setenv("JOB_COMPLETION_INDEX", "7")
    assert load_plan_file(plan).values["shard"] == (7, 16)


# --------------------------------------------------------------------------- listing a prefix


@pytest.fixture
def fs_blocks(tmp_path: Path) -> Iterator[tuple[FsDriver, list[str]]]:
    rng = random.Random(5)
    repos = sorted(repo_with_prefix(p, rng) for p in ("0a", "3", "3f", "7", "c1", "f"))
    driver = FsDriver(tmp_path, ObjKind.BLOCK, fsync=False)
    for i, repo in enumerate(repos):
        for n in range(3):
            driver.put(repo, *block(b"%d-%d" % (i, n)))
    yield driver, repos
    driver.close()


def test_fs_list_prefix_reads_only_the_matching_repo_directories(
    fs_blocks: tuple[FsDriver, list[str]],
) -> None:
    """Every directory read (os.listdir/os.scandir, seen through an audit hook) is
    the storage root or inside a library whose id starts with the prefix."""
    driver, repos = fs_blocks
    read: list[str] = []
    watching = [False]

    def hook(event: str, args: tuple[Any, ...]) -> None:
        if watching[0] and event in ("os.listdir", "os.scandir"):
            read.append(os.fspath(args[0]))

    sys.addaudithook(hook)  # cannot be removed: it records only while watching
    root = str(driver.root)
    for prefix in ("3", "3f", "c", "e", ""):
        read.clear()
        watching[0] = True
        try:
            got = list(driver.list_prefix(prefix))
        finally:
            watching[0] = False
        assert got == [i for i in driver.list() if i.repo_id.startswith(prefix)]
        assert {i.repo_id for i in got} == {r for r in repos if r.startswith(prefix)}
        touched = {os.path.relpath(p, root).split(os.sep)[0] for p in read if p != root}
        assert touched == {i.repo_id for i in got}, prefix
        assert read.count(root) == 1


def test_scoped_listing_by_repos_shard_or_everything(
    fs_blocks: tuple[FsDriver, list[str]],
) -> None:
    driver, repos = fs_blocks
    everything = list(driver.list())
    seen: list[ObjectInfo] = []
    for k in range(4):
        part = list(scoped_listing(driver, shard=(k, 4)))
        assert all(shard_of(i.repo_id, 4) == k for i in part)
        seen += part
    assert seen == everything  # each object exactly once, and in order
    picked = [repos[4], repos[0], repos[1]]
    assert [i.repo_id for i in scoped_listing(driver, repos=picked)] == [
        i.repo_id for i in everything if i.repo_id in picked
    ]
    # --repo with --shard: only the given libraries that are in the shard
    k = shard_of(repos[0], 4)
    got = {i.repo_id for i in scoped_listing(driver, repos=picked, shard=(k, 4))}
    assert got == {r for r in picked if shard_of(r, 4) == k} and repos[0] in got
    assert list(scoped_listing(driver)) == everything


class _Requests(logging.Handler):
    """The targets of the S3 requests, from the ``objstore.s3`` DEBUG log."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.targets: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.targets.append(record.getMessage())


@pytest.mark.parametrize("style", ["path", "virtual", "path+redis-cache"])
def test_s3_list_prefix_is_one_listing_of_that_key_prefix(
    tmp_path: Path, seaweed: Any, new_bucket: Any, style: str, request: pytest.FixtureRequest
) -> None:
    bucket = new_bucket(seaweed, "prefix")
    virtual = style == "virtual"
    text = "\n".join(
        s3_section(seaweed, kind, bucket, virtual=virtual, key_prefix=f"site one/{kind.value}")
        for kind in ObjKind
    )
    if style.endswith("redis-cache"):
        redis = request.getfixturevalue("redis_server")
        text += cache_section("redis", redis.port, "cached_kinds = commit,fs,block\n")
    rng = random.Random(7)
    repos = sorted(repo_with_prefix(p, rng) for p in ("ab", "ab", "a0", "b", "f"))
    handler = _Requests()
    log = logging.getLogger("objstore.s3")
    with objstore.open_stores(write_conf(tmp_path, text)) as stores:
        store = stores.fs
        assert type(store.driver).__name__ == ("CachedDriver" if "cache" in style else "S3Driver")
        for i, repo in enumerate(repos):
            store.write(repo, *block(b"%d" % i))
        everything = list(store.list())
        old_level = log.level
        log.addHandler(handler)
        log.setLevel(logging.DEBUG)
        try:
            for prefix in ("ab", "a", "c", ""):
                handler.targets.clear()
                got = list(store.list_prefix(prefix))
                assert got == [i for i in everything if i.repo_id.startswith(prefix)]
                assert {i.repo_id for i in got} == {r for r in repos if r.startswith(prefix)}
                (target,) = handler.targets  # one listing request (one page), of that prefix
                method, url = target.split(" ", 1)
                query = parse_qs(urlsplit(url).query, keep_blank_values=True)
                assert method == "GET" and query["list-type"] == ["2"]
                assert query["prefix"] == [f"site one/fs/{prefix}"]
        finally:
            log.removeHandler(handler)
            log.setLevel(old_level)


# --------------------------------------------------------------------------- N processes

N = 4
LIST_RE = re.compile(r" DEBUG GET (\S*\?\S*list-type=2\S*)")


def listed_prefixes(stderr: str) -> list[str]:
    """The ``prefix=`` of every full listing request (not the open-time bucket
    check, which asks for one key) a run logged at DEBUG level."""
    out = []
    for m in LIST_RE.finditer(stderr):
        query = parse_qs(urlsplit(m.group(1)).query, keep_blank_values=True)
        if query["max-keys"] != ["1"]:
            out.append(query["prefix"][0])
    return out


def run_shards(args: list[Any], n: int) -> list[subprocess.CompletedProcess[str]]:
    """``objstore-migrate ARGS --shard env:JOB_COMPLETION_INDEX/n`` as n processes at
    once, each with its index in the environment, as an Indexed Job runs them."""
    procs = []
    for k in range(n):
        env = {**cli_env(), "JOB_COMPLETION_INDEX": str(k)}
        cmd = cli_command([*args, "--shard", f"env:JOB_COMPLETION_INDEX/{n}", "-v"])
        procs.append(subprocess.Popen(cmd, env=env, cwd=REPO_ROOT, text=True,
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE))  # fmt: skip
    done = []
    for proc in procs:
        out, err = proc.communicate(timeout=300)
        done.append(subprocess.CompletedProcess(proc.args, proc.returncode, out, err))
    return done


def merge(*reports: Path) -> subprocess.CompletedProcess[str]:
    return run_cli(["merge-reports", *reports])


def test_n_shards_as_n_processes_copy_each_object_once(
    tmp_path: Path, seaweed: Any, new_bucket: Any
) -> None:
    src = build_disk_store(tmp_path / "src", repos=8, seed=3, files=2)
    dst = s3_dest(tmp_path, "nshards", seaweed, new_bucket)  # key_prefix blocks/, fs/, commits/
    total = count_objects(src)
    with objstore.open_stores(src) as stores:
        per_shard = [0] * N
        for kind in ObjKind:
            for repo, _, _ in listing(stores, kind):
                per_shard[shard_of(repo, N)] += 1
    assert all(per_shard) and sum(per_shard) == total
    reports = tmp_path / "reports"
    procs = run_shards([src, dst, "--report", reports / "run.json"], N)
    for k, proc in enumerate(procs):
        assert proc.returncode == 0, proc.stdout + proc.stderr
        data = read_report(reports / f"run.shard-{k}-of-{N}.json")
        assert data["options"]["shard"] == f"{k}/{N}"
        assert data["transfer"]["copied"] == per_shard[k]  # its own objects, once
        assert data["transfer"]["skipped"] == 0  # no shard saw another shard's objects
        # its listing requests asked for its own prefixes only, each once per pass
        # that lists the destination (on S3; the source is on disk): the plan and
        # the verify step; the copy step does not list a destination the plan found
        # without any of the source's objects
        want = {f"{kind.value}/{p}" for kind in ObjKind for p in shard_prefixes(k, N)}
        listed = listed_prefixes(proc.stderr)
        assert set(listed) == want, proc.stderr[-3000:]
        assert len(listed) == 2 * len(want)
    assert not (reports / "run.json").exists()
    # a plain re-run copies nothing; one verify-only process over all shards agrees
    again = run_cli([src, dst, "--report", tmp_path / "again.json"])
    assert again.returncode == 0, again.stderr
    assert read_report(tmp_path / "again.json")["transfer"]["copied"] == 0
    check = run_cli([src, dst, "--verify-only"])
    assert check.returncode == 0 and f"{total} checked, {total} ok, 0 missing" in check.stdout

    names = [reports / f"run.shard-{k}-of-{N}.json" for k in range(N)]
    ok = merge(*names)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert f"shards: {N} of {N} present" in ok.stdout
    assert f"copy: {total} copied, 0 already there, 0 failed" in ok.stdout
    assert "result: OK (exit 0)" in ok.stdout

    missing = merge(*names[:2], names[3])
    assert missing.returncode == 1
    assert f"missing: 1 of {N} shards (2/{N})" in missing.stdout

    twice = tmp_path / "copy-of-shard-1.json"
    shutil.copy(names[1], twice)
    duplicated = merge(*names, twice)
    assert duplicated.returncode == 1
    assert f"shard 1/{N} given 2 times: {names[1]}, {twice}" in duplicated.stdout

    # shard 2 fails: one of its objects is gone from the destination, and a
    # --verify-only run of that shard says so (exit 1) in its report
    with objstore.open_stores(src) as stores:
        repo, obj, _ = next(i for i in listing(stores, ObjKind.BLOCK) if shard_of(i[0], N) == 2)
    with objstore.open_stores(dst) as stores:
        stores.block.delete(repo, obj)
    failed_dir = tmp_path / "failed"
    env = {**cli_env(), "JOB_COMPLETION_INDEX": "2"}
    proc = subprocess.run(
        cli_command([src, dst, "--verify-only", "--shard", f"env:JOB_COMPLETION_INDEX/{N}",
                     "--report", failed_dir / "run.json"]),
        env=env, cwd=REPO_ROOT, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert proc.returncode == 1, proc.stdout + proc.stderr
    failed = failed_dir / f"run.shard-2-of-{N}.json"
    bad = merge(names[0], names[1], failed, names[3])
    assert bad.returncode == 1
    assert f"shard 2/{N} ({failed}) failed: exit 1; verify: 1 missing" in bad.stdout
    assert "result: FAILED (exit 1)" in bad.stdout

    # a shard that ran against another destination is not part of this migration
    other = write_conf(tmp_path / "other-dest", fs_conf(tmp_path / "other-data"))
    (tmp_path / "other-data").mkdir()
    proc = run_cli([src, other, "--shard", f"0/{N}", "--report", tmp_path / "other.json"])
    assert proc.returncode == 0, proc.stderr
    foreign = merge(tmp_path / f"other.shard-0-of-{N}.json", *names[1:])
    assert foreign.returncode == 1
    assert "another destination" in foreign.stdout and "file://" in foreign.stdout


def test_resizing_n_loses_nothing_and_copies_nothing_twice(
    tmp_path: Path, seaweed: Any, new_bucket: Any
) -> None:
    """Shard 0 of 2 ran; then the pass is done with N = 4: each new shard finds what
    the old one copied already there and copies only the rest."""
    src = build_disk_store(tmp_path / "src", repos=8, seed=3, files=2)
    dst = s3_dest(tmp_path, "resize", seaweed, new_bucket)
    total = count_objects(src)
    first = run_cli([src, dst, "--shard", "0/2", "--report", tmp_path / "old.json"])
    assert first.returncode == 0, first.stderr
    old = tmp_path / "old.shard-0-of-2.json"
    done = read_report(old)["transfer"]["copied"]
    assert 0 < done < total
    procs = run_shards([src, dst, "--report", tmp_path / "new.json"], N)
    assert [p.returncode for p in procs] == [0] * N, [p.stderr[-2000:] for p in procs]
    new = [tmp_path / f"new.shard-{k}-of-{N}.json" for k in range(N)]
    transfers = [read_report(path)["transfer"] for path in new]
    assert sum(t["copied"] for t in transfers) == total - done
    assert sum(t["skipped"] for t in transfers) == done
    assert merge(*new).returncode == 0
    mixed = merge(old, *new)
    assert mixed.returncode == 1 and f"a shard of 2, the others are of {N}" in mixed.stdout
    check = run_cli([src, dst, "--verify-only"])
    assert check.returncode == 0 and f"{total} checked, {total} ok, 0 missing" in check.stdout


def test_merge_reports_needs_real_runs_of_one_migration(tmp_path: Path) -> None:
    """A dry run is no success, shards of other kinds are another migration, and a
    run that stopped before it started is named (its shard is then missing)."""
    src = build_disk_store(tmp_path / "src", repos=2, seed=4, files=1)
    dst = write_conf(tmp_path / "dst", fs_conf(tmp_path / "dst-data"))
    (tmp_path / "dst-data").mkdir()

    def shard(k: int, *extra: Any) -> Path:
        proc = run_cli([src, dst, "--shard", f"{k}/2", "--report", tmp_path / "r.json", *extra])
        assert proc.returncode == 0, proc.stderr
        return tmp_path / f"r.shard-{k}-of-2.json"

    dry = merge(shard(0, "--dry-run"), shard(1, "--dry-run"))
    assert dry.returncode == 1
    assert "failed: a dry run (nothing was copied or verified)" in dry.stdout
    kinds = merge(shard(0, "--kinds", "block"), shard(1))
    assert kinds.returncode == 1 and "other kinds than" in kinds.stdout
    both = [shard(0), shard(1)]
    assert merge(*both).returncode == 0
    env = cli_env()
    env.pop("JOB_COMPLETION_INDEX", None)  # the run stops before it knows its shard
    stopped = subprocess.run(
        cli_command([src, dst, "--shard", "env:JOB_COMPLETION_INDEX/2", "--report",
                     tmp_path / "early.json"]),
        env=env, cwd=REPO_ROOT, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert stopped.returncode == 2
    early = merge(both[0], tmp_path / "early.json")
    assert early.returncode == 1
    assert f"{tmp_path / 'early.json'}: the run stopped before it started (exit 2)" in early.stdout
    assert "missing: 1 of 2 shards (1/2)" in early.stdout


def test_merge_reports_bad_files_exit_2(tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.json"
    garbage.write_text("{not json")
    alien = tmp_path / "alien.json"
    alien.write_text(json.dumps({"hello": 1}))
    moved = tmp_path / "class-move.json"
    moved.write_text(json.dumps({"class_move": {}, "runs": [], "exit_code": 0, "ok": True}))
    for path, words in ((garbage, "not JSON"), (alien, "not an objstore-migrate report"),
                        (tmp_path / "missing.json", "cannot read"),
                        (moved, "a storage-class move report")):  # fmt: skip
        proc = merge(path)
        assert proc.returncode == 2
        (line,) = proc.stderr.strip().splitlines()
        assert line.startswith("objstore-migrate merge-reports: error: ")
        assert str(path) in line and words in line


def test_shard_usage_errors_are_one_line_exit_2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    monkeypatch.delenv("JOB_COMPLETION_INDEX", raising=False)
    src = write_conf(tmp_path / "src", fs_conf(tmp_path))
    for shard, words in (("env:JOB_COMPLETION_INDEX/16", "JOB_COMPLETION_INDEX is not set"),
                         ("3/3", "0 <= K < N"), ("0/5000", "from 1 to 4096")):  # fmt: skip
        assert main([str(src), str(src), "--shard", shard]) == 2
        (line,) = capsys.readouterr().err.strip().splitlines()
        assert line.startswith("objstore-migrate: error: --shard: ") and words in line
    monkeypatch.setenv("JOB_COMPLETION_INDEX", "sixteen")
    assert main([str(src), str(src), "--shard", "env:JOB_COMPLETION_INDEX/16"]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "JOB_COMPLETION_INDEX is 'sixteen'" in err
    plan = tmp_path / "p.toml"
    plan.write_text(f'source = "{src}"\ndestination = "{src}"\n'
                    'shard = "env:JOB_COMPLETION_INDEX/16"\n')  # fmt: skip
    monkeypatch.delenv("JOB_COMPLETION_INDEX")
    assert main(["--plan", str(plan)]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1
    assert str(plan) in err and "shard" in err and "JOB_COMPLETION_INDEX is not set" in err


# --------------------------------------------------------------------------- Kubernetes


def test_kubernetes_indexed_job_example() -> None:
    path = REPO_ROOT / "migrations" / "k8s-indexed-job.yaml"
    job = yaml.safe_load(path.read_text())
    assert (job["apiVersion"], job["kind"]) == ("batch/v1", "Job")
    spec = job["spec"]
    n = spec["completions"]
    assert spec["completionMode"] == "Indexed" and n == 16
    assert 1 <= spec["parallelism"] <= n
    pod = spec["template"]["spec"]
    assert pod["restartPolicy"] in ("Never", "OnFailure")
    (container,) = pod["containers"]
    command = container["command"]
    assert command[0] == "objstore-migrate"
    assert command[command.index("--shard") + 1] == f"env:JOB_COMPLETION_INDEX/{n}"
    args = build_parser().parse_args(command[1:])  # objstore-migrate's own parser
    for k in (0, n - 1):
        assert parse_shard(args.shard, {"JOB_COMPLETION_INDEX": str(k)}) == (k, n)
    assert args.report
    # the configurations come from a Secret (they hold keys), mounted where the command reads
    volumes = {v["name"]: v for v in pod["volumes"]}
    mounts = {m["mountPath"]: volumes[m["name"]] for m in container["volumeMounts"]}
    for conf in (args.src, args.dest):
        (volume,) = [v for where, v in mounts.items() if conf.startswith(where + "/")]
        assert "secret" in volume and volume["secret"]["secretName"]
    (reports,) = [v for where, v in mounts.items() if args.report.startswith(where + "/")]
    assert "persistentVolumeClaim" in reports
