"""Smoke tests for the test-server harness (tests/servers.py, tests/conftest.py).

They prove that the real servers start, authenticate, encrypt and come back
after a crash, so failures elsewhere can be blamed on the code under test.
"""

from __future__ import annotations

import base64
import os
import socket
import ssl
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil
import pytest
from botocore.exceptions import ClientError, EndpointConnectionError, SSLError
from cryptography import x509

from .helpers import wait_until
from .hostile import HANG, Answer, HostileS3, answer
from .servers import (
    MemcachedServer,
    RcloneS3,
    RedisServer,
    SeaweedS3,
    ServerStartError,
    TestCA,
    TinyProxy,
    reserve_ports,
)

SSE_KEY = bytes(range(32))
SSE: dict[str, Any] = {"SSECustomerAlgorithm": "AES256", "SSECustomerKey": SSE_KEY}


def _status(err: ClientError) -> int:
    return int(err.response["ResponseMetadata"]["HTTPStatusCode"])


def _get(client: Any, bucket: str, key: str, **kw: Any) -> bytes:
    return bytes(client.get_object(Bucket=bucket, Key=key, **kw)["Body"].read())


def _get_when_volumes_are_back(client: Any, bucket: str, key: str) -> bytes:
    """After a SIGKILL (and, on a loaded machine, after a graceful restart too),
    SeaweedFS answers S3 before its volume server has re-registered its volumes (GET
    gives InternalError meanwhile): poll that state, 60 s at most."""
    deadline = time.monotonic() + 60
    while True:
        try:
            return _get(client, bucket, key)
        except ClientError as exc:
            if _status(exc) < 500 or time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def _child_pids_with(text: str) -> list[int]:
    """PIDs of our descendants whose command line mentions ``text``."""
    found = []
    for p in psutil.Process().children(recursive=True):
        try:
            if any(text in arg for arg in p.cmdline()):
                found.append(p.pid)
        except psutil.NoSuchProcess:
            continue
    return found


# --------------------------------------------------------------------------- helpers


def test_reserve_ports_distinct_and_bindable() -> None:
    ports = reserve_ports(4, offset=10000)
    allp = ports + [p + 10000 for p in ports]
    assert len(set(allp)) == 8
    for p in allp:
        with socket.socket() as s:
            s.bind(("127.0.0.1", p))
    assert not set(reserve_ports(4)) & set(allp)


def test_localhost_names_resolve_to_loopback() -> None:
    for name in ("localhost", "s3.localhost", "bkt.s3.localhost", "X.LOCALHOST"):
        addrs = {ai[4][0] for ai in socket.getaddrinfo(name, 80, proto=socket.IPPROTO_TCP)}
        assert addrs == {"127.0.0.1"}, name


def test_ca_files(test_ca: TestCA) -> None:
    cert = x509.load_pem_x509_certificate(test_ca.cert_file.read_bytes())
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert set(san.get_values_for_type(x509.DNSName)) == {
        "localhost",
        "*.localhost",
        "s3.localhost",
        "*.s3.localhost",
    }
    assert {str(a) for a in san.get_values_for_type(x509.IPAddress)} == {"127.0.0.1", "::1"}
    assert test_ca.key_file.stat().st_mode & 0o077 == 0
    if test_ca.ca_dir is not None:
        (link,) = test_ca.ca_dir.iterdir()
        assert link.name.endswith(".0") and link.resolve() == test_ca.ca_file.resolve()


# --------------------------------------------------------------------------- SeaweedFS


def test_seaweed_path_style(seaweed: SeaweedS3, seaweed_bucket: str) -> None:
    urls: list[str] = []
    c = seaweed.client()
    c.meta.events.register("before-send.s3", lambda request, **_: urls.append(request.url))
    c.put_object(Bucket=seaweed_bucket, Key="dir/k", Body=b"hello")
    assert _get(c, seaweed_bucket, "dir/k") == b"hello"
    assert urls[0] == f"http://127.0.0.1:{seaweed.http_port}/{seaweed_bucket}/dir/k"


