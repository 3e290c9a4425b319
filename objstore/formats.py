"""Seafile's object formats: fs objects, commits and blocks (pure, no I/O).

What is written here was checked against Seafile's sources:

* fs objects, repo version 1 (``common/fs-mgr.c`` ``seaf_dir_to_json``,
  ``create_seafile_json``; ``fileserver/fsmgr/fsmgr.go`` ``toJSON``): the id is
  the sha1 of the JSON text that jansson's ``json_dumps(obj, JSON_SORT_KEYS)``
  produces (keys sorted, ``", "`` and ``": "`` separators, non-ASCII written as
  is, control characters as ``\\u00XX``); the stored bytes are that text
  zlib-compressed.  Dirents are kept in descending ``strcmp`` order of their
  UTF-8 names; ``modifier`` and ``size`` are only written for regular files.
* fs objects, repo version 0 (binary, big-endian ``SeafdirOndisk`` /
  ``SeafileOndisk``): a dir id is sha1 over ``id + name + mode`` (mode as
  little-endian uint32) of every dirent (``compute_dir_id_v0``); a file id is
  sha1 over the concatenated raw block ids (``verify_seafile_v0``).
* commits (``common/commit-mgr.c`` ``compute_commit_id`` and
  ``commit_to_json_object``): plain JSON; the id is sha1 over
  ``root_id\\0 creator\\0 [creator_name\\0] description\\0`` followed by ``ctime``
  as a big-endian int64, where ``creator_name`` is only hashed when present.  The
  Go fileserver (``fileserver/commitmgr/commitmgr.go`` ``computeCommitID``)
  hashes the same fields *without* the NUL terminators; both kinds of ids exist
  in real stores, so :func:`verify_object` accepts either.
* blocks: the id is the sha1 of the stored bytes (the ciphertext in encrypted
  libraries, ``seafile_write_chunk``).
"""

from __future__ import annotations

import hashlib
import json
import re
import stat
import struct
import zlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Union

from .errors import CorruptObject
from .ids import EMPTY_ID, ObjKind, check_obj_id, check_repo_id, is_obj_id

__all__ = [
    "DIR_MODE",
    "FILE_MODE",
    "Commit",
    "Dirent",
    "FsObject",
    "SeafDir",
    "SeafFile",
    "block_id",
    "commit_id_candidates",
    "compute_commit_id",
    "compute_commit_id_go",
    "decode_commit",
    "decode_fs",
    "dir_json",
    "encode_commit",
    "encode_dir",
    "encode_file",
    "file_json",
    "sort_dirents",
    "verify_object",
]

SEAF_METADATA_TYPE_FILE = 1
SEAF_METADATA_TYPE_DIR = 3

FILE_MODE = stat.S_IFREG | 0o644
"""Mode of a regular file dirent (``seaf_dirent_new`` forces the 0644 bits)."""

DIR_MODE = stat.S_IFDIR
"""Mode of a directory dirent (Seafile writes plain ``S_IFDIR``)."""

_UUID_RE = re.compile(
    r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\Z"
)
_TEXT_ERRORS = "surrogateescape"  # keeps bytes that are not UTF-8 (old commits) round-trippable
_V0_FILE_HEADER = struct.Struct(">IQ")  # type, file_size
_V0_DIRENT_HEADER = struct.Struct(">I40sI")  # mode, id, name_len
_V0_DIRENT_BASE = _V0_DIRENT_HEADER.size


# --------------------------------------------------------------------------- JSON text


_ESCAPES = {
    '"': '\\"',
    "\\": "\\\\",
    "\b": "\\b",
    "\f": "\\f",
    "\n": "\\n",
    "\r": "\\r",
    "\t": "\\t",
}
_NEEDS_ESCAPE = re.compile(r'["\\\x00-\x1f]')


def _escape_char(match: re.Match[str]) -> str:
    char = match.group(0)
    return _ESCAPES.get(char) or f"\\u{ord(char):04X}"


