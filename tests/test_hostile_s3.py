"""The S3 driver against a hostile server (tests/hostile.py): each broken answer
gives a clear objstore error (normally BackendUnavailable, with a one-line
message), in bounded time (the timeout marker; the configuration below lets a
request attempt last 4 s) and, where the answer is big, in bounded memory (the
operation runs in a subprocess whose peak RSS is checked).  A representative
subset also runs through ``objstore-migrate``, which must exit 1 or 2 without a
traceback.  Only public APIs and documented options are used, so the suite runs
unchanged against any driver behind them.

What each answer checks is said next to it; "the next request" cases check
that an answer left half-read on a connection never becomes the answer to a
later request (a PUT the server refused reported as stored).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import itertools
import json
import os
import re
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import objstore
from objstore import BackendUnavailable, ObjKind, ObjStoreError, Stores

from .helpers import Measured, fs_conf, run_measured, s3_conf, write_conf
from .hostile import (
    CLOSE,
    HANG,
    HostileS3,
    Request,
    Script,
    Trickle,
    answer,
    contents,
    endless,
    error,
    error_body,
    list_body,
    list_page,
    then_close,
    then_hang,
)
from .test_migrate_helpers import REPO_ROOT, cli_command, cli_env

MiB = 1024 * 1024
FAIL_FAST = {"connect_timeout": 2, "read_timeout": 2, "request_timeout": 4, "max_retries": 1}
"""Every request attempt ends within 4 s (``request_timeout``: the new driver's overall
deadline of one attempt, body included), and is tried twice at most."""
SIZE_CAP: dict[str, Any] = {"max_object_size": "8M"}
"""The new driver's cap on a whole-object GET body."""
PEAK_RSS_MB = 300
"""Bound on a process's peak RSS while it meets a big answer (normal: about 100 MB)."""
LIBRARY_TIMEOUT = 30
CLI_TIMEOUT = 60

REPO = "1b4e28ba-2fa1-11d2-883f-0016d3cca427"
OTHER_REPO = "9f0c2b6a-3d4e-4f5a-8b7c-0d1e2f3a4b5c"
DATA = b"hello"
OBJ = hashlib.sha1(DATA).hexdigest()
BUCKETS = {kind: f"hostile-{kind.value}" for kind in ObjKind}
BLOCKS = BUCKETS[ObjKind.BLOCK]


def obj_ids(n: int, seed: str = "") -> list[str]:
    """``n`` distinct object ids, sorted."""
    return sorted(hashlib.sha1(f"{seed}{i}".encode()).hexdigest() for i in range(n))


OBJ_A, OBJ_B, OBJ_C = obj_ids(3, "abc")


def key(obj: str = OBJ, repo: str = REPO, prefix: str = "") -> str:
    return f"{prefix}{repo}/{obj}"


def is_get(req: Request) -> bool:
    return req.method == "GET" and req.bucket == BLOCKS and bool(req.key)


def is_put(req: Request) -> bool:
    return req.method == "PUT" and bool(req.key)


def is_copy(req: Request) -> bool:
    return "x-amz-copy-source" in req.headers


def is_complete(req: Request) -> bool:
    """The completion of a multipart upload."""
    return req.method == "POST" and "uploadId" in req.query


def listings(pages: Callable[[Request], Any]) -> Script:
    """A script answering block listings with ``pages(request)``, the rest as S3 does."""
    return lambda req: pages(req) if req.is_listing and req.bucket == BLOCKS else None


def answering(pred: Callable[[Request], bool], reply: Any) -> Script:
    """A script answering requests that match ``pred`` with ``reply``."""
    return lambda req: reply if pred(req) else None


# --------------------------------------------------------------------------- fixtures


@pytest.fixture
def serve() -> Iterator[Callable[[Script], HostileS3]]:
    """``serve(script)``: a HostileS3, closed (no thread left) after the test."""
    servers: list[HostileS3] = []

    def start(script: Script) -> HostileS3:
        servers.append(HostileS3(script))
        return servers[-1]

    yield start
    for server in servers:
        server.close()