def test_seaweed_virtual_hosted(seaweed: SeaweedS3, seaweed_bucket: str) -> None:
    urls: list[str] = []
    c = seaweed.client(virtual=True)
    c.meta.events.register("before-send.s3", lambda request, **_: urls.append(request.url))
    c.put_object(Bucket=seaweed_bucket, Key="k", Body=b"virtual")
    assert _get(c, seaweed_bucket, "k") == b"virtual"
    keys = [o["Key"] for o in c.list_objects_v2(Bucket=seaweed_bucket)["Contents"]]
    assert keys == ["k"]
    assert urls[0] == f"http://{seaweed_bucket}.s3.localhost:{seaweed.http_port}/k"


@pytest.mark.parametrize("virtual", [False, True], ids=["path", "virtual"])
def test_seaweed_https(seaweed: SeaweedS3, seaweed_bucket: str, virtual: bool) -> None:
    c = seaweed.client(https=True, virtual=virtual)
    assert c.meta.endpoint_url.startswith("https://")
    c.put_object(Bucket=seaweed_bucket, Key="k", Body=b"tls")
    assert _get(c, seaweed_bucket, "k") == b"tls"
    # Without our CA the certificate must be rejected.
    with pytest.raises(SSLError):
        seaweed.client(https=True, virtual=virtual, verify=True).list_buckets()


def test_seaweed_https_capath(seaweed: SeaweedS3, test_ca: TestCA) -> None:
    if test_ca.ca_dir is None:
        pytest.skip("no openssl binary: no capath directory")
    ctx = ssl.create_default_context(capath=str(test_ca.ca_dir))
    with socket.create_connection(("127.0.0.1", seaweed.https_port or 0), timeout=10) as raw:  # noqa: SIM117
        with ctx.wrap_socket(raw, server_hostname="s3.localhost") as tls:
            assert tls.version() is not None


def test_seaweed_sse_c(seaweed: SeaweedS3, seaweed_bucket: str) -> None:
    c = seaweed.client(https=True)
    c.put_object(Bucket=seaweed_bucket, Key="enc", Body=b"secret", **SSE)
    assert _get(c, seaweed_bucket, "enc", **SSE) == b"secret"
    with pytest.raises(ClientError) as wrong:
        c.get_object(
            Bucket=seaweed_bucket,
            Key="enc",
            SSECustomerAlgorithm="AES256",
            SSECustomerKey=bytes(32),
        )
    assert _status(wrong.value) == 403
    with pytest.raises(ClientError) as missing:
        c.get_object(Bucket=seaweed_bucket, Key="enc")
    assert _status(missing.value) == 400


def test_seaweed_wrong_secret(seaweed: SeaweedS3, seaweed_bucket: str) -> None:
    c = seaweed.client(aws_secret_access_key="not-the-secret")
    with pytest.raises(ClientError) as err:
        c.list_objects_v2(Bucket=seaweed_bucket)
    assert _status(err.value) == 403


def test_seaweed_sigv2(seaweed: SeaweedS3, seaweed_bucket: str) -> None:
    c = seaweed.client(v2=True)
    c.put_object(Bucket=seaweed_bucket, Key="v2", Body=b"sigv2")
    assert _get(c, seaweed_bucket, "v2") == b"sigv2"
    # bucket-level requests work thanks to install_sigv2_path_fix (on by default)
    assert [o["Key"] for o in c.list_objects_v2(Bucket=seaweed_bucket)["Contents"]] == ["v2"]


def test_seaweed_kill_restart_keeps_data(server_factory: Callable[..., Any]) -> None:
    server: SeaweedS3 = server_factory(SeaweedS3, https=False)
    ports = (server.http_port, server.master_port, server.filer_port)
    server.create_bucket("crash-test")
    c = server.client()
    c.put_object(Bucket="crash-test", Key="k", Body=b"durable")
    pid = server.pid
    server.kill()
    assert not server.running and not psutil.pid_exists(pid or 0)
    with pytest.raises(EndpointConnectionError):
        server.client(config=_no_retry()).list_buckets()
    server.restart()
    assert (server.http_port, server.master_port, server.filer_port) == ports
    assert _get_when_volumes_are_back(c, "crash-test", "k") == b"durable"
    server.restart()  # graceful stop + start
    assert _get_when_volumes_are_back(server.client(), "crash-test", "k") == b"durable"
    server.close()
    assert not _child_pids_with(str(server.dir))
    assert not list(Path("/tmp").glob(f"seaweedfs-*-grpc-{server.http_port + 10000}.sock"))


