#!/usr/bin/env python3
"""Benchmark objstore-migrate (not a test: prints a markdown table, writes JSON).

One SeaweedFS (HTTP + HTTPS on loopback), one generated store, every tool on the
same data at the same concurrency, medians of ``--runs`` runs:

* disk -> S3: ``objstore-migrate`` vs the same command at ``--before`` (default
  ddffa5c, the last commit with the lean client: the CPU the S3 rewrite must not
  exceed) vs ``rclone copy`` vs ``s5cmd cp`` of the same
  files (a directory laid out as the S3 keys: ``<kind>/<repo>/<obj_id>``,
  hard links into the store): objects/s, MB/s, peak RSS, client CPU per object
  (user+sys of the client process, from ``wait4``; includes interpreter start)
  and the SeaweedFS process's CPU per object meanwhile (from ``/proc``);
* the no-op re-run of objstore-migrate;
* S3 -> SSE-C S3 (HTTPS): server-side CopyObject vs GET+PUT;
* peak RSS of planning a 1,000,000-object listing (two synthetic listings fed
  through the read-ahead and the merge join, as ``Migration.plan`` does).

    scripts/bench migrate                       # or: .venv/bin/python scripts/bench_migrate.py
    scripts/bench_migrate.py --repos 8 --workers 16 --runs 3 --out bench-results/migrate.json
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from objstore.drivers.fs import FsDriver  # noqa: E402
from objstore.formats import (  # noqa: E402
    DIR_MODE,
    FILE_MODE,
    Commit,
    Dirent,
    SeafDir,
    SeafFile,
    encode_commit,
    encode_dir,
    encode_file,
)
from objstore.ids import ObjKind  # noqa: E402
from tests.servers import find_binary  # noqa: E402

BEFORE_PREFIX = "disk -> S3: objstore-migrate at "
KiB = 1024
MiB = 1024 * KiB
SSE_KEY = "bench-sse-c-key-0123456789abcdef"[:32]


# --------------------------------------------------------------------------- the store


def _block_size(rng: random.Random) -> int:
    """Mostly small blocks, a tail up to 8 MiB (mean ~48 KiB)."""
    r = rng.random()
    if r < 0.80:
        return rng.randint(4 * KiB, 16 * KiB)
    if r < 0.97:
        return rng.randint(16 * KiB, 128 * KiB)
    if r < 0.997:
        return rng.randint(128 * KiB, 1 * MiB)
    return rng.randint(1 * MiB, 8 * MiB)


def generate_store(
    root: Path, repos: int, blocks_per_repo: int, commits_per_repo: int, seed: int = 1
) -> dict[str, Any]:
    """A disk store of valid objects: per repo, blocks; file objects of 1-3 blocks;
    dirs of up to 8 entries; a chain of commits over changing root dirs."""
    data = root / "data"
    drivers = {kind: FsDriver(data, kind, fsync=False) for kind in ObjKind}
    rng = random.Random(seed)
    noise = os.urandom(9 * MiB)
    stats = {kind.value: [0, 0] for kind in ObjKind}

    def put(kind: ObjKind, repo: str, obj: str, payload: bytes) -> None:
        drivers[kind].put(repo, obj, payload)
        stats[kind.value][0] += 1
        stats[kind.value][1] += len(payload)

    for r in range(repos):
        repo = str(uuid.UUID(int=rng.getrandbits(128), version=4))
        blocks: list[tuple[str, int]] = []
        for _ in range(blocks_per_repo):
            size = _block_size(rng)
            start = rng.randrange(0, len(noise) - size)
            payload = rng.randbytes(16) + noise[start : start + size - 16]
            bid = hashlib.sha1(payload).hexdigest()
            put(ObjKind.BLOCK, repo, bid, payload)
            blocks.append((bid, size))
        files: list[Dirent] = []
        i = 0
        while i < len(blocks):
            n = rng.randint(1, 3)
            chunk = blocks[i : i + n]
            i += n
            fid, stored = encode_file(
                SeafFile(block_ids=[b for b, _ in chunk], size=sum(s for _, s in chunk))
            )
            put(ObjKind.FS, repo, fid, stored)
            files.append(
                Dirent(
                    fid,
                    FILE_MODE,
                    1_700_000_000 + i,
                    f"f{r}-{i}.bin",
                    "bench",
                    sum(s for _, s in chunk),
                )
            )
        dirs: list[Dirent] = []
        for j in range(0, len(files), 8):
            did, stored = encode_dir(
                SeafDir(dirents=sorted(files[j : j + 8], key=lambda d: d.name))
            )
            put(ObjKind.FS, repo, did, stored)
            dirs.append(Dirent(did, DIR_MODE, 1_700_000_000 + j, f"d{j:05d}"))
        parent = None
        for c in range(commits_per_repo):
            # each commit: a root holding a sliding window of dirs (new fs objects too)
            window = dirs[c % len(dirs) : c % len(dirs) + 6] or dirs[:6]
            rid, stored = encode_dir(SeafDir(dirents=sorted(window, key=lambda d: d.name)))
            if not drivers[ObjKind.FS].exists(repo, rid):
                put(ObjKind.FS, repo, rid, stored)
            commit = Commit.create(
                repo_id=repo,
                root_id=rid,
                ctime=1_700_000_000 + c,
                creator_name="bench",
                description=f"commit {c}",
                parent_id=parent,
                repo_name=f"repo-{r}",
                version=1,
            )
            cid, stored = encode_commit(commit)
            put(ObjKind.COMMIT, repo, cid, stored)
            parent = cid
    conf = root / "conf" / "seafile.conf"
    conf.parent.mkdir(parents=True, exist_ok=True)
    conf.write_text("".join(f"[{k.section}]\nname = fs\ndir = {data}\n\n" for k in ObjKind))
    # the same files laid out as the S3 keys, for rclone and s5cmd (hard links)
    flat = root / "flat"
    for kind in ObjKind:
        for info in drivers[kind].list():
            target = flat / kind.value / info.repo_id / info.obj_id
            target.parent.mkdir(parents=True, exist_ok=True)
            os.link(drivers[kind].path(info.repo_id, info.obj_id), target)
    objects = sum(v[0] for v in stats.values())
    total = sum(v[1] for v in stats.values())
    return {
        "conf": str(conf),
        "flat": str(flat),
        "objects": objects,
        "bytes": total,
        "by_kind": stats,
    }


# --------------------------------------------------------------------------- measuring


def _vm_hwm_kb(pid: int) -> int | None:
    """Peak RSS of the process's current address space (``VmHWM``).  Unlike
    ``ru_maxrss`` it does not start from the high-water mark of the process that
    forked it (Linux carries that across exec)."""
    try:
        with open(f"/proc/{pid}/status", "rb") as fh:
            for line in fh:
                if line.startswith(b"VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def _process_cpu(pid: int | None) -> float:
    """user + sys CPU seconds of a running process (all its threads), 0.0 if none."""
    if pid is None:
        return 0.0
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            fields = fh.read().rsplit(b")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run_measured(
    cmd: list[str],
    env: dict[str, str] | None = None,
    cwd: str | None = None,
    tail: int | None = 2000,
    server_pid: int | None = None,
) -> dict[str, Any]:
    """Run ``cmd``: wall time; user+sys CPU and context switches of the process
    from ``wait4``; peak RSS
    from its ``VmHWM``, sampled every 20 ms until it exits; the last ``tail``
    characters of its output (None: all of it); the CPU the server process
    ``server_pid`` spent meanwhile."""
    import threading

    server_before = _process_cpu(server_pid)
    started = time.monotonic()
    proc = subprocess.Popen(cmd, env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout is not None and proc.stderr is not None
    chunks: dict[str, bytes] = {}
    peak = [0]
    done = threading.Event()

    def drain(name: str, stream: Any) -> None:
        chunks[name] = stream.read()

    def sample() -> None:
        while not done.is_set():
            kb = _vm_hwm_kb(proc.pid)
            if kb:
                peak[0] = max(peak[0], kb)
            done.wait(0.02)

    threads = [
        threading.Thread(target=drain, args=(n, s))
        for n, s in (("out", proc.stdout), ("err", proc.stderr))
    ]
    threads.append(threading.Thread(target=sample))
    for t in threads:
        t.start()
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.monotonic() - started
    server_cpu = _process_cpu(server_pid) - server_before
    done.set()
    for t in threads:
        t.join()
    proc.returncode = os.waitstatus_to_exitcode(status)
    return {
        "wall": wall,
        "cpu": usage.ru_utime + usage.ru_stime,
        "user": usage.ru_utime,
        "sys": usage.ru_stime,
        "switches": usage.ru_nvcsw + usage.ru_nivcsw,
        "rss_mb": peak[0] / 1024,
        "server_cpu": server_cpu,
        "rc": proc.returncode,
        "stdout": chunks.get("out", b"").decode("utf-8", "replace")[-(tail or 0) :],
        "stderr": chunks.get("err", b"").decode("utf-8", "replace")[-(tail or 0) :],
    }


def clean_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """This environment without AWS_*/RCLONE_* settings and proxies."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("AWS_", "RCLONE_")) and "proxy" not in k.lower()
    }
    env.update(extra or {})
    return env


