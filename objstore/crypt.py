"""Legacy backend encryption: seafile.conf ``[store_crypt] key_path = FILE``.

Format, as seafobj implements it (``seafobj/objstore_factory.py``
``get_seaf_crypto``, ``seafobj/utils/crypto.py`` ``SeafCrypto``,
``seafobj/backends/base.py`` ``read_obj``):

* the key file is a key file with a ``[store_crypt]`` group holding ``enc_key``
  (64 hex chars, the raw AES-256 key; no key derivation) and ``enc_iv`` (32 hex
  chars, the raw IV).  It is read like seafile.conf, with GKeyFile semantics
  (:mod:`objstore.keyfile`): keys are case-sensitive, only ``#`` starts a comment,
  ``key = value`` only (no ``key: value``), no ``[DEFAULT]`` inheritance, a repeated
  key is an error.  (seafobj reads it with configparser, which also accepts
  ``ENC_KEY``, ``;`` comments and ``:``; objstore refuses those with a clear error.)
* every stored object (commit, fs and block alike) is AES-256-CBC with that one
  fixed IV and OpenSSL's default PKCS#7 padding, applied to the bytes Seafile
  would otherwise store (so an fs object is ``encrypt(zlib(json))``).

Object ids are computed on the plaintext, so :func:`objstore.formats.verify_object`
must run after :meth:`StoreCrypt.decrypt`.  Padding catches most wrong keys but
not all (about 1 in 256 wrong-key decryptions end in valid padding); the id check
catches the rest.
"""

from __future__ import annotations

import binascii
import os
from typing import Union

from cryptography.hazmat.primitives import padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from .errors import ConfigError, CorruptObject
from .ids import ObjKind
from .keyfile import KeyFile, read_keyfile

__all__ = ["SECTION", "StoreCrypt"]

SECTION = "store_crypt"
"""The section of the key file (and of seafile.conf) that holds the settings."""

_KEY_LEN = 32
_IV_LEN = 16
_BLOCK = 16

StrPath = Union[str, "os.PathLike[str]"]


def _hex_option(kf: KeyFile, option: str, length: int) -> bytes:
    values = kf.groups[SECTION]
    if option not in values:
        other = [k for k in values if k.lower() == option]
        hint = f" (keys are case-sensitive: {other[0]!r} is not {option!r})" if other else ""
        raise kf.error(f"missing in the key file{hint}", SECTION, option)
    text = values[option]
    try:
        raw = binascii.unhexlify(text)
    except (binascii.Error, ValueError):
        raise kf.error("is not a hex string", SECTION, option) from None
    if len(raw) != length:
        raise kf.error(
            f"must be {2 * length} hex chars ({length} bytes), got {len(text)} chars",
            SECTION,
            option,
        )
    return raw


class StoreCrypt:
    """AES-256-CBC with a fixed key and IV, as Seafile's ``[store_crypt]``.

    The key never appears in ``repr``, ``str`` or any error message.
    """

    __slots__ = ("_iv", "_key", "source")

    def __init__(self, key: bytes, iv: bytes, *, source: str | None = None) -> None:
        """``key`` is 32 raw bytes, ``iv`` 16 raw bytes; ``source`` names where
        they came from (shown in ``repr``).  ValueError on wrong lengths."""
        if len(key) != _KEY_LEN or len(iv) != _IV_LEN:
            raise ValueError("store_crypt needs a 32-byte key and a 16-byte IV")
        self._key = bytes(key)
        self._iv = bytes(iv)
        self.source = source

    @classmethod
    def load(cls, key_path: StrPath) -> StoreCrypt:
        """Read a key file (``[store_crypt]`` with hex ``enc_key`` and ``enc_iv``)
        with :func:`objstore.keyfile.read_keyfile`.

        ConfigError naming the file (and line) when it cannot be read or is
        invalid; the message never quotes the file's content.
        """
        path = os.fspath(key_path)
        kf = read_keyfile(path, what="a key file", quote=False)
        if SECTION not in kf.groups:
            raise ConfigError(f"key file has no [{SECTION}] group", file=path)
        key = _hex_option(kf, "enc_key", _KEY_LEN)
        iv = _hex_option(kf, "enc_iv", _IV_LEN)
        return cls(key, iv, source=path)

    def __repr__(self) -> str:
        return f"StoreCrypt(source={self.source!r}, key=<hidden>)"

    def _cipher(self) -> Cipher[modes.CBC]:
        return Cipher(algorithms.AES(self._key), modes.CBC(self._iv))

    def encrypt(self, data: bytes) -> bytes:
        """Encrypt as Seafile does (PKCS#7 padded, so the result is 1 to 16 bytes longer)."""
        padder = padding.PKCS7(_BLOCK * 8).padder()
        padded = padder.update(data) + padder.finalize()
        encryptor = self._cipher().encryptor()
        return encryptor.update(padded) + encryptor.finalize()

    def decrypt(
        self, data: bytes, *, kind: ObjKind | None = None, obj_id: str | None = None
    ) -> bytes:
        """Decrypt stored bytes.  CorruptObject when the length is not a positive
        multiple of 16 or the padding is wrong (damaged data or wrong key);
        ``kind`` and ``obj_id``, if given, name the object in the message."""
        what = " ".join(part for part in (kind.name.lower() if kind else None, obj_id) if part)
        label = f"encrypted {what} object" if what else "encrypted object"
        if not data or len(data) % _BLOCK:
            raise CorruptObject(f"{label}: length {len(data)} is not a positive multiple of 16")
        decryptor = self._cipher().decryptor()
        padded = decryptor.update(data) + decryptor.finalize()
        unpadder = padding.PKCS7(_BLOCK * 8).unpadder()
        try:
            return unpadder.update(padded) + unpadder.finalize()
        except ValueError:
            raise CorruptObject(f"{label}: bad padding (wrong key or damaged data)") from None