def _no_retry() -> Any:
    from botocore.config import Config

    return Config(retries={"max_attempts": 1}, connect_timeout=2)


# --------------------------------------------------------------------------- rclone


@pytest.mark.parametrize("https", [False, True], ids=["http", "https"])
def test_rclone_serve_put_get(rclone_s3: RcloneS3, rclone_bucket: str, https: bool) -> None:
    c = rclone_s3.client(https=https)
    c.put_object(Bucket=rclone_bucket, Key="a/b", Body=b"rclone")
    assert _get(c, rclone_bucket, "a/b") == b"rclone"
    assert (rclone_s3.data_dir / rclone_bucket / "a" / "b").read_bytes() == b"rclone"
    with pytest.raises(ClientError) as err:
        rclone_s3.client(https=https, aws_secret_access_key="nope").list_buckets()
    assert _status(err.value) == 403


@pytest.mark.parametrize("size", [1000, 300 * 1024], ids=["single", "multipart"])
def test_rclone_client_sse_c_interop(seaweed: SeaweedS3, seaweed_bucket: str, size: int) -> None:
    data = os.urandom(size)
    c = seaweed.client(https=True)
    with seaweed.rclone_remote(https=True, sse_customer_key=SSE_KEY) as rc:
        # boto3 writes, rclone reads
        c.put_object(Bucket=seaweed_bucket, Key="from-boto3", Body=data, **SSE)
        assert rc.cat(seaweed_bucket, "from-boto3") == data
        # rclone writes (multipart above its 100 KiB streaming cutoff), boto3 reads
        rc.rcat(seaweed_bucket, "from-rclone", data)
        assert _get(c, seaweed_bucket, "from-rclone", **SSE) == data
        assert rc.lsf(seaweed_bucket) == ["from-boto3", "from-rclone"]
    with pytest.raises(ClientError):
        c.get_object(Bucket=seaweed_bucket, Key="from-rclone")
    with seaweed.rclone_remote() as plain, pytest.raises(subprocess.CalledProcessError):
        plain.cat(seaweed_bucket, "from-rclone")


# --------------------------------------------------------------------------- Redis, memcached


def test_redis(redis_server: RedisServer) -> None:
    r = redis_server.client()
    r.set("harness:key", b"value")
    assert r.get("harness:key") == b"value"
    assert redis_server.port != 6379
    r.close()


def test_redis_password(server_factory: Callable[..., Any]) -> None:
    import redis

    server: RedisServer = server_factory(RedisServer, password="s3cret")
    assert server.client().ping()
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    with pytest.raises(redis.AuthenticationError):
        server.client(password="wrong", retry=Retry(NoBackoff(), 0)).ping()


def test_pause_resume(server_factory: Callable[..., Any]) -> None:
    import redis
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    server: RedisServer = server_factory(RedisServer)
    r = server.client(socket_timeout=0.5, retry=Retry(NoBackoff(), 0))
    assert r.ping()
    server.pause()
    with pytest.raises(redis.TimeoutError):
        r.ping()
    server.resume()
    r.close()
    assert server.client().ping()
    server.pause()
    server.stop()  # a paused server still stops (SIGTERM + SIGCONT)
    assert not server.running


def test_memcached(memcached_server: MemcachedServer) -> None:
    m = memcached_server.client()
    m.set("harness-key", b"value")
    assert m.get("harness-key") == b"value"
    m.close()


def test_memcached_item_size(server_factory: Callable[..., Any]) -> None:
    server: MemcachedServer = server_factory(MemcachedServer, item_size="3m")
    m = server.client()
    big = os.urandom(2 * 1024 * 1024)
    assert m.set("big", big, noreply=False)
    assert m.get("big") == big


# --------------------------------------------------------------------------- tinyproxy


