"""Real servers for tests: SeaweedFS and rclone (S3), Redis, memcached, tinyproxy
(an HTTP proxy), plus a test CA.

Every server runs as a subprocess bound to 127.0.0.1 only, on free ports, inside
its own temporary directory, in its own process group. Contracts shared by all
servers (see :class:`ManagedServer`):

* ``start()`` blocks until the server answers a real request (or raises
  :class:`ServerStartError` with the tail of its log after ``startup_timeout``).
* ``stop()`` sends SIGTERM to the process group, then SIGKILL after a timeout,
  and reaps the process. Data is kept, so ``restart()`` works afterwards.
* ``kill()`` sends SIGKILL at once (for fault tests); data written so far is
  whatever the server had persisted.
* ``restart()`` starts the server again on the SAME ports and data directory.
* ``close()`` stops the server and removes its temporary directory (if it was
  created by this module).
* An atexit hook stops every server still running, and children get SIGKILL
  via ``PR_SET_PDEATHSIG`` if the process that started them dies abruptly.

This module does not import pytest; scripts and benchmarks may use it directly.
"""

from __future__ import annotations

import atexit
import base64
import contextlib
import ctypes
import datetime as _dt
import ipaddress
import itertools
import json
import os
import random
import re
import secrets
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import weakref
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    import pymemcache.client.base
    import redis
    from mypy_boto3_s3.client import S3Client

__all__ = [
    "LOOPBACK",
    "ManagedServer",
    "MariaDBServer",
    "MemcachedServer",
    "RcloneClient",
    "RcloneS3",
    "RedisCluster",
    "RedisClusterNode",
    "RedisServer",
    "S3Server",
    "SeaweedS3",
    "ServerStartError",
    "TestCA",
    "TinyProxy",
    "find_binary",
    "free_port",
    "install_sigv2_path_fix",
    "live_servers",
    "localhost_resolution",
    "patch_localhost_resolution",
    "rclone_client_remote",
    "reserve_ports",
    "server_env",
    "stop_all_servers",
    "unique_bucket_name",
]

LOOPBACK = "127.0.0.1"
DEFAULT_STARTUP_TIMEOUT = 30.0
DEFAULT_STOP_TIMEOUT = 15.0

# SANs of the server certificate issued by TestCA.
DEFAULT_DNS_NAMES: tuple[str, ...] = ("localhost", "*.localhost", "s3.localhost", "*.s3.localhost")
DEFAULT_IP_ADDRESSES: tuple[str, ...] = ("127.0.0.1", "::1")

# Environment variables never passed to servers or to the rclone client: they
# would add identities (weed turns AWS_* keys into an admin), change config
# files, or route loopback traffic through a proxy.
_STRIPPED_ENV_PREFIXES = ("AWS_", "RCLONE_", "WEED_")
_STRIPPED_ENV_NAMES = frozenset(
    {
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "ALL_PROXY",
        "NO_PROXY",
        "http_proxy",
        "https_proxy",
        "all_proxy",
        "no_proxy",
        "S3_BUCKET",
        "S3_TABLE_BUCKET",
        "S3_EXTERNAL_URL",
    }
)


# Log phrases of a failed bind (redis, memcached, Go servers; weed mini's own check).
_PORT_CLASH_MARKERS = ("already in use", "address in use", "is not available on")


class ServerStartError(RuntimeError):
    """A server did not become ready; the message includes the tail of its log."""


# --------------------------------------------------------------------------- ports

_port_lock = threading.Lock()
_handed_out: set[int] = set()


def _ephemeral_range() -> tuple[int, int]:
    try:
        lo, hi = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(lo), int(hi)
    except (OSError, ValueError):
        return 32768, 60999


def _can_bind(port: int, host: str = LOOPBACK) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def _kernel_port(host: str = LOOPBACK) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def reserve_ports(n: int, *, offset: int | None = None, host: str = LOOPBACK) -> list[int]:
    """Return ``n`` distinct TCP ports that are bindable on ``host`` right now.

    Ports are picked at random below the kernel's ephemeral range (so outgoing
    connections cannot grab them between this call and the server's bind, nor
    while a killed server is down before ``restart()``), and never twice in
    this process. With ``offset``, ``port + offset`` is free too and reserved
    as well (SeaweedFS derives gRPC ports as HTTP port + 10000).
    Falls back to kernel-chosen ports (bind port 0) if no such range exists.
    """
    extra = offset or 0
    lo, hi = 15000, min(32767, _ephemeral_range()[0] - 1) - extra
    use_kernel = hi - lo < 500
    rng = random.SystemRandom()
    result: list[int] = []
    taken: set[int] = set()
    with _port_lock:
        for _ in range(20000):
            if len(result) == n:
                break
            p = _kernel_port(host) if use_kernel else rng.randint(lo, hi)
            cand = {p, p + extra}
            if max(cand) > 65535 or cand & (_handed_out | taken):
                continue
            if not all(_can_bind(c, host) for c in cand):
                continue
            taken |= cand
            result.append(p)
        else:
            raise RuntimeError(f"could not find {n} free ports on {host}")
        _handed_out.update(taken)
    return result


def free_port(host: str = LOOPBACK) -> int:
    """Return one free TCP port on ``host`` (see :func:`reserve_ports`)."""
    return reserve_ports(1, host=host)[0]


def _release_ports(ports: Sequence[int]) -> None:
    with _port_lock:
        _handed_out.difference_update(ports)


# --------------------------------------------------------------------------- helpers


def find_binary(name: str) -> str:
    """Locate executable ``name``: the running interpreter's bin dir first, then PATH.

    Raises FileNotFoundError with a hint if it is missing.
    """
    venv_bin = Path(sys.executable).parent / name
    if venv_bin.is_file() and os.access(venv_bin, os.X_OK):
        return str(venv_bin)
    found = shutil.which(name)
    if found:
        return found
    for d in ("/usr/bin", "/usr/sbin", "/usr/local/bin"):
        p = Path(d) / name
        if p.is_file() and os.access(p, os.X_OK):
            return str(p)
    raise FileNotFoundError(f"{name!r} not found (run scripts/test to install test dependencies)")


def server_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The current environment minus AWS_*/RCLONE_*/WEED_* and proxy variables, plus ``extra``."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(_STRIPPED_ENV_PREFIXES) and k not in _STRIPPED_ENV_NAMES
    }
    if extra:
        env.update(extra)
    return env


def _tail(path: Path, lines: int = 40) -> str:
    try:
        data = path.read_bytes()[-64 * 1024 :]
    except OSError:
        return "(no log)"
    return "\n".join(data.decode("utf-8", "replace").splitlines()[-lines:])


_PR_SET_PDEATHSIG = 1
_prctl: Any = None
if sys.platform.startswith("linux"):
    with contextlib.suppress(OSError, AttributeError):
        _prctl = ctypes.CDLL(None, use_errno=True).prctl


def _child_setup() -> None:  # runs in the child between fork and exec
    if _prctl is not None:
        _prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


_owned_dirs: list[Path] = []


def _new_workdir(name: str) -> Path:
    """A fresh temp dir, removed at exit (unless OBJSTORE_KEEP_SERVER_DIRS is set)."""
    d = Path(tempfile.mkdtemp(prefix=f"objstore-{name}-"))
    _owned_dirs.append(d)
    return d


