#!/usr/bin/env python3
"""Client CPU per small S3 request, side by side in one run.

One SeaweedFS and one Redis on loopback; every case runs in its own process
(so imports and pools are its own), once per round, in a rotating order; the
figure is the median over rounds of the process CPU time (user + sys) per
request, after a warm-up.  Objects are 1 KiB blocks.

Cases:
  objstore read / write        ObjectStore.read / write of this tree (one request path)
  objstore cached-miss read    ObjectStore.read with a Redis cache in front, every read a miss
  before read / write          ObjectStore.read / write at --before (default: the commit
                               before the S3 transport rewrite; boto3 underneath)
  before lean get / put        the lean client of --before (the migration's old fast path)
  boto3 get / put              a bare boto3 client: get_object / put_object
  urllib3 get / put            a urllib3 pool with objstore's SigV4 signer: what the
                               transport would cost on urllib3 instead of its own framing

    scripts/bench transport [--rounds 5] [--requests 1500] [--before REV]
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

from bench_ab import checkout  # noqa: E402

from tests.servers import RedisServer, SeaweedS3  # noqa: E402

BEFORE = "ddffa5c"
"""The last commit with the boto3 driver and the lean client."""

WORKER = r"""
import hashlib, json, os, sys, time
mode, conf, uncached, n, warm, bucket, endpoint, ak, sk = sys.argv[1:10]
n, warm = int(n), int(warm)
repo = "1b4e28ba-2fa1-11d2-883f-0016d3cca427"
salt = os.urandom(8)
blobs = [hashlib.sha256(salt + b"%d" % i).digest() * 32 for i in range(n + warm)]
ids = [hashlib.sha1(b).hexdigest() for b in blobs]
ops = []
if mode in ("store-read", "store-write", "cached-miss", "lean-get", "lean-put"):
    import objstore
    stores = objstore.open_stores(conf)
    st = stores.block
    if mode == "store-write":
        ops = [lambda i=i: st.write(repo, ids[i], blobs[i]) for i in range(n + warm)]
    else:
        writer = objstore.open_stores(uncached).block
        for i in range(n + warm):
            writer.write(repo, ids[i], blobs[i])
        if mode in ("store-read", "cached-miss"):
            ops = [lambda i=i: st.read(repo, ids[i]) for i in range(n + warm)]
        else:
            lean = st.driver.lean
            if mode == "lean-get":
                ops = [lambda i=i: lean.get(repo, ids[i]) for i in range(n + warm)]
            else:
                ops = [lambda i=i: lean.put(repo, ids[i], blobs[i]) for i in range(n + warm)]
elif mode.startswith("boto3"):
    import boto3
    from botocore.config import Config
    c = boto3.session.Session().client(
        "s3", endpoint_url=endpoint, aws_access_key_id=ak, aws_secret_access_key=sk,
        region_name="us-east-1",
        config=Config(s3={"addressing_style": "path"}, signature_version="s3v4",
                      request_checksum_calculation="when_required",
                      response_checksum_validation="when_required"))
    def put(i):
        c.put_object(Bucket=bucket, Key=f"blocks/{repo}/{ids[i]}", Body=blobs[i])
    def get(i):
        return c.get_object(Bucket=bucket, Key=f"blocks/{repo}/{ids[i]}")["Body"].read()
    if mode == "boto3-put":
        ops = [lambda i=i: put(i) for i in range(n + warm)]
    else:
        for i in range(n + warm):
            put(i)
        ops = [lambda i=i: get(i) for i in range(n + warm)]
elif mode.startswith("urllib3"):
    import base64, urllib3
    from urllib.parse import urlsplit
    from objstore.drivers.s3sign import Credentials, SigV4, UNSIGNED_PAYLOAD
    u = urlsplit(endpoint)
    pool = urllib3.HTTPConnectionPool(u.hostname, u.port, maxsize=4)
    signer, creds = SigV4("us-east-1"), Credentials(ak, sk)
    def call(method, i, body=b""):
        path = f"/{bucket}/blocks/{repo}/{ids[i]}"
        amz = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        h = {"host": u.netloc, "x-amz-date": amz, "x-amz-content-sha256": UNSIGNED_PAYLOAD}
        if body:
            h["content-md5"] = base64.b64encode(hashlib.md5(body).digest()).decode()
            h["content-length"] = str(len(body))
        h["authorization"] = signer.authorization(creds, method, path, "", h, UNSIGNED_PAYLOAD, amz)
        r = pool.urlopen(method, path, body=body or None, headers=h, retries=False,
                         redirect=False, assert_same_host=False, preload_content=True)
        assert r.status == 200, r.status
        return r.data
    if mode == "urllib3-put":
        ops = [lambda i=i: call("PUT", i, blobs[i]) for i in range(n + warm)]
    else:
        for i in range(n + warm):
            call("PUT", i, blobs[i])
        ops = [lambda i=i: call("GET", i) for i in range(n + warm)]
for op in ops[:warm]:
    op()
t0 = time.process_time()
for op in ops[warm:]:
    op()
