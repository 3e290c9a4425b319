"""Migration against a misbehaving S3 endpoint: a server that refuses CopyObject
(as Ceph-based providers do with SSE-C), transient and permanent PUT failures.

The misbehaviour comes from :class:`S3Gate`, an HTTP proxy in front of the real
SeaweedFS that forwards requests verbatim (Host header included, so SigV4
signatures stay valid) and answers some of them itself."""

from __future__ import annotations

import http.client
import http.server
import logging
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from objstore import ObjKind
from objstore.migration import MigrateOptions, Migration, migrate

from .helpers import s3_section, write_conf
from .test_migrate_helpers import assert_same_objects, build_disk_store, count_objects

_ERROR = (
    '<?xml version="1.0" encoding="UTF-8"?><Error><Code>{code}</Code>'
    "<Message>{message}</Message></Error>"
)


class S3Gate:
    """HTTP proxy to an S3 server.  ``refuse_copy``: answer CopyObject with 501
    NotImplemented.  ``fail_puts``: answer the next N plain PUTs with 503
    (None: all of them).  Counts what it refused."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.refuse_copy = False
        self.fail_puts: int | None = 0
        self.refused_copies = 0
        self.failed_puts = 0
        self.lock = threading.Lock()
        gate = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _reply(self, status: int, code: str, message: str) -> None:
                body = _ERROR.format(code=code, message=message).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/xml")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def _forward(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                if self.command == "PUT" and gate.intercept(
                    self, "x-amz-copy-source" in self.headers
                ):
                    return
                conn = http.client.HTTPConnection("127.0.0.1", gate.upstream_port, timeout=60)
                try:
                    conn.putrequest(
                        self.command, self.path, skip_host=True, skip_accept_encoding=True
                    )
                    for name, value in self.headers.items():
                        if name.lower() != "expect":
                            conn.putheader(name, value)
                    conn.endheaders(body)
                    resp = conn.getresponse()
                    data = resp.read()
                finally:
                    conn.close()
                self.send_response(resp.status, resp.reason)
                for name, value in resp.getheaders():
                    if name.lower() not in ("transfer-encoding", "connection", "content-length"):
                        self.send_header(name, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)

            do_GET = do_PUT = do_HEAD = do_POST = do_DELETE = _forward

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def intercept(self, handler: Any, is_copy: bool) -> bool:
        with self.lock:
            if is_copy and self.refuse_copy:
                self.refused_copies += 1
                reply = (501, "NotImplemented", "CopyObject with SSE-C is not supported")
            elif not is_copy and (self.fail_puts is None or self.fail_puts > 0):
                if self.fail_puts is not None:
                    self.fail_puts -= 1
                self.failed_puts += 1
                reply = (503, "ServiceUnavailable", "Please reduce your request rate")
            else:
                return False
        handler._reply(*reply)
        return True

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class _GatedServer:
    """Looks like the test server to helpers.s3_section, but points at the gate."""

    def __init__(self, server: Any, gate: S3Gate) -> None:
        self.host = server.host
        self.http_port = gate.port
        self.https_port = None
        self.access_key = server.access_key
        self.secret_key = server.secret_key
        self.domain_name = server.domain_name


@pytest.fixture
def gate(seaweed: Any) -> Iterator[S3Gate]:
    g = S3Gate(seaweed.http_port)
    yield g
    g.close()


@pytest.fixture(scope="module")
def small_source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_disk_store(tmp_path_factory.mktemp("fault-source"), repos=2, seed=4, files=4)


def gated_conf(tmp: Path, name: str, seaweed: Any, gate: S3Gate, bucket: str, **extra: Any) -> Path:
    server = _GatedServer(seaweed, gate)
    text = "\n".join(
        s3_section(server, kind, bucket, key_prefix=f"{kind.value}/", extra=extra or None)
        for kind in ObjKind
    )
    return write_conf(tmp / name, text)


def test_refused_server_side_copy_falls_back_once(
    tmp_path: Path, small_source: Path, seaweed: Any, gate: S3Gate, new_bucket: Any,
    caplog: pytest.LogCaptureFixture,
) -> None:  # fmt: skip
    src = gated_conf(tmp_path, "src", seaweed, gate, new_bucket(seaweed, "gsrc"))
    dst = gated_conf(tmp_path, "dst", seaweed, gate, new_bucket(seaweed, "gdst"))
    assert migrate(small_source, src).exit_code == 0
    total = count_objects(src)
    gate.refuse_copy = True
    with caplog.at_level(logging.WARNING, logger="objstore.migration"):
        result = migrate(src, dst, verify="hash")
    assert result.exit_code == 0, result.to_dict()
    assert result.plan is not None
    assert {kp.method for kp in result.plan.kinds.values()} == {"server-side copy"}
    assert result.transfer is not None
    assert (result.transfer.copied, result.transfer.server_side) == (total, 0)
    assert gate.refused_copies == 1  # asked once, then GET+PUT for every kind
    assert len(result.warnings) == 1 and "refused server-side copy" in result.warnings[0]
    assert "NotImplemented" in result.to_dict()["warnings"][0]
    fallback_logs = [r for r in caplog.records if "refused server-side copy" in r.getMessage()]
    assert len(fallback_logs) == 1
    assert assert_same_objects(src, dst) == total

    # --server-side-copy always: the refusal stops the run instead
    dst2 = gated_conf(tmp_path, "dst2", seaweed, gate, new_bucket(seaweed, "gdst2"))
    strict = migrate(src, dst2, server_side_copy="always")
    assert strict.exit_code == 1
    assert strict.fatal is not None and "always" in strict.fatal
    assert strict.transfer is not None and strict.transfer.copied == 0


def test_transient_put_failures_are_retried(
    tmp_path: Path, small_source: Path, seaweed: Any, gate: S3Gate, new_bucket: Any
) -> None:
    """Retries off in the configuration (max_retries = 0), three for this run
    (``retries``): the one retry policy recovers each request."""
    dst = gated_conf(tmp_path, "dst", seaweed, gate, new_bucket(seaweed, "gretry"), max_retries=0)
    total = count_objects(small_source)
    gate.fail_puts = 6
    result = migrate(small_source, dst, retries=3)
    assert result.exit_code == 0, result.to_dict()
    assert gate.failed_puts == 6
    assert result.transfer is not None
    assert (result.transfer.copied, result.transfer.failed) == (total, 0)
    assert assert_same_objects(small_source, dst) == total


def test_permanent_put_failures_are_reported(
    tmp_path: Path, small_source: Path, seaweed: Any, gate: S3Gate, new_bucket: Any
) -> None:
    dst = gated_conf(tmp_path, "dst", seaweed, gate, new_bucket(seaweed, "gfail"), max_retries=0)
    opts = MigrateOptions(kinds=(ObjKind.COMMIT,), retries=2)
    with Migration.open(small_source, dst, opts) as m:
        gate.fail_puts = None
        result = m.run()
    commits = count_objects(small_source, (ObjKind.COMMIT,))
    assert result.exit_code == 1
    assert result.transfer is not None
    assert (result.transfer.copied, result.transfer.failed) == (0, commits)
    assert gate.failed_puts == 3 * commits  # 1 try + 2 retries each
    for failure in result.transfer.failures:
        assert failure.attempts == 3 and failure.kind == "commits"
        assert "ServiceUnavailable" in failure.reason or "503" in failure.reason
    assert result.verify is not None and result.verify.missing == commits