def hostile_conf(
    directory: Path,
    server: HostileS3,
    buckets: dict[ObjKind, str] = BUCKETS,
    *,
    key_prefix: str | None = None,
    **options: Any,
) -> Path:
    """A seafile.conf with the three kinds on ``server``: FAIL_FAST, plus ``options``."""
    extra = {**FAIL_FAST, **options}
    text = s3_conf(server, buckets, create=False, key_prefix=key_prefix, extra=extra)
    return write_conf(directory, text)


@contextlib.contextmanager
def hostile_stores(tmp_path: Path, server: HostileS3, **extra: Any) -> Iterator[Stores]:
    with objstore.open_stores(hostile_conf(tmp_path / "conf", server, **extra)) as stores:
        yield stores


def one_line(exc: BaseException) -> str:
    """The error's message: not empty, one line."""
    message = str(exc)
    assert message.strip() and "\n" not in message, repr(message)
    return message


def fails(fn: Callable[[], object], cls: type[ObjStoreError] = BackendUnavailable) -> str:
    """``fn()`` raises ``cls`` (anything else, or nothing, fails the test); its message."""
    with pytest.raises(cls) as info:
        fn()
    return one_line(info.value)


def list_blocks(stores: Stores, repo: str | None = None) -> list[tuple[str, str, int]]:
    return [(i.repo_id, i.obj_id, i.size) for i in stores.block.list(repo)]


# --------------------------------------------------------------------------- subprocess

CHILD = """
import json, sys
import objstore
conf, op, repo, obj = sys.argv[1:]
out = {"raised": None}
try:
    with objstore.open_stores(conf) as stores:
        if op == "read":
            stores.block.read(repo, obj)
        else:
            list(stores.block.list())
except Exception as exc:
    out = {"raised": type(exc).__name__, "objstore": isinstance(exc, objstore.ObjStoreError),
           "message": str(exc)}
print(json.dumps(out))
"""


def run_child(conf: Path, op: str) -> dict[str, Any]:
    """Run ``store.read(REPO, OBJ)`` or ``list(store.list())`` (``op``) on the block
    store of ``conf`` in a subprocess; check its time and peak memory; return
    what it raised."""
    proc = run_measured(
        [sys.executable, "-c", CHILD, conf, op, REPO, OBJ],
        timeout=LIBRARY_TIMEOUT, env=cli_env(), cwd=REPO_ROOT,
    )  # fmt: skip
    assert proc.killed is None, proc.killed
    assert proc.returncode == 0, proc.output
    assert proc.peak_rss_mb < PEAK_RSS_MB, f"peak RSS {proc.peak_rss_mb:.0f} MB"
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def assert_child_failed_cleanly(result: dict[str, Any]) -> None:
    assert result["raised"] == "BackendUnavailable", result
    assert result["message"].strip() and "\n" not in result["message"], result


# --------------------------------------------------------------------------- listings


TOKEN_LOOPS = {"A-A": {None: "A", "A": "A"}, "A-B-A": {None: "A", "A": "B", "B": "A"}}
"""The token each page gives for the next, by the token that asked for it."""


@pytest.mark.timeout(LIBRARY_TIMEOUT)
@pytest.mark.parametrize("following", TOKEN_LOOPS.values(), ids=TOKEN_LOOPS.keys())
def test_listing_token_seen_before(tmp_path: Path, serve: Any, following: dict[Any, str]) -> None:
    """A continuation token given before (A, A; or A, B, A, which a set of seen
    tokens catches and a comparison with the last one misses): an error, not
    164,000 requests."""

    def pages(req: Request) -> bytes:
        token = req.query.get("continuation-token")
        entries = [] if token else [contents(key(OBJ_A))]
        return list_page(entries, truncated=True, token=following.get(token, "A"))

    server = serve(listings(pages))
    with hostile_stores(tmp_path, server) as stores:
        fails(lambda: list_blocks(stores))
    assert len(server.seen(lambda r: r.is_listing)) < 50


@pytest.mark.timeout(LIBRARY_TIMEOUT)
def test_listing_truncated_without_token(tmp_path: Path, serve: Any) -> None:
    """IsTruncated without a token: the rest cannot be asked for, so the listing is
    incomplete; returning the first page as everything would lose objects."""
    server = serve(listings(lambda req: list_page([contents(key(OBJ_A))], truncated=True)))
    with hostile_stores(tmp_path, server) as stores:
        fails(lambda: list_blocks(stores))


