"""The signers: AWS's published examples (SigV4 test suite and S3's SigV4 and
SigV2 examples), and botocore's signers on every request the S3 driver actually
sends (captured while it talks to SeaweedFS: PUT, GET, HEAD, DELETE, listings,
COPY with SSE-C, multipart, batch delete), for SigV4 and SigV2, path-style and
virtual-hosted."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

import objstore
from objstore import ObjKind
from objstore.drivers import http11
from objstore.drivers.s3sign import (
    EMPTY_SHA256,
    Credentials,
    SigV2,
    SigV4,
    canonical_query,
    uri_encode,
)

from .helpers import s3_section, write_conf
from .test_migrate_helpers import SSE_A

SUITE = Credentials("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY")
S3_DOCS = Credentials("AKIAIOSFODNN7EXAMPLE", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY")
S3_DATE = "20130524T000000Z"
S3_HOST = "examplebucket.s3.amazonaws.com"


def _signature(authorization: str) -> str:
    return authorization.rsplit("Signature=", 1)[1]


# ---------------------------------------------------------------- AWS's examples


@pytest.mark.parametrize(
    ("method", "query", "expected"),
    [
        ("GET", [], "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31"),
        (
            "GET",
            [("Param2", "value2"), ("Param1", "value1")],
            "b97d918cfa904a5beff61c982a1b6f458b799221646efd99d3219ec94cdf2500",
        ),
        ("POST", [], "5da7c1a2acd57cee7505fc6676e4e544621c30862966e37dddb68e92efbe5d6b"),
    ],
    ids=["get-vanilla", "get-vanilla-query-order-key-case", "post-vanilla"],
)
def test_sigv4_test_suite(method: str, query: list[tuple[str, str | None]], expected: str) -> None:
    """AWS's SigV4 test suite (service ``service``, us-east-1, 2015-08-30)."""
    headers = {"host": "example.amazonaws.com", "x-amz-date": "20150830T123600Z"}
    auth = SigV4("us-east-1", "service").authorization(
        SUITE, method, "/", canonical_query(query), headers, EMPTY_SHA256, "20150830T123600Z"
    )
    assert auth == (
        "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, "
        f"SignedHeaders=host;x-amz-date, Signature={expected}"
    )


WELCOME = b"Welcome to Amazon S3."


@pytest.mark.parametrize(
    ("method", "path", "query", "extra", "payload", "expected"),
    [
        ("GET", "/test.txt", [], {"range": "bytes=0-9"}, EMPTY_SHA256,
         "f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41"),
        ("PUT", "/" + uri_encode("test$file.text", keep_slash=True), [],
         {"date": "Fri, 24 May 2013 00:00:00 GMT", "x-amz-storage-class": "REDUCED_REDUNDANCY"},
         hashlib.sha256(WELCOME).hexdigest(),
         "98ad721746da40c64f1a55b78f14c238d841ea1380cd77a1b5971af0ece108bd"),
        ("GET", "/", [("lifecycle", None)], {}, EMPTY_SHA256,
         "fea454ca298b7da1c68078a5d1bdbfbbe0d65c699e0f91ac7a200a0136783543"),
        ("GET", "/", [("prefix", "J"), ("max-keys", "2")], {}, EMPTY_SHA256,
         "34b48302e7b5fa45bde8084f4b7868a86f0a534bc59db6670ed5711ef69dc6f7"),
    ],
    ids=["get-object-range", "put-object", "get-bucket-lifecycle", "list-objects"],
)  # fmt: skip
def test_sigv4_s3_examples(
    method: str, path: str, query: list[tuple[str, str | None]], extra: dict[str, str],
    payload: str,
    expected: str,
) -> None:  # fmt: skip
    """The examples of S3's "Signature Calculations for the Authorization Header"."""
    headers = {"host": S3_HOST, "x-amz-date": S3_DATE, "x-amz-content-sha256": payload, **extra}
    auth = SigV4("us-east-1").authorization(
        S3_DOCS, method, path, canonical_query(query), headers, payload, S3_DATE
    )
    assert _signature(auth) == expected


@pytest.mark.parametrize(
    ("method", "resource", "headers", "expected"),
    [
        ("GET", SigV2.canonical_resource("/johnsmith/photos/puppy.jpg", []),
         {"date": "Tue, 27 Mar 2007 19:36:42 +0000"}, "bWq2s1WEIj+Ydj0vQ697zp+IXMU="),
        ("PUT", SigV2.canonical_resource("/johnsmith/photos/puppy.jpg", []),
         {"date": "Tue, 27 Mar 2007 21:15:45 +0000", "content-type": "image/jpeg",
          "content-length": "94328"}, "MyyxeRY7whkBe+bq8fHCL/2kKUg="),
        ("GET", SigV2.canonical_resource("/johnsmith/", [("prefix", "photos"), ("max-keys", "50"),
                                                         ("marker", "puppy")]),
         {"date": "Tue, 27 Mar 2007 19:42:41 +0000", "user-agent": "Mozilla/5.0"},
         "htDYFYduRNen8P9ZfE/s9SuKy0U="),
        ("GET", SigV2.canonical_resource("/johnsmith/", [("acl", None)]),
         {"date": "Tue, 27 Mar 2007 19:44:46 +0000"}, "c2WLPFtWHVgbEmeEG93a4cG37dM="),
    ],
    ids=["object-get", "object-put", "list", "fetch-acl"],
)  # fmt: skip
def test_sigv2_s3_examples(
    method: str, resource: str, headers: dict[str, str], expected: str
) -> None:
    """The examples of S3's "Signing and Authenticating REST Requests" (SigV2)."""
    auth = SigV2().authorization(S3_DOCS, method, resource, headers)
    assert auth == f"AWS AKIAIOSFODNN7EXAMPLE:{expected}"