@pytest.mark.parametrize("https", [False, True], ids=["http", "https"])
def test_tinyproxy_forwards_and_logs(
    seaweed: SeaweedS3, seaweed_bucket: str, server_factory: Callable[..., Any], https: bool
) -> None:
    from botocore.config import Config

    proxy = server_factory(TinyProxy)
    c = seaweed.client(
        https=https, config=Config(proxies={"http": proxy.url(), "https": proxy.url()})
    )
    c.put_object(Bucket=seaweed_bucket, Key="k", Body=b"proxied")
    assert _get(c, seaweed_bucket, "k") == b"proxied"
    if https:
        assert proxy.requests() and set(proxy.requests()) == {
            ("CONNECT", f"127.0.0.1:{seaweed.https_port}")
        }
    else:
        base = f"http://127.0.0.1:{seaweed.http_port}/{seaweed_bucket}/k"
        assert [r for r in proxy.requests() if r[1] == base] == [("PUT", base), ("GET", base)]


def _proxy_status(proxy: TinyProxy, credentials: str | None) -> int:
    """The status tinyproxy answers to a request for a closed port (127.0.0.1:1)."""
    auth = ""
    if credentials is not None:
        auth = f"Proxy-Authorization: Basic {base64.b64encode(credentials.encode()).decode()}\r\n"
    with socket.create_connection((proxy.host, proxy.port), timeout=10) as s:
        s.sendall(f"GET http://127.0.0.1:1/ HTTP/1.1\r\nHost: 127.0.0.1:1\r\n{auth}\r\n".encode())
        return int(s.recv(4096).split(b" ")[1])


def test_tinyproxy_basic_auth(server_factory: Callable[..., Any]) -> None:
    proxy = server_factory(TinyProxy, user="u", password="pw-123")
    assert _proxy_status(proxy, None) in (401, 407)
    assert _proxy_status(proxy, "u:wrong") in (401, 407)
    assert _proxy_status(proxy, "u:pw-123") >= 500  # let through; nothing listens upstream


# --------------------------------------------------------------------------- HostileS3


def test_hostile_server_answers_records_and_closes() -> None:
    script: dict[str, Answer] = {"/b/raw": answer(200, b"scripted"), "/b/hang": HANG}
    server = HostileS3(lambda req: script.get(req.path))
    with socket.create_connection((server.host, server.http_port), timeout=10) as s:
        s.sendall(b"PUT /b/raw?x=1 HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\nabc")
        assert s.recv(4096) == answer(200, b"scripted")
        s.sendall(b"GET /b/missing HTTP/1.1\r\nHost: h\r\n\r\n")  # same connection
        assert b"NoSuchKey" in s.recv(4096)
    hung = socket.create_connection((server.host, server.http_port), timeout=10)
    hung.sendall(b"GET /b/hang HTTP/1.1\r\nHost: h\r\n\r\n")
    wait_until(lambda: len(server.requests) == 3, "the server to read the third request")
    server.close()  # raises if a thread is left
    assert hung.recv(10) == b""  # closed, never answered
    hung.close()
    assert [(r.method, r.path, r.query, r.body_size) for r in server.requests] == [
        ("PUT", "/b/raw", {"x": "1"}, 3),
        ("GET", "/b/missing", {}, 0),
        ("GET", "/b/hang", {}, 0),
    ]
    assert server.requests[0].headers["host"] == "h"


# --------------------------------------------------------------------------- lifecycle


def test_start_failure_reports_log_tail() -> None:
    server = RedisServer(extra_args=["--no-such-option", "x"], startup_timeout=10)
    try:
        with pytest.raises(ServerStartError, match="no-such-option"):
            server.start()
        assert not server.running
    finally:
        server.close()


def test_no_process_left_after_stop() -> None:
    servers = [RedisServer(), MemcachedServer(), RcloneS3(https=True)]
    pids: list[int] = []
    for s in servers:
        s.start()
        assert s.pid is not None
        pids.append(s.pid)
    children = {p.pid for p in psutil.Process().children(recursive=True)}
    assert set(pids) <= children
    servers[0].kill()
    servers[1].stop()
    servers[2].close()
    for s, pid in zip(servers, pids):
        assert not s.running and not psutil.pid_exists(pid), s
    for s in servers:
        s.close()
        assert not s.dir.exists()
    children = {p.pid for p in psutil.Process().children(recursive=True)}
    assert not set(pids) & children