def median_run(runs: list[dict[str, Any]], objects: int, nbytes: int) -> dict[str, Any]:
    """Medians over runs of the figures that matter."""

    def med(key: str) -> float:
        return float(statistics.median(r[key] for r in runs))

    wall = med("wall")
    return {
        "runs": len(runs),
        "wall_s": round(wall, 3),
        "objects_per_s": round(objects / wall, 1),
        "mb_per_s": round(nbytes / wall / 1e6, 2),
        "cpu_ms_per_object": round(1000 * med("cpu") / objects, 3),
        "server_cpu_ms_per_object": round(1000 * med("server_cpu") / objects, 3),
        "peak_rss_mb": round(med("rss_mb"), 1),
        "walls": [round(r["wall"], 3) for r in runs],
    }


class Bench:
    def __init__(self, args: argparse.Namespace, work: Path, store: dict[str, Any]) -> None:
        from tests.servers import SeaweedS3, TestCA

        self.args = args
        self.work = work
        self.store = store
        self.ca = TestCA(work / "ca")
        self.server = SeaweedS3(work / "seaweedfs", ca=self.ca, https=True)
        self.server.start()
        self.client = self.server.client()
        self._n = 0
        self.rclone_conf = work / "rclone.conf"
        self.rclone_conf.write_text(
            "[bench]\ntype = s3\nprovider = Other\nenv_auth = false\n"
            f"access_key_id = {self.server.access_key}\n"
            f"secret_access_key = {self.server.secret_key}\n"
            f"endpoint = http://127.0.0.1:{self.server.http_port}\nregion = us-east-1\n"
            "force_path_style = true\nno_check_bucket = true\n"
        )

    def close(self) -> None:
        self.server.close()
        self.ca.close()

    def bucket(self, tag: str) -> str:
        """A fresh bucket, warmed up (SeaweedFS allocates volumes on first write)."""
        self._n += 1
        name = f"{tag}-{self._n}"
        self.server.create_bucket(name)
        self.client.put_object(Bucket=name, Key="warm-up", Body=b"x")
        self.client.delete_object(Bucket=name, Key="warm-up")
        return name

    def count(self, bucket: str) -> int:
        pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=bucket)
        return sum(page.get("KeyCount", 0) for page in pages)

    def conf(self, bucket: str, https: bool = False, sse_c_key: str | None = None) -> Path:
        """All three kinds in one bucket under blocks/, fs/, commits/ (the layout the
        flat directory gives rclone and s5cmd)."""
        s = self.server
        port = s.https_port if https else s.http_port
        text = ""
        for kind in ObjKind:
            text += (
                f"[{kind.section}]\nname = s3\nbucket = {bucket}\nkey_id = {s.access_key}\n"
                f"key = {s.secret_key}\nhost = 127.0.0.1:{port}\nuse_v4_signature = true\n"
                f"path_style_request = true\nuse_https = {str(https).lower()}\n"
                f"key_prefix = {kind.value}/\n"
            )
            if https:
                text += f"ca_file = {self.ca.ca_file}\n"
            if sse_c_key:
                text += f"sse_c_key = {sse_c_key}\n"
            text += "\n"
        path = self.work / "confs" / f"{bucket}-{'https' if https else 'http'}" / "seafile.conf"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        return path

    def objstore(
        self, src: Path, dst: Path, *extra: str, tree: Path = ROOT, tail: int | None = 2000
    ) -> dict[str, Any]:
        """Run objstore-migrate from ``tree`` (a checkout of this repository), measured
        (``tail``: as :func:`run_measured`)."""
        cmd = [
            sys.executable,
            "-m",
            "objstore.cli",
            str(src),
            str(dst),
            "--progress",
            "none",
            "--workers",
            str(self.args.workers),
            *extra,
        ]
        # with Python's bytecode cache, as an installed package runs (the cache lives
        # in the work dir; PYTHONDONTWRITEBYTECODE would compile every module anew)
        env = clean_env({"PYTHONPATH": str(tree), "PYTHONPYCACHEPREFIX": str(self.work / "pyc")})
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        # cwd outside every checkout, so `-m` finds objstore only through PYTHONPATH
        result = run_measured(cmd, env, cwd=str(self.work), tail=tail, server_pid=self.server.pid)
        if result["rc"] != 0:
            raise RuntimeError(
                f"objstore-migrate ({tree}) failed: {result['stdout']}\n{result['stderr']}"
            )
        return result

    def rclone(self, bucket: str) -> dict[str, Any]:
        home = self.work / "rclone-home"
        home.mkdir(exist_ok=True)
        n = str(self.args.workers)
        cmd = [
            find_binary("rclone"),
            "--config",
            str(self.rclone_conf),
            "copy",
            self.store["flat"],
            f"bench:{bucket}",
            "--transfers",
            n,
            "--checkers",
            n,
        ]
        result = run_measured(
            cmd,
            clean_env(
                {"HOME": str(home), "XDG_CONFIG_HOME": str(home), "XDG_CACHE_HOME": str(home)}
            ),
            server_pid=self.server.pid,
        )
        if result["rc"] != 0:
            raise RuntimeError(f"rclone failed: {result['stderr']}")
        return result

    def s5cmd(self, bucket: str) -> dict[str, Any]:
        cmd = [
            find_binary("s5cmd"),
            "--endpoint-url",
            f"http://127.0.0.1:{self.server.http_port}",
            "--numworkers",
            str(self.args.workers),
            "cp",
            f"{self.store['flat']}/*",
            f"s3://{bucket}/",
        ]
        env = clean_env(
            {
                "AWS_ACCESS_KEY_ID": self.server.access_key,
                "AWS_SECRET_ACCESS_KEY": self.server.secret_key,
                "AWS_REGION": "us-east-1",
            }
        )
        result = run_measured(cmd, env, server_pid=self.server.pid)
        if result["rc"] != 0:
            raise RuntimeError(f"s5cmd failed: {result['stderr']}")
        return result