def _remove_owned_dir(d: Path) -> None:
    if not os.environ.get("OBJSTORE_KEEP_SERVER_DIRS"):
        shutil.rmtree(d, ignore_errors=True)


# --------------------------------------------------------------------------- base class

_live: weakref.WeakSet[ManagedServer] = weakref.WeakSet()
_live_lock = threading.Lock()


def live_servers() -> list[ManagedServer]:
    """Servers started by this process that are still running."""
    with _live_lock:
        return [s for s in _live if s.running]


def stop_all_servers() -> None:
    """Stop every server still running (used by the atexit hook)."""
    with _live_lock:
        servers = list(_live)
    for s in servers:
        with contextlib.suppress(Exception):
            s.stop(timeout=5.0)


def _atexit() -> None:
    with _live_lock:
        servers = list(_live)
    for s in servers:
        with contextlib.suppress(Exception):
            s.close()
    for d in _owned_dirs:
        _remove_owned_dir(d)


atexit.register(_atexit)


_S = TypeVar("_S", bound="ManagedServer")


class ManagedServer:
    """A server subprocess with start/stop/kill/restart; subclasses define the command.

    Subclasses implement :meth:`_assign_ports`, :meth:`_command`, :meth:`_probe`
    and may extend :meth:`_env`, :meth:`_before_start`, :meth:`_after_stop`.
    """

    name = "server"
    host: str = LOOPBACK

    def __init__(
        self,
        workdir: str | os.PathLike[str] | None = None,
        *,
        startup_timeout: float = DEFAULT_STARTUP_TIMEOUT,
        stop_timeout: float = DEFAULT_STOP_TIMEOUT,
    ) -> None:
        self._owns_dir = workdir is None
        self.dir: Path = Path(workdir) if workdir is not None else _new_workdir(self.name)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.log_file: Path = self.dir / "server.log"
        self.startup_timeout = startup_timeout
        self.stop_timeout = stop_timeout
        self._proc: subprocess.Popen[bytes] | None = None
        self._log_handle: IO[bytes] | None = None
        self._ports_assigned = False
        self._ever_ready = False
        self._ports: list[int] = []
        self._lock = threading.RLock()

    # -- subclass hooks
    def _assign_ports(self) -> list[int]:
        """Pick ports; return all of them (for release on failure)."""
        raise NotImplementedError

    def _command(self) -> list[str]:
        raise NotImplementedError

    def _probe(self) -> bool:
        """Return True once the server answers a real request; may raise."""
        raise NotImplementedError

    def _env(self) -> dict[str, str]:
        return server_env({"TMPDIR": str(self._tmpdir), "HOME": str(self._home)})

    def _before_start(self) -> None:
        """Prepare files before each (re)start."""

    def _after_stop(self) -> None:
        """Clean up after the process is gone (e.g. stale sockets)."""

    # -- properties
    @property
    def _tmpdir(self) -> Path:
        p = self.dir / "tmp"
        p.mkdir(exist_ok=True)
        return p

    @property
    def _home(self) -> Path:
        p = self.dir / "home"
        p.mkdir(exist_ok=True)
        return p

    @property
    def pid(self) -> int | None:
        """PID (and process-group id) of the running server, else None."""
        return self._proc.pid if self._proc is not None and self._proc.poll() is None else None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def log_tail(self, lines: int = 40) -> str:
        """Last ``lines`` lines of the server's combined stdout/stderr."""
        return _tail(self.log_file, lines)

    # -- lifecycle
    def start(self: _S) -> _S:
        """Start and wait until ready; a no-op if already running. Returns self.

        On the very first start, a failure because a port was taken by someone
        else in the meantime (a bind error in its log) is retried twice with
        fresh ports; later starts (restart) always reuse the same ports.
        """
        with self._lock:
            if self.running:
                return self
            for attempt in range(3):
                if not self._ports_assigned:
                    self._ports = self._assign_ports()
                    self._ports_assigned = True
                log_offset = self.log_file.stat().st_size if self.log_file.exists() else 0
                try:
                    self._start_once()
                except ServerStartError:
                    if self._ever_ready or attempt == 2 or not self._port_clash(log_offset):
                        raise
                    _release_ports(self._ports)
                    self._ports_assigned = False
                    continue
                self._ever_ready = True
                return self
            raise AssertionError("unreachable")

    def _port_clash(self, log_offset: int) -> bool:
        """Did the last start attempt fail because a port was taken meanwhile?"""
        try:
            with open(self.log_file, "rb") as f:
                f.seek(log_offset)
                new = f.read().decode("utf-8", "replace").lower()
        except OSError:
            return False
        return any(m in new for m in _PORT_CLASH_MARKERS)

    def _start_once(self) -> None:
        self._before_start()
        cmd = self._command()
        self._log_handle = open(self.log_file, "ab")  # noqa: SIM115 - kept open while running
        banner = f"\n=== start {time.strftime('%H:%M:%S')}: {shlex.join(cmd)}\n"
        self._log_handle.write(banner.encode())
        self._log_handle.flush()
        in_main = threading.current_thread() is threading.main_thread()
        self._proc = subprocess.Popen(
            cmd,
            cwd=self.dir,
            env=self._env(),
            stdin=subprocess.DEVNULL,
            stdout=self._log_handle,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # own session => own process group
            preexec_fn=_child_setup if in_main else None,  # pdeathsig: die with us
        )
        with _live_lock:
            _live.add(self)
        deadline = time.monotonic() + self.startup_timeout
        last_exc: BaseException | None = None
        while True:
            rc = self._proc.poll()
            if rc is not None:
                self._cleanup_after_exit()
                raise ServerStartError(
                    f"{self.name} exited with code {rc} during startup; "
                    f"command: {shlex.join(cmd)}\n"
                    f"--- log tail ({self.log_file}) ---\n{self.log_tail()}"
                )
            try:
                if self._probe():
                    return
            except Exception as e:  # any failure means "not ready yet"
                last_exc = e
            if time.monotonic() > deadline:
                self.stop(timeout=5.0)
                raise ServerStartError(
                    f"{self.name} not ready after {self.startup_timeout:.0f}s "
                    f"(last probe error: {last_exc!r}); command: {shlex.join(cmd)}\n"
                    f"--- log tail ({self.log_file}) ---\n{self.log_tail()}"
                )
            time.sleep(0.1)

    def _signal_group(self, sig: int) -> None:
        if self._proc is None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self._proc.pid, sig)

    def _cleanup_after_exit(self) -> None:
        # The leader is gone; make sure nothing else of its group lingers.
        self._signal_group(signal.SIGKILL)
        if self._log_handle is not None:
            with contextlib.suppress(OSError):
                self._log_handle.close()
            self._log_handle = None
        with contextlib.suppress(Exception):
            self._after_stop()

    def stop(self, timeout: float | None = None) -> None:
        """SIGTERM the process group, SIGKILL after ``timeout`` s, reap. Idempotent."""
        with self._lock:
            proc = self._proc
            if proc is None:
                return
            if proc.poll() is None:
                self._signal_group(signal.SIGTERM)
                self._signal_group(signal.SIGCONT)  # in case it was paused
                try:
                    proc.wait(timeout=self.stop_timeout if timeout is None else timeout)
                except subprocess.TimeoutExpired:
                    self._signal_group(signal.SIGKILL)
                    proc.wait()
            self._cleanup_after_exit()
            self._proc = None

    def kill(self) -> None:
        """SIGKILL the process group at once and reap it (data dir is kept)."""
        with self._lock:
            proc = self._proc
            if proc is None:
                return
            self._signal_group(signal.SIGKILL)
            proc.wait()
            self._cleanup_after_exit()
            self._proc = None

    def pause(self) -> None:
        """SIGSTOP the process group: the server hangs (connections stall, no errors)."""
        with self._lock:
            if self.running:
                self._signal_group(signal.SIGSTOP)

    def resume(self) -> None:
        """SIGCONT the process group after :meth:`pause`."""
        with self._lock:
            if self.running:
                self._signal_group(signal.SIGCONT)

    def restart(self: _S) -> _S:
        """Stop (gracefully) if running, then start on the same ports and data dir."""
        with self._lock:
            self.stop()  # listening sockets are closed once the process is reaped
            return self.start()

    def close(self) -> None:
        """Stop the server and delete its directory if this object created it."""
        self.stop()
        with _live_lock:
            _live.discard(self)
        if self._owns_dir:
            _remove_owned_dir(self.dir)
        _release_ports(self._ports)

    def __enter__(self: _S) -> _S:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = f"pid={self.pid}" if self.running else "stopped"
        return f"<{type(self).__name__} {state} ports={self._ports} dir={self.dir}>"


