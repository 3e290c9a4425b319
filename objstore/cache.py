"""Read-through object cache: Redis or memcached, plus an optional in-process tier.

:class:`CachedDriver` wraps any driver (``build_driver`` wraps the kinds listed in
the cache config, commit and fs by default, never blocks unless asked).  Objects
are immutable and content-addressed, so a cached copy never has the wrong content;
what can go stale is existence (a deleted object, handled by invalidation), and
what can go wrong is a broken cache: every path below treats the cache as
optional, the backend is the source of truth.

Key format (the one place is :func:`key_prefix` / :meth:`CachedDriver.key`)::

    sfo1:<ns>:{<repo_id>}:<obj_id>     an object; the value is its stored bytes, verbatim
    sfo1:<ns>:{<repo_id>}:rm           a remove_repo tombstone (blocks cache fills)

``<ns>`` is the first 10 hex digits of ``sha1("<kind>\\n<identity>")`` (plus
``"\\nhmac-sha256"`` with a secret) where kind is
``commits``/``fs``/``blocks`` and identity is the backend's ``cache_identity``: its
secret-free location (``file:///data/storage/fs``, ``s3://host/bucket/prefix``), plus
a fingerprint of the SSE-C key if any, so a store with the wrong key never gets a
hit for objects it could not read: two installations, or
two kinds, sharing one Redis never see each other's entries, and an operator can
flush one store's namespace without touching anyone else's.  The braces are a
Redis Cluster hash tag: all keys of one repo live in one slot, so ``get_many`` is
one MGET on one node and the fill script can check the tombstone atomically.  A
key is 95 bytes (Seafile's ``<repo_id>-<obj_id>`` is 77 and names neither kind nor
store).  ``sfo1`` is the format version: a change of value format bumps it.

Values: the stored bytes, verbatim; with a ``cache_secret``, ``HMAC-SHA256(secret,
key NUL bytes) || bytes`` (:func:`seal`), under a namespace of its own (so values
with and without a tag never meet).  The tag binds the bytes to the full key
(kind, store, repo, object): whoever can write to the cache but lacks the secret
cannot forge or move a value.

Reads: local tier -> cache -> backend.  A cached value is only returned after its
tag (with a secret) and then its object id were checked (see :func:`hit_is_valid`;
bytes this process already checked are recognised by a digest, see
:class:`VerifiedMemo`); a mismatch is counted, deleted and refetched.  Without a
secret the id check is all: it covers every byte of blocks and fs objects, but of a
commit only root_id, creator, creator_name, description and ctime.  Misses of one
object share one backend fetch (single-flight).  Only objects that pass
:func:`objstore.formats.verify_object` and fit the server's item limit are cached.

Failures: any error talking to the cache is counted, logged at most every 30 s,
and the read goes to the backend; connection-level errors open a circuit breaker
(the cache is skipped, then probed again after 1 s, doubling up to 30 s).
Invalidations that could not be delivered while the cache was down are kept
(up to 100 000 keys) and replayed before the cache is used again.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import logging
import os
import queue
import socket
import threading
import time
import urllib.parse
import weakref
import zlib
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from .config import CacheConfig, MemcachedConfig, RedisConfig
from .drivers.base import Driver, WrappingDriver
from .errors import BackendUnavailable
from .formats import verify_object
from .ids import ObjKind
from .retry import RetryPolicy

log = logging.getLogger("objstore.cache")

KEY_VERSION = "sfo1"
TOMBSTONE_TTL = 900
"""Seconds a remove_repo tombstone outlives the removal: longer than any backend
read that started before it (S3 read timeout x retries)."""

PENDING_MAX = 100_000
"""Invalidations kept while the cache is unreachable; beyond that, a warning."""

_BATCH = 1000
_FLUSH_PASSES = 5
"""At most this many scans per flush where a scan can miss keys (memcached)."""
_LOG_EVERY = 30.0
_ENTRY_OVERHEAD = 100  # bytes charged per local-tier entry on top of key and value
_MEMCACHED_ITEM_OVERHEAD = 64  # memcached's item header, charged against item_limit
_REDIS_VALUE_LIMIT = 512 * 1024 * 1024  # proto-max-bulk-len default
_MEMCACHED_MAX_RELATIVE_TTL = 30 * 24 * 3600  # larger expiries are unix times


# --------------------------------------------------------------------------- keys


def namespace(kind: ObjKind, identity: str, authenticated: bool = False) -> str:
    """10 hex digits naming one store (kind + backend location, and whether values
    carry an HMAC tag) in a shared cache."""
    text = f"{kind.value}\n{identity}" + ("\nhmac-sha256" if authenticated else "")
    return hashlib.sha1(text.encode()).hexdigest()[:10]


def key_prefix(kind: ObjKind, identity: str, authenticated: bool = False) -> str:
    """``sfo1:<ns>:``: every key of this store starts with it."""
    return f"{KEY_VERSION}:{namespace(kind, identity, authenticated)}:"


# --------------------------------------------------------------------------- values

MAC_SIZE = 32


def _mac(secret: bytes, key: str, data: bytes) -> bytes:
    return hmac.digest(secret, key.encode() + b"\0" + data, "sha256")


def seal(secret: bytes, key: str, data: bytes) -> bytes:
    """The cached value of ``data`` under ``key`` with a secret: its tag, then the bytes."""
    return _mac(secret, key, data) + data


def unseal(secret: bytes, key: str, value: bytes) -> bytes | None:
    """The bytes of a sealed value, or None if its tag does not match ``key`` and them."""
    if len(value) < MAC_SIZE:
        return None
    data = value[MAC_SIZE:]
    return data if hmac.compare_digest(value[:MAC_SIZE], _mac(secret, key, data)) else None


def repo_prefix(prefix: str, repo_id: str) -> str:
    """``sfo1:<ns>:{<repo_id>}:``: every key of one repo starts with it."""
    return f"{prefix}{{{repo_id}}}:"


def tombstone_key(prefix: str, repo_id: str) -> str:
    return f"{prefix}{{{repo_id}}}:rm"


# --------------------------------------------------------------------------- hit check


def hit_is_valid(kind: ObjKind, obj_id: str, data: bytes) -> bool:
    """Whether bytes read from the cache are object ``obj_id``.

    For fs objects of repo version >= 1 (zlib JSON, the hot case) this checks that
    ``data`` is one complete zlib stream whose inflated bytes hash to the id: the
    same id check :func:`verify_object` makes, without its JSON parse (which costs
    as much as a cache round trip).  The JSON needs no second look: only bytes that
    passed ``verify_object`` are ever written under our keys, and no other text has
    that sha1.  Everything else goes through ``verify_object``.
    """
    if kind is ObjKind.FS and data[:1] not in (b"\x00", b""):
        try:
            inflater = zlib.decompressobj()
            text = inflater.decompress(data)
        except zlib.error:
            return False
        return (
            inflater.eof and not inflater.unused_data and hashlib.sha1(text).hexdigest() == obj_id
        )
    try:
        verify_object(kind, obj_id, data)
    except Exception:  # CorruptObject, or anything garbage may provoke
        return False
    return True


def _is_verified(kind: ObjKind, obj_id: str, data: bytes) -> bool:
    try:
        verify_object(kind, obj_id, data)
    except Exception:
        return False
    return True


class VerifiedMemo:
    """The ``sha1(obj_id + bytes)`` digests of (id, bytes) pairs this process has
    already checked, so the check of a repeated hit costs one sha1 over the stored
    bytes (about 2 us) instead of an inflate and a sha1 (fs, 5-35 us) or a JSON
    parse (commits).  Sound because content-addressing makes "these bytes are object
    X" a timeless fact, and a digest cannot be matched by other bytes.  Two
    generations, at most ``capacity`` digests in all (about 90 bytes each); thread
    safe without a lock (a racing rotation at worst forgets a digest)."""

    def __init__(self, capacity: int = 65536) -> None:
        self._half = max(1, capacity // 2)
        self._new: set[bytes] = set()
        self._old: set[bytes] = set()

    def __len__(self) -> int:
        return len(self._new) + len(self._old)

    def check(self, kind: ObjKind, obj_id: str, data: bytes) -> bool:
        """True if ``data`` is object ``obj_id`` (see :func:`hit_is_valid`)."""
        digest = hashlib.sha1(obj_id.encode() + data).digest()
        if digest in self._new:
            return True
        if digest in self._old or hit_is_valid(kind, obj_id, data):
            self._add(digest)
            return True
        return False

    def remember(self, obj_id: str, data: bytes) -> None:
        """Record bytes that just passed :func:`verify_object`."""
        self._add(hashlib.sha1(obj_id.encode() + data).digest())

    def _add(self, digest: bytes) -> None:
        new = self._new
        new.add(digest)
        if len(new) >= self._half:
            self._old, self._new = new, set()


# --------------------------------------------------------------------------- local tier


class LocalTier:
    """In-process LRU of verified objects, bounded by bytes (value + key + 100 per
    entry), each entry dropped ``max_age`` seconds after it was stored.  Reads take
    no lock; writes do.  Not shared between processes: another process's delete is
    only seen here when the entry ages out."""

    def __init__(
        self, max_bytes: int, max_age: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.max_bytes = max_bytes
        self.max_age = max_age
        self._clock = clock
        self._items: OrderedDict[str, tuple[bytes, float]] = OrderedDict()
        self._lock = threading.Lock()
        self.size = 0

    def __len__(self) -> int:
        return len(self._items)

    def get(self, key: str) -> bytes | None:
        entry = self._items.get(key)
        if entry is None:
            return None
        if entry[1] <= self._clock():
            self.discard(key)
            return None
        with contextlib.suppress(KeyError):  # evicted meanwhile by another thread
            self._items.move_to_end(key)
        return entry[0]

    def put(self, key: str, data: bytes) -> None:
        cost = len(data) + len(key) + _ENTRY_OVERHEAD
        if cost * 4 > self.max_bytes:  # one object may not wipe out the tier
            return
        expires = self._clock() + self.max_age
        with self._lock:
            old = self._items.pop(key, None)
            if old is not None:
                self.size -= len(old[0]) + len(key) + _ENTRY_OVERHEAD
            self._items[key] = (data, expires)
            self.size += cost
            while self.size > self.max_bytes:
                k, (d, _) = self._items.popitem(last=False)
                self.size -= len(d) + len(k) + _ENTRY_OVERHEAD

    def discard(self, key: str) -> None:
        with self._lock:
            old = self._items.pop(key, None)
            if old is not None:
                self.size -= len(old[0]) + len(key) + _ENTRY_OVERHEAD

    def discard_prefix(self, prefix: str) -> None:
        with self._lock:
            for key in [k for k in self._items if k.startswith(prefix)]:
                data, _ = self._items.pop(key)
                self.size -= len(data) + len(key) + _ENTRY_OVERHEAD

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
            self.size = 0


# --------------------------------------------------------------------------- cache servers


class Remote:
    """One cache service (Redis or a memcached pool).  Methods raise the client
    library's errors; :class:`CachedDriver` decides what they mean."""

    name: str
    """``redis 127.0.0.1:6379`` / ``memcached h1:11211,h2:11211`` (no secrets)."""
    value_limit: int
    """Largest value (for a 95-byte key) the server accepts; larger ones are skipped."""
    get: Callable[[str], bytes | None]
    """The hot path: one GET (as lean as the client allows)."""

    def mget(self, keys: list[str]) -> list[bytes | None]:
        raise NotImplementedError

    def fill(self, tombstone: str, items: list[tuple[str, bytes]], ttl: int) -> bool:
        """Store ``items`` unless ``tombstone`` exists; False if it does."""
        raise NotImplementedError

    def set_tombstone(self, tombstone: str, ttl: int) -> None:
        raise NotImplementedError

    def delete(self, keys: list[str]) -> None:
        raise NotImplementedError

    def probe(self) -> None:
        """Raise unless the service answers."""
        raise NotImplementedError

    scan_misses: bool = False
    """Whether :meth:`scan` can miss keys present throughout it (memcached's
    metadump can: items moving between LRU segments during the crawl)."""

    def scan(self, prefix: str) -> Iterator[list[tuple[str, int]]]:
        """Batches of ``(key, size)`` of every key starting with ``prefix``."""
        raise NotImplementedError

    def server_stats(self) -> dict[str, dict[str, object]]:
        """Server-wide figures, per server."""
        raise NotImplementedError

    def is_outage(self, exc: BaseException) -> bool:
        """True for errors that say the service is unreachable or talking garbage
        (open the breaker); False for per-request refusals (out of memory...)."""
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError


_FILL_LUA = """
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
local ttl = tonumber(ARGV[1])
for i = 2, #KEYS do
  if ttl > 0 then
    redis.call('SET', KEYS[i], ARGV[i], 'EX', ttl)
  else
    redis.call('SET', KEYS[i], ARGV[i])
  end
end
return 1
"""


def _call_if_alive(ref: weakref.WeakMethod[Callable[[], None]]) -> None:
    method = ref()
    if method is not None:
        method()


class RedisRemote(Remote):
    """A Redis server or cluster.  Short socket timeouts, one immediate retry on a
    dropped connection (a pooled socket outliving a restart), never on timeouts."""

    def __init__(self, cfg: RedisConfig) -> None:
        import redis
        from redis.backoff import NoBackoff
        from redis.retry import Retry

        self._redis = redis
        self.cluster = cfg.cluster
        self.name = f"redis {cfg.host}:{cfg.port}{' (cluster)' if cfg.cluster else ''}"
        self.value_limit = _REDIS_VALUE_LIMIT
        common: dict[str, Any] = {
            "password": cfg.password.reveal() if cfg.password else None,
            "socket_timeout": cfg.timeout,
            "socket_connect_timeout": cfg.timeout,
            "socket_keepalive": True,
            "retry": Retry(NoBackoff(), 1, supported_errors=(redis.ConnectionError,)),
            "client_name": "objstore-cache",
        }
        client: Any
        if cfg.cluster:
            from redis.cluster import RedisCluster

            client = RedisCluster(
                host=cfg.host, port=cfg.port, max_connections=cfg.max_connections, **common
            )
        else:
            pool = redis.BlockingConnectionPool(  # type: ignore[no-untyped-call]
                host=cfg.host,
                port=cfg.port,
                db=cfg.db,
                max_connections=cfg.max_connections,
                timeout=cfg.timeout,
                **common,
            )
            client = redis.Redis(connection_pool=pool)
        self.client = client
        self.mget = client.mget  # type: ignore[method-assign]
        self._fill = client.register_script(_FILL_LUA)
        self._pool = None if cfg.cluster else client.connection_pool
        # at most max_connections commands at once (a token each, waited for up to
        # the timeout, as the pool would); idle connections reused last-in first-out
        self._token_count = max(cfg.max_connections, 1)
        self._forget_connections()
        self._token_timeout = cfg.timeout
        after_fork = weakref.WeakMethod(self._forget_connections)
        os.register_at_fork(after_in_child=lambda: _call_if_alive(after_fork))

    def _forget_connections(self) -> None:
        """All tokens free, no connection: at start, and in a forked child, whose
        inherited sockets belong to the parent's conversations."""
        self._tokens: queue.SimpleQueue[None] = queue.SimpleQueue()
        for _ in range(self._token_count):
            self._tokens.put(None)
        self._idle: list[Any] = []
        self._idle_lock = threading.Lock()

    def get(self, key: str) -> bytes | None:  # type: ignore[override]
        """One GET: the hot path of every read (see :meth:`_command`)."""
        if self._pool is None:
            cluster_value: bytes | None = self.client.get(key)
            return cluster_value
        value: bytes | None = self._command("GET", key)
        return value

    def fill(self, tombstone: str, items: list[tuple[str, bytes]], ttl: int) -> bool:
        keys = [tombstone, *(k for k, _ in items)]
        args: list[Any] = [ttl, *(v for _, v in items)]
        if self._pool is None:
            return bool(self._fill(keys=keys, args=args))
        try:
            return bool(self._command("EVALSHA", self._fill.sha, len(keys), *keys, *args))
        except self._redis.exceptions.NoScriptError:
            return bool(self._command("EVAL", _FILL_LUA, len(keys), *keys, *args))

    def _command(self, *args: Any) -> Any:
        """One command on a connection of our own, made with the pool's settings:
        the client's per-command layers and the pool's per-checkout checks cost
        more CPU than the command.  At most ``max_connections`` at once (else
        ConnectionError after the timeout).  A connection with anything unread
        is reset.  When the server dropped the connection, every idle one is
        suspect (a restart): they are closed and dropped, and the command is sent
        once more (as the client retries once)."""
        assert self._pool is not None
        try:
            self._tokens.get(timeout=self._token_timeout)
        except queue.Empty:
            raise self._redis.ConnectionError("no free cache connection") from None
        conn = None
        try:
            with self._idle_lock:
                conn = self._idle.pop() if self._idle else None
            if conn is None:
                conn = self._redis.Connection(**self._pool.connection_kwargs)  # type: ignore[no-untyped-call]
            for attempt in (1, 2):
                try:
                    # a stale answer is dropped; a connection the server closed raises
                    if conn._sock is not None and conn.can_read():
                        conn.disconnect()
                    conn.send_command(*args)
                    return conn.read_response()
                except self._redis.ConnectionError:
                    conn.disconnect()
                    if attempt == 2:
                        raise
                    self._reset_idle()
                except BaseException:
                    conn.disconnect()
                    raise
            raise AssertionError("unreachable")  # pragma: no cover
        finally:
            if conn is not None:
                with self._idle_lock:
                    self._idle.append(conn)
            self._tokens.put(None)

    def _reset_idle(self) -> None:
        """Close and drop every idle connection."""
        with self._idle_lock:
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.disconnect()

    def set_tombstone(self, tombstone: str, ttl: int) -> None:
        self.client.set(tombstone, b"1", ex=ttl)

    def delete(self, keys: list[str]) -> None:
        for i in range(0, len(keys), _BATCH):
            self.client.delete(*keys[i : i + _BATCH])

    def probe(self) -> None:
        self.client.ping()

    def scan(self, prefix: str) -> Iterator[list[tuple[str, int]]]:
        batch: list[str] = []
        for raw in self.client.scan_iter(match=prefix + "*", count=_BATCH):
            batch.append(raw.decode() if isinstance(raw, bytes) else raw)
            if len(batch) >= _BATCH:
                yield self._sizes(batch)
                batch = []
        if batch:
            yield self._sizes(batch)

    def _sizes(self, keys: list[str]) -> list[tuple[str, int]]:
        pipe = self.client.pipeline(transaction=False)
        for key in keys:
            pipe.strlen(key)
        return list(zip(keys, (int(n) for n in pipe.execute())))

    def server_stats(self) -> dict[str, dict[str, object]]:
        if self.cluster:  # every primary (a plain info() asks one random node)
            info = self.client.info(target_nodes=self.client.PRIMARIES)
            nodes = info if "redis_version" not in info else {"": info}  # one primary: flat
        else:
            nodes = {"": self.client.info()}
        wanted = (
            "redis_version",
            "used_memory",
            "maxmemory",
            "maxmemory_policy",
            "keyspace_hits",
            "keyspace_misses",
            "evicted_keys",
            "connected_clients",
        )
        return {
            node or self.name.split(" ", 1)[1]: {k: v.get(k) for k in wanted if k in v}
            for node, v in nodes.items()
        }

    def is_outage(self, exc: BaseException) -> bool:
        # OOM, READONLY, WRONGTYPE: this request failed, the service is up
        return not isinstance(exc, self._redis.ResponseError)

    def close(self) -> None:
        self._reset_idle()
        self.client.close()