def _dump(value: object, *, sort_keys: bool) -> str:
    """Serialise like jansson's ``json_dumps`` without JSON_COMPACT/JSON_ENSURE_ASCII."""
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, int):
        return str(int(value))
    if isinstance(value, float):
        return json.dumps(value, allow_nan=False)
    if isinstance(value, str):
        return '"' + _NEEDS_ESCAPE.sub(_escape_char, value) + '"'
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_dump(item, sort_keys=sort_keys) for item in value) + "]"
    if isinstance(value, Mapping):
        keys = sorted(value) if sort_keys else list(value)
        return (
            "{"
            + ", ".join(
                _dump(str(key), sort_keys=sort_keys) + ": " + _dump(value[key], sort_keys=sort_keys)
                for key in keys
            )
            + "}"
        )
    raise TypeError(f"cannot serialise {type(value).__name__} as JSON")


def _to_bytes(text: str) -> bytes:
    try:
        return text.encode("utf-8", _TEXT_ERRORS)
    except UnicodeEncodeError:
        raise ValueError("string contains a lone surrogate that is not valid UTF-8") from None


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _load_json(raw: bytes) -> Any:
    """Parse JSON text; raises ValueError.  Bytes that are not UTF-8 survive as
    lone surrogates (surrogateescape), so re-encoding gives back the same bytes."""
    return json.loads(raw.decode("utf-8", _TEXT_ERRORS), parse_constant=_reject_constant)


def _int_member(obj: Mapping[str, Any], key: str) -> int:
    """jansson's ``json_integer_value``: 0 when missing or not an integer."""
    value = obj.get(key)
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    return 0


def _str_member(obj: Mapping[str, Any], key: str) -> str | None:
    """Seafile's ``json_object_get_string_member``: None when missing or not a string."""
    value = obj.get(key)
    return value if isinstance(value, str) else None


def _sha1(data: bytes) -> str:
    return hashlib.sha1(data).hexdigest()


# --------------------------------------------------------------------------- fs objects


@dataclass(frozen=True)
class Dirent:
    """One entry of a directory.

    ``modifier`` and ``size`` are only stored for regular files; for other modes
    they are not written (and decode as ``""`` and ``0``).  ``mtime`` is in
    seconds.  In version 0 dirs only ``id``, ``mode`` and ``name`` exist.
    """

    id: str
    mode: int
    mtime: int
    name: str
    modifier: str = ""
    size: int = 0

    @property
    def is_dir(self) -> bool:
        """True for a directory entry."""
        return stat.S_ISDIR(self.mode)

    @property
    def is_file(self) -> bool:
        """True for a regular file entry."""
        return stat.S_ISREG(self.mode)


@dataclass(frozen=True)
class SeafDir:
    """A directory object: its entries in Seafile's order (see :func:`sort_dirents`)."""

    dirents: list[Dirent]
    version: int = 1


@dataclass(frozen=True)
class SeafFile:
    """A file object: the ids of its blocks, in order, and its size in bytes."""

    block_ids: list[str]
    size: int
    version: int = 1


FsObject = Union[SeafDir, SeafFile]


def _name_key(dirent: Dirent) -> bytes:
    return _to_bytes(dirent.name)


def sort_dirents(dirents: Iterable[Dirent]) -> list[Dirent]:
    """Return the entries in Seafile's order: descending byte order of the UTF-8
    names (``strcmp(b, a)`` in ``compare_dirents``)."""
    return sorted(dirents, key=_name_key, reverse=True)


def _check_dirent(dirent: Dirent) -> None:
    check_obj_id(dirent.id)
    if not dirent.name or "/" in dirent.name or "\x00" in dirent.name:
        raise ValueError(f"invalid dirent name {dirent.name!r}")
    if dirent.name in (".", ".."):
        raise ValueError(f"invalid dirent name {dirent.name!r}")
    for value in (dirent.mode, dirent.mtime, dirent.size):
        if not isinstance(value, int) or isinstance(value, bool):
            raise ValueError("dirent mode, mtime and size must be integers")
    if not 0 <= dirent.mode <= 0xFFFFFFFF:
        raise ValueError(f"dirent mode {dirent.mode} out of range")


