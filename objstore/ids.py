"""Object kinds, id validation and the object address.

Every id that enters the library passes through :func:`check_repo_id` and
:func:`check_obj_id`; nothing else may build a path or an S3 key.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass, field

from .errors import InvalidId

_REPO_ID_RE = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\Z")
_OBJ_ID_RE = re.compile(r"[0-9a-f]{40}\Z")
_REPO_PREFIX_RE = re.compile(r"[0-9a-f]{0,8}\Z")

EMPTY_ID = "0" * 40
"""The id of the empty file and the empty directory; never stored."""


class ObjKind(str, enum.Enum):
    """The three object kinds; the value is Seafile's storage directory name."""

    COMMIT = "commits"
    FS = "fs"
    BLOCK = "blocks"

    @property
    def section(self) -> str:
        """The seafile.conf section that configures this kind."""
        return _SECTIONS[self]

    @classmethod
    def parse(cls, name: str) -> ObjKind:
        """Accept ``commit``/``commits``, ``fs``, ``block``/``blocks``."""
        key = name.strip().lower()
        for kind in cls:
            if key in (kind.value, kind.value.rstrip("s")):
                return kind
        raise ValueError(f"unknown object kind {name!r} (expected commit, fs or block)")


_SECTIONS = {
    ObjKind.COMMIT: "commit_object_backend",
    ObjKind.FS: "fs_object_backend",
    ObjKind.BLOCK: "block_backend",
}


def _show(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def is_repo_id(value: object) -> bool:
    """True for a lowercase uuid string."""
    return isinstance(value, str) and _REPO_ID_RE.match(value) is not None


def is_obj_id(value: object) -> bool:
    """True for a 40-char lowercase sha1 hex string."""
    return isinstance(value, str) and _OBJ_ID_RE.match(value) is not None


def check_repo_id(value: object) -> str:
    """Return ``value`` if it is a lowercase uuid, else raise InvalidId."""
    if not is_repo_id(value):
        raise InvalidId(f"invalid repo id {_show(value)}: expected a lowercase uuid")
    return value  # type: ignore[return-value]


def check_repo_prefix(value: object) -> str:
    """Return ``value`` if it is 0 to 8 lowercase hex digits (the start of a repo
    id, before its first ``-``), else raise InvalidId."""
    if not (isinstance(value, str) and _REPO_PREFIX_RE.match(value)):
        raise InvalidId(
            f"invalid repo id prefix {_show(value)}: expected up to 8 lowercase hex digits"
        )
    return value


def check_obj_id(value: object) -> str:
    """Return ``value`` if it is 40 lowercase hex chars, else raise InvalidId."""
    if not is_obj_id(value):
        raise InvalidId(f"invalid object id {_show(value)}: expected 40 lowercase hex chars")
    return value  # type: ignore[return-value]


@dataclass(frozen=True, order=True)
class ObjectInfo:
    """What a listing or ``stat`` knows about one stored object.  ``etag``: the
    server's ETag from an S3 listing (quotes removed), else None; not compared."""

    repo_id: str
    obj_id: str
    size: int
    etag: str | None = field(default=None, compare=False)