class _Rendezvous:
    """Highest-random-weight hashing for pymemcache's HashClient, with blake2b
    instead of its pure-Python murmur3 (about 20x faster per key)."""

    def __init__(self) -> None:
        self.nodes: list[str] = []

    def add_node(self, node: str) -> None:
        if node not in self.nodes:
            self.nodes.append(node)

    def remove_node(self, node: str) -> None:
        if node in self.nodes:
            self.nodes.remove(node)

    def get_node(self, key: str | bytes) -> str | None:
        raw = key.encode() if isinstance(key, str) else key
        best, best_score = None, -1
        for node in self.nodes:
            score = int.from_bytes(
                hashlib.blake2b(raw, digest_size=8, key=node.encode()[:64]).digest(), "big"
            )
            if score > best_score:
                best, best_score = node, score
        return best


class MemcachedRemote(Remote):
    """One memcached server (a pooled client) or several (pymemcache's HashClient:
    consistent hashing; a server that fails is taken out of the ring at once and
    retried after 30 s, its keys going to the others meanwhile)."""

    DEAD_RETRY = 30.0

    def __init__(self, cfg: MemcachedConfig) -> None:
        from pymemcache import exceptions as mexc
        from pymemcache.client.base import PooledClient
        from pymemcache.client.hash import HashClient

        self._exc = mexc
        self.servers = list(cfg.servers)
        self.timeout = cfg.timeout
        self.name = "memcached " + ",".join(f"{h}:{p}" for h, p in cfg.servers)
        self.value_limit = cfg.item_limit - _MEMCACHED_ITEM_OVERHEAD - 100
        kw: dict[str, Any] = {
            "connect_timeout": cfg.timeout,
            "timeout": cfg.timeout,
            "no_delay": True,
            "max_pool_size": cfg.pool_max,
            "default_noreply": False,
        }
        client: Any
        if len(cfg.servers) == 1:
            client = PooledClient(cfg.servers[0], **kw)
        else:
            client = HashClient(
                list(cfg.servers),
                hasher=_Rendezvous,
                use_pooling=True,
                retry_attempts=0,
                dead_timeout=self.DEAD_RETRY,
                ignore_exc=False,
                **kw,
            )
        self.client = client
        self.get = client.get

    def mget(self, keys: list[str]) -> list[bytes | None]:
        found = self.client.get_many(keys)
        return [found.get(k) for k in keys]

    def fill(self, tombstone: str, items: list[tuple[str, bytes]], ttl: int) -> bool:
        if self.client.get(tombstone) is not None:
            return False
        # with replies: once fill returns, every connection sees the entries
        self.client.set_many(dict(items), expire=self._expire(ttl), noreply=False)
        return True

    def set_tombstone(self, tombstone: str, ttl: int) -> None:
        self.client.set(tombstone, b"1", expire=self._expire(ttl), noreply=False)

    @staticmethod
    def _expire(ttl: int) -> int:
        # memcached reads expiries over 30 days as unix timestamps
        return int(time.time()) + ttl if ttl > _MEMCACHED_MAX_RELATIVE_TTL else ttl

    def delete(self, keys: list[str]) -> None:
        """Waits for the replies: when it returns, no reader can hit the keys.  With
        several servers, one pipelined batch per server (HashClient's own
        delete_many sends one key per round trip)."""
        pick = getattr(self.client, "_get_client", None)
        for i in range(0, len(keys), _BATCH):
            batch = keys[i : i + _BATCH]
            if pick is None:
                self.client.delete_many(batch, noreply=False)
                continue
            per_server: dict[int, tuple[Any, list[str]]] = {}
            for key in batch:
                node = pick(key)
                if node is None:
                    raise ConnectionError(f"{self.name}: no server available")
                per_server.setdefault(id(node), (node, []))[1].append(key)
            for node, node_keys in per_server.values():
                node.delete_many(node_keys, noreply=False)

    def probe(self) -> None:
        self.client.get(f"{KEY_VERSION}:probe")

    scan_misses = True

    def scan(self, prefix: str) -> Iterator[list[tuple[str, int]]]:
        """Keys from ``lru_crawler metadump all`` on every server (memcached >= 1.4.31):
        best effort, an item moved between LRU segments during the crawl is missed."""
        want = prefix.encode()
        for host, port in self.servers:
            batch: list[tuple[str, int]] = []
            for key, size in _metadump(host, port, max(self.timeout, 10.0)):
                if key.startswith(want):
                    batch.append((key.decode(), size))
                    if len(batch) >= _BATCH:
                        yield batch
                        batch = []
            if batch:
                yield batch

    def server_stats(self) -> dict[str, dict[str, object]]:
        from pymemcache.client.base import Client

        out: dict[str, dict[str, object]] = {}
        wanted = (
            "version",
            "curr_items",
            "bytes",
            "limit_maxbytes",
            "get_hits",
            "get_misses",
            "evictions",
            "curr_connections",
        )
        for host, port in self.servers:
            c = Client((host, port), connect_timeout=self.timeout, timeout=max(self.timeout, 5.0))
            try:
                raw = c.stats()
            finally:
                c.close()
            stats = {(k.decode() if isinstance(k, bytes) else k): v for k, v in raw.items()}
            out[f"{host}:{port}"] = {
                k: (v.decode() if isinstance(v, bytes) else v)
                for k, v in stats.items()
                if k in wanted
            }
        return out

    def is_outage(self, exc: BaseException) -> bool:
        m = self._exc
        if isinstance(exc, (OSError, m.MemcacheUnexpectedCloseError, m.MemcacheUnknownError)):
            return True
        # HashClient's "All servers seem to be down right now" is an outage;
        # SERVER_ERROR out of memory, an exhausted pool... are not
        return isinstance(exc, m.MemcacheError) and "down" in str(exc)

    def close(self) -> None:
        self.client.close()