def dir_json(seafdir: SeafDir) -> bytes:
    """The uncompressed JSON of a version 1 dir object (whose sha1 is its id).

    Entries are written in Seafile's order whatever order they are given in;
    names must be unique.  ValueError on invalid entries.
    """
    if seafdir.version < 1:
        raise ValueError("only version 1 (JSON) fs objects can be encoded")
    entries = sort_dirents(seafdir.dirents)
    names = [_name_key(d) for d in entries]
    if len(set(names)) != len(names):
        raise ValueError("duplicate dirent names")
    rows: list[dict[str, object]] = []
    for dirent in entries:
        _check_dirent(dirent)
        row: dict[str, object] = {
            "id": dirent.id,
            "mode": dirent.mode,
            "mtime": dirent.mtime,
            "name": dirent.name,
        }
        if dirent.is_file:
            row["modifier"] = dirent.modifier
            row["size"] = dirent.size
        rows.append(row)
    obj = {"dirents": rows, "type": SEAF_METADATA_TYPE_DIR, "version": seafdir.version}
    return _to_bytes(_dump(obj, sort_keys=True))


def file_json(seafile: SeafFile) -> bytes:
    """The uncompressed JSON of a version 1 file object (whose sha1 is its id)."""
    if seafile.version < 1:
        raise ValueError("only version 1 (JSON) fs objects can be encoded")
    for bid in seafile.block_ids:
        check_obj_id(bid)
    if not isinstance(seafile.size, int) or seafile.size < 0:
        raise ValueError("file size must be a non-negative integer")
    obj = {
        "block_ids": list(seafile.block_ids),
        "size": seafile.size,
        "type": SEAF_METADATA_TYPE_FILE,
        "version": seafile.version,
    }
    return _to_bytes(_dump(obj, sort_keys=True))


def encode_dir(seafdir: SeafDir) -> tuple[str, bytes]:
    """``(dir_id, stored_bytes)`` for a version 1 dir: zlib-compressed JSON whose
    uncompressed sha1 is the id.  An empty dir is ``(EMPTY_ID, b"")``: Seafile
    never stores it, and neither may the caller."""
    if not seafdir.dirents:
        return EMPTY_ID, b""
    text = dir_json(seafdir)
    return _sha1(text), zlib.compress(text)


def encode_file(seafile: SeafFile) -> tuple[str, bytes]:
    """``(file_id, stored_bytes)`` for a version 1 file object.  An empty file
    (no blocks, size 0) is ``(EMPTY_ID, b"")``, never stored."""
    if not seafile.block_ids:
        if seafile.size != 0:
            raise ValueError("a file without blocks must have size 0")
        return EMPTY_ID, b""
    text = file_json(seafile)
    return _sha1(text), zlib.compress(text)


def _is_v0(data: bytes) -> bool:
    # A zlib stream's first byte has CM=8 in its low nibble, so it is never 0;
    # a version 0 object starts with a big-endian type (1 or 3).
    return data[:1] == b"\x00"


def _decompress(data: bytes) -> bytes:
    """Inflate a whole zlib stream; ValueError when truncated, damaged or followed by junk."""
    inflater = zlib.decompressobj()
    try:
        text = inflater.decompress(data) + inflater.flush()
    except zlib.error:
        raise ValueError("not a valid zlib stream") from None
    if not inflater.eof:
        raise ValueError("truncated zlib stream")
    if inflater.unused_data:
        raise ValueError("bytes after the end of the zlib stream")
    return text


def _parse_v0_dir(data: bytes) -> list[tuple[int, bytes, bytes]]:
    """``(mode, id, name)`` of each dirent of a version 0 dir; ValueError if malformed."""
    if len(data) < 4 or struct.unpack_from(">I", data)[0] != SEAF_METADATA_TYPE_DIR:
        raise ValueError("not a version 0 dir object")
    entries = []
    offset = 4
    while offset < len(data):
        if len(data) - offset < _V0_DIRENT_BASE:
            raise ValueError("truncated dirent")
        mode, raw_id, name_len = _V0_DIRENT_HEADER.unpack_from(data, offset)
        offset += _V0_DIRENT_BASE
        if name_len == 0 or len(data) - offset < name_len:
            raise ValueError("bad dirent name length")
        entries.append((mode, raw_id, data[offset : offset + name_len]))
        offset += name_len
    return entries


def _v0_dir_id(entries: Iterable[tuple[int, bytes, bytes]]) -> str:
    ctx = hashlib.sha1()
    for mode, raw_id, name in entries:
        ctx.update(raw_id)
        ctx.update(name)
        ctx.update(struct.pack("<I", mode))
    return ctx.hexdigest()