@pytest.mark.timeout(LIBRARY_TIMEOUT)
def test_listing_keys_out_of_order(tmp_path: Path, serve: Any) -> None:
    server = serve(listings(lambda req: list_page([contents(key(OBJ_B)), contents(key(OBJ_A))])))
    with hostile_stores(tmp_path, server) as stores:
        fails(lambda: list_blocks(stores))


def skipped_or_refused(fn: Callable[[], list[tuple[str, str, int]]], wanted: list[Any]) -> None:
    """``fn()`` returns exactly ``wanted`` (the foreign keys skipped) or raises
    BackendUnavailable; it never returns a foreign object."""
    try:
        got = fn()
    except BackendUnavailable as exc:
        one_line(exc)
    else:
        assert got == wanted


@pytest.mark.timeout(LIBRARY_TIMEOUT)
def test_listing_keys_outside_requested_prefix(tmp_path: Path, serve: Any) -> None:
    """list(repo) answered with another repo's objects too."""
    page = list_page([contents(key(OBJ_A)), contents(key(OBJ_B, OTHER_REPO))])
    server = serve(listings(lambda req: page))
    with hostile_stores(tmp_path, server) as stores:
        skipped_or_refused(lambda: list_blocks(stores, REPO), [(REPO, OBJ_A, 1)])


@pytest.mark.timeout(LIBRARY_TIMEOUT)
def test_listing_keys_outside_key_prefix(tmp_path: Path, serve: Any) -> None:
    """key_prefix = blocks/, answered with keys under blocky/ (same length) and zz/."""
    page = list_page(
        [
            contents(key(OBJ_A, prefix="blocks/")),
            contents(key(OBJ_B, prefix="blocky/")),
            contents(key(OBJ_C, prefix="zz/")),
        ]
    )
    server = serve(listings(lambda req: page))
    with hostile_stores(tmp_path, server, key_prefix="blocks/") as stores:
        skipped_or_refused(lambda: list_blocks(stores), [(REPO, OBJ_A, 1)])


@pytest.mark.timeout(LIBRARY_TIMEOUT)
def test_listing_endless_empty_truncated_pages(tmp_path: Path, serve: Any) -> None:
    """Empty pages, each truncated with a fresh token, forever: the driver gives up."""
    server = serve(listings(lambda req: list_page([], truncated=True, token=uuid.uuid4().hex)))
    with hostile_stores(tmp_path, server) as stores:
        fails(lambda: list_blocks(stores))


def padded_page(n: int, seed: str) -> tuple[bytes, list[tuple[str, str, int]]]:
    """One untruncated page of ``n`` valid objects whose sizes carry whitespace
    (``<Size>\\n 123\\n</Size>``: XML Schema collapses it), and the listing expected."""
    ids = obj_ids(n, seed)
    expected = [(REPO, obj, i) for i, obj in enumerate(ids)]
    page = list_page([contents(key(obj), f"\n      {size}\n    ") for _, obj, size in expected])
    return page, expected


BIG_PAGES = {"10000-keys": 10_000, "480-kb": 1_900}
"""One page of 10,000 keys (a server ignoring max-keys), and one of about 480 KB."""


@pytest.mark.timeout(20)
@pytest.mark.parametrize("n", BIG_PAGES.values(), ids=BIG_PAGES.keys())
def test_listing_big_page(tmp_path: Path, serve: Any, n: int) -> None:
    """Every object, with its size, in about linear time."""
    page, expected = padded_page(n, f"big-{n}")
    server = serve(listings(lambda req: page))
    with hostile_stores(tmp_path, server) as stores:
        assert list_blocks(stores) == expected


# --------------------------------------------------------------------------- broken listing XML

THREE = [contents(key(obj)) for obj in (OBJ_A, OBJ_B, OBJ_C)]
BILLION_LAUGHS = "<!DOCTYPE lolz [<!ENTITY lol0 'lol'>" + "".join(
    f"<!ENTITY lol{i} '{f'&lol{i - 1};' * 10}'>" for i in range(1, 10)
) + "]>"  # fmt: skip
BILLION_LAUGHS_PAGE = answer(200, list_body([contents(key(), "&lol9;")], head=BILLION_LAUGHS))
BROKEN_LISTINGS = {
    "truncated-document": answer(200, list_body(THREE)[:-120]),
    "not-xml": answer(200, b"this is not XML at all\n"),
    "size-1.5": list_page([contents(key(), "1.5")]),
    "size-negative": list_page([contents(key(), "-1")]),
    "size-missing": list_page([contents(key(), None)]),
    "size-fullwidth-digits": list_page([contents(key(), "\uff11\uff12")]),
}