def _metadump(host: str, port: int, timeout: float) -> Iterator[tuple[bytes, int]]:
    """``(key, item size)`` of every item on one memcached server."""
    with socket.create_connection((host, port), timeout=timeout) as sock:
        for attempt in range(20):
            sock.sendall(b"lru_crawler metadump all\r\n")
            buf = b""
            busy = False
            while True:
                chunk = sock.recv(65536)
                if not chunk:
                    raise ConnectionError(f"memcached {host}:{port} closed the connection")
                buf += chunk
                lines = buf.split(b"\n")  # metadump ends its lines with \n, END with \r\n
                buf = lines.pop()
                for line in lines:
                    line = line.rstrip(b"\r")
                    if line == b"END":
                        return
                    if line.startswith(b"BUSY"):
                        busy = True
                        break
                    if line.startswith((b"ERROR", b"CLIENT_ERROR", b"SERVER_ERROR")):
                        raise ConnectionError(
                            f"memcached {host}:{port} refused metadump: {line.decode()[:80]}"
                        )
                    fields = dict(f.split(b"=", 1) for f in line.split(b" ") if b"=" in f)
                    if b"key" in fields:
                        key = urllib.parse.unquote_to_bytes(fields[b"key"])
                        yield key, int(fields.get(b"size", b"0"))
                if busy:
                    break
            time.sleep(0.1 * (attempt + 1))
        raise ConnectionError(f"memcached {host}:{port}: lru crawler stayed busy")