def _parse_v0_file(data: bytes) -> tuple[int, list[str]]:
    if len(data) < _V0_FILE_HEADER.size:
        raise ValueError("truncated version 0 file object")
    obj_type, size = _V0_FILE_HEADER.unpack_from(data)
    if obj_type != SEAF_METADATA_TYPE_FILE:
        raise ValueError("not a version 0 file object")
    ids = data[_V0_FILE_HEADER.size :]
    if len(ids) % 20:
        raise ValueError("bad block id list length")
    return size, [ids[i : i + 20].hex() for i in range(0, len(ids), 20)]


def _decode_v0(data: bytes) -> FsObject:
    obj_type = struct.unpack_from(">I", data)[0] if len(data) >= 4 else 0
    if obj_type == SEAF_METADATA_TYPE_FILE:
        size, block_ids = _parse_v0_file(data)
        return SeafFile(block_ids=block_ids, size=size, version=0)
    dirents = []
    for mode, raw_id, raw_name in _parse_v0_dir(data):
        obj_id = raw_id.decode("ascii", "replace")
        if not is_obj_id(obj_id):
            raise ValueError("invalid dirent id")
        dirents.append(
            Dirent(id=obj_id, mode=mode, mtime=0, name=raw_name.decode("utf-8", _TEXT_ERRORS))
        )
    return SeafDir(dirents=dirents, version=0)


def _decode_fs_json(text: bytes) -> FsObject:
    """Mirror ``seafile_from_json_object`` / ``seaf_dir_from_json_object``."""
    obj = _load_json(text)
    if not isinstance(obj, dict):
        raise ValueError("fs object is not a JSON object")
    obj_type = _int_member(obj, "type")
    version = _int_member(obj, "version")
    if version < 1:
        raise ValueError("fs object version must be >= 1")
    if obj_type == SEAF_METADATA_TYPE_FILE:
        block_ids = obj.get("block_ids")
        if not isinstance(block_ids, list) or not all(is_obj_id(b) for b in block_ids):
            raise ValueError("missing or invalid block_ids")
        return SeafFile(block_ids=list(block_ids), size=_int_member(obj, "size"), version=version)
    if obj_type == SEAF_METADATA_TYPE_DIR:
        rows = obj.get("dirents")
        if not isinstance(rows, list):
            raise ValueError("missing dirents")
        dirents = []
        for row in rows:
            if not isinstance(row, dict):
                raise ValueError("dirent is not a JSON object")
            mode = _int_member(row, "mode") & 0xFFFFFFFF
            obj_id, name = _str_member(row, "id"), _str_member(row, "name")
            if obj_id is None or not is_obj_id(obj_id) or name is None:
                raise ValueError("dirent without a valid id or name")
            modifier, size = "", 0
            if stat.S_ISREG(mode):
                found = _str_member(row, "modifier")
                if found is None:
                    raise ValueError("file dirent without modifier")
                modifier, size = found, _int_member(row, "size")
            dirents.append(Dirent(obj_id, mode, _int_member(row, "mtime"), name, modifier, size))
        return SeafDir(dirents=dirents, version=version)
    raise ValueError("unknown fs object type")


def decode_fs(stored: bytes) -> FsObject:
    """Parse stored fs bytes: zlib JSON (version >= 1) or the binary version 0
    format, told apart by the first byte.  Entries keep their stored order.
    CorruptObject when the bytes are not a valid fs object (does not check the id;
    see :func:`verify_object`)."""
    try:
        if _is_v0(stored):
            return _decode_v0(stored)
        return _decode_fs_json(_decompress(stored))
    except (ValueError, RecursionError) as exc:
        raise CorruptObject(f"invalid fs object: {exc}") from None


# --------------------------------------------------------------------------- blocks


def block_id(data: bytes) -> str:
    """A block's id: the sha1 of its stored bytes."""
    return _sha1(data)


# --------------------------------------------------------------------------- commits