def test_session_token_is_signed() -> None:
    headers = {"host": S3_HOST, "x-amz-date": S3_DATE, "x-amz-security-token": "tok"}
    a = SigV4("us-east-1").authorization(S3_DOCS, "GET", "/", "", headers, EMPTY_SHA256, S3_DATE)
    assert "x-amz-security-token" in a.split("SignedHeaders=")[1].split(",")[0]


# ---------------------------------------------------------------- against botocore


@pytest.fixture
def captured(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[tuple[str, str, dict[str, str]]]]:
    """Every request the transport sends: (method, target, headers)."""
    sent: list[tuple[str, str, dict[str, str]]] = []
    original = http11.Connection._send

    def record(self: Any, method: str, target: str, headers: Any, body: bytes) -> Any:
        sent.append((method, target, dict(headers)))
        return original(self, method, target, headers, body)

    monkeypatch.setattr(http11.Connection, "_send", record)
    yield sent


def _exercise(stores: objstore.Stores) -> None:
    """One of every request the driver makes."""
    repo, other = str(uuid.uuid4()), str(uuid.uuid4())
    small = b"signed " * 10
    obj = hashlib.sha1(small).hexdigest()
    stores.block.write(repo, obj, small)
    assert stores.block.read(repo, obj) == small
    assert stores.block.exists(repo, obj)
    assert stores.block.driver.matches_encryption(repo, obj)
    stores.block.copy(repo, other, obj)  # CopyObject (with SSE-C copy-source headers)
    big = bytes(range(256)) * (9 * 4096 + 1)  # above multipart_threshold = 8M
    big_id = hashlib.sha1(big).hexdigest()
    stores.block.write(repo, big_id, big)  # create, parts, complete
    with stores.block.open_read(repo, big_id) as fh:
        assert fh.read() == big
    assert {i.obj_id for i in stores.block.list(repo)} == {obj, big_id}
    stores.block.delete(other, obj)
    stores.block.remove_repo(repo)  # batch delete


def _botocore_v4(method: str, url: str, headers: dict[str, str], creds: Credentials) -> str:
    from botocore.auth import S3SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.config import Config
    from botocore.credentials import Credentials as BotoCredentials

    keep = {k: v for k, v in headers.items() if k not in ("authorization", "user-agent")}
    req = AWSRequest(method=method, url=url, headers=keep)
    req.context["client_config"] = Config(s3={"payload_signing_enabled": False})
    req.context["timestamp"] = headers["x-amz-date"]
    signer = S3SigV4Auth(BotoCredentials(creds.access_key, creds.secret_key, creds.token), "s3",
                         "us-east-1")  # fmt: skip
    # sign at the driver's timestamp (add_auth would take the clock's)
    signer._modify_request_before_signing(req)  # type: ignore[attr-defined]
    canonical = signer.canonical_request(req)
    signature = signer.signature(signer.string_to_sign(req, canonical), req)
    signer._inject_signature_to_request(req, signature)  # type: ignore[attr-defined]
    return str(req.headers["Authorization"])


def _botocore_v2(method: str, url: str, headers: dict[str, str], creds: Credentials,
                 auth_path: str | None) -> str:  # fmt: skip
    from botocore.auth import HmacV1Auth
    from botocore.compat import HTTPHeaders
    from botocore.credentials import Credentials as BotoCredentials

    signer = HmacV1Auth(BotoCredentials(creds.access_key, creds.secret_key, creds.token))
    signer._get_date = lambda: headers["date"]  # type: ignore[attr-defined]
    keep = HTTPHeaders()
    for k, v in headers.items():
        if k not in ("authorization", "user-agent"):
            keep[k] = v
    signature = signer.get_signature(method, urlsplit(url), keep, auth_path=auth_path)  # type: ignore[arg-type]
    return f"AWS {creds.access_key}:{signature}"


@pytest.mark.parametrize(
    ("name", "options"),
    [
        ("v4-path-https-sse-c", {"https": True, "sse_c_key": SSE_A}),
        ("v4-virtual-prefix", {"virtual": True, "key_prefix": "a b/+c~/"}),
        ("v2-path", {"v2": True, "key_prefix": "v2/"}),
    ],
)
def test_every_request_signs_as_botocore_signs_it(
    name: str, options: dict[str, Any], tmp_path: Path, seaweed: Any, new_bucket: Any,
    captured: list[tuple[str, str, dict[str, str]]],
) -> None:  # fmt: skip
    bucket = new_bucket(seaweed, "sign")
    prefix = options.pop("key_prefix", "")
    text = "".join(
        s3_section(seaweed, kind, bucket, key_prefix=f"{prefix}{kind.value}/", **options)
        for kind in ObjKind
    )
    with objstore.open_stores(write_conf(tmp_path, text)) as stores:
        _exercise(stores)
    creds = Credentials(seaweed.access_key, seaweed.secret_key)
    methods = {(m, "uploads" in t, "uploadId" in t, "delete" in t) for m, t, _ in captured}
    assert len(methods) >= 7, methods  # every kind of request was seen
    v2 = options.get("v2", False)
    virtual = options.get("virtual", False)
    for method, target, headers in captured:
        url = f"{'https' if options.get('https') else 'http'}://{headers['host']}{target}"
        if v2:
            auth_path = None
            if virtual:
                auth_path = f"/{bucket}" + urlsplit(url).path
            expected = _botocore_v2(method, url, headers, creds, auth_path)
        else:
            expected = _botocore_v4(method, url, headers, creds)
        assert headers["authorization"] == expected, (method, target)