def make_remote(cfg: CacheConfig) -> Remote:
    """A new client for the configured cache service (connects lazily)."""
    if isinstance(cfg, RedisConfig):
        return RedisRemote(cfg)
    return MemcachedRemote(cfg)


# One client (and connection pool) per cache configuration, shared by the drivers
# of every kind, so max_connections / the memcached pool size hold per process.
_shared: dict[Hashable, list[Any]] = {}
_shared_lock = threading.Lock()


def _acquire_remote(cfg: CacheConfig) -> Remote:
    with _shared_lock:
        entry = _shared.get(cfg)
        if entry is None:
            entry = _shared[cfg] = [make_remote(cfg), 0]
        entry[1] += 1
        remote: Remote = entry[0]
        return remote


def _release_remote(cfg: CacheConfig) -> None:
    with _shared_lock:
        entry = _shared.get(cfg)
        if entry is None:
            return
        entry[1] -= 1
        if entry[1] > 0:
            return
        del _shared[cfg]
    entry[0].close()


# --------------------------------------------------------------------------- the driver


class CachedDriver(WrappingDriver):
    """A driver with a read-through cache in front.

    * ``get``/``get_many``: local tier, then the cache (one GET / one MGET), then
      the backend; misses of one object share one backend fetch; fetched objects
      that verify and fit are stored in the cache (one script call / set_many per
      batch) and the local tier.
    * ``put``: the backend first, then the cache.  ``delete``/``remove_repo``: the
      backend, then invalidation.  Other methods go straight to the backend.
    * Never fails because of the cache: see the module docstring.

    ``stats()`` counts, since creation: hits (cache + local), misses, errors, bytes
    (served from cache + local), local_hits, local_bytes/local_items (current),
    corrupt (cached values that failed the id check), forged (cached values whose
    HMAC tag did not match: only with a secret), too_large, unverifiable
    (backend bytes that fail verify_object, never cached), coalesced (reads that
    joined another's fetch), fills, bypassed (reads while the breaker was open),
    breaker_open (0/1), pending_invalidations.  Counters are updated without locks
    and may miss an increment under heavy concurrency.

    ``retry_after``/``max_retry_after``: the breaker's back-off.  ``memo_entries``:
    size of the :class:`VerifiedMemo` (0: check every hit in full).
    """

    def __init__(
        self,
        inner: Driver,
        remote: Remote,
        *,
        expiry: int = 86400,
        local_cache_bytes: int = 0,
        local_cache_max_age: float = 300.0,
        retry_after: float = 1.0,
        max_retry_after: float = 30.0,
        memo_entries: int = 65536,
        on_close: Callable[[], None] | None = None,
        secret: bytes | None = None,
    ) -> None:
        super().__init__(inner)
        self.remote = remote
        self.expiry = expiry
        self._secret = secret
        self.prefix = key_prefix(inner.kind, inner.cache_identity, secret is not None)
        self._prefix_open = self.prefix + "{"
        self._local = (
            LocalTier(local_cache_bytes, local_cache_max_age) if local_cache_bytes > 0 else None
        )
        self._value_limit = remote.value_limit - (MAC_SIZE if secret is not None else 0)
        self._verified = VerifiedMemo(memo_entries) if memo_entries > 0 else None
        self._check = self._verified.check if self._verified is not None else hit_is_valid
        self._rget = remote.get
        self._on_close = on_close
        # breaker: 0.0 = closed; otherwise the monotonic time of the next probe
        self._open_until = 0.0
        self._probes = RetryPolicy(base_delay=retry_after, max_delay=max_retry_after)
        self._failed_probes = 0
        self._backoff = self._probes.delay(1)
        self._probe_lock = threading.Lock()
        self._pending: set[str] = set()
        self._pending_overflow = False
        self._pending_lock = threading.Lock()
        self._log_next = 0.0
        self._log_suppressed = 0
        # single-flight
        self._flights: dict[str, Future[bytes]] = {}
        self._flight_lock = threading.Lock()
        self._pool: ThreadPoolExecutor | None = None
        self._pool_lock = threading.Lock()
        self._removing: dict[str, float] = {}  # repo -> until (this process's remove_repo)
        # counters
        self._hits = self._misses = self._errors = self._bytes = 0
        self._local_hits = self._corrupt = self._forged = self._too_large = 0
        self._unverifiable = 0
        self._coalesced = self._fills = self._bypassed = 0

    @classmethod
    def create(cls, inner: Driver, cfg: CacheConfig) -> CachedDriver:
        """Wrap ``inner`` with the cache ``cfg`` describes (the client is shared
        with other drivers of the same config and closed with the last of them)."""
        remote = _acquire_remote(cfg)
        return cls(
            inner,
            remote,
            expiry=cfg.expiry,
            local_cache_bytes=cfg.local_cache_bytes,
            local_cache_max_age=cfg.local_cache_max_age,
            on_close=lambda: _release_remote(cfg),
            secret=cfg.secret.reveal().encode() if cfg.secret is not None else None,
        )

    def __repr__(self) -> str:
        return f"CachedDriver({self.remote.name} -> {self.inner!r})"

    def key(self, repo_id: str, obj_id: str) -> str:
        """The cache key of one object (see the module docstring)."""
        return f"{self._prefix_open}{repo_id}}}:{obj_id}"

    # ------------------------------------------------------------ reads

    def get(self, repo_id: str, obj_id: str) -> bytes:
        key = f"{self._prefix_open}{repo_id}}}:{obj_id}"
        local = self._local
        if local is not None:
            data = local.get(key)
            if data is not None:
                self._local_hits += 1
                self._bytes += len(data)
                return data
        if self._open_until and not self._cache_usable():
            self._bypassed += 1
            return self._load(repo_id, obj_id, key, False)
        try:
            data = self._rget(key)
        except Exception as exc:
            # a refusal for this key only (WRONGTYPE): the fill's SET repairs it
            outage = self._cache_failed(exc, "GET")
            return self._load(repo_id, obj_id, key, not outage)
        if data is not None:
            if self._secret is not None:
                data = unseal(self._secret, key, data)
            if data is not None and self._check(self.kind, obj_id, data):
                self._hits += 1
                self._bytes += len(data)
                if local is not None:
                    local.put(key, data)
                return data
            self._drop_corrupt([key], forged=data is None)
        self._misses += 1
        return self._load(repo_id, obj_id, key, True)

    def get_many(self, repo_id: str, obj_ids: Iterable[str]) -> dict[str, bytes]:
        """One MGET for the whole batch, the misses fetched concurrently (sharing
        fetches already in flight), then one cache fill.  NotFound if any is missing."""
        ids = list(dict.fromkeys(obj_ids))
        if not ids:
            return {}
        head = f"{self._prefix_open}{repo_id}}}:"
        out: dict[str, bytes] = {}
        todo = ids
        local = self._local
        if local is not None:
            todo = []
            for obj_id in ids:
                data = local.get(head + obj_id)
                if data is None:
                    todo.append(obj_id)
                else:
                    out[obj_id] = data
                    self._local_hits += 1
                    self._bytes += len(data)
            if not todo:
                return out
        use_cache = not self._open_until or self._cache_usable()
        missing = todo
        if use_cache:
            keys = [head + obj_id for obj_id in todo]
            try:
                values = self.remote.mget(keys)
            except Exception as exc:
                use_cache = not self._cache_failed(exc, "MGET")
            else:
                missing = []
                bad: list[str] = []
                forged: list[str] = []
                kind = self.kind
                check = self._check
                for obj_id, key, value in zip(todo, keys, values):
                    data = None if value is None else self._open_value(key, value)
                    if value is not None and data is None:
                        forged.append(key)
                    if data is not None and check(kind, obj_id, data):
                        out[obj_id] = data
                        self._hits += 1
                        self._bytes += len(data)
                        if local is not None:
                            local.put(key, data)
                    else:
                        if data is not None:
                            bad.append(key)
                        missing.append(obj_id)
                self._misses += len(missing)
                if bad:
                    self._drop_corrupt(bad)
                if forged:
                    self._drop_corrupt(forged, forged=True)
        else:
            self._bypassed += len(todo)
        if missing:
            out.update(self._load_many(repo_id, head, missing, use_cache))
        return out

    def _load(self, repo_id: str, obj_id: str, key: str, use_cache: bool) -> bytes:
        """A miss: fetch from the backend once for all concurrent readers, then fill."""
        with self._flight_lock:
            flight = self._flights.get(key)
            if flight is None:
                flight = self._flights[key] = Future()
                leader = True
            else:
                leader = False
                self._coalesced += 1
        if not leader:
            return flight.result()
        try:
            try:
                data = self.inner.get(repo_id, obj_id)
            except BaseException as exc:
                flight.set_exception(exc)
                raise
            flight.set_result(data)
            self._store(repo_id, [(obj_id, key, data)], use_cache)
            return data
        finally:
            with self._flight_lock:
                self._flights.pop(key, None)

    def _load_many(
        self, repo_id: str, head: str, obj_ids: list[str], use_cache: bool
    ) -> dict[str, bytes]:
        keys = {obj_id: head + obj_id for obj_id in obj_ids}
        led: list[str] = []
        joined: dict[str, Future[bytes]] = {}
        mine: dict[str, Future[bytes]] = {}
        with self._flight_lock:
            for obj_id, key in keys.items():
                flight = self._flights.get(key)
                if flight is None:
                    mine[obj_id] = self._flights[key] = Future()
                    led.append(obj_id)
                else:
                    joined[obj_id] = flight
            self._coalesced += len(joined)
        out: dict[str, bytes] = {}
        first_error: BaseException | None = None
        try:
            if len(led) == 1:
                fetched = [self._fetch(repo_id, led[0])]
            elif led:
                fetched = list(self._executor().map(lambda i: self._fetch(repo_id, i), led))
            else:
                fetched = []
            fill: list[tuple[str, str, bytes]] = []
            for obj_id, result in zip(led, fetched):
                if isinstance(result, BaseException):
                    mine[obj_id].set_exception(result)
                    first_error = first_error or result
                else:
                    mine[obj_id].set_result(result)
                    out[obj_id] = result
                    fill.append((obj_id, keys[obj_id], result))
            if fill:
                self._store(repo_id, fill, use_cache)
        finally:
            for flight in mine.values():
                if not flight.done():
                    flight.set_exception(BackendUnavailable("fetch interrupted"))
            with self._flight_lock:
                for obj_id in led:
                    self._flights.pop(keys[obj_id], None)
        for obj_id, flight in joined.items():
            try:
                out[obj_id] = flight.result()
            except BaseException as exc:
                first_error = first_error or exc
        if first_error is not None:
            raise first_error
        return out

    def _fetch(self, repo_id: str, obj_id: str) -> bytes | BaseException:
        try:
            return self.inner.get(repo_id, obj_id)
        except Exception as exc:
            return exc

    def _executor(self) -> ThreadPoolExecutor:
        pool = self._pool
        if pool is None:
            with self._pool_lock:
                pool = self._pool
                if pool is None:
                    workers = max(1, min(32, self.inner.properties.max_connections))
                    pool = self._pool = ThreadPoolExecutor(workers, "objstore-cache")
        return pool

    # ------------------------------------------------------------ filling

    def _store(self, repo_id: str, items: list[tuple[str, str, bytes]], use_cache: bool) -> None:
        """Cache objects just read from (or written to) the backend, if they verify
        and fit, unless the repo is being removed."""
        if self._removing and self._is_removing(repo_id):
            return
        kind = self.kind
        limit = self._value_limit
        ok: list[tuple[str, bytes]] = []
        for obj_id, key, data in items:
            if len(data) > limit:
                self._too_large += 1
            elif not _is_verified(kind, obj_id, data):
                self._unverifiable += 1
            else:
                ok.append((key, data))
                if self._verified is not None:
                    self._verified.remember(obj_id, data)
        if not ok:
            return
        filled = True
        if use_cache and (not self._open_until or self._cache_usable()):
            secret = self._secret
            values = ok if secret is None else [(k, seal(secret, k, d)) for k, d in ok]
            try:
                filled = self.remote.fill(tombstone_key(self.prefix, repo_id), values, self.expiry)
            except Exception as exc:
                self._cache_failed(exc, "SET")
            else:
                if filled:
                    self._fills += len(ok)
        local = self._local
        if local is not None and filled:
            for key, data in ok:
                local.put(key, data)

    def _is_removing(self, repo_id: str) -> bool:
        until = self._removing.get(repo_id)
        if until is None:
            return False
        if until > time.monotonic():
            return True
        self._removing.pop(repo_id, None)
        return False

    # ------------------------------------------------------------ writes

    def put(self, repo_id: str, obj_id: str, data: bytes) -> None:
        self.inner.put(repo_id, obj_id, data)
        self._store(repo_id, [(obj_id, self.key(repo_id, obj_id), data)], True)

    def delete(self, repo_id: str, obj_id: str) -> None:
        """Backend first, then the cache entry (a read that fetched the object just
        before the delete may still cache it afterwards: the bytes stay correct)."""
        self.inner.delete(repo_id, obj_id)
        self._invalidate([self.key(repo_id, obj_id)])

    def remove_repo(self, repo_id: str) -> None:
        """Tombstone the repo (fills of its objects are refused from now until
        15 min after the removal), delete the cache entries of every object the
        backend lists for it, then remove it from the backend.  A read that started
        before the removal cannot put an object back: its fill meets the tombstone."""
        tomb = tombstone_key(self.prefix, repo_id)
        self._removing[repo_id] = time.monotonic() + TOMBSTONE_TTL
        if self._local is not None:
            self._local.discard_prefix(repo_prefix(self.prefix, repo_id))
        self._set_tombstone(tomb)
        head = repo_prefix(self.prefix, repo_id)
        batch: list[str] = []
        for info in self.inner.list(repo_id):
            batch.append(head + info.obj_id)
            if len(batch) >= _BATCH:
                self._invalidate(batch)
                self._set_tombstone(tomb)
                batch = []
        if batch:
            self._invalidate(batch)
        self.inner.remove_repo(repo_id)
        self._set_tombstone(tomb)
        self._removing[repo_id] = time.monotonic() + TOMBSTONE_TTL

    def _set_tombstone(self, tomb: str) -> None:
        if self._open_until and not self._cache_usable():
            return
        try:
            self.remote.set_tombstone(tomb, TOMBSTONE_TTL)
        except Exception as exc:
            self._cache_failed(exc, "SET tombstone")

    def _invalidate(self, keys: list[str]) -> None:
        local = self._local
        if local is not None:
            for key in keys:
                local.discard(key)
        if not self._open_until or self._cache_usable():
            try:
                self.remote.delete(keys)
                if self._pending:  # left by a failure that was not an outage
                    self._replay_pending()
                return
            except Exception as exc:
                self._cache_failed(exc, "DELETE")
        self._defer(keys)

    def _defer(self, keys: list[str]) -> None:
        """Keep invalidations the cache could not take, for replay on recovery."""
        with self._pending_lock:
            room = PENDING_MAX - len(self._pending)
            self._pending.update(keys[: max(room, 0)])
            if len(keys) > room and not self._pending_overflow:
                self._pending_overflow = True
                log.warning(
                    "%s: more than %d invalidations missed while the cache was unreachable; "
                    "entries of deleted objects may be served until they expire (%d s) - run "
                    "'objstore-admin cache-flush'",
                    self.remote.name,
                    PENDING_MAX,
                    self.expiry,
                )

    # ------------------------------------------------------------ other methods

    def close(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True)
        try:
            self.inner.close()
        finally:
            on_close, self._on_close = self._on_close, None
            if on_close is not None:
                on_close()

    # ------------------------------------------------------------ failures

    def _cache_failed(self, exc: BaseException, op: str) -> bool:
        """Count, log (rate-limited) and, for outages, open the breaker.  Returns
        whether it was an outage."""
        self._errors += 1
        outage = self.remote.is_outage(exc)
        now = time.monotonic()
        if outage and not self._open_until:
            self._open_until = now + self._backoff  # a racing write sets the same value
        if now >= self._log_next:
            more = f" ({self._log_suppressed} more errors since the last report)"
            log.warning(
                "%s %s failed for %s (%s: %s)%s; reading from the backend%s",
                self.remote.name,
                op,
                self.kind.value,
                type(exc).__name__,
                str(exc)[:200],
                more if self._log_suppressed else "",
                f", retrying the cache in {self._backoff:.0f} s" if outage else "",
            )
            self._log_next = now + _LOG_EVERY
            self._log_suppressed = 0
        else:
            self._log_suppressed += 1
        return outage

    def _cache_usable(self) -> bool:
        """Breaker open: False until the back-off has passed; then one thread probes
        (replaying deferred invalidations first) while the others keep bypassing."""
        if time.monotonic() < self._open_until:
            return False
        if not self._probe_lock.acquire(blocking=False):
            return False
        try:
            if not self._open_until:
                return True
            try:
                self._replay_pending()
                self.remote.probe()
            except Exception as exc:
                self._errors += 1
                self._failed_probes += 1
                self._backoff = self._probes.delay(self._failed_probes + 1)
                self._open_until = time.monotonic() + self._backoff
                log.debug("%s still unavailable: %s", self.remote.name, type(exc).__name__)
                return False
            self._open_until = 0.0
            self._failed_probes = 0
            self._backoff = self._probes.delay(1)
            log.warning("%s is back; caching %s objects again", self.remote.name, self.kind.value)
            return True
        finally:
            self._probe_lock.release()

    def _replay_pending(self) -> None:
        with self._pending_lock:
            keys = list(self._pending)
        if keys:
            self.remote.delete(keys)
            with self._pending_lock:
                self._pending.difference_update(keys)
                if not self._pending:
                    self._pending_overflow = False

    def _open_value(self, key: str, value: bytes) -> bytes | None:
        """The object bytes of a cached value (None: its HMAC tag does not match)."""
        return value if self._secret is None else unseal(self._secret, key, value)

    def _drop_corrupt(self, keys: list[str], forged: bool = False) -> None:
        if forged:
            self._forged += len(keys)
        else:
            self._corrupt += len(keys)
        self._errors += len(keys)
        now = time.monotonic()
        if now >= self._log_next:
            log.warning(
                "%s returned %d %s value(s) that %s (e.g. %s); dropped, reading from the backend",
                self.remote.name,
                len(keys),
                self.kind.value,
                "fail their HMAC (written without cache_secret, or altered)"
                if forged
                else "do not match their object id",
                keys[0],
            )
            self._log_next = now + _LOG_EVERY
        else:
            self._log_suppressed += 1
        try:
            self.remote.delete(keys)
        except Exception as exc:
            self._cache_failed(exc, "DELETE")

    # ------------------------------------------------------------ operator

    def stats(self) -> dict[str, int]:
        """Counters since creation (see the class docstring)."""
        local = self._local
        return {
            "hits": self._hits + self._local_hits,
            "misses": self._misses,
            "errors": self._errors,
            "bytes": self._bytes,
            "local_hits": self._local_hits,
            "local_bytes": local.size if local is not None else 0,
            "local_items": len(local) if local is not None else 0,
            "corrupt": self._corrupt,
            "forged": self._forged,
            "too_large": self._too_large,
            "unverifiable": self._unverifiable,
            "coalesced": self._coalesced,
            "fills": self._fills,
            "bypassed": self._bypassed,
            "breaker_open": 1 if self._open_until else 0,
            "pending_invalidations": len(self._pending),
        }

    def flush(self, repo_id: str | None = None) -> int:
        """Delete this store's cache entries (of one repo, or all), found by scanning
        the cache (Redis SCAN / memcached metadump), not the backend, so entries of
        objects the backend no longer has go too.  Tombstones are kept.  Returns
        the number of entries deleted.  Raises BackendUnavailable if the cache
        cannot be reached: an operator must know the flush did not happen."""
        prefix = self.prefix if repo_id is None else repo_prefix(self.prefix, repo_id)
        if self._local is not None:
            if repo_id is None:
                self._local.clear()
            else:
                self._local.discard_prefix(prefix)
        count = 0
        try:
            # where a scan can miss keys, scan again until a pass finds none
            for _ in range(_FLUSH_PASSES if self.remote.scan_misses else 1):
                found = 0
                for batch in self.remote.scan(prefix):
                    keys = [k for k, _ in batch if not k.endswith(":rm")]
                    if keys:
                        self.remote.delete(keys)
                        found += len(keys)
                count += found
                if not found:
                    break
        except Exception as exc:
            raise BackendUnavailable(
                f"{self.remote.name}: cannot flush {self.kind.value}: {type(exc).__name__}: "
                f"{str(exc)[:200]}"
            ) from None
        return count

    def cached_entries(self) -> tuple[int, int]:
        """``(entries, bytes)`` this store has in the cache now (scans the cache)."""
        count = size = 0
        try:
            for batch in self.remote.scan(self.prefix):
                for key, n in batch:
                    if not key.endswith(":rm"):
                        count += 1
                        size += n
        except Exception as exc:
            raise BackendUnavailable(
                f"{self.remote.name}: cannot scan: {type(exc).__name__}: {str(exc)[:200]}"
            ) from None
        return count, size
