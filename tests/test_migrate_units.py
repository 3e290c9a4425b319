"""The migration engine's parts without servers: the merge join, the option
parsers, plan files, the limits and the read-ahead (sharding: test_shards.py)."""

from __future__ import annotations

import threading
import tracemalloc
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from objstore import ConfigError, InvalidId, ObjectInfo, ObjKind
from objstore.migration import MigrateOptions, load_plan_file, merge_join, parse_rate
from objstore.migration.join import (
    EXTRA,
    MISMATCH,
    MISSING,
    PRESENT,
    ListingOrderError,
    Prefetch,
)
from objstore.migration.limits import ByteBudget, Cancelled, TokenBucket
from objstore.migration.options import parse_kinds, read_repo_list

REPOS = [f"{i:08x}-0000-4000-8000-000000000000" for i in range(5)]
objects = st.dictionaries(
    st.tuples(st.sampled_from(REPOS), st.integers(0, 30).map(lambda i: f"{i:040x}")),
    st.integers(0, 3),
    max_size=40,
)


def infos(d: dict[tuple[str, str], int]) -> list[ObjectInfo]:
    return [ObjectInfo(r, o, s) for (r, o), s in sorted(d.items())]


@given(objects, objects)
def test_merge_join_matches_set_semantics(
    src: dict[tuple[str, str], int], dst: dict[tuple[str, str], int]
) -> None:
    out = list(merge_join(infos(src), infos(dst)))
    got = {(state, (i.repo_id, i.obj_id)) for state, i in out}
    want = set()
    for key, size in src.items():
        if key not in dst:
            want.add((MISSING, key))
        else:
            want.add((PRESENT if dst[key] == size else MISMATCH, key))
    want |= {(EXTRA, key) for key in dst if key not in src}
    assert got == want
    assert len(out) == len(want)
    keys = [(i.repo_id, i.obj_id) for _, i in out]
    assert keys == sorted(keys)  # streamed in order


def test_merge_join_custom_size_rule() -> None:
    a = [ObjectInfo(REPOS[0], "a" * 40, 32)]
    b = [ObjectInfo(REPOS[0], "a" * 40, 20)]
    assert [s for s, _ in merge_join(a, b)] == [MISMATCH]
    assert [s for s, _ in merge_join(a, b, lambda enc, plain: enc - 16 <= plain < enc)] == [PRESENT]


@pytest.mark.parametrize("side", ["src", "dst"])
def test_merge_join_refuses_unsorted_listings(side: str) -> None:
    good = [ObjectInfo(REPOS[0], "1" * 40, 1)]
    bad = [ObjectInfo(REPOS[1], "1" * 40, 1), ObjectInfo(REPOS[0], "2" * 40, 1)]
    args = (bad, good) if side == "src" else (good, bad)
    with pytest.raises(ListingOrderError, match="not sorted"):
        list(merge_join(*args))


def test_merge_join_memory_is_flat() -> None:
    """Two 200,000-object listings: nothing is kept while joining."""

    def gen(step: int) -> Iterator[ObjectInfo]:
        for i in range(0, 200_000 * step, step):
            yield ObjectInfo(REPOS[0], f"{i:040x}", 10)

    tracemalloc.start()
    try:
        counts = [0, 0, 0, 0]
        for state, _ in merge_join(gen(1), gen(2)):
            counts[state] += 1
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert sum(counts) > 200_000
    assert peak < 2 * 1024 * 1024


@pytest.mark.parametrize(
    ("text", "value"),
    [("50M", 50 * 2**20), ("800k", 800 * 1024), ("1048576", 2**20), ("1.5G", 3 * 2**29),
     ("10MiB/s", 10 * 2**20), ("2mb", 2 * 2**20)],
)  # fmt: skip
def test_parse_rate(text: str, value: int) -> None:
    assert parse_rate(text) == value


@pytest.mark.parametrize("text", ["", "fast", "-5M", "5X", "0", "0.1"])
def test_parse_rate_rejects(text: str) -> None:
    with pytest.raises(ValueError):
        parse_rate(text)


def test_options() -> None:
    opts = MigrateOptions(kinds=(ObjKind.COMMIT, ObjKind.BLOCK))
    assert opts.kinds == (ObjKind.BLOCK, ObjKind.COMMIT)  # always blocks, fs, commits
    assert parse_kinds(["commit,fs", "blocks"]) == (ObjKind.COMMIT, ObjKind.FS, ObjKind.BLOCK)
    with pytest.raises(InvalidId):
        MigrateOptions(repos=frozenset(["nope"]))
    for bad in ({"verify": "maybe"}, {"shard": (2, 2)}, {"workers": 0}, {"kinds": ()},
                {"server_side_copy": "sometimes"}, {"bwlimit": 0}):  # fmt: skip
        with pytest.raises(ValueError):
            MigrateOptions(**bad)  # type: ignore[arg-type]
    assert read_repo_list(f"# comment\n\n{REPOS[1]}  # lib\n") == [REPOS[1]]