@pytest.mark.timeout(LIBRARY_TIMEOUT)
@pytest.mark.parametrize("body", BROKEN_LISTINGS.values(), ids=BROKEN_LISTINGS.keys())
def test_listing_broken_xml(tmp_path: Path, serve: Any, body: bytes) -> None:
    """A listing that cannot be read whole is an error (never an empty or partial
    listing, never a size that is not a whole number of bytes)."""
    server = serve(listings(lambda req: body))
    with hostile_stores(tmp_path, server) as stores:
        fails(lambda: list_blocks(stores))


@pytest.mark.timeout(LIBRARY_TIMEOUT + 10)
def test_listing_billion_laughs(tmp_path: Path, serve: Any) -> None:
    """Nested entity expansion (3 GB if expanded): refused, in bounded memory."""
    server = serve(listings(lambda req: BILLION_LAUGHS_PAGE))
    assert_child_failed_cleanly(run_child(hostile_conf(tmp_path, server), "list"))


@pytest.mark.timeout(LIBRARY_TIMEOUT)
def test_open_bucket_check_never_answered(tmp_path: Path, serve: Any) -> None:
    server = serve(lambda req: HANG if req.is_bucket_check else None)
    conf = hostile_conf(tmp_path, server)
    fails(lambda: objstore.open_stores(conf))


# --------------------------------------------------------------------------- leftovers

STALE = answer(200, headers=[("ETag", '"stale"')])
"""A complete 200 answer, sent where no answer belongs."""
REFUSED = error(500, "InternalError", "the write was refused")


def then_refuse_puts(first: Callable[[Request], bool], leftover: bytes) -> Script:
    """Answer the first request matching ``first`` with ``leftover``, and every
    later PUT with 500."""
    done = itertools.count()

    def script(req: Request) -> bytes | None:
        if first(req) and next(done) == 0:
            return leftover
        return REFUSED if is_put(req) else None

    return script


@pytest.mark.timeout(LIBRARY_TIMEOUT)
def test_put_answer_with_bytes_after_it(tmp_path: Path, serve: Any) -> None:
    """A PUT answered ``200, Content-Length: 0`` plus a second full answer; the
    next PUT, answered 500, must raise."""
    server = serve(then_refuse_puts(is_put, answer(200) + STALE))
    with hostile_stores(tmp_path, server) as stores:
        with contextlib.suppress(BackendUnavailable):
            stores.block.write(REPO, OBJ, DATA)
        fails(lambda: stores.block.write(REPO, OBJ_A, b"refused"))


@pytest.mark.timeout(LIBRARY_TIMEOUT)
def test_head_answer_with_a_body(tmp_path: Path, serve: Any) -> None:
    """A HEAD answered with a body (a full answer); the next PUT, answered 500, must raise."""
    server = serve(
        then_refuse_puts(lambda req: req.method == "HEAD" and bool(req.key), answer(200, STALE))
    )
    with hostile_stores(tmp_path, server) as stores:
        with contextlib.suppress(BackendUnavailable):
            stores.block.exists(REPO, OBJ)
        fails(lambda: stores.block.write(REPO, OBJ_A, b"refused"))


@pytest.mark.timeout(LIBRARY_TIMEOUT)
def test_delete_204_with_a_body(tmp_path: Path, serve: Any) -> None:
    """A DELETE answered 204 followed by a body (a full answer); the next PUT,
    answered 500, must raise."""
    server = serve(
        then_refuse_puts(
            lambda req: req.method == "DELETE", answer(204, content_length=False) + STALE
        )
    )
    with hostile_stores(tmp_path, server) as stores:
        with contextlib.suppress(BackendUnavailable):
            stores.block.delete(REPO, OBJ)
        fails(lambda: stores.block.write(REPO, OBJ_A, b"refused"))


# --------------------------------------------------------------------------- bodies and framing