# --------------------------------------------------------------------------- TLS


class TestCA:
    """A throw-away CA plus one server certificate signed by it.

    Writes ``ca.pem``, ``server.crt`` and ``server.key`` into ``directory``.
    The server certificate's SANs default to ``localhost, *.localhost,
    s3.localhost, *.s3.localhost, 127.0.0.1, ::1``. ``ca_dir`` is an OpenSSL
    ``capath`` directory (``<subject-hash>.0`` symlink to ``ca.pem``), or None
    when the ``openssl`` binary is unavailable.
    """

    __test__ = False  # not a pytest test class

    def __init__(
        self,
        directory: str | os.PathLike[str] | None = None,
        *,
        dns_names: Sequence[str] = DEFAULT_DNS_NAMES,
        ip_addresses: Sequence[str] = DEFAULT_IP_ADDRESSES,
        days: int = 30,
    ) -> None:
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

        self._owns_dir = directory is None
        self.directory: Path = Path(directory) if directory is not None else _new_workdir("ca")
        self.directory.mkdir(parents=True, exist_ok=True)
        now = _dt.datetime.now(_dt.timezone.utc)
        not_before = now - _dt.timedelta(days=1)
        not_after = now + _dt.timedelta(days=days)

        ca_key = ec.generate_private_key(ec.SECP256R1())
        ca_name = x509.Name(
            [
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, "objstore tests"),
                x509.NameAttribute(NameOID.COMMON_NAME, f"objstore test CA {secrets.token_hex(4)}"),
            ]
        )
        ca_ski = x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key())
        ca_cert = (
            x509.CertificateBuilder()
            .subject_name(ca_name)
            .issuer_name(ca_name)
            .public_key(ca_key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(not_before)
            .not_valid_after(not_after)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(ca_ski, critical=False)
            .sign(ca_key, hashes.SHA256())
        )

        key = ec.generate_private_key(ec.SECP256R1())
        sans: list[x509.GeneralName] = [x509.DNSName(n) for n in dns_names]
        sans += [x509.IPAddress(ipaddress.ip_address(a)) for a in ip_addresses]
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
            .issuer_name(ca_name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(not_before)
            .not_valid_after(not_after)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.SubjectAlternativeName(sans), critical=False)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=False,
                    crl_sign=False,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski),
                critical=False,
            )
            .add_extension(
                x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False
            )
            .sign(ca_key, hashes.SHA256())
        )

        pem = serialization.Encoding.PEM
        self.ca_file: Path = self.directory / "ca.pem"
        self.ca_key_file: Path = self.directory / "ca.key"
        self.cert_file: Path = self.directory / "server.crt"
        self.key_file: Path = self.directory / "server.key"
        self.ca_file.write_bytes(ca_cert.public_bytes(pem))
        self.cert_file.write_bytes(cert.public_bytes(pem))
        for path, k in ((self.key_file, key), (self.ca_key_file, ca_key)):
            path.write_bytes(
                k.private_bytes(
                    pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
                )
            )
            path.chmod(0o600)
        self.ca_dir: Path | None = self._make_ca_dir()

    def _make_ca_dir(self) -> Path | None:
        openssl = shutil.which("openssl")
        if openssl is None:
            return None
        try:
            out = subprocess.run(
                [openssl, "x509", "-hash", "-noout", "-in", str(self.ca_file)],
                check=True,
                capture_output=True,
                text=True,
                timeout=30,
            ).stdout.strip()
        except (subprocess.SubprocessError, OSError):
            return None
        ca_dir = self.directory / "capath"
        ca_dir.mkdir(exist_ok=True)
        link = ca_dir / f"{out}.0"
        if link.is_symlink() or link.exists():
            link.unlink()
        link.symlink_to(Path("..") / self.ca_file.name)
        return ca_dir

    def close(self) -> None:
        """Delete the directory if this object created it."""
        if self._owns_dir:
            _remove_owned_dir(self.directory)


# --------------------------------------------------------------------------- S3 servers


def _boto_config(*, v2: bool, virtual: bool, **overrides: Any) -> Any:
    from botocore.config import Config

    return Config(
        region_name="us-east-1",
        signature_version="s3" if v2 else "s3v4",
        s3={"addressing_style": "virtual" if virtual else "path"},
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
        connect_timeout=10,
        read_timeout=120,
        retries={"max_attempts": 3, "mode": "standard"},
        **overrides,
    )


def install_sigv2_path_fix(client: Any) -> None:
    """Make SigV2 path-style bucket-level requests (list, delete_objects, ...) work.

    botocore signs ``/bucket/`` but sends ``/bucket`` (boto/boto3#4433), so
    servers that verify SigV2 answer SignatureDoesNotMatch. This ``before-sign``
    hook sends the path that is signed.
    """
    from urllib.parse import urlsplit, urlunsplit

    def send_signed_path(request: Any, **_: Any) -> None:
        auth_path = getattr(request, "auth_path", None)
        parts = urlsplit(request.url)
        if auth_path and parts.path + "/" == auth_path:
            request.url = urlunsplit(parts._replace(path=auth_path))

    client.meta.events.register("before-sign.s3", send_signed_path)