def plan_memory(objects: int) -> dict[str, Any]:
    """Peak RSS of a child process planning ``objects`` source objects against a
    destination missing every 10th: two synthetic sorted listings fed through the
    read-ahead threads and the merge join, counting as Migration.plan does."""
    code = f"""
import sys, time
sys.path.insert(0, {str(ROOT)!r})
from objstore.ids import ObjectInfo
from objstore.migration.join import MISSING, PRESENT, Prefetch, merge_join
def hwm():
    with open("/proc/self/status") as fh:
        return next(int(l.split()[1]) for l in fh if l.startswith("VmHWM:"))
base = hwm()
repos = [f"{{i:08x}}-0000-4000-8000-000000000000" for i in range(100)]
def listing(skip):
    n = {objects} // len(repos)
    for repo in repos:
        for i in range(n):
            if skip and i % 10 == 0:
                continue
            yield ObjectInfo(repo, f"{{i:040x}}", 4096 + i % 5000)
start = time.monotonic()
counts = [0, 0, 0, 0]
nbytes = 0
for state, info in merge_join(Prefetch(listing(False)), Prefetch(listing(True))):
    counts[state] += 1
    nbytes += info.size
wall = time.monotonic() - start
peak = hwm()
print(counts[MISSING], counts[PRESENT], round(wall, 2), base // 1024, peak // 1024)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    missing, present, wall, base, peak = out.stdout.split()
    return {
        "objects": objects,
        "to_copy": int(missing),
        "present": int(present),
        "wall_s": float(wall),
        "rss_after_imports_mb": int(base),
        "peak_rss_mb": int(peak),
    }


# --------------------------------------------------------------------------- report


def weed_version(server: Any) -> str:
    """The SeaweedFS version, e.g. ``30GB 4.48``."""
    out = subprocess.run([server.weed_bin, "version"], capture_output=True, text=True, check=False)
    return out.stdout.split("\n")[0].strip().replace("version ", "")


def publish(results: dict[str, Any], table: str, out: str) -> None:
    """Write the results as JSON to ``out`` and print the markdown ``table``."""
    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=2) + "\n")
    print(table)
    print(f"\n(JSON: {path})")


def markdown(results: dict[str, Any]) -> str:
    store = results["store"]
    w = results["workers"]
    lines = [
        f"Store: {store['objects']} objects ({store['bytes'] / 1e6:.0f} MB): "
        + ", ".join(f"{k} {v[0]} ({v[1] / 1e6:.1f} MB)" for k, v in store["by_kind"].items())
        + f"; SeaweedFS {results['seaweedfs']} on loopback; {w} workers/transfers; "
        f"median of {results['runs']} runs.",
        "",
        "| scenario | wall s | objects/s | MB/s | client CPU ms/object "
        "| SeaweedFS CPU ms/object | peak RSS MB |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name, r in results["scenarios"].items():
        lines.append(
            f"| {name} | {r['wall_s']:.2f} | {r['objects_per_s']:.0f} | {r['mb_per_s']:.1f} | "
            f"{r['cpu_ms_per_object']:.3f} | {r['server_cpu_ms_per_object']:.3f} | "
            f"{r['peak_rss_mb']:.0f} |"
        )
    p = results["plan_memory"]
    lines += [
        "",
        f"Planning {p['objects']:,} objects (synthetic listings, {p['to_copy']:,} to copy): "
        f"peak RSS {p['peak_rss_mb']} MB ({p['rss_after_imports_mb']} MB after imports), "
        f"{p['wall_s']:.1f}s.",
        "",
        "| goal | measured | met |",
        "|---|---|---|",
    ]
    for goal in results["goals"]:
        lines.append(f"| {goal['goal']} | {goal['measured']} | {'yes' if goal['met'] else 'NO'} |")
    return "\n".join(lines)


def goals(results: dict[str, Any]) -> list[dict[str, Any]]:
    sc = results["scenarios"]
    ours = sc["disk -> S3: objstore-migrate"]
    rclone = sc.get("disk -> S3: rclone copy")
    s5 = sc.get("disk -> S3: s5cmd cp")
    rerun = sc["disk -> S3: objstore-migrate no-op re-run"]
    before = next((r for n, r in sc.items() if n.startswith(BEFORE_PREFIX)), None)
    out = []
    if before:
        out.append(
            {
                "goal": "client CPU per object <= the lean path's (--before) in the same run",
                "measured": f"{ours['cpu_ms_per_object']:.3f} vs "
                f"{before['cpu_ms_per_object']:.3f} ms",
                "met": ours["cpu_ms_per_object"] <= before["cpu_ms_per_object"],
            }
        )
        out.append(
            {
                "goal": "objects/s >= the lean path's (--before) in the same run",
                "measured": f"{ours['objects_per_s']:.0f} vs {before['objects_per_s']:.0f}",
                "met": ours["objects_per_s"] >= before["objects_per_s"],
            }
        )
    out.append(
        {
            "goal": "client CPU per object <= 0.4 ms (aim)",
            "measured": f"{ours['cpu_ms_per_object']:.3f} ms",
            "met": ours["cpu_ms_per_object"] <= 0.4,
        }
    )
    for tool, tool_name, ratio_goal in ((rclone, "rclone", 1.4), (s5, "s5cmd", 1.2)):
        if tool:
            ratio = ours["objects_per_s"] / tool["objects_per_s"]
            lean = (
                f"; lean path {before['objects_per_s'] / tool['objects_per_s']:.2f} x"
                if before
                else ""
            )
            out.append(
                {
                    "goal": f"objects/s >= {ratio_goal} x {tool_name}",
                    "measured": f"{ratio:.2f} x{lean}",
                    "met": ratio >= ratio_goal,
                }
            )
    if rclone:
        out.append(
            {
                "goal": "objects/s >= rclone at equal concurrency",
                "measured": f"{ours['objects_per_s']:.0f} vs {rclone['objects_per_s']:.0f}",
                "met": ours["objects_per_s"] >= rclone["objects_per_s"],
            }
        )
    if s5:
        ratio = ours["objects_per_s"] / s5["objects_per_s"]
        out.append(
            {"goal": "objects/s >= 0.7 x s5cmd", "measured": f"{ratio:.2f} x", "met": ratio >= 0.7}
        )
    out.append(
        {
            "goal": "client CPU per object < 0.8 ms",
            "measured": f"{ours['cpu_ms_per_object']:.3f} ms",
            "met": ours["cpu_ms_per_object"] < 0.8,
        }
    )
    ratio = rerun["wall_s"] / ours["wall_s"]
    out.append(
        {
            "goal": "no-op re-run < 5% of the first run",
            "measured": f"{100 * ratio:.1f}% ({rerun['wall_s']:.2f}s)",
            "met": ratio < 0.05,
        }
    )
    p = results["plan_memory"]
    out.append(
        {
            "goal": "planning memory < 150 MB at 1M objects",
            "measured": f"{p['peak_rss_mb']} MB",
            "met": p["peak_rss_mb"] < 150,
        }
    )
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--repos", type=int, default=8)
    ap.add_argument("--blocks-per-repo", type=int, default=900)
    ap.add_argument("--commits-per-repo", type=int, default=100)
    ap.add_argument("--workers", type=int, default=16, help="concurrency of every tool")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--plan-objects", type=int, default=1_000_000)
    ap.add_argument("--skip", default="", help="comma list of: rclone,s5cmd,sse,plan")
    ap.add_argument(
        "--before",
        default="ddffa5c",
        help="also run objstore-migrate at this git revision (default: the lean path); none: skip",
    )
    ap.add_argument("--workdir", default=None, help="keep the store here (default: a temp dir)")
    ap.add_argument("--out", default=str(ROOT / "bench-results" / "migrate.json"))
    args = ap.parse_args(argv)
    skip = set(filter(None, args.skip.split(",")))
    work = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="objstore-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        return _bench(args, work, skip)
    finally:
        if not args.workdir:
            shutil.rmtree(work, ignore_errors=True)


def _bench(args: argparse.Namespace, work: Path, skip: set[str]) -> int:
    print(f"generating the store under {work} ...", file=sys.stderr)
    shutil.rmtree(work / "store", ignore_errors=True)
    store = generate_store(work / "store", args.repos, args.blocks_per_repo, args.commits_per_repo)
    objects, nbytes = store["objects"], store["bytes"]
    bench = Bench(args, work, store)
    scenarios: dict[str, list[dict[str, Any]]] = {}
    before_tree: Path | None = None

    def add(name: str, result: dict[str, Any]) -> None:
        scenarios.setdefault(name, []).append(result)
        print(
            f"  {name}: {result['wall']:.2f}s, {result['cpu']:.2f}s CPU, "
            f"{result['rss_mb']:.0f} MB, SeaweedFS {result['server_cpu']:.2f}s CPU",
            file=sys.stderr,
        )

    try:
        if args.before != "none":
            from bench_ab import checkout

            before_tree = checkout(args.before, work / "trees")
        src = Path(store["conf"])
        last_bucket = ""

        def ours() -> None:
            nonlocal last_bucket
            bucket = bench.bucket("objstore")
            dst = bench.conf(bucket)
            add("disk -> S3: objstore-migrate", bench.objstore(src, dst))
            assert bench.count(bucket) == objects, "objstore-migrate missed objects"
            add("disk -> S3: objstore-migrate no-op re-run", bench.objstore(src, dst))
            last_bucket = bucket  # the S3 -> SSE-C runs read it

        def before(tree: Path) -> None:
            bucket = bench.bucket("before")
            add(f"{BEFORE_PREFIX}{args.before}", bench.objstore(src, bench.conf(bucket), tree=tree))
            assert bench.count(bucket) == objects, "objstore-migrate (before) missed objects"

        def tool(name: str, run: Callable[[str], dict[str, Any]]) -> None:
            bucket = bench.bucket(name)
            add(f"disk -> S3: {name} {'copy' if name == 'rclone' else 'cp'}", run(bucket))
            assert bench.count(bucket) == objects, f"{name} missed objects"

        contenders: list[Callable[[], None]] = [ours]
        if before_tree is not None:
            contenders.append(lambda: before(before_tree))
        if "rclone" not in skip:
            contenders.append(lambda: tool("rclone", bench.rclone))
        if "s5cmd" not in skip:
            contenders.append(lambda: tool("s5cmd", bench.s5cmd))
        for run in range(args.runs):
            print(f"run {run + 1}/{args.runs}", file=sys.stderr)
            k = run % len(contenders)  # a rotating order: no tool always runs first
            for contender in contenders[k:] + contenders[:k]:
                contender()
        if "sse" not in skip:
            plain = bench.conf(last_bucket, https=True)
            for _ in range(args.runs):
                for mode in ("always", "never"):
                    bucket = bench.bucket(f"ssec-{mode}")
                    dst = bench.conf(bucket, https=True, sse_c_key=SSE_KEY)
                    name = (
                        "S3 -> SSE-C S3 (HTTPS): server-side copy"
                        if mode == "always"
                        else "S3 -> SSE-C S3 (HTTPS): GET+PUT"
                    )
                    add(name, bench.objstore(plain, dst, "--server-side-copy", mode))
                    assert bench.count(bucket) == objects
        weed = weed_version(bench.server)
    finally:
        bench.close()
        if before_tree is not None:
            from bench_ab import remove_checkout

            remove_checkout(before_tree)
    results: dict[str, Any] = {
        "store": {k: store[k] for k in ("objects", "bytes", "by_kind")},
        "workers": args.workers,
        "runs": args.runs,
        "seaweedfs": weed,
        "command": " ".join([os.path.relpath(sys.argv[0], ROOT), *sys.argv[1:]]),
        "scenarios": {name: median_run(rs, objects, nbytes) for name, rs in scenarios.items()},
    }
    results["plan_memory"] = (
        plan_memory(args.plan_objects)
        if "plan" not in skip
        else {
            "objects": 0,
            "to_copy": 0,
            "present": 0,
            "wall_s": 0.0,
            "rss_after_imports_mb": 0,
            "peak_rss_mb": 0,
        }
    )
    results["goals"] = goals(results)
    publish(results, markdown(results), args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