@pytest.mark.timeout(LIBRARY_TIMEOUT + 10)
def test_get_endless_chunked_body(tmp_path: Path, serve: Any) -> None:
    chunk = b"10000\r\n" + b"x" * 0x10000 + b"\r\n"
    head = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
    server = serve(answering(is_get, endless(head, chunk)))
    conf = hostile_conf(tmp_path, server, **SIZE_CAP)
    assert_child_failed_cleanly(run_child(conf, "read"))


@pytest.mark.timeout(LIBRARY_TIMEOUT + 10)
def test_get_content_length_of_a_petabyte(tmp_path: Path, serve: Any) -> None:
    """``Content-Length: 1000000000000000`` (then 1000 bytes and silence): over the cap."""
    head = b"HTTP/1.1 200 OK\r\nContent-Length: 1000000000000000\r\n\r\n"
    server = serve(answering(is_get, then_hang(head + b"x" * 1000)))
    conf = hostile_conf(tmp_path, server, **SIZE_CAP)
    assert_child_failed_cleanly(run_child(conf, "read"))


BAD_LENGTHS = {
    "superscript-two-latin1": b"\xb2",  # "\u00b2".isdigit() is True, int() refuses it
    "superscript-two-utf8": "\u00b2".encode(),
    "fullwidth-five-utf8": "\uff15".encode(),  # int() accepts it, HTTP does not
    "negative": b"-1",
    "two-values": b"1, 2",
    "hex": b"0x5",
}


@pytest.mark.timeout(LIBRARY_TIMEOUT)
@pytest.mark.parametrize("value", BAD_LENGTHS.values(), ids=BAD_LENGTHS.keys())
def test_get_malformed_content_length(tmp_path: Path, serve: Any, value: bytes) -> None:
    """An invalid Content-Length is an unrecoverable framing error (RFC 9112 6.3),
    even though the body (then the end of the connection) would make sense."""
    head = b"HTTP/1.1 200 OK\r\nContent-Length: " + value + b"\r\n\r\n"
    server = serve(answering(is_get, then_close(head + DATA)))
    with hostile_stores(tmp_path, server) as stores:
        fails(lambda: stores.block.read(REPO, OBJ))


@pytest.mark.timeout(LIBRARY_TIMEOUT)
def test_get_content_length_and_chunked(tmp_path: Path, serve: Any) -> None:
    """Both Content-Length and Transfer-Encoding (response splitting): an error, or
    the chunked body (which wins, RFC 9112 6.3), never the bytes Content-Length counts."""
    raw = b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n"
    server = serve(answering(is_get, then_close(raw + b"5\r\nhello\r\n0\r\n\r\n")))
    with hostile_stores(tmp_path, server) as stores:
        try:
            data = stores.block.read(REPO, OBJ)
        except BackendUnavailable as exc:
            one_line(exc)
        else:
            assert data == DATA


BROKEN_ANSWERS = {
    "garbage-status-line": b"HELLO WORLD\r\n\r\n",
    "http-0.9": DATA,
    "header-line-over-64k": b"HTTP/1.1 200 OK\r\nX-Junk: " + b"a" * 100_000
    + b"\r\nContent-Length: 5\r\n\r\n" + DATA,
    "5000-headers": b"HTTP/1.1 200 OK\r\n"
    + b"".join(b"X-Junk-%d: v\r\n" % i for i in range(5000))
    + b"Content-Length: 5\r\n\r\n" + DATA,
}  # fmt: skip


@pytest.mark.timeout(LIBRARY_TIMEOUT)
@pytest.mark.parametrize("raw", BROKEN_ANSWERS.values(), ids=BROKEN_ANSWERS.keys())
def test_get_broken_answer(tmp_path: Path, serve: Any, raw: bytes) -> None:
    server = serve(answering(is_get, then_close(raw)))
    with hostile_stores(tmp_path, server) as stores:
        fails(lambda: stores.block.read(REPO, OBJ))


# --------------------------------------------------------------------------- redirects


def redirect(status: int, target: HostileS3) -> Callable[[Request], bytes]:
    def reply(req: Request) -> bytes:
        location = f"http://{target.host}:{target.http_port}{req.path}"
        return answer(status, error_body("PermanentRedirect"), [("Location", location)])

    return reply


