"""Ed25519 keys: files written safely, loaded strictly, signatures checked without raising."""

from __future__ import annotations

import base64
import hashlib
import logging
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given
from hypothesis import strategies as st

from patchd.errors import TrustError, UsageError
from patchd.signing.keys import (
    PrivateKey,
    PublicKey,
    generate_key_pair,
    load_private_key,
    load_public_key,
)

KEY = PrivateKey.generate()


def mode_of(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def permissive_umask() -> Iterator[None]:
    """umask 0: modes must come from patchd, not from a kind umask."""
    old = os.umask(0)
    yield
    os.umask(old)


@pytest.mark.usefixtures("permissive_umask")
def test_generate_writes_a_private_key_0600_and_a_public_key_0644(tmp_path: Path) -> None:
    public = generate_key_pair(tmp_path / "admin")
    private_path, public_path = tmp_path / "admin.key", tmp_path / "admin.pub"
    assert mode_of(private_path) == 0o600
    assert mode_of(public_path) == 0o644
    assert private_path.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----\n")  # PKCS#8
    assert public_path.read_bytes().startswith(b"-----BEGIN PUBLIC KEY-----\n")  # SPKI
    assert sorted(p.name for p in tmp_path.iterdir()) == ["admin.key", "admin.pub"]  # no temp files
    assert load_private_key(private_path).public_key == public
    assert load_public_key(public_path) == public
    assert public.key_id == hashlib.sha256(public.raw).hexdigest()


@pytest.mark.parametrize("existing", ["admin.key", "admin.pub"])
def test_generate_refuses_to_overwrite_either_file(tmp_path: Path, existing: str) -> None:
    (tmp_path / existing).write_bytes(b"precious")
    with pytest.raises(UsageError, match=f"{existing} already exists"):
        generate_key_pair(tmp_path / "admin")
    assert (tmp_path / existing).read_bytes() == b"precious"
    assert [p.name for p in tmp_path.iterdir()] == [existing]  # nothing else written


def test_generate_refuses_a_dangling_symlink_in_the_way(tmp_path: Path) -> None:
    (tmp_path / "admin.key").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(UsageError, match="already exists"):
        generate_key_pair(tmp_path / "admin")
    assert not (tmp_path / "elsewhere").exists()


def test_generate_into_a_missing_directory_is_a_usage_error(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="cannot create files in"):
        generate_key_pair(tmp_path / "missing" / "admin")


def test_a_private_key_readable_by_others_loads_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    generate_key_pair(tmp_path / "admin")
    private_path = tmp_path / "admin.key"
    secret_body = private_path.read_text().splitlines()[1]
    with caplog.at_level(logging.WARNING, logger="patchd"):
        load_private_key(private_path)
    assert caplog.records == []
    private_path.chmod(0o644)
    with caplog.at_level(logging.WARNING, logger="patchd"):
        load_private_key(private_path)
    assert "accessible to others (mode 0644)" in caplog.text
    assert secret_body not in caplog.text


def _pem_ec_private() -> bytes:
    return ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _pem_encrypted_ed25519() -> bytes:
    return Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"passphrase"),
    )


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        (None, "no such private key file"),
        (b"not a key", "not a PEM private key"),
        (b"x" * 20_000, "too large for a private key"),
        (KEY.public_key.to_pem(), "not a PEM private key"),
        (_pem_ec_private(), "not an Ed25519 private key"),
        (_pem_encrypted_ed25519(), "the private key is encrypted"),
    ],
    ids=["missing", "garbage", "oversized", "public-key", "ec-key", "encrypted"],
)
def test_load_private_key_refusals(tmp_path: Path, content: bytes | None, fragment: str) -> None:
    path = tmp_path / "admin.key"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(TrustError, match=fragment) as caught:
        load_private_key(path)
    assert str(path) in str(caught.value)


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        (None, "no such public key file"),
        (b"-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n", "not a PEM public key"),
        (KEY.to_pem(), "is a private key, not a public key"),
        (
            ec.generate_private_key(ec.SECP256R1())
            .public_key()
            .public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            ),
            "not an Ed25519 key",
        ),
    ],
    ids=["missing", "garbage", "private-key-given", "ec-key"],
)
def test_load_public_key_refusals(tmp_path: Path, content: bytes | None, fragment: str) -> None:
    path = tmp_path / "admin.pub"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(TrustError, match=fragment) as caught:
        load_public_key(path)
    assert "PRIVATE" not in str(caught.value)


def test_a_signature_verifies_only_for_its_key_and_message() -> None:
    other = PrivateKey.generate()
    signature = KEY.sign(b"message")
    assert KEY.public_key.verify(signature, b"message")
    assert not KEY.public_key.verify(signature, b"messagE")
    assert not other.public_key.verify(signature, b"message")
    assert not KEY.public_key.verify(signature[:-1], b"message")
    assert not KEY.public_key.verify(b"\0" * 64, b"message")


@given(signature=st.binary(max_size=100), message=st.binary(max_size=100))
def test_verify_never_raises(signature: bytes, message: bytes) -> None:
    assert KEY.public_key.verify(signature, message) in (True, False)


def test_a_public_key_round_trips_through_its_dict_and_pem() -> None:
    public = KEY.public_key
    assert public.as_dict() == {
        "keytype": "ed25519",
        "public": base64.b64encode(public.raw).decode(),
    }
    assert PublicKey.from_dict(public.as_dict()) == public
    assert PublicKey.from_pem(public.to_pem()) == public


_RAW = base64.b64encode(KEY.public_key.raw).decode()


@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        ("ed25519", "a key is"),
        ({"keytype": "ed25519"}, "a key is"),
        ({"keytype": "ed25519", "public": _RAW, "scheme": "x"}, "a key is"),
        ({"keytype": "rsa", "public": _RAW}, "keytype 'rsa' is not 'ed25519'"),
        ({"keytype": "ed25519", "public": 5}, "must be base64 text"),
        ({"keytype": "ed25519", "public": "@@@@"}, "not valid base64"),
        ({"keytype": "ed25519", "public": _RAW + "\n"}, "not valid base64"),
        ({"keytype": "ed25519", "public": "AAB="}, "not canonical base64"),
        ({"keytype": "ed25519", "public": "AAAA"}, "3 bytes, not 32"),
    ],
    ids=[
        "not-a-dict",
        "missing-public",
        "extra-field",
        "other-keytype",
        "not-text",
        "bad-alphabet",
        "whitespace",
        "non-canonical",
        "short",
    ],
)
def test_from_dict_refusals(data: object, fragment: str) -> None:
    with pytest.raises(TrustError, match=fragment):
        PublicKey.from_dict(data, "root.json")


def test_a_public_key_is_32_bytes() -> None:
    with pytest.raises(TrustError, match="32 bytes"):
        PublicKey(b"short")


def test_a_private_key_never_shows_its_secret() -> None:
    assert repr(KEY) == f"PrivateKey(key_id={KEY.key_id!r})"
    assert repr(KEY.public_key) == f"PublicKey(key_id={KEY.key_id!r})"
