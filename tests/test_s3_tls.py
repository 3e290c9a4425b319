"""Whom the S3 driver trusts over HTTPS, in boto3's order, against the session's
SeaweedFS (its certificate signed by the test CA): ``ca_file``; ``ca_path``
(c_rehash'ed or a plain directory of PEM files); ``AWS_CA_BUNDLE``; the
``ca_bundle`` of the active profile in the AWS config file; boto3's default
bundle.  An untrusted certificate is a clear objstore error."""

from __future__ import annotations

import hashlib
import shutil
import ssl
from pathlib import Path
from typing import Any

import pytest

import objstore
from objstore import ObjKind
from objstore.config import S3Config, load_config
from objstore.drivers.s3 import tls_context
from objstore.errors import BackendUnavailable, ConfigError
from tests.helpers import fs_conf, s3_section, write_conf
from tests.servers import TestCA

REPO = "1b4e28ba-2fa1-11d2-883f-0016d3cca427"


@pytest.fixture(scope="module")
def other_ca() -> Any:
    """A CA that signed nothing the servers present."""
    ca = TestCA()
    yield ca
    ca.close()


@pytest.fixture
def no_ambient_trust(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No AWS_CA_BUNDLE and no AWS config file unless a test writes one (this
    machine sets AWS_CA_BUNDLE); returns where the config file would be."""
    config = tmp_path / "aws-config"
    for name in ("AWS_CA_BUNDLE", "AWS_PROFILE", "AWS_DEFAULT_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(config))
    return config


def _store(tmp_path: Path, seaweed: Any, bucket: str, **options: object) -> Any:
    """The block store of a seafile.conf with blocks on ``seaweed`` over HTTPS,
    with ``options`` (``ca_file=""`` drops the helper's ca_file)."""
    text = s3_section(seaweed, ObjKind.BLOCK, bucket, https=True, extra=options)
    others = fs_conf(tmp_path / "data").split("\n\n")
    text += "".join(sec + "\n" for sec in others if "[block_backend]" not in sec)
    (tmp_path / "data").mkdir(exist_ok=True)
    return objstore.open_stores(str(write_conf(tmp_path / "conf", text))).block


def _round_trip(store: Any) -> None:
    data = b"trusted"
    obj = hashlib.sha1(data).hexdigest()
    store.write(REPO, obj, data)
    assert store.read(REPO, obj) == data


def _plain_pem_directory(tmp_path: Path, ca: TestCA) -> Path:
    """A directory holding the CA's certificate under an ordinary name (not c_rehash'ed)."""
    directory = tmp_path / "plain-ca-dir"
    directory.mkdir()
    shutil.copy(ca.ca_file, directory / "our-ca.pem")
    (directory / "README").write_text("not a certificate\n")
    return directory


@pytest.mark.parametrize(
    "source",
    ["ca_file", "ca_path hashed", "ca_path plain", "AWS_CA_BUNDLE", "profile", "default profile"],
)
def test_each_trust_source_reaches_the_server(
    tmp_path: Path,
    seaweed: Any,
    seaweed_bucket: str,
    test_ca: TestCA,
    no_ambient_trust: Path,
    monkeypatch: pytest.MonkeyPatch,
    source: str,
) -> None:
    options: dict[str, object] = {"ca_file": ""}
    if source == "ca_file":
        options["ca_file"] = test_ca.ca_file
    elif source == "ca_path hashed":
        if test_ca.ca_dir is None:
            pytest.skip("no openssl binary: no c_rehash'ed directory")
        options["ca_path"] = test_ca.ca_dir
    elif source == "ca_path plain":
        options["ca_path"] = _plain_pem_directory(tmp_path, test_ca)
    elif source == "AWS_CA_BUNDLE":
        monkeypatch.setenv("AWS_CA_BUNDLE", str(test_ca.ca_file))
    elif source == "profile":
        no_ambient_trust.write_text(
            f"[default]\nregion = us-east-1\n[profile ops]\nca_bundle = {test_ca.ca_file}\n"
        )
        monkeypatch.setenv("AWS_PROFILE", "ops")
    else:
        no_ambient_trust.write_text(f"[default]\nca_bundle = {test_ca.ca_file}\n")
    _round_trip(_store(tmp_path, seaweed, seaweed_bucket, **options))


@pytest.mark.parametrize(
    "setup",
    [
        "nothing (the default bundle)",
        "ca_file beats AWS_CA_BUNDLE",
        "AWS_CA_BUNDLE beats the profile",
        "AWS_DEFAULT_PROFILE beats AWS_PROFILE",
        "another profile's ca_bundle",
    ],
)
def test_untrusted_certificates_are_a_clear_error_and_the_order_is_boto3s(
    tmp_path: Path,
    seaweed: Any,
    seaweed_bucket: str,
    test_ca: TestCA,
    other_ca: TestCA,
    no_ambient_trust: Path,
    monkeypatch: pytest.MonkeyPatch,
    setup: str,
) -> None:
    """Each case offers the right CA only where boto3 would not look first."""
    options: dict[str, object] = {"ca_file": ""}
    right, wrong = test_ca.ca_file, other_ca.ca_file
    if setup == "ca_file beats AWS_CA_BUNDLE":
        options["ca_file"] = wrong
        monkeypatch.setenv("AWS_CA_BUNDLE", str(right))
    elif setup == "AWS_CA_BUNDLE beats the profile":
        monkeypatch.setenv("AWS_CA_BUNDLE", str(wrong))
        no_ambient_trust.write_text(f"[default]\nca_bundle = {right}\n")
    elif setup == "AWS_DEFAULT_PROFILE beats AWS_PROFILE":
        no_ambient_trust.write_text(
            f"[profile a]\nca_bundle = {wrong}\n[profile b]\nca_bundle = {right}\n"
        )
        monkeypatch.setenv("AWS_DEFAULT_PROFILE", "a")
        monkeypatch.setenv("AWS_PROFILE", "b")
    elif setup == "another profile's ca_bundle":
        no_ambient_trust.write_text(f"[profile elsewhere]\nca_bundle = {right}\n")
    with pytest.raises(BackendUnavailable, match="TLS certificate not trusted"):
        _store(tmp_path, seaweed, seaweed_bucket, **options)


def test_the_default_bundle_is_boto3s(tmp_path: Path, no_ambient_trust: Path) -> None:
    from botocore.httpsession import get_cert_path

    conf = write_conf(tmp_path, "[block_backend]\nname = s3\nbucket = b\nuse_https = true\n")
    kf = load_config(conf, data_dir=tmp_path)
    cfg = kf.backends[ObjKind.BLOCK]
    assert isinstance(cfg, S3Config)
    ours = tls_context(cfg, {"AWS_CONFIG_FILE": str(no_ambient_trust)})
    boto3s = ssl.create_default_context(cafile=get_cert_path(True))
    assert len(ours.get_ca_certs()) == len(boto3s.get_ca_certs()) > 10
    assert ours.verify_mode == ssl.CERT_REQUIRED and ours.check_hostname


@pytest.mark.parametrize(
    "bad",
    [
        ("ca_path without certificates", "ca_path"),
        ("a profile's ca_bundle that does not exist", "ca_bundle"),
        ("an AWS config file botocore cannot parse", None),
    ],
)
def test_unusable_trust_settings_name_where_they_come_from(
    tmp_path: Path,
    seaweed: Any,
    seaweed_bucket: str,
    no_ambient_trust: Path,
    bad: tuple[str, str | None],
) -> None:
    case, option = bad
    options: dict[str, object] = {"ca_file": ""}
    secret = "wJalrXUtnFEMI-not-a-real-secret"
    if case.startswith("ca_path"):
        empty = tmp_path / "empty-ca-dir"
        empty.mkdir()
        options["ca_path"] = empty
    elif "does not exist" in case:
        no_ambient_trust.write_text(f"[default]\nca_bundle = {tmp_path / 'missing.pem'}\n")
    else:
        no_ambient_trust.write_text(f"[default\naws_secret_access_key {secret}\n")
    with pytest.raises(ConfigError) as err:
        _store(tmp_path, seaweed, seaweed_bucket, **options)
    assert err.value.option == option
    if option != "ca_path":
        assert err.value.file == str(no_ambient_trust)
    assert secret not in str(err.value)


def test_verify_ssl_false_trusts_anything(
    tmp_path: Path, seaweed: Any, seaweed_bucket: str, no_ambient_trust: Path
) -> None:
    _round_trip(_store(tmp_path, seaweed, seaweed_bucket, ca_file="", verify_ssl="false"))