@dataclass(frozen=True)
class Commit:
    """A commit object with the fields ``commit_to_json_object`` writes.

    ``creator`` is the 40-char creator (device) id; web/server commits use
    EMPTY_ID.  ``creator_name`` None means absent (then it is not hashed).
    ``random_key`` is the JSON ``key`` member.  Members this class does not know
    (``pwd_hash``, ``key_iter``, ...) are kept in ``extra`` and written back after
    the known ones; ``extra`` makes instances unhashable.  A decoded commit
    without a ``commit_id`` member has ``commit_id == ""``.
    """

    commit_id: str
    root_id: str
    repo_id: str
    creator: str = EMPTY_ID
    creator_name: str | None = None
    description: str = ""
    ctime: int = 0
    parent_id: str | None = None
    second_parent_id: str | None = None
    repo_name: str = ""
    repo_desc: str = ""
    repo_category: str | None = None
    device_name: str | None = None
    client_version: str | None = None
    encrypted: bool = False
    enc_version: int = 0
    magic: str | None = None
    random_key: str | None = None
    salt: str | None = None
    no_local_history: bool = False
    version: int = 1
    conflict: bool = False
    new_merge: bool = False
    repaired: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def create(
        cls,
        *,
        repo_id: str,
        root_id: str,
        ctime: int,
        creator_name: str | None = None,
        description: str = "",
        creator: str = EMPTY_ID,
        **fields: Any,
    ) -> Commit:
        """A new commit whose ``commit_id`` is computed as Seafile's C code does."""
        commit_id = compute_commit_id(root_id, creator, creator_name, description, ctime)
        return cls(
            commit_id=commit_id,
            root_id=root_id,
            repo_id=repo_id,
            creator=creator,
            creator_name=creator_name,
            description=description,
            ctime=ctime,
            **fields,
        )


def _commit_fields(
    root_id: str, creator_id: str, creator_name: str | None, description: str, ctime: int
) -> tuple[bytes, bytes, bytes | None, bytes, bytes]:
    check_obj_id(root_id)
    if len(creator_id) != 40:
        raise ValueError("creator id must be 40 characters")
    for text in (creator_id, creator_name or "", description):
        if "\x00" in text:
            raise ValueError("commit strings cannot contain NUL characters")
    if not isinstance(ctime, int) or not -(2**63) <= ctime < 2**63:
        raise ValueError("ctime must be a 64-bit integer")
    return (
        root_id.encode("ascii"),
        _to_bytes(creator_id),
        None if creator_name is None else _to_bytes(creator_name),
        _to_bytes(description),
        struct.pack(">q", ctime),
    )


def compute_commit_id(
    root_id: str, creator_id: str, creator_name: str | None, description: str, ctime: int
) -> str:
    """Seafile's ``compute_commit_id`` (C server and clients): sha1 over root_id,
    creator_id, creator_name (only when not None) and description, each followed
    by a NUL byte, then ctime as a big-endian int64.  ValueError on bad input."""
    root, creator, name, desc, when = _commit_fields(
        root_id, creator_id, creator_name, description, ctime
    )
    ctx = hashlib.sha1(root + b"\0" + creator + b"\0")
    if name is not None:
        ctx.update(name + b"\0")
    ctx.update(desc + b"\0")
    ctx.update(when)
    return ctx.hexdigest()


def compute_commit_id_go(
    root_id: str, creator_id: str, creator_name: str | None, description: str, ctime: int
) -> str:
    """The Go fileserver's ``computeCommitID``: the same fields concatenated
    without NUL terminators, then ctime as a big-endian 64-bit integer."""
    root, creator, name, desc, when = _commit_fields(
        root_id, creator_id, creator_name, description, ctime
    )
    return _sha1(root + creator + (name or b"") + desc + when)


def commit_id_candidates(commit: Commit) -> frozenset[str]:
    """The ids Seafile's writers (C and Go) would have given this commit."""
    args = (commit.root_id, commit.creator, commit.creator_name, commit.description, commit.ctime)
    return frozenset((compute_commit_id(*args), compute_commit_id_go(*args)))


_KNOWN_COMMIT_KEYS = frozenset(
    {
        "commit_id", "root_id", "repo_id", "creator_name", "creator", "description", "ctime",
        "parent_id", "second_parent_id", "repo_name", "repo_desc", "repo_category",
        "device_name", "client_version", "encrypted", "enc_version", "magic", "key", "salt",
        "no_local_history", "version", "conflict", "new_merge", "repaired",
    }
)  # fmt: skip