class S3Server(ManagedServer):
    """Common S3 client helpers for :class:`SeaweedS3` and :class:`RcloneS3`."""

    access_key: str
    secret_key: str
    http_port: int
    https_port: int | None
    ca_file: Path | None
    domain_name: str | None = None
    virtual_hosts_supported = False

    def endpoint_url(self, https: bool = False, virtual: bool = False) -> str:
        """``http(s)://127.0.0.1:PORT`` (path-style) or ``http(s)://<domain>:PORT`` (virtual)."""
        if https and self.https_port is None:
            raise ValueError(f"{self.name} was started without HTTPS")
        port = self.https_port if https else self.http_port
        if virtual:
            if not self.virtual_hosts_supported or not self.domain_name:
                raise ValueError(f"{self.name} does not serve virtual-hosted-style requests")
            host = self.domain_name
        else:
            host = self.host
        return f"{'https' if https else 'http'}://{host}:{port}"

    def client(
        self,
        https: bool = False,
        virtual: bool = False,
        v2: bool = False,
        *,
        fix_v2_path: bool = True,
        **kw: Any,
    ) -> S3Client:
        """A new boto3 S3 client for this server.

        Region us-east-1, SigV4 (SigV2 if ``v2``), path-style (virtual-hosted if
        ``virtual``: needs ``*.localhost`` resolution, see
        :func:`patch_localhost_resolution`), flexible checksums only
        "when_required", HTTPS verified against ``ca_file``. ``kw`` goes to
        ``Session.client()`` and overrides the defaults (e.g.
        ``aws_secret_access_key="wrong"``); a ``config=`` is merged on top of ours.
        With ``v2`` and path-style, :func:`install_sigv2_path_fix` is applied
        unless ``fix_v2_path=False`` (SigV2 virtual-hosted fails on SeaweedFS:
        a server bug).
        """
        import boto3

        cfg = _boto_config(v2=v2, virtual=virtual)
        if "config" in kw:
            user_cfg = kw.pop("config")
            if user_cfg is not None:
                cfg = cfg.merge(user_cfg)
        args: dict[str, Any] = {
            "endpoint_url": self.endpoint_url(https=https, virtual=virtual),
            "aws_access_key_id": self.access_key,
            "aws_secret_access_key": self.secret_key,
            "region_name": "us-east-1",
            "config": cfg,
        }
        if https:
            args["verify"] = str(self.ca_file)
        args.update(kw)
        session = boto3.session.Session()
        client = session.client("s3", **args)
        if v2 and not virtual and fix_v2_path:
            install_sigv2_path_fix(client)
        return client

    def create_bucket(self, name: str) -> str:
        """Create bucket ``name`` (path-style HTTP); returns the name."""
        self._admin_client().create_bucket(Bucket=name)
        return name

    def delete_bucket(self, name: str, force: bool = True) -> None:
        """Delete bucket ``name``; with ``force`` empty it first (objects and
        unfinished multipart uploads). A missing bucket is not an error."""
        from botocore.exceptions import ClientError

        c = self._admin_client()
        try:
            if force:
                self._empty_bucket(c, name)
            c.delete_bucket(Bucket=name)
        except ClientError as e:
            if e.response.get("Error", {}).get("Code") != "NoSuchBucket":
                raise

    @staticmethod
    def _empty_bucket(c: S3Client, name: str) -> None:
        from botocore.exceptions import ClientError

        with contextlib.suppress(ClientError):
            for uploads in c.get_paginator("list_multipart_uploads").paginate(Bucket=name):
                for u in uploads.get("Uploads", []):
                    c.abort_multipart_upload(Bucket=name, Key=u["Key"], UploadId=u["UploadId"])
        for page in c.get_paginator("list_objects_v2").paginate(Bucket=name):
            keys = [o["Key"] for o in page.get("Contents", [])]
            if not keys:
                continue
            try:
                resp = c.delete_objects(
                    Bucket=name, Delete={"Objects": [{"Key": k} for k in keys], "Quiet": True}
                )
                keys = [e["Key"] for e in resp.get("Errors", [])]
            except ClientError:
                pass  # fall back to single deletes
            for k in keys:
                c.delete_object(Bucket=name, Key=k)

    def _cached_client(self, purpose: str, **kw: Any) -> S3Client:
        """One client per purpose and endpoint (ports change if a first start is retried)."""
        cache: dict[tuple[str, str], S3Client] = self.__dict__.setdefault("_client_cache", {})
        key = (purpose, self.endpoint_url())
        if key not in cache:
            cache[key] = self.client(**kw)
        return cache[key]

    def _admin_client(self) -> S3Client:
        return self._cached_client("admin")

    def rclone_remote(self, https: bool = False, **kw: Any) -> RcloneClient:
        """An rclone CLI S3 client pointed at this server (see :func:`rclone_client_remote`)."""
        kw.setdefault("ca_file", self.ca_file if https else None)
        return rclone_client_remote(
            self.endpoint_url(https=https), self.access_key, self.secret_key, **kw
        )

    def _probe_s3(self) -> bool:
        from botocore.config import Config

        probe_cfg = Config(connect_timeout=1, read_timeout=3, retries={"max_attempts": 1})
        self._cached_client("probe", config=probe_cfg).list_buckets()
        return True