print(json.dumps({"cpu_ms": (time.process_time() - t0) / n * 1000}))
"""

CASES = {
    "objstore read": ("store-read", "now"),
    "objstore write": ("store-write", "now"),
    "objstore cached-miss read": ("cached-miss", "now"),
    "before read": ("store-read", "before"),
    "before write": ("store-write", "before"),
    "before lean get": ("lean-get", "before"),
    "before lean put": ("lean-put", "before"),
    "boto3 get": ("boto3-get", "now"),
    "boto3 put": ("boto3-put", "now"),
    "urllib3 get": ("urllib3-get", "now"),
    "urllib3 put": ("urllib3-put", "now"),
}


def _conf(path: Path, s3: SeaweedS3, bucket: str, redis: RedisServer | None) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    text = "".join(
        f"[{section}]\nname = s3\nbucket = {bucket}\nkey_id = {s3.access_key}\n"
        f"key = {s3.secret_key}\nhost = 127.0.0.1:{s3.http_port}\nuse_v4_signature = true\n"
        f"path_style_request = true\nkey_prefix = {kind}/\n"
        for section, kind in (("commit_object_backend", "commits"), ("fs_object_backend", "fs"),
                              ("block_backend", "blocks"))
    )  # fmt: skip
    if redis is not None:
        text += f"[redis]\nredis_host = 127.0.0.1\nredis_port = {redis.port}\n"
        text += "cached_kinds = blocks\n"
    (path / "seafile.conf").write_text(text)
    return path / "seafile.conf"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--requests", type=int, default=1500)
    ap.add_argument("--warmup", type=int, default=100)
    ap.add_argument("--before", default=BEFORE)
    ap.add_argument("--cases", help="comma-separated case names (default: all)")
    args = ap.parse_args(argv)
    cases = {n: CASES[n] for n in args.cases.split(",")} if args.cases else CASES
    work = Path(tempfile.mkdtemp(prefix="objstore-bench-transport-"))
    before = checkout(args.before, work / "trees")
    results: dict[str, list[float]] = {name: [] for name in cases}
    try:
        with SeaweedS3(work / "s3", https=False) as s3, RedisServer(work / "redis") as redis:
            for rnd in range(args.rounds):
                names = list(cases)
                names = names[rnd % len(names) :] + names[: rnd % len(names)]
                for name in names:
                    mode, tree = cases[name]
                    bucket = s3.create_bucket(f"t{rnd}-{len(results[name])}-{mode}"[:60])
                    uncached = _conf(work / "c" / bucket / "plain", s3, bucket, None)
                    conf = (
                        _conf(work / "c" / bucket / "cached", s3, bucket, redis)
                        if mode == "cached-miss"
                        else uncached
                    )
                    src = ROOT if tree == "now" else before  # cwd: outside both trees
                    out = subprocess.run(
                        [sys.executable, "-c", WORKER, mode, str(conf), str(uncached),
                         str(args.requests), str(args.warmup), bucket,
                         f"http://127.0.0.1:{s3.http_port}", s3.access_key, s3.secret_key],
                        capture_output=True, text=True, cwd=str(work),
                        env={"PYTHONPATH": str(src), "PATH": "/usr/bin:/bin"},
                    )  # fmt: skip
                    if out.returncode != 0:
                        raise SystemExit(f"{name} failed:\n{out.stderr[-2000:]}")
                    results[name].append(json.loads(out.stdout)["cpu_ms"])
                    s3.delete_bucket(bucket, force=True)
                print(f"round {rnd + 1}/{args.rounds} done", file=sys.stderr)
    finally:
        subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(before)],
                       check=False)  # fmt: skip
        shutil.rmtree(work, ignore_errors=True)
    med = {name: statistics.median(v) for name, v in results.items()}
    report: dict[str, Any] = {
        "rounds": args.rounds, "requests": args.requests, "median_cpu_ms": med,
        "runs": results, "before": args.before,
    }  # fmt: skip
    print(f"\n{args.rounds} rounds x {args.requests} requests of 1 KiB; median client CPU per "
          "request\n")  # fmt: skip
    print("| case | CPU ms/request | runs |")
    print("|---|---:|---|")
    for name, value in med.items():
        runs = ", ".join(f"{v:.3f}" for v in results[name])
        print(f"| {name} | {value:.3f} | {runs} |")
    goals = [
        ("cached-miss read <= 0.5 ms", med["objstore cached-miss read"] <= 0.5),
        ("write <= 0.5 x boto3 put", med["objstore write"] <= 0.5 * med["boto3 put"]),
        ("urllib3 costs > 0.1 ms more per GET than the own framing (keeps it)",
         med["urllib3 get"] - med["objstore read"] > 0.1),
    ] if cases is CASES else []  # fmt: skip
    print()
    for text, ok in goals:
        print(f"- {text}: {'met' if ok else 'NOT met'}")
    report["goals"] = dict(goals)
    out_dir = ROOT / "bench-results"
    out_dir.mkdir(exist_ok=True)
    (out_dir / "transport.json").write_text(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