def _commit_json(commit: Commit) -> dict[str, object]:
    """Members in ``commit_to_json_object`` order."""
    obj: dict[str, object] = {
        "commit_id": commit.commit_id,
        "root_id": commit.root_id,
        "repo_id": commit.repo_id,
    }
    if commit.creator_name is not None:
        obj["creator_name"] = commit.creator_name
    obj["creator"] = commit.creator
    obj["description"] = commit.description
    obj["ctime"] = commit.ctime
    obj["parent_id"] = commit.parent_id
    obj["second_parent_id"] = commit.second_parent_id
    obj["repo_name"] = commit.repo_name
    obj["repo_desc"] = commit.repo_desc
    obj["repo_category"] = commit.repo_category
    if commit.device_name is not None:
        obj["device_name"] = commit.device_name
    if commit.client_version is not None:
        obj["client_version"] = commit.client_version
    if commit.encrypted:
        obj["encrypted"] = "true"
        obj["enc_version"] = commit.enc_version
        if commit.enc_version >= 1:
            obj["magic"] = commit.magic
        if commit.enc_version >= 2:
            obj["key"] = commit.random_key
        if commit.enc_version >= 3:
            obj["salt"] = commit.salt
    if commit.no_local_history:
        obj["no_local_history"] = 1
    if commit.version != 0:
        obj["version"] = commit.version
    if commit.conflict:
        obj["conflict"] = 1
    if commit.new_merge:
        obj["new_merge"] = 1
    if commit.repaired:
        obj["repaired"] = 1
    for key, value in commit.extra.items():
        if key in _KNOWN_COMMIT_KEYS:
            raise ValueError(f"extra member {key!r} clashes with a commit field")
        obj[key] = value
    return obj


def encode_commit(commit: Commit) -> tuple[str, bytes]:
    """``(commit_id, stored_bytes)``: plain JSON as the C server writes it
    (``json_dumps(obj, 0)``: members in insertion order, ``", "``/``": "``).

    ``commit.commit_id`` must be one of the ids Seafile would compute for it
    (see :meth:`Commit.create`); ValueError otherwise or on invalid fields.
    """
    check_obj_id(commit.commit_id)
    if commit.commit_id not in commit_id_candidates(commit):
        raise ValueError("commit_id does not match the commit's root_id/creator/description/ctime")
    check_repo_id(commit.repo_id)
    for parent in (commit.parent_id, commit.second_parent_id):
        if parent is not None:
            check_obj_id(parent)
    return commit.commit_id, _to_bytes(_dump(_commit_json(commit), sort_keys=False))


def _opt_str(obj: Mapping[str, Any], key: str) -> str | None:
    return _str_member(obj, key)


def _commit_from_json(obj: Mapping[str, Any]) -> Commit:
    """Mirror ``commit_from_json_object`` (without lower-casing creator_name)."""
    root_id = _str_member(obj, "root_id")
    repo_id = _str_member(obj, "repo_id")
    creator = _str_member(obj, "creator")
    parent_id = _opt_str(obj, "parent_id")
    second_parent_id = _opt_str(obj, "second_parent_id")
    if repo_id is None or not _UUID_RE.match(repo_id):
        raise ValueError("missing or invalid repo_id")
    if root_id is None or not is_obj_id(root_id):
        raise ValueError("missing or invalid root_id")
    if creator is None or len(creator) != 40:
        raise ValueError("missing or invalid creator")
    if (parent_id is not None and not is_obj_id(parent_id)) or (
        second_parent_id is not None and not is_obj_id(second_parent_id)
    ):
        raise ValueError("invalid parent id")
    encrypted = _str_member(obj, "encrypted") == "true"
    enc_version = _int_member(obj, "enc_version") if encrypted and "enc_version" in obj else 0
    commit_id = _str_member(obj, "commit_id") or ""
    return Commit(
        commit_id=commit_id,
        root_id=root_id,
        repo_id=repo_id,
        creator=creator,
        creator_name=_opt_str(obj, "creator_name"),
        description=_str_member(obj, "description") or "",
        ctime=_int_member(obj, "ctime"),
        parent_id=parent_id,
        second_parent_id=second_parent_id,
        repo_name=_str_member(obj, "repo_name") or "",
        repo_desc=_str_member(obj, "repo_desc") or "",
        repo_category=_opt_str(obj, "repo_category"),
        device_name=_opt_str(obj, "device_name"),
        client_version=_opt_str(obj, "client_version"),
        encrypted=encrypted,
        enc_version=enc_version,
        magic=_opt_str(obj, "magic") if encrypted and enc_version >= 1 else None,
        random_key=_opt_str(obj, "key") if encrypted and enc_version >= 2 else None,
        salt=_opt_str(obj, "salt") if encrypted and enc_version >= 3 else None,
        no_local_history=bool(_int_member(obj, "no_local_history")),
        version=_int_member(obj, "version"),
        conflict=bool(_int_member(obj, "conflict")),
        new_merge=bool(_int_member(obj, "new_merge")),
        repaired=bool(_int_member(obj, "repaired")),
        extra={k: v for k, v in obj.items() if k not in _KNOWN_COMMIT_KEYS},
    )


