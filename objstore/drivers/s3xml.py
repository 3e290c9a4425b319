"""S3's XML documents: parsed with a real XML parser (expat through ElementTree,
linear in the document size) into typed records, and built for the two requests
that carry XML.  Documents with a DTD are refused before parsing (S3 never sends
one; a DTD is how entity-expansion attacks start).  Anything that is not the
expected shape raises :class:`MalformedXML`.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import unquote
from xml.sax.saxutils import escape

_SIZE_RE = re.compile(r"[0-9]{1,19}\Z")


class MalformedXML(Exception):
    """A document is not well-formed XML of the expected shape."""


def _parse(body: bytes, expect: tuple[str, ...]) -> ET.Element:
    if b"<!DOCTYPE" in body or b"<!ENTITY" in body:
        raise MalformedXML("the answer carries a DTD (refused)")
    try:
        root = ET.fromstring(body)
    except ET.ParseError as exc:
        raise MalformedXML(f"not well-formed XML ({exc})") from None
    if _local(root.tag) not in expect:
        raise MalformedXML(f"expected <{expect[0]}>, got <{_local(root.tag)[:40]}>")
    return root


def _local(tag: str) -> str:
    return tag.rpartition("}")[2]


def _child_text(elem: ET.Element, name: str) -> str | None:
    for child in elem:
        if _local(child.tag) == name:
            return child.text or ""
    return None


INITIATE_ROOTS = ("InitiateMultipartUploadResult", "InitiateMultipartUpload")
"""AWS's root, and the one rclone sends."""


@dataclass(frozen=True)
class ErrorInfo:
    code: str
    message: str


def parse_error(body: bytes) -> ErrorInfo | None:
    """The ``<Error>`` document of an error answer (or of a 200 that failed),
    None when the body is not one."""
    if b"<Error" not in body:
        return None
    try:
        root = _parse(body, ("Error",))
    except MalformedXML:
        return None
    return ErrorInfo(
        (_child_text(root, "Code") or "")[:100], (_child_text(root, "Message") or "")[:300]
    )


@dataclass(frozen=True)
class ListPage:
    entries: list[tuple[str, int, str | None]]
    """(key, size, ETag without quotes) in the order the server sent them."""
    truncated: bool
    token: str | None


def parse_list_page(body: bytes) -> ListPage:
    """A ListObjectsV2 page (keys url-decoded when the page says so)."""
    root = _parse(body, ("ListBucketResult",))
    ns = root.tag[: root.tag.index("}") + 1] if root.tag.startswith("{") else ""
    key_tag, size_tag, etag_tag = f"{ns}Key", f"{ns}Size", f"{ns}ETag"
    entries: list[tuple[str, int, str | None]] = []
    for item in root.iterfind(f"{ns}Contents"):
        key, size = item.findtext(key_tag), item.findtext(size_tag)
        if key is None or size is None:
            raise MalformedXML("a <Contents> without <Key> or <Size>")
        size = size.strip()
        if not _SIZE_RE.match(size):
            raise MalformedXML(f"a <Size> that is not a whole number: {size[:20]!r}")
        etag = item.findtext(etag_tag)
        entries.append((key, int(size), etag.strip().strip('"') if etag else None))
    flag = (root.findtext(f"{ns}IsTruncated") or "false").strip()
    if flag not in ("true", "false"):
        raise MalformedXML(f"<IsTruncated> is {flag[:20]!r}")
    if (root.findtext(f"{ns}EncodingType") or "").strip() == "url":
        entries = [(unquote(k), n, e) if "%" in k else (k, n, e) for k, n, e in entries]
    token = root.findtext(f"{ns}NextContinuationToken") or None
    return ListPage(entries, flag == "true", token)


def parse_upload_id(body: bytes) -> str:
    """The UploadId of an InitiateMultipartUploadResult."""
    root = _parse(body, INITIATE_ROOTS)
    upload_id = (_child_text(root, "UploadId") or "").strip()
    if not upload_id:
        raise MalformedXML("no <UploadId>")
    return upload_id


def check_result(body: bytes, expect: tuple[str, ...]) -> None:
    """A 200 answer of CopyObject / CompleteMultipartUpload / a listing must be
    its result document (a root named in ``expect``); an ``<Error>`` inside a 200
    is caught by the caller with :func:`parse_error` first."""
    _parse(body, expect)


def parse_delete_errors(body: bytes) -> list[ErrorInfo]:
    """The per-key errors of a DeleteResult."""
    root = _parse(body, ("DeleteResult",))
    return [
        ErrorInfo(_child_text(e, "Code") or "", _child_text(e, "Message") or "")
        for e in root
        if _local(e.tag) == "Error"
    ]


def complete_multipart(parts: Iterable[tuple[int, str]]) -> bytes:
    """The CompleteMultipartUpload document for (part number, ETag) pairs."""
    items = "".join(
        f"<Part><PartNumber>{n}</PartNumber><ETag>{escape(etag)}</ETag></Part>" for n, etag in parts
    )
    return f"<CompleteMultipartUpload>{items}</CompleteMultipartUpload>".encode()


def delete_objects(keys: Iterable[str]) -> bytes:
    """A quiet multi-object Delete document."""
    items = "".join(f"<Object><Key>{escape(k)}</Key></Object>" for k in keys)
    return f"<Delete><Quiet>true</Quiet>{items}</Delete>".encode()