class SeaweedS3(S3Server):
    """SeaweedFS ``weed mini`` (master, volume, filer, S3, admin in one process).

    Serves S3 on ``http_port`` (HTTP) and, unless ``https=False``, on
    ``https_port`` (TLS with a certificate from ``ca``; a private TestCA is made
    if none is given). Auth on (one identity, random keys), virtual-hosted
    style under ``domain_name`` (``s3.localhost``), telemetry off, every port
    (HTTP and gRPC of master/volume/filer/S3/admin) chosen explicitly with gRPC
    = HTTP + 10000 (some components ignore the explicit gRPC flags), WebDAV,
    Iceberg and Lance off; logs, sockets and TMPDIR inside ``dir`` (except the
    gRPC unix sockets, which weed always puts in /tmp; removed after stop/kill).
    Every bucket holding data uses one volume until deleted: ``max_volumes``
    bounds how many such buckets can exist at once.
    """

    name = "seaweedfs"
    virtual_hosts_supported = True

    def __init__(
        self,
        workdir: str | os.PathLike[str] | None = None,
        *,
        ca: TestCA | None = None,
        https: bool = True,
        domain_name: str = "s3.localhost",
        access_key: str | None = None,
        secret_key: str | None = None,
        extra_identities: Sequence[dict[str, Any]] = (),
        max_volumes: int = 1000,
        extra_args: Sequence[str] = (),
        weed_bin: str | None = None,
        startup_timeout: float = DEFAULT_STARTUP_TIMEOUT,
        stop_timeout: float = DEFAULT_STOP_TIMEOUT,
    ) -> None:
        super().__init__(workdir, startup_timeout=startup_timeout, stop_timeout=stop_timeout)
        self.weed_bin = weed_bin or find_binary("weed")
        self.https = https
        self._own_ca = https and ca is None
        self.ca: TestCA | None = None
        if https:
            self.ca = TestCA(self.dir / "tls") if ca is None else ca
        self.ca_file = self.ca.ca_file if self.ca is not None else None
        self.domain_name = domain_name
        self.access_key = access_key or "AK" + secrets.token_hex(9).upper()
        self.secret_key = secret_key or secrets.token_urlsafe(30)
        self.extra_identities = list(extra_identities)
        self.max_volumes = max_volumes
        self.extra_args = list(extra_args)
        self.data_dir = self.dir / "data"
        self.config_file = self.dir / "s3.json"
        self.http_port = 0
        self.https_port = None
        self.master_port = self.volume_port = self.filer_port = self.admin_port = 0

    GRPC_OFFSET = 10000

    def _assign_ports(self) -> list[int]:
        n = 6 if self.https else 5
        ports = reserve_ports(n, offset=self.GRPC_OFFSET)
        self.master_port, self.volume_port, self.filer_port, self.http_port, self.admin_port = (
            ports[:5]
        )
        self.https_port = ports[5] if self.https else None
        return ports + [p + self.GRPC_OFFSET for p in ports]

    @property
    def identities(self) -> dict[str, Any]:
        """The identities JSON given to ``-s3.config``."""
        return {
            "identities": [
                {
                    "name": "tester",
                    "credentials": [{"accessKey": self.access_key, "secretKey": self.secret_key}],
                    "actions": ["Admin", "Read", "List", "Tagging", "Write"],
                },
                *self.extra_identities,
            ]
        }

    def _before_start(self) -> None:
        self.data_dir.mkdir(exist_ok=True)
        (self.dir / "admin").mkdir(exist_ok=True)
        self.config_file.write_text(json.dumps(self.identities, indent=1))
        self.config_file.chmod(0o600)

    def _command(self) -> list[str]:
        g = self.GRPC_OFFSET
        cmd = [
            self.weed_bin,
            f"-logdir={self._tmpdir}",
            "mini",
            f"-dir={self.data_dir}",
            f"-ip={self.host}",
            f"-ip.bind={self.host}",
            "-master.telemetry=false",
            f"-master.port={self.master_port}",
            f"-master.port.grpc={self.master_port + g}",
            f"-volume.port={self.volume_port}",
            f"-volume.port.grpc={self.volume_port + g}",
            f"-filer.port={self.filer_port}",
            f"-filer.port.grpc={self.filer_port + g}",
            f"-filer.localSocket={self.dir / 'filer.sock'}",
            f"-s3.port={self.http_port}",
            f"-s3.port.grpc={self.http_port + g}",
            f"-s3.localSocket={self.dir / 's3.sock'}",
            f"-admin.port={self.admin_port}",
            f"-admin.port.grpc={self.admin_port + g}",
            f"-admin.dataDir={self.dir / 'admin'}",
            "-admin.ui=false",
            f"-s3.config={self.config_file}",
            f"-s3.domainName={self.domain_name}",
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
            "-webdav=false",
            # Each bucket holding data takes one volume until it is deleted; the
            # default limit (free disk / volume size, ~1 GiB) can be tiny.
            f"-volume.max={self.max_volumes}",
        ]
        if self.https:
            assert self.ca is not None and self.https_port is not None
            cmd += [
                f"-s3.port.https={self.https_port}",
                f"-s3.cert.file={self.ca.cert_file}",
                f"-s3.key.file={self.ca.key_file}",
            ]
        return cmd + self.extra_args

    def _probe(self) -> bool:
        return self._probe_s3()

    def _after_stop(self) -> None:
        # weed puts gRPC unix sockets into /tmp regardless of TMPDIR; they are
        # removed on SIGTERM but left behind by SIGKILL.
        for p in self._ports:
            for kind in ("master", "volume", "filer", "s3", "admin"):
                with contextlib.suppress(OSError):
                    Path(f"/tmp/seaweedfs-{kind}-grpc-{p}.sock").unlink()

    def close(self) -> None:
        super().close()
        if self._own_ca and self.ca is not None:
            self.ca.close()


class RcloneS3(S3Server):
    """``rclone serve s3`` over a local directory (a bucket = a top-level dir).

    HTTP on ``http_port``; with ``https=True`` also TLS on ``https_port`` (a
    private TestCA is made if ``ca`` is None). SigV4 only, path-style only;
    SSE-C headers are ignored by the server. rclone's config and cache live in
    ``dir``; nothing is written to $HOME.
    """

    name = "rclone"

    def __init__(
        self,
        workdir: str | os.PathLike[str] | None = None,
        *,
        ca: TestCA | None = None,
        https: bool = False,
        access_key: str | None = None,
        secret_key: str | None = None,
        extra_args: Sequence[str] = (),
        rclone_bin: str | None = None,
        startup_timeout: float = DEFAULT_STARTUP_TIMEOUT,
        stop_timeout: float = DEFAULT_STOP_TIMEOUT,
    ) -> None:
        super().__init__(workdir, startup_timeout=startup_timeout, stop_timeout=stop_timeout)
        self.rclone_bin = rclone_bin or find_binary("rclone")
        self.https = https
        self._own_ca = https and ca is None
        self.ca: TestCA | None = None
        if https:
            self.ca = TestCA(self.dir / "tls") if ca is None else ca
        self.ca_file = self.ca.ca_file if self.ca is not None else None
        self.access_key = access_key or "AK" + secrets.token_hex(9).upper()
        self.secret_key = secret_key or secrets.token_urlsafe(30)
        self.extra_args = list(extra_args)
        self.data_dir = self.dir / "data"
        self.config_file = self.dir / "rclone.conf"
        self.cache_dir = self.dir / "cache"
        self.http_port = 0
        self.https_port = None

    def _assign_ports(self) -> list[int]:
        ports = reserve_ports(2 if self.https else 1)
        self.http_port = ports[0]
        self.https_port = ports[1] if self.https else None
        return ports

    def _env(self) -> dict[str, str]:
        env = super()._env()
        env["RCLONE_CONFIG"] = str(self.config_file)
        env["RCLONE_CACHE_DIR"] = str(self.cache_dir)
        env["XDG_CONFIG_HOME"] = env["XDG_CACHE_HOME"] = str(self._home)
        return env

    def _before_start(self) -> None:
        self.data_dir.mkdir(exist_ok=True)
        self.cache_dir.mkdir(exist_ok=True)
        self.config_file.touch()

    def _command(self) -> list[str]:
        cmd = [
            self.rclone_bin,
            "serve",
            "s3",
            str(self.data_dir),
            "--addr",
            f"http://{self.host}:{self.http_port}",
            "--auth-key",
            f"{self.access_key},{self.secret_key}",
            "--config",
            str(self.config_file),
            "--cache-dir",
            str(self.cache_dir),
        ]
        if self.https:
            assert self.ca is not None
            cmd += [
                "--addr",
                f"tls://{self.host}:{self.https_port}",
                "--cert",
                str(self.ca.cert_file),
                "--key",
                str(self.ca.key_file),
            ]
        return cmd + self.extra_args

    def _probe(self) -> bool:
        return self._probe_s3()

    def close(self) -> None:
        super().close()
        if self._own_ca and self.ca is not None:
            self.ca.close()


# --------------------------------------------------------------------------- Redis / memcached