def decode_commit(stored: bytes) -> Commit:
    """Parse a stored commit.  CorruptObject when it is not JSON or lacks what
    Seafile requires (repo_id, root_id, 40-char creator, valid parent ids).
    Does not check the id (see :func:`verify_object`)."""
    try:
        obj = _load_json(stored)
        if not isinstance(obj, dict):
            raise ValueError("not a JSON object")
        return _commit_from_json(obj)
    except (ValueError, RecursionError) as exc:
        raise CorruptObject(f"invalid commit object: {exc}") from None


# --------------------------------------------------------------------------- verification


def _verify_fs(obj_id: str, data: bytes) -> None:
    if _is_v0(data):
        if data[:4] == struct.pack(">I", SEAF_METADATA_TYPE_FILE):
            _parse_v0_file(data)
            computed = _sha1(data[_V0_FILE_HEADER.size :])
        else:
            computed = _v0_dir_id(_parse_v0_dir(data))
        if computed != obj_id:
            raise ValueError("content does not match the id (version 0 object)")
        return
    text = _decompress(data)
    if _sha1(text) != obj_id:
        raise ValueError("sha1 of the decompressed JSON does not match the id")
    if not isinstance(_load_json(text), dict):
        raise ValueError("not a JSON object")


def _verify_commit(obj_id: str, data: bytes) -> None:
    obj = _load_json(data)
    if not isinstance(obj, dict):
        raise ValueError("not a JSON object")
    commit = _commit_from_json(obj)
    if "commit_id" in obj and obj["commit_id"] != obj_id:
        raise ValueError("its commit_id member does not match the id")
    if obj_id not in commit_id_candidates(commit):
        raise ValueError(
            "id recomputed from root_id/creator/creator_name/description/ctime differs"
        )


def verify_object(kind: ObjKind, obj_id: str, data: bytes) -> None:
    """Raise CorruptObject unless ``data`` is a valid stored object with id ``obj_id``.

    * block: sha1(data) == id.
    * fs, version >= 1 (zlib): a complete zlib stream (no trailing bytes) whose
      decompressed bytes hash to the id and parse as a JSON object.
    * fs, version 0 (binary, first byte 0): well-formed, and the id recomputed as
      Seafile does (dir: id+name+mode of each entry; file: the raw block ids)
      matches.  A version 0 file's size field is not covered by its id.
    * commit: JSON with what Seafile requires to load it; its ``commit_id``
      member, when present, equals the id; and the id recomputed from root_id,
      creator, creator_name, description and ctime equals the id, with either the
      C formula or the Go fileserver's one.  Other members (parents, repo name,
      ...) are not covered by the id and cannot be verified.

    The message names the kind and the id, never the content.  InvalidId if
    ``obj_id`` is not a 40-char lowercase hex id, ValueError for an unknown kind.
    """
    kind = ObjKind(kind)
    check_obj_id(obj_id)
    try:
        if kind is ObjKind.BLOCK:
            if _sha1(data) != obj_id:
                raise ValueError("sha1 of the content does not match the id")
        elif kind is ObjKind.FS:
            _verify_fs(obj_id, data)
        elif kind is ObjKind.COMMIT:
            _verify_commit(obj_id, data)
        else:  # pragma: no cover - ObjKind has three members
            raise ValueError(f"unknown kind {kind!r}")
    except (ValueError, RecursionError) as exc:
        raise CorruptObject(f"corrupt {kind.name.lower()} object {obj_id}: {exc}") from None