def test_plan_file(tmp_path: Path) -> None:
    plan = tmp_path / "p.toml"
    plan.write_text(
        'source = "src"\ndestination = "/abs/dst"\nbwlimit = 1000\nshard = "1/2"\n'
        'kinds = "fs"\nreport = "r.json"\n'
    )
    loaded = load_plan_file(plan)
    assert loaded.source == tmp_path / "src"
    assert str(loaded.destination) == "/abs/dst"
    assert loaded.values == {
        "bwlimit": 1000, "shard": (1, 2), "kinds": ["fs"], "report": tmp_path / "r.json",
    }  # fmt: skip
    for text, option in [
        ('destination = "d"\n', "source"),
        ('source = "s"\ndestination = "d"\nverify = "maybe"\n', "verify"),
        ('source = "s"\ndestination = "d"\nworkers = "8"\n', "workers"),
        ('source = "s"\ndestination = "d"\ndecrypt = "yes"\n', "decrypt"),
        ('source = "s"\ndestination = "d"\nsecret = 1\n', "secret"),
    ]:
        plan.write_text(text)
        with pytest.raises(ConfigError) as exc:
            load_plan_file(plan)
        assert exc.value.option == option and exc.value.file == str(plan)
    plan.write_text("source = \n")
    with pytest.raises(ConfigError, match="TOML"):
        load_plan_file(plan)


def test_token_bucket_and_budget_stop_on_cancel() -> None:
    cancel = threading.Event()
    bucket = TokenBucket(1000, cancel)
    assert bucket.burst == 64 * 1024 and TokenBucket(1_000_000, cancel).burst == 250_000
    bucket.consume(int(bucket.burst))  # the burst goes at once
    cancel.set()
    with pytest.raises(Cancelled):
        bucket.consume(10_000)  # would wait ~10 s
    budget = ByteBudget(4 * 2**20, cancel)
    held = budget.acquire(100 * 2**20)  # larger than the budget: gets all of it
    assert held == 4 * 2**20
    with pytest.raises(Cancelled):
        budget.acquire(1)
    budget.release(held)
    assert budget.acquire(1) == 1


def test_prefetch_forwards_errors_and_stops_early() -> None:
    def failing() -> Iterator[ObjectInfo]:
        yield ObjectInfo(REPOS[0], "0" * 40, 1)
        raise ConfigError("listing broke")

    it = Prefetch(failing(), chunk=1)
    assert next(it).obj_id == "0" * 40
    with pytest.raises(ConfigError, match="listing broke"):
        next(it)

    produced = []

    def endless() -> Iterator[ObjectInfo]:
        i = 0
        while True:
            produced.append(i)
            yield ObjectInfo(REPOS[0], f"{i:040x}", 1)
            i += 1

    it = Prefetch(endless(), chunk=10, depth=2)
    assert [next(it).obj_id for _ in range(5)][-1] == f"{4:040x}"
    it.close()
    stopped_at = len(produced)
    assert stopped_at < 100  # bounded read-ahead
    with pytest.raises(StopIteration):
        next(it)


def test_listing_page_parser() -> None:
    from objstore.drivers.s3xml import MalformedXML, parse_list_page

    def page(entries: list[str], tail: str = "<IsTruncated>false</IsTruncated>") -> bytes:
        return (
            '<?xml version="1.0" encoding="UTF-8"?>\n<ListBucketResult '
            'xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Name>b</Name>'
            + tail
            + "".join(entries)
            + "</ListBucketResult>"
        ).encode()

    usual = [
        f"<Contents><Key>p/{i}&amp;x</Key><LastModified>2026-01-01T00:00:00Z</LastModified>"
        f"<ETag>&#34;abc&#34;</ETag><Size>{i * 10}</Size><StorageClass>STANDARD</StorageClass>"
        "</Contents>"
        for i in range(5)
    ]
    assert parse_list_page(page(usual)).entries == [(f"p/{i}&x", i * 10, "abc") for i in range(5)]
    size_first = [f"<Contents><Size>{i}</Size><Key>k{i}</Key></Contents>" for i in range(3)]
    assert parse_list_page(page(size_first)).entries == [(f"k{i}", i, None) for i in range(3)]
    empty = parse_list_page(page([]))
    assert (empty.entries, empty.truncated, empty.token) == ([], False, None)
    more = parse_list_page(page(
        ["<Contents><Key>a%2Fb%20c</Key><Size>1</Size></Contents>"],
        "<IsTruncated>true</IsTruncated><NextContinuationToken>t&amp;1</NextContinuationToken>"
        "<EncodingType>url</EncodingType>",
    ))  # fmt: skip
    assert (more.entries, more.truncated, more.token) == ([("a/b c", 1, None)], True, "t&1")
    for bad in (
        page(["<Contents><Key>k</Key><Size>1.5</Size></Contents>"]),
        page(["<Contents><Key>k</Key><Size>-1</Size></Contents>"]),
        page(["<Contents><Key>k</Key></Contents>"]),
        page([], "<IsTruncated>maybe</IsTruncated>"),
        page(usual)[:-30],
        b"<html>not a listing</html>",
        b'<?xml version="1.0"?><!DOCTYPE l [<!ENTITY a "aaaa">]><ListBucketResult/>',
    ):
        with pytest.raises(MalformedXML):
            parse_list_page(bad)