class RedisServer(ManagedServer):
    """``redis-server`` on 127.0.0.1:``port``, no persistence, optional ``password``."""

    name = "redis"

    def __init__(
        self,
        workdir: str | os.PathLike[str] | None = None,
        *,
        password: str | None = None,
        extra_args: Sequence[str] = (),
        redis_bin: str | None = None,
        startup_timeout: float = DEFAULT_STARTUP_TIMEOUT,
        stop_timeout: float = DEFAULT_STOP_TIMEOUT,
    ) -> None:
        super().__init__(workdir, startup_timeout=startup_timeout, stop_timeout=stop_timeout)
        self.redis_bin = redis_bin or find_binary("redis-server")
        self.password = password
        self.extra_args = list(extra_args)
        self.port = 0

    @property
    def url(self) -> str:
        """``redis://[:password@]127.0.0.1:PORT/0``."""
        auth = f":{self.password}@" if self.password else ""
        return f"redis://{auth}{self.host}:{self.port}/0"

    def _assign_ports(self) -> list[int]:
        self.port = free_port()
        return [self.port]

    def _command(self) -> list[str]:
        cmd = [
            self.redis_bin,
            "--bind",
            self.host,
            "--port",
            str(self.port),
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(self.dir),
            "--daemonize",
            "no",
            "--logfile",
            "",
        ]
        if self.password:
            cmd += ["--requirepass", self.password]
        return cmd + self.extra_args

    def client(self, **kw: Any) -> redis.Redis:
        """A new ``redis.Redis`` for this server (``kw`` override defaults)."""
        import redis as _redis

        args: dict[str, Any] = {
            "host": self.host,
            "port": self.port,
            "password": self.password,
            "socket_timeout": 10,
            "socket_connect_timeout": 5,
        }
        args.update(kw)
        return _redis.Redis(**args)

    def _probe(self) -> bool:
        from redis.backoff import NoBackoff
        from redis.retry import Retry

        c = self.client(socket_timeout=2, socket_connect_timeout=1, retry=Retry(NoBackoff(), 0))
        try:
            return bool(c.ping())
        finally:
            c.close()


class RedisClusterNode(RedisServer):
    """One ``redis-server`` with ``cluster-enabled``: its cluster bus listens on
    ``port + 10000``, so both ports are reserved."""

    name = "redis-cluster-node"
    BUS_OFFSET = 10000

    def __init__(self, **kw: Any) -> None:
        super().__init__(
            extra_args=[
                "--cluster-enabled", "yes",
                "--cluster-config-file", "nodes.conf",
                "--cluster-node-timeout", "3000",
            ],
            **kw,
        )  # fmt: skip

    def _assign_ports(self) -> list[int]:
        self.port = reserve_ports(1, offset=self.BUS_OFFSET)[0]
        return [self.port, self.port + self.BUS_OFFSET]


class RedisCluster:
    """A Redis Cluster of ``size`` primaries (no replicas) on loopback, joined with
    ``redis-cli --cluster create ... --cluster-yes``; ready when every node reports
    ``cluster_state:ok``.  ``close()`` stops every node and removes their dirs."""

    def __init__(self, size: int = 3, startup_timeout: float = DEFAULT_STARTUP_TIMEOUT) -> None:
        self.size = size
        self.startup_timeout = startup_timeout
        self.nodes: list[RedisClusterNode] = []
        self.redis_cli = find_binary("redis-cli")

    @property
    def host(self) -> str:
        return LOOPBACK

    @property
    def ports(self) -> list[int]:
        return [node.port for node in self.nodes]

    def start(self) -> RedisCluster:
        try:
            for _ in range(self.size):
                self.nodes.append(RedisClusterNode().start())
            addresses = [f"{LOOPBACK}:{port}" for port in self.ports]
            proc = subprocess.run(
                [self.redis_cli, "--cluster", "create", *addresses,
                 "--cluster-replicas", "0", "--cluster-yes"],
                capture_output=True, text=True, timeout=self.startup_timeout,
                env=server_env(), check=False,
            )  # fmt: skip
            if proc.returncode != 0:
                raise ServerStartError(
                    f"redis-cli --cluster create failed:\n{proc.stdout}{proc.stderr}"
                )
            self._wait_ok()
        except BaseException:
            self.close()
            raise
        return self

    def _wait_ok(self) -> None:
        deadline = time.monotonic() + self.startup_timeout
        while True:
            states = []
            for node in self.nodes:
                c = node.client(socket_timeout=2)
                try:
                    states.append(c.execute_command("CLUSTER", "INFO"))  # type: ignore[no-untyped-call]
                finally:
                    c.close()
            text = [s.decode() if isinstance(s, bytes) else str(s) for s in states]
            if all("cluster_state:ok" in t for t in text):
                return
            if time.monotonic() > deadline:
                raise ServerStartError(f"redis cluster not ok: {text}")
            time.sleep(0.1)

    def node_of_key(self, key: str) -> RedisClusterNode:
        """The node serving ``key``'s slot."""
        c = self.nodes[0].client()
        try:
            slot = int(c.execute_command("CLUSTER", "KEYSLOT", key))  # type: ignore[no-untyped-call]
            for start, end, primary, *_ in c.execute_command("CLUSTER", "SLOTS"):  # type: ignore[no-untyped-call]
                if int(start) <= slot <= int(end):
                    port = int(primary[1])
                    return next(n for n in self.nodes if n.port == port)
        finally:
            c.close()
        raise AssertionError(f"no node serves slot {slot}")

    def close(self) -> None:
        for node in self.nodes:
            node.close()
        self.nodes = []

    def __enter__(self) -> RedisCluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()


class MemcachedServer(ManagedServer):
    """``memcached`` on 127.0.0.1:``port`` (TCP only), ``memory_mb`` MiB,
    optional max item size ``item_size`` (memcached ``-I``, e.g. "2m")."""

    name = "memcached"

    def __init__(
        self,
        workdir: str | os.PathLike[str] | None = None,
        *,
        memory_mb: int = 64,
        item_size: str | None = None,
        extra_args: Sequence[str] = (),
        memcached_bin: str | None = None,
        startup_timeout: float = DEFAULT_STARTUP_TIMEOUT,
        stop_timeout: float = DEFAULT_STOP_TIMEOUT,
    ) -> None:
        super().__init__(workdir, startup_timeout=startup_timeout, stop_timeout=stop_timeout)
        self.memcached_bin = memcached_bin or find_binary("memcached")
        self.memory_mb = memory_mb
        self.item_size = item_size
        self.extra_args = list(extra_args)
        self.port = 0

    def _assign_ports(self) -> list[int]:
        self.port = free_port()
        return [self.port]

    def _command(self) -> list[str]:
        cmd = [
            self.memcached_bin,
            "-l",
            self.host,
            "-p",
            str(self.port),
            "-U",
            "0",
            "-m",
            str(self.memory_mb),
        ]
        if os.geteuid() == 0:
            cmd += ["-u", "root"]
        if self.item_size:
            cmd += ["-I", self.item_size]
        return cmd + self.extra_args

    def client(self, **kw: Any) -> pymemcache.client.base.Client:
        """A new ``pymemcache`` Client for this server (``kw`` override defaults)."""
        from pymemcache.client.base import Client

        args: dict[str, Any] = {"connect_timeout": 5, "timeout": 10}
        args.update(kw)
        return Client((self.host, self.port), **args)

    def _probe(self) -> bool:
        c = self.client(connect_timeout=1, timeout=2)
        try:
            return bool(c.version())
        finally:
            c.close()


# --------------------------------------------------------------------------- HTTP proxy

_PROXY_REQUEST_RE = re.compile(r"Request \(file descriptor \d+\): (\S+) (\S+) HTTP/")


