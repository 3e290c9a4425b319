"""Every request through the proxy: a migration disk -> S3 (SeaweedFS over HTTP, and
over HTTPS through a CONNECT tunnel) with the proxy from the configuration
(``proxy_host``/``proxy_port``) or from the environment (``HTTP_PROXY``/
``HTTPS_PROXY``, with ``NO_PROXY`` honoured), and Basic auth
(``proxy_user``/``proxy_password``) whose password never shows.

To prove that *every* request passed the proxy, the S3 endpoint is configured as
``localhost:PORT`` and, in the process running the migration, ``localhost``
does not resolve (only the proxy, at 127.0.0.1, resolves it): a request sent
around the proxy fails, and is recorded.  The proxy's own log is counted too.
"""

from __future__ import annotations

import base64
import logging
import os
import socket
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

import objstore
from objstore import ObjStoreError

from .helpers import write_conf
from .servers import SeaweedS3, TinyProxy
from .test_migrate_helpers import (
    REPO_ROOT,
    assert_same_objects,
    build_disk_store,
    cli_command,
    cli_env,
    count_objects,
    prefixed_conf,
)

PROXY_USER = "objstore"
PROXY_PASSWORD = "PROXYPW-zq7-never-shown"
PASSWORD_FORMS = [
    PROXY_PASSWORD,
    quote(PROXY_PASSWORD, safe=""),
    base64.b64encode(PROXY_PASSWORD.encode()).decode(),
    base64.b64encode(f"{PROXY_USER}:{PROXY_PASSWORD}".encode()).decode(),
]
PROXY_ENV = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY")


@pytest.fixture(scope="module")
def disk_source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_disk_store(tmp_path_factory.mktemp("proxy-source"), repos=2, seed=5, files=4)


