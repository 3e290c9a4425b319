"""Session-wide test servers (started lazily, stopped at session end) and helpers.

Fixtures (see tests/servers.py for the server classes):

* ``test_ca`` -> TestCA: CA + server certificate for ``localhost``/``*.s3.localhost``.
* ``seaweed`` -> SeaweedS3: one SeaweedFS for the session, HTTP + HTTPS.
* ``rclone_s3`` -> RcloneS3: one ``rclone serve s3`` for the session, HTTP + HTTPS.
* ``redis_server`` -> RedisServer, ``memcached_server`` -> MemcachedServer.
* ``redis_cluster`` -> RedisCluster: three cluster-enabled redis-server nodes joined
  with ``redis-cli --cluster create``.
* ``mariadb`` -> MariaDBServer: Debian's mariadbd with a private data dir, TLS on.
* ``seafile_db`` -> SeafileTestDB: a Seafile database on MariaDB, then on SQLite.
* ``new_bucket`` -> ``new_bucket(server, prefix="t") -> name``: a fresh bucket,
  deleted (with its contents) after the test.
* ``seaweed_bucket`` / ``rclone_bucket`` -> a fresh bucket name on that server.
* ``server_factory`` -> ``server_factory(cls, **kwargs) -> started server``: a
  private server closed after the test (for kill/restart fault tests, so the
  shared session servers are never disturbed).

If a test leaves a session server stopped or killed, it is started again
(same ports and data) after that test. In the test process ``localhost`` and
``*.localhost`` resolve to 127.0.0.1 (virtual-hosted-style S3), proxies are
bypassed for loopback, and the venv's bin dir is first on PATH.  Seafile's
environment variables (``SEAF_SERVER_STORAGE_TYPE``, ``S3_*``, ``CACHE_PROVIDER``...)
are removed from the test process, so tests that use them pass their own.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

from .servers import (
    ManagedServer,
    MariaDBServer,
    MemcachedServer,
    RcloneS3,
    RedisCluster,
    RedisServer,
    S3Server,
    SeaweedS3,
    TestCA,
    live_servers,
    patch_localhost_resolution,
    unique_bucket_name,
)
from .storage_classes import SeafileTestDB

_REPO = Path(__file__).resolve().parent.parent


def _setup_environment() -> None:
    """PATH: venv bin first; NO_PROXY: loopback names never go through a proxy."""
    bins = [str(_REPO / ".venv" / "bin"), str(Path(sys.executable).parent)]
    path = os.environ.get("PATH", "").split(os.pathsep)
    for b in reversed(dict.fromkeys(bins)):
        if Path(b).is_dir() and (not path or path[0] != b):
            path = [b] + [p for p in path if p != b]
    os.environ["PATH"] = os.pathsep.join(path)
    for var in ("NO_PROXY", "no_proxy"):
        entries = [e for e in os.environ.get(var, "").split(",") if e]
        for e in ("127.0.0.1", "localhost", ".localhost", "::1"):
            if e not in entries:
                entries.append(e)
        os.environ[var] = ",".join(entries)


# Variables Seafile (and so objstore) reads: a developer's shell must not change
# what the tests open.  Tests that exercise them pass their own environment.
SEAFILE_ENV_PREFIXES = ("SEAF_", "SEAFILE_", "S3_", "CACHE_PROVIDER", "REDIS_", "MEMCACHED_")


def _drop_seafile_environment() -> None:
    for var in [v for v in os.environ if v.startswith(SEAFILE_ENV_PREFIXES)]:
        del os.environ[var]
    os.environ.pop("OBJSTORE_CACHE_SECRET", None)


_setup_environment()
_drop_seafile_environment()

# Session servers created so far (revived after a test that stopped them).
_session_servers: list[ManagedServer] = []

S = TypeVar("S", bound=ManagedServer)


def _session_server(server: S) -> Iterator[S]:
    try:
        server.start()
    except BaseException:
        server.close()
        raise
    _session_servers.append(server)
    try:
        yield server
    finally:
        _session_servers.remove(server)
        server.close()


@pytest.fixture(scope="session", autouse=True)
def _localhost_resolves_to_loopback() -> Iterator[None]:
    undo = patch_localhost_resolution()
    yield
    undo()


@pytest.fixture(autouse=True)
def _revive_session_servers() -> Iterator[None]:
    yield
    for server in list(_session_servers):
        if not server.running:
            server.start()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """On failure, attach the log tail of every running test server to the report."""
    outcome = yield
    report = outcome.get_result()  # type: ignore[attr-defined]
    if report.failed and report.when in ("setup", "call"):
        for server in live_servers():
            report.sections.append(
                (f"{server.name} log tail ({server.log_file})", server.log_tail(30))
            )


@pytest.fixture(scope="session")
def test_ca() -> Iterator[TestCA]:
    ca = TestCA()
    yield ca
    ca.close()


@pytest.fixture(scope="session")
def seaweed(test_ca: TestCA) -> Iterator[SeaweedS3]:
    yield from _session_server(SeaweedS3(ca=test_ca, https=True))


@pytest.fixture(scope="session")
def rclone_s3(test_ca: TestCA) -> Iterator[RcloneS3]:
    yield from _session_server(RcloneS3(ca=test_ca, https=True))


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    yield from _session_server(RedisServer())


@pytest.fixture(scope="session")
def redis_cluster() -> Iterator[RedisCluster]:
    """Three redis-server primaries joined into a Redis Cluster (ports and bus ports free)."""
    with RedisCluster(3) as cluster:
        yield cluster


@pytest.fixture(scope="session")
def memcached_server() -> Iterator[MemcachedServer]:
    yield from _session_server(MemcachedServer())


@pytest.fixture(scope="session")
def mariadb(test_ca: TestCA) -> Iterator[MariaDBServer]:
    yield from _session_server(MariaDBServer(ca=test_ca))


@pytest.fixture(params=["mariadb", "sqlite"])
def seafile_db(request: pytest.FixtureRequest, tmp_path: Path) -> SeafileTestDB:
    """A fresh Seafile database (Repo, RepoTrash, RepoStorageId) on the session MariaDB,
    or in ``seafile.db`` of a data dir (SQLite): each test runs against both."""
    if request.param == "mariadb":
        server = request.getfixturevalue("mariadb")
        return SeafileTestDB("mariadb", tmp_path / "seafile-data", server)
    return SeafileTestDB("sqlite", tmp_path / "seafile-data")


@pytest.fixture
def new_bucket() -> Iterator[Callable[..., str]]:
    """``new_bucket(server, prefix="t") -> name``: create a uniquely named bucket,
    deleted with its contents at teardown (if the server is still running)."""
    created: list[tuple[S3Server, str]] = []

    def make(server: S3Server, prefix: str = "t") -> str:
        name = server.create_bucket(unique_bucket_name(prefix))
        created.append((server, name))
        return name

    yield make
    for server, name in reversed(created):
        if server.running:
            with contextlib.suppress(Exception):
                server.delete_bucket(name, force=True)


@pytest.fixture
def seaweed_bucket(seaweed: SeaweedS3, new_bucket: Callable[..., str]) -> str:
    """A fresh, empty bucket on the session SeaweedFS."""
    return new_bucket(seaweed)


@pytest.fixture
def rclone_bucket(rclone_s3: RcloneS3, new_bucket: Callable[..., str]) -> str:
    """A fresh, empty bucket on the session ``rclone serve s3``."""
    return new_bucket(rclone_s3)


@pytest.fixture
def server_factory() -> Iterator[Callable[..., Any]]:
    """``server_factory(cls, **kwargs)``: start a private server, closed after the test."""
    started: list[ManagedServer] = []

    def make(cls: type[S], **kwargs: Any) -> S:
        server = cls(**kwargs)
        started.append(server)
        server.start()
        return server

    yield make
    for server in reversed(started):
        server.close()