@pytest.mark.timeout(LIBRARY_TIMEOUT)
@pytest.mark.parametrize("status", [301, 307])
def test_redirect_not_followed(tmp_path: Path, serve: Any, status: int) -> None:
    """A redirect to another host: an error that names it; the other host never
    hears of the request (it would get the signed request, or the body of a PUT)."""
    elsewhere = serve(lambda req: None)
    to_elsewhere = redirect(status, elsewhere)
    server = serve(lambda req: to_elsewhere(req) if req.key else None)
    with hostile_stores(tmp_path, server) as stores:
        messages = [
            fails(lambda: stores.block.read(REPO, OBJ)),
            fails(lambda: stores.block.write(REPO, OBJ, DATA)),
        ]
    for message in messages:
        assert "redirect" in message.lower() or str(status) in message, message
    assert elsewhere.requests == []


# --------------------------------------------------------------------------- 200 with an error

ERROR_200 = answer(200, error_body("InternalError"))


@pytest.mark.timeout(LIBRARY_TIMEOUT)
def test_put_200_with_error_body(tmp_path: Path, serve: Any) -> None:
    server = serve(answering(is_put, ERROR_200))
    with hostile_stores(tmp_path, server) as stores:
        fails(lambda: stores.block.write(REPO, OBJ, DATA))


@pytest.mark.timeout(LIBRARY_TIMEOUT)
def test_copy_200_with_error_body(tmp_path: Path, serve: Any) -> None:
    server = serve(answering(is_copy, ERROR_200))
    with hostile_stores(tmp_path, server) as stores:
        fails(lambda: stores.block.copy(REPO, OTHER_REPO, OBJ))
    assert server.seen(is_copy)


@pytest.mark.timeout(LIBRARY_TIMEOUT)
def test_multipart_complete_200_with_error_body(tmp_path: Path, serve: Any) -> None:
    """The upload's completion fails inside a 200: an error, and the upload is aborted."""
    server = serve(answering(is_complete, ERROR_200))
    parts = {"multipart_threshold": "5M", "multipart_chunksize": "5M"}
    data = b"m" * (6 * MiB)
    obj = hashlib.sha1(data).hexdigest()
    with hostile_stores(tmp_path, server, **parts) as stores:
        fails(lambda: stores.block.write_from(REPO, obj, io.BytesIO(data)))
    assert server.seen(is_complete)
    assert server.seen(lambda req: req.method == "DELETE" and "uploadId" in req.query)


# --------------------------------------------------------------------------- slow and silent

SLOW_ANSWER = answer(200, DATA, [("X-Padding", "p" * 200)])
"""An answer of about 250 bytes: trickled at 2 bytes/s it would take two minutes."""


@pytest.mark.timeout(LIBRARY_TIMEOUT)
def test_get_status_and_headers_trickled(tmp_path: Path, serve: Any) -> None:
    server = serve(answering(is_get, Trickle(SLOW_ANSWER, 0.5)))
    with hostile_stores(tmp_path, server) as stores:
        fails(lambda: stores.block.read(REPO, OBJ))


@pytest.mark.timeout(LIBRARY_TIMEOUT)
def test_get_body_trickled(tmp_path: Path, serve: Any) -> None:
    body = b"b" * 250
    raw = answer(200, body)
    server = serve(answering(is_get, Trickle(raw, 0.5, burst=len(raw) - len(body))))
    with hostile_stores(tmp_path, server) as stores:
        fails(lambda: stores.block.read(REPO, OBJ))


@pytest.mark.timeout(LIBRARY_TIMEOUT)
def test_get_never_answered(tmp_path: Path, serve: Any) -> None:
    server = serve(answering(is_get, HANG))
    with hostile_stores(tmp_path, server) as stores:
        fails(lambda: stores.block.read(REPO, OBJ))


@pytest.mark.timeout(LIBRARY_TIMEOUT)
def test_get_connection_closed_without_answer(tmp_path: Path, serve: Any) -> None:
    server = serve(answering(is_get, CLOSE))
    with hostile_stores(tmp_path, server) as stores:
        fails(lambda: stores.block.read(REPO, OBJ))


# --------------------------------------------------------------------------- objstore-migrate

SOURCE = {kind: f"src-{kind.value}" for kind in ObjKind}
DEST = {kind: f"dst-{kind.value}" for kind in ObjKind}