@pytest.fixture
def no_direct_localhost(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """In this process ``localhost`` no longer resolves (127.0.0.1 still works);
    returns the list of the names refused so far."""
    refused: list[str] = []
    resolve = socket.getaddrinfo

    def getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        name = host.decode() if isinstance(host, bytes) else str(host)
        if name.rstrip(".").lower().endswith("localhost"):
            refused.append(name)
            raise socket.gaierror(socket.EAI_NONAME, f"{name}: reachable only through the proxy")
        return resolve(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    return refused


def set_proxy_env(monkeypatch: pytest.MonkeyPatch, **values: str) -> None:
    """Exactly these proxy variables (both spellings), none of the others."""
    for var in PROXY_ENV:
        for name in (var, var.lower()):
            if var in values:
                monkeypatch.setenv(name, values[var])
            else:
                monkeypatch.delenv(name, raising=False)


def s3_dest(
    tmp_path: Path, seaweed: SeaweedS3, new_bucket: Callable[..., str], https: bool, **extra: Any
) -> Path:
    """The three kinds in one fresh bucket, the endpoint named ``localhost:PORT``."""
    bucket = new_bucket(seaweed, "mig")  # (not "proxy": messages are searched for that word)
    text = prefixed_conf(seaweed, bucket, https=https, host="localhost", extra=extra)
    return write_conf(tmp_path / "dest", text)


def config_proxy(proxy: TinyProxy, auth: str | None = None) -> dict[str, object]:
    options: dict[str, object] = {"proxy_host": proxy.host, "proxy_port": proxy.port}
    if auth is not None:
        options.update(proxy_user=PROXY_USER, proxy_password=auth)
    return options


def migrate_and_check(
    src: Path, dest: Path, proxy: TinyProxy, seaweed: SeaweedS3, https: bool, refused: list[str]
) -> None:
    """Migrate, check the copy, and that the proxy carried the requests."""
    total = count_objects(src)
    result = objstore.migrate(src, dest, verify="hash")
    assert result.exit_code == 0, result.to_dict()
    assert result.transfer is not None and result.transfer.copied == total
    assert assert_same_objects(src, dest) == total
    assert refused == [], f"requests sent around the proxy to {sorted(set(refused))}"
    requests = proxy.requests()
    if https:
        assert requests and all(
            r == ("CONNECT", f"localhost:{seaweed.https_port}") for r in requests
        )
    else:
        origin = f"http://localhost:{seaweed.http_port}/"
        assert all(target.startswith(origin) for _, target in requests), requests
        assert sum(method == "PUT" for method, _ in requests) >= total


@pytest.mark.timeout(300)
@pytest.mark.parametrize("https", [False, True], ids=["http", "https"])
def test_config_proxy_carries_every_request(
    tmp_path: Path, disk_source: Path, seaweed: SeaweedS3, new_bucket: Any,
    server_factory: Any, no_direct_localhost: list[str], https: bool,
) -> None:  # fmt: skip
    proxy = server_factory(TinyProxy)
    dest = s3_dest(tmp_path, seaweed, new_bucket, https, **config_proxy(proxy))
    migrate_and_check(disk_source, dest, proxy, seaweed, https, no_direct_localhost)


@pytest.mark.timeout(300)
@pytest.mark.parametrize("https", [False, True], ids=["http", "https"])
def test_environment_proxy_carries_every_request(
    tmp_path: Path, disk_source: Path, seaweed: SeaweedS3, new_bucket: Any,
    server_factory: Any, no_direct_localhost: list[str], monkeypatch: pytest.MonkeyPatch,
    https: bool,
) -> None:  # fmt: skip
    proxy = server_factory(TinyProxy)
    dest = s3_dest(tmp_path, seaweed, new_bucket, https)  # before the environment changes
    set_proxy_env(monkeypatch, HTTP_PROXY=proxy.url(), HTTPS_PROXY=proxy.url())
    migrate_and_check(disk_source, dest, proxy, seaweed, https, no_direct_localhost)


@pytest.mark.timeout(300)
@pytest.mark.parametrize("https", [False, True], ids=["http", "https"])
def test_no_proxy_bypasses_the_environment_proxy(
    tmp_path: Path, disk_source: Path, seaweed: SeaweedS3, new_bucket: Any,
    server_factory: Any, monkeypatch: pytest.MonkeyPatch, https: bool,
) -> None:  # fmt: skip
    proxy = server_factory(TinyProxy)
    dest = s3_dest(tmp_path, seaweed, new_bucket, https)
    no_proxy = "example.org,localhost"
    set_proxy_env(monkeypatch, HTTP_PROXY=proxy.url(), HTTPS_PROXY=proxy.url(), NO_PROXY=no_proxy)
    total = count_objects(disk_source)
    result = objstore.migrate(disk_source, dest)
    assert result.exit_code == 0, result.to_dict()
    assert result.transfer is not None and result.transfer.copied == total
    assert proxy.requests() == []


# --------------------------------------------------------------------------- Basic auth


def assert_no_password(text: str) -> None:
    for form in PASSWORD_FORMS:
        assert form not in text, f"the proxy password leaked: {text[:300]!r}"


@pytest.fixture
def debug_logs(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    """Every logger at DEBUG (objstore, botocore, urllib3...); checked for the password."""
    caplog.set_level(logging.DEBUG)
    yield caplog
    assert_no_password(caplog.text)
    for record in caplog.records:
        assert_no_password(record.getMessage())


@pytest.mark.timeout(300)
@pytest.mark.parametrize("https", [False, True], ids=["http", "https"])
def test_proxy_basic_auth(
    tmp_path: Path, disk_source: Path, seaweed: SeaweedS3, new_bucket: Any,
    server_factory: Any, no_direct_localhost: list[str], debug_logs: Any, https: bool,
) -> None:  # fmt: skip
    proxy = server_factory(TinyProxy, user=PROXY_USER, password=PROXY_PASSWORD)
    dest = s3_dest(tmp_path, seaweed, new_bucket, https, **config_proxy(proxy, PROXY_PASSWORD))
    migrate_and_check(disk_source, dest, proxy, seaweed, https, no_direct_localhost)


@pytest.mark.timeout(120)
@pytest.mark.parametrize("https", [False, True], ids=["http", "https"])
def test_proxy_wrong_password(
    tmp_path: Path, seaweed: SeaweedS3, new_bucket: Any, server_factory: Any,
    no_direct_localhost: list[str], debug_logs: Any, https: bool,
) -> None:  # fmt: skip
    """A clear error that names the proxy and shows no password."""
    proxy = server_factory(TinyProxy, user=PROXY_USER, password="the-right-one")
    dest = s3_dest(tmp_path, seaweed, new_bucket, https, **config_proxy(proxy, PROXY_PASSWORD))
    with pytest.raises(ObjStoreError) as info, objstore.open_stores(dest) as stores:
        stores.block.exists("1b4e28ba-2fa1-11d2-883f-0016d3cca427", "a" * 40)
    message = str(info.value)
    assert "\n" not in message and "proxy" in message.lower(), message
    assert_no_password(f"{message}\n{info.value!r}")
    assert proxy.requests(), "the proxy was never asked"


@pytest.mark.timeout(300)
@pytest.mark.parametrize("right", [True, False], ids=["right-password", "wrong-password"])
def test_cli_through_proxy_with_auth(
    tmp_path: Path, disk_source: Path, seaweed: SeaweedS3, new_bucket: Any,
    server_factory: Any, right: bool,
) -> None:  # fmt: skip
    """objstore-migrate -v (debug logs on): exit 0 with the right password, 1 or 2
    with a wrong one; no traceback and no password in its output or report."""
    proxy = server_factory(
        TinyProxy, user=PROXY_USER, password=PROXY_PASSWORD if right else "the-right-one"
    )
    dest = s3_dest(tmp_path, seaweed, new_bucket, True, **config_proxy(proxy, PROXY_PASSWORD))
    report = tmp_path / "report.json"
    args: list[str | os.PathLike[str]] = [
        disk_source, dest, "-v", "--progress", "log", "--report", report
    ]  # fmt: skip
    proc = subprocess.run(
        cli_command(args), capture_output=True, text=True, timeout=240, env=cli_env(),
        cwd=REPO_ROOT, check=False,
    )  # fmt: skip
    output = proc.stdout + proc.stderr
    assert proc.returncode in ((0,) if right else (1, 2)), output[-3000:]
    assert "Traceback" not in output, output[-3000:]
    assert_no_password(output + report.read_text())
    assert proxy.requests()
