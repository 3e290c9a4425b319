"""Property-based tests: any input to the seafile.conf reader or the id parsers
gives a result or the library's own error, nothing else."""

from __future__ import annotations

import contextlib
import string
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from objstore import ConfigError, InvalidId
from objstore.config import load_config
from objstore.ids import check_obj_id, check_repo_id
from objstore.keyfile import parse_keyfile

SECTIONS = ["block_backend", "fs_object_backend", "commit_object_backend", "redis", "memcached",
            "store_crypt", "general", "block_backnd"]  # fmt: skip
OPTIONS = [
    "name", "bucket", "key_id", "key", "host", "use_v4_signature", "use_https",
    "path_style_request", "aws_region", "sse_c_key", "key_prefix", "dir", "redis_port",
    "memcached_options", "max_connections", "multipart_chunksize", "proxy_port", "Bucket",
]  # fmt: skip
VALUES = st.one_of(
    st.sampled_from(["s3", "fs", "true", "false", "maybe", "1", "0", "-1", "99999", "x" * 32,
                     "127.0.0.1:8333", "http://h", "5M", "", "a/b", "--SERVER=h:1", "\\s", "\\q"]),
    st.text(max_size=40),
)  # fmt: skip

line = st.one_of(
    st.builds(lambda s: f"[{s}]", st.sampled_from(SECTIONS)),
    st.builds(lambda k, v: f"{k} = {v}", st.sampled_from(OPTIONS), VALUES),
    st.text(max_size=30),
    st.just("# comment"),
)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=400))
def test_keyfile_reader_never_crashes_on_text(text: str) -> None:
    try:
        parse_keyfile(text, "fuzz.conf")
    except ConfigError as exc:
        assert "fuzz.conf" in str(exc)


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.lists(line, max_size=25))
def test_load_config_gives_config_or_config_error(tmp_path: Path, lines: list[str]) -> None:
    path = tmp_path / "seafile.conf"
    path.write_text("\n".join(lines), encoding="utf-8", errors="surrogatepass")
    try:
        load_config(path, data_dir=tmp_path, env={})
    except ConfigError as exc:
        assert str(path) in str(exc)


@settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.binary(max_size=300))
def test_load_config_on_arbitrary_bytes(tmp_path: Path, raw: bytes) -> None:
    path = tmp_path / "seafile.conf"
    path.write_bytes(raw)
    with contextlib.suppress(ConfigError):
        load_config(path, data_dir=tmp_path, env={})


@settings(max_examples=500)
@given(
    st.one_of(st.text(max_size=50), st.text(alphabet=string.hexdigits + "-./\\\x00", max_size=45))
)
def test_id_parsers(value: str) -> None:
    for check, length in ((check_obj_id, 40), (check_repo_id, 36)):
        try:
            assert check(value) == value
        except InvalidId:
            continue
        assert len(value) == length and value == value.lower() and value.isascii()
        assert "/" not in value and "." not in value and "\\" not in value


@given(st.one_of(st.integers(), st.binary(max_size=40), st.none(), st.floats()))
def test_id_parsers_reject_non_strings(value: object) -> None:
    for check in (check_obj_id, check_repo_id):
        try:
            check(value)
        except InvalidId:
            continue
        raise AssertionError(f"accepted {value!r}")