def source_listing(req: Request) -> bytes | None:
    """The source's block bucket holds one object (REPO, OBJ); its other buckets are empty."""
    if req.is_listing and req.bucket == SOURCE[ObjKind.BLOCK]:
        return list_page([contents(key(), str(len(DATA)))])
    return None


def from_source(pred: Callable[[Request], bool], reply: Any) -> Script:
    """The one-object source, with ``reply`` to requests matching ``pred``."""
    return lambda req: reply if pred(req) else source_listing(req)


def is_source_listing(req: Request) -> bool:
    return req.is_listing and req.bucket == SOURCE[ObjKind.BLOCK]


def is_source_get(req: Request) -> bool:
    return req.method == "GET" and req.bucket == SOURCE[ObjKind.BLOCK] and bool(req.key)


def is_dest_listing(req: Request) -> bool:
    return req.is_listing and req.bucket == DEST[ObjKind.BLOCK]


def endless_pages(pred: Callable[[Request], bool]) -> Script:
    """Listings matching ``pred``: empty truncated pages with fresh tokens, forever."""
    return lambda req: list_page([], truncated=True, token=uuid.uuid4().hex) if pred(req) else None


BARE_ERROR = re.compile(
    r"\b(MemoryError|ValueError|KeyError|IndexError|TypeError|AttributeError|OverflowError"
    r"|RecursionError|ParseError|Unicode\w*Error)\b"
)
"""Python's own errors, which must never be what a failure is reported as."""
PETABYTE_HEAD = b"HTTP/1.1 200 OK\r\nContent-Length: 1000000000000000\r\n\r\n"
CHUNKED_HEAD = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
CHUNK = b"10000\r\n" + b"x" * 0x10000 + b"\r\n"
TRICKLED_BODY = answer(200, b"b" * 250)
REDIRECT_307 = answer(307, error_body("TemporaryRedirect"), [("Location", "http://127.0.0.1:9/x")])
SUPERSCRIPT_LISTING = b"HTTP/1.1 200 OK\r\nContent-Length: \xb2\r\n\r\n" + list_body([])

CLI_CASES: dict[str, tuple[str, Callable[[], Script], Callable[[Request], bool]]] = {
    # id: (direction, script factory, the request that must have reached the server)
    "source-listing-token-repeated": ("from-s3", lambda: from_source(
        is_source_listing, list_page([], truncated=True, token="A")), is_source_listing),
    "source-listing-not-xml": ("from-s3", lambda: from_source(
        is_source_listing, BROKEN_LISTINGS["not-xml"]), is_source_listing),
    "source-listing-size-1.5": ("from-s3", lambda: from_source(
        is_source_listing, BROKEN_LISTINGS["size-1.5"]), is_source_listing),
    "source-listing-content-length-superscript": ("from-s3", lambda: from_source(
        is_source_listing, then_close(SUPERSCRIPT_LISTING)), is_source_listing),
    "source-listing-billion-laughs": ("from-s3", lambda: from_source(
        is_source_listing, BILLION_LAUGHS_PAGE), is_source_listing),
    "source-get-endless-chunked": ("from-s3", lambda: from_source(
        is_source_get, endless(CHUNKED_HEAD, CHUNK)), is_source_get),
    "source-get-content-length-petabyte": ("from-s3", lambda: from_source(
        is_source_get, then_hang(PETABYTE_HEAD + b"xxxx")), is_source_get),
    "source-get-body-trickled": ("from-s3", lambda: from_source(
        is_source_get, Trickle(TRICKLED_BODY, 0.5, burst=len(TRICKLED_BODY) - 250)),
        is_source_get),
    "dest-listing-endless-empty-pages": (
        "to-s3", lambda: endless_pages(is_dest_listing), is_dest_listing),
    "dest-put-bytes-after-answer-then-500": (
        "to-s3", lambda: then_refuse_puts(is_put, answer(200) + STALE), is_put),
    "dest-put-200-with-error-body": ("to-s3", lambda: answering(is_put, ERROR_200), is_put),
    "dest-put-never-answered": ("to-s3", lambda: answering(is_put, HANG), is_put),
    "dest-put-redirect-307": ("to-s3", lambda: answering(is_put, REDIRECT_307), is_put),
    "copy-200-with-error-body": (
        "s3-to-s3", lambda: from_source(is_copy, ERROR_200), is_copy),
}  # fmt: skip


