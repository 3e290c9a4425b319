"""Legacy [store_crypt] backend encryption."""

from __future__ import annotations

import ast
import binascii
import re
import zlib
from pathlib import Path

import pytest

import objstore
from objstore.crypt import StoreCrypt
from objstore.errors import ConfigError, CorruptObject
from objstore.formats import SeafFile, encode_file, verify_object
from objstore.ids import ObjKind

KEY_HEX = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f"
IV_HEX = "f0f1f2f3f4f5f6f7f8f9fafbfcfdfeff"
OTHER_KEY_HEX = "9ef2971030de5e0d46edb7c1951652a0dccbed8b72758814614e9a546f1090d1"

# Known answer from the OpenSSL command line (EVP aes-256-cbc, default PKCS#7
# padding, as seafobj's SeafCrypto uses):
#   printf 'hello seafile store_crypt\n' |
#     openssl enc -aes-256-cbc -K <KEY_HEX> -iv <IV_HEX> | xxd -p
PLAINTEXT = b"hello seafile store_crypt\n"
CIPHERTEXT = bytes.fromhex("a20eb5358e2916f923464b3e71796d99f18bc11d1fd723e9f7f700ca23813b0a")


def write_key_file(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "seaf-key.txt"
    path.write_text(text)
    return path


@pytest.fixture
def crypt(tmp_path: Path) -> StoreCrypt:
    path = write_key_file(tmp_path, f"[store_crypt]\nenc_key = {KEY_HEX}\nenc_iv = {IV_HEX}\n")
    return StoreCrypt.load(path)


def test_known_answer(crypt: StoreCrypt) -> None:
    assert crypt.encrypt(PLAINTEXT) == CIPHERTEXT
    assert crypt.decrypt(CIPHERTEXT) == PLAINTEXT


@pytest.mark.parametrize("size", [0, 1, 15, 16, 17, 4096, 100_003])
def test_round_trip(crypt: StoreCrypt, size: int) -> None:
    data = bytes(i % 251 for i in range(size))
    enc = crypt.encrypt(data)
    assert len(enc) % 16 == 0 and len(data) < len(enc) <= len(data) + 16
    assert crypt.decrypt(enc) == data


def test_fs_object_is_encrypted_after_compression(crypt: StoreCrypt) -> None:
    obj_id, stored = encode_file(SeafFile(["a" * 40], 3))
    on_disk = crypt.encrypt(stored)
    plain = crypt.decrypt(on_disk, kind=ObjKind.FS, obj_id=obj_id)
    verify_object(ObjKind.FS, obj_id, plain)
    assert zlib.decompress(plain).startswith(b'{"block_ids": ')


def test_wrong_key_is_detected(crypt: StoreCrypt) -> None:
    other = StoreCrypt(bytes.fromhex(OTHER_KEY_HEX), bytes.fromhex(IV_HEX))
    with pytest.raises(CorruptObject, match="bad padding"):
        other.decrypt(CIPHERTEXT)


def test_damaged_data_is_detected(crypt: StoreCrypt) -> None:
    for data in (b"", CIPHERTEXT[:-1], CIPHERTEXT + b"x"):
        with pytest.raises(CorruptObject):
            crypt.decrypt(data)
    damaged = bytearray(CIPHERTEXT)
    damaged[-1] ^= 0x01  # last block: garbles the padding
    with pytest.raises(CorruptObject) as info:
        crypt.decrypt(bytes(damaged), kind=ObjKind.BLOCK, obj_id="b" * 40)
    assert "block" in str(info.value) and "b" * 40 in str(info.value)


def test_repr_hides_the_key(crypt: StoreCrypt) -> None:
    key = bytes.fromhex(KEY_HEX)
    for text in (repr(crypt), str(crypt)):
        assert KEY_HEX not in text and repr(key) not in text and IV_HEX not in text
        assert "hidden" in text and "seaf-key.txt" in text


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.txt"
    with pytest.raises(ConfigError) as info:
        StoreCrypt.load(path)
    assert str(path) in str(info.value)


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        (f"enc_key = {KEY_HEX}\nenc_iv = {IV_HEX}\n", "key before the first [section]"),
        (f"[other]\nenc_key = {KEY_HEX}\n", "no [store_crypt]"),
        (f"[store_crypt]\nenc_iv = {IV_HEX}\n", "enc_key"),
        (f"[store_crypt]\nenc_key = {KEY_HEX}\n", "enc_iv"),
        (f"[store_crypt]\nenc_key = {KEY_HEX[:-2]}zz\nenc_iv = {IV_HEX}\n", "hex"),
        (f"[store_crypt]\nenc_key = {KEY_HEX[:32]}\nenc_iv = {IV_HEX}\n", "64 hex chars"),
        (f"[store_crypt]\nenc_key = {KEY_HEX}\nenc_iv = {IV_HEX}00\n", "32 hex chars"),
        (f"[store_crypt]\nenc_key = {KEY_HEX}\n{KEY_HEX} garbage line\n", "expected 'key = value'"),
        (f"[{KEY_HEX}\nenc_key = {KEY_HEX}\n", "malformed group line"),
        (f"[store_crypt]\n{KEY_HEX} = x\n", "enc_key: missing"),
    ],
)
def test_bad_key_file(tmp_path: Path, text: str, reason: str) -> None:
    path = write_key_file(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        StoreCrypt.load(path)
    message = str(info.value)
    assert reason in message and str(path) in message
    assert KEY_HEX not in message and KEY_HEX[:32] not in message and IV_HEX not in message
    # nothing chained that could quote the file
    assert info.value.__cause__ is None
    assert info.value.__context__ is None or info.value.__suppress_context__


KEY_LINES = f"enc_key = {KEY_HEX}\nenc_iv = {IV_HEX}\n"

# Where configparser (which read the key file before, and which seafobj uses) and
# GKeyFile (seafile.conf's reader, now used for both) differ.  Each case: the text,
# what configparser did, and what objstore does now (None: the key loads).
DIFFERENCES = [
    # only '#' starts a comment in GKeyFile; configparser also took ';'
    (f"; the key\n[store_crypt]\n{KEY_LINES}", "loaded", "expected 'key = value'"),
    (f"[store_crypt]\n; the key\n{KEY_LINES}", "loaded", "expected 'key = value'"),
    (f"# the key\n[store_crypt]\n  # indented\n{KEY_LINES}", "loaded", None),
    # keys are case-sensitive; configparser lowercased them
    (f"[store_crypt]\nENC_KEY = {KEY_HEX}\nenc_iv = {IV_HEX}\n", "loaded",
     "keys are case-sensitive"),
    (f"[STORE_CRYPT]\n{KEY_LINES}", "refused", "no [store_crypt]"),
    # 'key: value' was configparser's second delimiter
    (f"[store_crypt]\nenc_key: {KEY_HEX}\nenc_iv: {IV_HEX}\n", "loaded", "expected 'key = value'"),
    # [DEFAULT] values were inherited by every section
    (f"[DEFAULT]\n{KEY_LINES}[store_crypt]\n", "loaded", "enc_key: missing"),
    # a byte-order mark broke configparser's first section header
    (f"\ufeff[store_crypt]\n{KEY_LINES}", "refused", None),
    # a key given twice: both refuse, now naming the key and line (never the value)
    (f"[store_crypt]\n{KEY_LINES}enc_key = {OTHER_KEY_HEX}\n", "refused", "option set twice"),
    # quotes and inline comments stay in the value in both
    (f'[store_crypt]\nenc_key = "{KEY_HEX}"\nenc_iv = {IV_HEX}\n', "refused", "not a hex string"),
    (f"[store_crypt]\nenc_key = {KEY_HEX} # k\nenc_iv = {IV_HEX}\n", "refused", "not a hex string"),
    # an indented line continued the value in configparser; here it is its own line
    (f"[store_crypt]\nenc_key = {KEY_HEX[:32]}\n  {KEY_HEX[32:]}\nenc_iv = {IV_HEX}\n",
     "refused", "expected 'key = value'"),
]  # fmt: skip


def _configparser_outcome(text: str) -> str:
    """What the old reader (configparser, as seafobj reads the file) made of ``text``."""
    import configparser  # the old reader, as an oracle; objstore itself never imports it

    parser = configparser.ConfigParser(interpolation=None)
    try:
        parser.read_string(text)
        key = binascii.unhexlify(parser.get("store_crypt", "enc_key").strip())
        iv = binascii.unhexlify(parser.get("store_crypt", "enc_iv").strip())
    except (configparser.Error, binascii.Error, ValueError):
        return "refused"
    return "loaded" if (len(key), len(iv)) == (32, 16) else "refused"


@pytest.mark.parametrize(("text", "configparser_did", "now"), DIFFERENCES)
def test_key_file_follows_gkeyfile_rules(
    tmp_path: Path, text: str, configparser_did: str, now: str | None
) -> None:
    assert _configparser_outcome(text) == configparser_did
    path = write_key_file(tmp_path, text)
    if now is None:
        loaded = StoreCrypt.load(path)
        assert loaded.encrypt(PLAINTEXT) == CIPHERTEXT
        return
    with pytest.raises(ConfigError, match=re.escape(now)) as info:
        StoreCrypt.load(path)
    message = str(info.value)
    assert str(path) in message
    for secret in (KEY_HEX, KEY_HEX[:32], KEY_HEX[32:], IV_HEX, OTHER_KEY_HEX):
        assert secret not in message


def test_objstore_is_configparser_free() -> None:
    """One reader for ini-style files: nothing in the package imports configparser."""
    package = Path(objstore.__file__).parent
    for source in sorted(package.rglob("*.py")):
        tree = ast.parse(source.read_text(), str(source))
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            assert "configparser" not in names, source


def test_key_file_not_text(tmp_path: Path) -> None:
    path = tmp_path / "k"
    path.write_bytes(b"\xff\xfe[store_crypt]")
    with pytest.raises(ConfigError, match="not valid UTF-8"):
        StoreCrypt.load(path)


def test_constructor_checks_lengths() -> None:
    with pytest.raises(ValueError):
        StoreCrypt(b"k" * 16, b"i" * 16)
    with pytest.raises(ValueError):
        StoreCrypt(b"k" * 32, b"i" * 8)