class TinyProxy(ManagedServer):
    """Debian's ``tinyproxy`` on 127.0.0.1:``port``: forwards plain HTTP requests and
    tunnels HTTPS with CONNECT (to any port).  With ``user`` and ``password`` it
    demands Basic auth (tinyproxy 1.11 refuses with 401, not 407).  It logs each
    request it receives at Info level; :meth:`requests` reads them back.  Upstream
    names (``localhost``) are resolved by tinyproxy itself.
    """

    name = "tinyproxy"

    def __init__(
        self,
        workdir: str | os.PathLike[str] | None = None,
        *,
        user: str | None = None,
        password: str | None = None,
        tinyproxy_bin: str | None = None,
        startup_timeout: float = DEFAULT_STARTUP_TIMEOUT,
        stop_timeout: float = DEFAULT_STOP_TIMEOUT,
    ) -> None:
        super().__init__(workdir, startup_timeout=startup_timeout, stop_timeout=stop_timeout)
        if (user is None) != (password is None):
            raise ValueError("give both user and password, or neither")
        self.tinyproxy_bin = tinyproxy_bin or find_binary("tinyproxy")
        self.user = user
        self.password = password
        self.config_file = self.dir / "tinyproxy.conf"
        self.port = 0

    def url(self, with_auth: bool = True) -> str:
        """``http://[user:password@]127.0.0.1:PORT``."""
        auth = f"{self.user}:{self.password}@" if with_auth and self.user else ""
        return f"http://{auth}{self.host}:{self.port}"

    def requests(self) -> list[tuple[str, str]]:
        """(method, target) of every request logged so far, e.g. ``("PUT",
        "http://localhost:8333/bucket/key")`` or ``("CONNECT", "localhost:8443")``."""
        try:
            text = self.log_file.read_text("utf-8", "replace")
        except OSError:
            return []
        return [(m.group(1), m.group(2)) for m in _PROXY_REQUEST_RE.finditer(text)]

    def _assign_ports(self) -> list[int]:
        self.port = free_port()
        return [self.port]

    def _before_start(self) -> None:
        lines = [
            f"Port {self.port}",
            f"Listen {self.host}",
            f"Allow {self.host}",
            "Timeout 60",
            "MaxClients 200",
            "LogLevel Info",
            "DisableViaHeader Yes",
        ]  # no ConnectPort line: CONNECT to any port
        if self.user and self.password:
            lines.append(f"BasicAuth {self.user} {self.password}")
        self.config_file.write_text("\n".join(lines) + "\n")
        self.config_file.chmod(0o600)

    def _command(self) -> list[str]:
        # -d: stay in the foreground and log to stderr (the server log)
        return [self.tinyproxy_bin, "-d", "-c", str(self.config_file)]

    def _probe(self) -> bool:
        with socket.create_connection((self.host, self.port), timeout=1):
            return True


# --------------------------------------------------------------------------- MariaDB