@pytest.fixture(scope="module")
def disk_source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A disk store holding two blocks of one repo."""
    base = tmp_path_factory.mktemp("hostile-source")
    conf = write_conf(base / "conf", fs_conf(base / "data"))
    (base / "data").mkdir()
    with objstore.open_stores(conf) as stores:
        for data in (DATA, b"second block"):
            stores.block.write(REPO, hashlib.sha1(data).hexdigest(), data)
    return conf


def fs_dest(tmp_path: Path) -> Path:
    """An empty disk store's seafile.conf."""
    (tmp_path / "fs-dest" / "data").mkdir(parents=True)
    return write_conf(tmp_path / "fs-dest", fs_conf(tmp_path / "fs-dest" / "data"))


def run_migrate(src: Path, dest: Path, report: Path) -> Measured:
    args: list[str | os.PathLike[str]] = [
        src, dest, "--retries", "0", "--workers", "1", "--verify", "none"
    ]  # fmt: skip
    return run_measured(
        cli_command([*args, "--progress", "none", "--report", report]),
        timeout=CLI_TIMEOUT, env=cli_env(), cwd=REPO_ROOT,
    )  # fmt: skip


@pytest.mark.timeout(CLI_TIMEOUT + 30)
@pytest.mark.parametrize("case", CLI_CASES)
def test_migrate_against_hostile_server(
    tmp_path: Path, serve: Any, disk_source: Path, case: str
) -> None:
    """objstore-migrate exits 1 or 2, without a traceback, in bounded time and memory,
    and counts nothing as copied that the server did not store."""
    direction, script, reached = CLI_CASES[case]
    server = serve(script())
    src, dest = {
        "from-s3": (hostile_conf(tmp_path / "src", server, SOURCE, **SIZE_CAP), fs_dest(tmp_path)),
        "to-s3": (disk_source, hostile_conf(tmp_path / "dest", server, DEST)),
        "s3-to-s3": (
            hostile_conf(tmp_path / "src", server, SOURCE),
            hostile_conf(tmp_path / "dest", server, DEST),
        ),
    }[direction]
    report = tmp_path / "report.json"
    proc = run_migrate(src, dest, report)
    assert proc.killed is None, f"{proc.killed}\n{proc.output[-2000:]}"
    assert proc.returncode in (1, 2), proc.output[-2000:]
    assert "Traceback" not in proc.output, proc.output[-2000:]
    bare = BARE_ERROR.search(proc.output)
    assert bare is None, f"a failure reported as a bare {bare.group()}: {proc.output[-2000:]}"
    assert proc.peak_rss_mb < PEAK_RSS_MB, f"peak RSS {proc.peak_rss_mb:.0f} MB"
    assert server.seen(reached), "the hostile answer was never asked for"
    transfer = json.loads(report.read_text()).get("transfer") or {}
    # only the one PUT a server really answered 200 (the bytes-after case) may count
    assert transfer.get("copied", 0) <= (1 if "bytes-after" in case else 0), transfer


@pytest.mark.timeout(CLI_TIMEOUT + 30)
@pytest.mark.parametrize("n", BIG_PAGES.values(), ids=BIG_PAGES.keys())
def test_migrate_plans_big_listing_page(tmp_path: Path, serve: Any, n: int) -> None:
    """A dry run from a source listed in one big page counts every object and byte."""
    page, expected = padded_page(n, f"big-{n}")
    server = serve(lambda req: page if is_source_listing(req) else None)
    src = hostile_conf(tmp_path / "src", server, SOURCE)
    report = tmp_path / "report.json"
    args: list[str | os.PathLike[str]] = [
        src, fs_dest(tmp_path), "--dry-run", "--progress", "none", "--report", report
    ]  # fmt: skip
    proc = run_measured(cli_command(args), timeout=CLI_TIMEOUT, env=cli_env(), cwd=REPO_ROOT)
    assert proc.killed is None, f"{proc.killed}\n{proc.output[-2000:]}"
    assert proc.returncode == 0, proc.output[-2000:]
    blocks = json.loads(report.read_text())["plan"]["kinds"]["blocks"]
    assert (blocks["objects"], blocks["bytes"]) == (n, sum(size for _, _, size in expected))