class MariaDBServer(ManagedServer):
    """Debian's ``mariadbd`` on 127.0.0.1:``port`` with a private data dir, socket and
    pid file (``mariadb-install-db`` on first start; ``--no-defaults``, so no system
    my.cnf is read).  A user ``user``/``password`` may do everything; :meth:`create_database`
    makes a fresh database.  With ``ca``, TLS is on (the CA's server certificate);
    :meth:`create_user` with ``require_ssl`` makes a user that must use it.  Never
    the server that may already listen on 3306."""

    name = "mariadb"

    def __init__(
        self,
        workdir: str | os.PathLike[str] | None = None,
        *,
        user: str = "objstore",
        password: str | None = None,
        ca: TestCA | None = None,
        extra_args: Sequence[str] = (),
        startup_timeout: float = 60.0,
        stop_timeout: float = DEFAULT_STOP_TIMEOUT,
    ) -> None:
        super().__init__(workdir, startup_timeout=startup_timeout, stop_timeout=stop_timeout)
        self.mariadbd = find_binary("mariadbd")
        self.install_db = find_binary("mariadb-install-db")
        self.user = user
        self.password = password or f"db-{secrets.token_hex(12)}"
        self.ca = ca
        self.extra_args = list(extra_args)
        self.port = 0
        self.data_dir = self.dir / "data"
        self.socket = self.dir / "mariadb.sock"
        self._user_made = False

    def _assign_ports(self) -> list[int]:
        self.port = free_port()
        return [self.port]

    def _root_args(self) -> list[str]:
        return ["--user=root"] if os.geteuid() == 0 else []

    def _before_start(self) -> None:
        if (self.data_dir / "mysql").is_dir():
            return
        with open(self.log_file, "ab") as log:
            subprocess.run(
                [self.install_db, "--no-defaults", f"--datadir={self.data_dir}",
                 "--auth-root-authentication-method=normal", "--skip-test-db",
                 "--skip-name-resolve", *self._root_args()],
                cwd=self.dir, env=self._env(), stdin=subprocess.DEVNULL, stdout=log,
                stderr=subprocess.STDOUT, check=True, timeout=120,
            )  # fmt: skip

    def _command(self) -> list[str]:
        return [
            self.mariadbd, "--no-defaults", f"--datadir={self.data_dir}",
            f"--port={self.port}", f"--bind-address={self.host}", f"--socket={self.socket}",
            f"--pid-file={self.dir / 'mariadb.pid'}", f"--tmpdir={self._tmpdir}",
            "--skip-name-resolve", "--skip-log-bin", "--innodb-buffer-pool-size=16M",
            "--performance-schema=off", *self._root_args(), *self._tls_args(),
            *self.extra_args,
        ]  # fmt: skip

    def _tls_args(self) -> list[str]:
        if self.ca is None:
            return []
        return [f"--ssl-cert={self.ca.cert_file}", f"--ssl-key={self.ca.key_file}",
                f"--ssl-ca={self.ca.ca_file}"]  # fmt: skip

    def connect(self, database: str | None = None, **kw: Any) -> Any:
        """A PyMySQL connection as the test user (over TCP), autocommit."""
        import pymysql

        args: dict[str, Any] = {
            "host": self.host, "port": self.port, "user": self.user,
            "password": self.password, "database": database, "autocommit": True,
            "connect_timeout": 5,
        }  # fmt: skip
        args.update(kw)
        return pymysql.connect(**args)

    def _probe(self) -> bool:
        import pymysql

        root = pymysql.connect(unix_socket=str(self.socket), user="root", connect_timeout=2)
        try:
            with root.cursor() as cur:
                if not self._user_made:
                    for host in ("127.0.0.1", "localhost"):
                        cur.execute(
                            "CREATE USER IF NOT EXISTS %s@%s IDENTIFIED BY %s",
                            (self.user, host, self.password),
                        )
                        cur.execute(f"GRANT ALL ON *.* TO '{self.user}'@'{host}' WITH GRANT OPTION")
                    self._user_made = True
                cur.execute("SELECT 1")
                return bool(cur.fetchone())
        finally:
            root.close()

    def create_user(self, name: str, password: str, *, require_ssl: bool = False) -> None:
        """Another user who may do everything (``require_ssl``: only over TLS)."""
        conn = self.connect()
        try:
            with conn.cursor() as cur:
                for host in ("127.0.0.1", "localhost"):
                    cur.execute(
                        "CREATE USER IF NOT EXISTS %s@%s IDENTIFIED BY %s", (name, host, password)
                    )
                    cur.execute(f"GRANT ALL ON *.* TO '{name}'@'{host}'"
                                + (" REQUIRE SSL" if require_ssl else ""))  # fmt: skip
        finally:
            conn.close()

    def create_database(self, name: str | None = None) -> str:
        """A new empty database (``name`` or a unique one); returns its name."""
        name = name or f"seafile_{secrets.token_hex(6)}"
        conn = self.connect()
        try:
            with conn.cursor() as cur:
                cur.execute(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4")
        finally:
            conn.close()
        return name


# --------------------------------------------------------------------------- rclone client


class RcloneClient:
    """The ``rclone`` binary as an independent S3 client (one ``s3`` remote).

    Created by :func:`rclone_client_remote`. Each call runs one rclone process
    with its own config/cache dir; failures raise ``subprocess.CalledProcessError``
    carrying rclone's stderr.
    """

    remote = "s3test"

    def __init__(
        self,
        workdir: Path,
        config_file: Path,
        ca_file: Path | None,
        rclone_bin: str,
        timeout: float,
        owns_dir: bool,
    ) -> None:
        self.dir = workdir
        self.config_file = config_file
        self.ca_file = ca_file
        self.rclone_bin = rclone_bin
        self.timeout = timeout
        self._owns_dir = owns_dir

    def _path(self, bucket: str, key: str = "") -> str:
        return f"{self.remote}:{bucket}/{key}" if key else f"{self.remote}:{bucket}"

    def run(self, *args: str, input: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
        """Run ``rclone ARGS`` with this remote's config; raises on non-zero exit."""
        home = self.dir / "home"
        home.mkdir(exist_ok=True)
        cmd = [
            self.rclone_bin,
            "--config",
            str(self.config_file),
            "--cache-dir",
            str(self.dir / "cache"),
            "--retries",
            "1",
            "--low-level-retries",
            "1",
            "--contimeout",
            "10s",
            "--timeout",
            "60s",
        ]
        if self.ca_file is not None:
            cmd += ["--ca-cert", str(self.ca_file)]
        cmd += list(args)
        env = server_env(
            {
                "RCLONE_CONFIG": str(self.config_file),
                "HOME": str(home),
                "XDG_CONFIG_HOME": str(home),
                "XDG_CACHE_HOME": str(home),
                "TMPDIR": str(self.dir),
            }
        )
        proc = subprocess.run(
            cmd, input=input, capture_output=True, env=env, timeout=self.timeout, check=False
        )
        if proc.returncode != 0:
            raise subprocess.CalledProcessError(proc.returncode, cmd, proc.stdout, proc.stderr)
        return proc

    def cat(self, bucket: str, key: str) -> bytes:
        """Object body as bytes."""
        return self.run("cat", self._path(bucket, key)).stdout

    def rcat(self, bucket: str, key: str, data: bytes) -> None:
        """Upload ``data`` from stdin (multipart above rclone's streaming cutoff, 100 KiB)."""
        self.run("rcat", self._path(bucket, key), input=data)

    def lsf(self, bucket: str, prefix: str = "", recursive: bool = True) -> list[str]:
        """Object keys under ``prefix`` (relative to it), sorted."""
        args = ["lsf", self._path(bucket, prefix)]
        if recursive:
            args += ["-R", "--files-only"]
        out = self.run(*args).stdout.decode()
        return sorted(line for line in out.splitlines() if line)

    def close(self) -> None:
        """Delete the temp config dir if this object created it."""
        if self._owns_dir:
            _remove_owned_dir(self.dir)

    def __enter__(self) -> RcloneClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def rclone_client_remote(
    endpoint_url: str,
    access_key: str,
    secret_key: str,
    *,
    sse_customer_key: bytes | str | None = None,
    v2_auth: bool = False,
    ca_file: str | os.PathLike[str] | None = None,
    region: str = "us-east-1",
    workdir: str | os.PathLike[str] | None = None,
    rclone_bin: str | None = None,
    timeout: float = 120.0,
) -> RcloneClient:
    """Build a temp rclone config with one ``s3`` remote and return a client for it.

    Remote: ``provider = Other``, ``force_path_style = true``, the given endpoint
    and keys, ``no_check_bucket = true`` (buckets must exist). ``sse_customer_key``
    (32 bytes, or a 32-char str) turns on SSE-C (AES256); ``v2_auth`` uses SigV2;
    ``ca_file`` is passed as ``--ca-cert`` for HTTPS endpoints.
    """
    owns = workdir is None
    wd = Path(workdir) if workdir is not None else _new_workdir("rclone-client")
    wd.mkdir(parents=True, exist_ok=True)
    lines = [
        f"[{RcloneClient.remote}]",
        "type = s3",
        "provider = Other",
        "env_auth = false",
        f"access_key_id = {access_key}",
        f"secret_access_key = {secret_key}",
        f"endpoint = {endpoint_url}",
        f"region = {region}",
        "force_path_style = true",
        "no_check_bucket = true",
    ]
    if v2_auth:
        lines.append("v2_auth = true")
    if sse_customer_key is not None:
        raw = sse_customer_key.encode() if isinstance(sse_customer_key, str) else sse_customer_key
        if len(raw) != 32:
            raise ValueError("SSE-C key must be 32 bytes")
        lines += [
            "sse_customer_algorithm = AES256",
            f"sse_customer_key_base64 = {base64.b64encode(raw).decode()}",
        ]
    conf = wd / "rclone.conf"
    conf.write_text("\n".join(lines) + "\n")
    conf.chmod(0o600)
    (wd / "cache").mkdir(exist_ok=True)
    return RcloneClient(
        wd,
        conf,
        Path(ca_file) if ca_file is not None else None,
        rclone_bin or find_binary("rclone"),
        timeout,
        owns,
    )


_bucket_counter = itertools.count(1)


def unique_bucket_name(prefix: str = "t") -> str:
    """A new valid, lowercase S3 bucket name: ``<prefix>-<n>-<random>`` (<= 63 chars)."""
    clean = "".join(ch for ch in prefix.lower() if ch.isalnum() or ch == "-").strip("-") or "t"
    return f"{clean[:40]}-{next(_bucket_counter)}-{secrets.token_hex(5)}"


# --------------------------------------------------------------------------- name resolution

_resolution_lock = threading.Lock()


def _is_localhost_name(host: object) -> bool:
    if isinstance(host, bytes):
        host = host.decode("ascii", "replace")
    if not isinstance(host, str):
        return False
    h = host.rstrip(".").lower()
    return h == "localhost" or h.endswith(".localhost")


def patch_localhost_resolution() -> Callable[[], None]:
    """Make ``localhost`` and ``*.localhost`` resolve to 127.0.0.1 in this process.

    Wraps ``socket.getaddrinfo`` (used by urllib3/botocore, redis-py, ...), so
    virtual-hosted-style requests to ``bucket.s3.localhost:PORT`` reach the
    loopback server. Returns a function that undoes the patch.
    """
    with _resolution_lock:
        original = socket.getaddrinfo

        def getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
            if _is_localhost_name(host):
                host = LOOPBACK
            return original(host, *args, **kwargs)

        getaddrinfo.__wrapped__ = original  # type: ignore[attr-defined]
        socket.getaddrinfo = getaddrinfo

    def undo() -> None:
        with _resolution_lock:
            if socket.getaddrinfo is getaddrinfo:
                socket.getaddrinfo = original

    return undo


@contextlib.contextmanager
def localhost_resolution() -> Iterator[None]:
    """Context-manager form of :func:`patch_localhost_resolution`."""
    undo = patch_localhost_resolution()
    try:
        yield
    finally:
        undo()
