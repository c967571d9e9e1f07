"""Administrators' Ed25519 keys: making, storing, loading, signing and verifying.

A key is named by its key id, the SHA-256 of its 32 raw public bytes, so nobody can pick
an id apart from the key it names. A private key is a PKCS#8 PEM file without passphrase:
it is created with mode 0600 and is never readable by others, not even for a moment;
keep it offline. Public keys are SubjectPublicKeyInfo PEM files anyone may read.
"""

from __future__ import annotations

import base64
import contextlib
import errno
import hashlib
import logging
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

from patchd.atomicfile import fsync_directory
from patchd.errors import TrustError, UsageError

log = logging.getLogger(__name__)

KEYTYPE = "ed25519"
ED25519_PUBLIC_KEY_BYTES = 32
ED25519_SIGNATURE_BYTES = 64
MAX_KEY_FILE_BYTES = 16 * 1024  # a PEM Ed25519 key is about 120 bytes
PRIVATE_KEY_MODE = 0o600
PUBLIC_FILE_MODE = 0o644
_SHOWN_CHARS = 80  # how much of an untrusted value an error message quotes (a key id fits)


def quoted(value: object) -> str:
    """``repr`` of an untrusted value, shortened, so an error message stays one short line."""
    text = repr(value)
    return text if len(text) <= _SHOWN_CHARS else text[: _SHOWN_CHARS - 3] + "..."


def b64decode_strict(value: object, where: str) -> bytes:
    """Decode canonical standard base64 text; raise :class:`TrustError` for anything else.

    Only one spelling of given bytes is accepted (no whitespace, no URL-safe alphabet, no
    stray padding bits) so that equal bytes always arrive as equal text.
    """
    if not isinstance(value, str):
        raise TrustError(f"{where}: must be base64 text, not {type(value).__name__}")
    try:
        decoded = base64.b64decode(value, validate=True)
    except ValueError:  # binascii.Error, or non-ASCII text
        raise TrustError(f"{where}: not valid base64: {quoted(value)}") from None
    if base64.b64encode(decoded).decode("ascii") != value:
        raise TrustError(f"{where}: not canonical base64: {quoted(value)}")
    return decoded


def read_bounded_file(path: Path, max_bytes: int, what: str, hint: str | None = None) -> bytes:
    """Read at most ``max_bytes`` of ``path``; :class:`TrustError` if missing, unreadable or larger."""
    try:
        with path.open("rb") as f:
            data = f.read(max_bytes + 1)
    except FileNotFoundError:
        raise TrustError(f"{path}: no such {what} file", hint=hint) from None
    except OSError as e:
        raise TrustError(f"{path}: cannot read the {what}: {e.strerror or e}", hint=hint) from None
    if len(data) > max_bytes:
        raise TrustError(f"{path}: larger than {max_bytes} bytes, too large for a {what}")
    return data


def write_new_file(path: Path, data: bytes, *, mode: int) -> None:
    """Create ``path`` holding ``data`` atomically; never replace an existing file.

    The data goes to a temporary file created exclusively (``mkstemp``: O_EXCL, mode 0600
    from birth) beside ``path``, is fsynced, then hard-linked into place: ``link`` fails
    if the name exists, and a reader sees the whole file or none. Where hard links are
    not supported (a FAT stick holding offline keys) it falls back to an O_EXCL create.

    Raises :class:`UsageError` if ``path`` exists or its directory cannot be written.
    """
    directory = path.parent
    try:
        fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=directory)
    except OSError as e:
        raise UsageError(f"cannot create files in {directory}: {e.strerror or e}") from None
    try:
        with os.fdopen(fd, "wb") as f:
            if mode != PRIVATE_KEY_MODE and hasattr(os, "fchmod"):
                with contextlib.suppress(PermissionError):  # filesystems without modes
                    os.fchmod(f.fileno(), mode)
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        try:
            os.link(tmp_name, path)
        except FileExistsError:
            raise _exists(path) from None
        except OSError as e:
            if e.errno not in (errno.EPERM, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EXDEV):
                raise UsageError(f"cannot create {path}: {e.strerror or e}") from None
            _create_exclusive(path, data, mode)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp_name)
    fsync_directory(directory)


def _create_exclusive(path: Path, data: bytes, mode: int) -> None:
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    except FileExistsError:
        raise _exists(path) from None
    with os.fdopen(fd, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def _exists(path: Path) -> UsageError:
    return UsageError(
        f"{path} already exists", hint="refusing to overwrite it; choose another name"
    )


@dataclass(frozen=True, repr=False)
class PublicKey:
    """An Ed25519 public key, named by :attr:`key_id`.

    Raises :class:`TrustError` when ``raw`` is not 32 bytes.
    """

    raw: bytes

    def __post_init__(self) -> None:
        if not isinstance(self.raw, bytes) or len(self.raw) != ED25519_PUBLIC_KEY_BYTES:
            raise TrustError(f"an Ed25519 public key is {ED25519_PUBLIC_KEY_BYTES} bytes")

    def __repr__(self) -> str:
        return f"PublicKey(key_id={self.key_id!r})"

    @property
    def key_id(self) -> str:
        """The SHA-256 of the raw key, in hex: what roots and signatures call this key."""
        return hashlib.sha256(self.raw).hexdigest()

    def verify(self, signature: bytes, message: bytes) -> bool:
        """True if ``signature`` is this key's over ``message``; never raises for a bad one."""
        if len(signature) != ED25519_SIGNATURE_BYTES:
            return False
        try:
            Ed25519PublicKey.from_public_bytes(self.raw).verify(signature, message)
        except (InvalidSignature, ValueError):
            return False
        return True

    def to_pem(self) -> bytes:
        """The key as a SubjectPublicKeyInfo PEM file (what ``PREFIX.pub`` holds)."""
        return Ed25519PublicKey.from_public_bytes(self.raw).public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )

    @classmethod
    def from_pem(cls, data: bytes, source: str = "key") -> PublicKey:
        """Load a PEM public key; :class:`TrustError` unless it is an Ed25519 public key."""
        if b"PRIVATE KEY" in data:
            # Say so without echoing anything of it: it is a secret in the wrong place.
            raise TrustError(
                f"{source}: is a private key, not a public key", hint="pass PREFIX.pub"
            )
        try:
            key = serialization.load_pem_public_key(data)
        except (ValueError, TypeError, UnsupportedAlgorithm):
            raise TrustError(f"{source}: not a PEM public key") from None
        if not isinstance(key, Ed25519PublicKey):
            raise TrustError(
                f"{source}: not an Ed25519 key ({type(key).__name__})",
                hint="make one with `patchd key generate`",
            )
        return cls(key.public_bytes_raw())

    def as_dict(self) -> dict[str, str]:
        """The key as a trust root lists it: ``{"keytype": "ed25519", "public": base64}``."""
        return {"keytype": KEYTYPE, "public": base64.b64encode(self.raw).decode("ascii")}

    @classmethod
    def from_dict(cls, data: object, source: str = "key") -> PublicKey:
        """The inverse of :meth:`as_dict`; :class:`TrustError` for any other shape."""
        if not isinstance(data, dict) or set(data) != {"keytype", "public"}:
            raise TrustError(f'{source}: a key is {{"keytype", "public"}}, got {quoted(data)}')
        if data["keytype"] != KEYTYPE:
            raise TrustError(f"{source}: keytype {quoted(data['keytype'])} is not {KEYTYPE!r}")
        raw = b64decode_strict(data["public"], f"{source}: public")
        if len(raw) != ED25519_PUBLIC_KEY_BYTES:
            raise TrustError(f"{source}: public: {len(raw)} bytes, not {ED25519_PUBLIC_KEY_BYTES}")
        return cls(raw)


class PrivateKey:
    """An Ed25519 private key that signs. Its ``repr`` and errors never show the secret."""

    __slots__ = ("_key", "key_id", "public_key")

    public_key: PublicKey
    key_id: str

    def __init__(self, key: Ed25519PrivateKey) -> None:
        self._key = key
        self.public_key = PublicKey(key.public_key().public_bytes_raw())
        self.key_id = self.public_key.key_id

    def __repr__(self) -> str:
        return f"PrivateKey(key_id={self.key_id!r})"

    @classmethod
    def generate(cls) -> PrivateKey:
        """A new random key (kept in memory; :func:`generate_key_pair` writes one)."""
        return cls(Ed25519PrivateKey.generate())

    def sign(self, message: bytes) -> bytes:
        """This key's 64-byte Ed25519 signature over ``message``."""
        return self._key.sign(message)

    def to_pem(self) -> bytes:
        """The key as an unencrypted PKCS#8 PEM file (what ``PREFIX.key`` holds)."""
        return self._key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )


def key_pair_paths(prefix: Path) -> tuple[Path, Path]:
    """``PREFIX.key`` and ``PREFIX.pub``."""
    return prefix.with_name(prefix.name + ".key"), prefix.with_name(prefix.name + ".pub")


def generate_key_pair(prefix: Path) -> PublicKey:
    """Write a new key pair: ``PREFIX.key`` (PKCS#8 PEM, 0600) and ``PREFIX.pub`` (0644).

    Raises :class:`UsageError` if either file exists (nothing is written then) or the
    directory cannot be written.
    """
    private_path, public_path = key_pair_paths(prefix)
    for path in (private_path, public_path):
        if os.path.lexists(path):
            raise _exists(path)
    key = PrivateKey.generate()
    write_new_file(private_path, key.to_pem(), mode=PRIVATE_KEY_MODE)
    try:
        write_new_file(public_path, key.public_key.to_pem(), mode=PUBLIC_FILE_MODE)
    except BaseException:
        private_path.unlink(missing_ok=True)  # ours, from a moment ago: no half pair
        raise
    return key.public_key


def load_private_key(path: Path) -> PrivateKey:
    """Load an unencrypted PEM Ed25519 private key.

    Raises :class:`TrustError` if the file is missing, unreadable, encrypted or not an
    Ed25519 private key. Logs a warning if others may read or write it.
    """
    data = read_bounded_file(path, MAX_KEY_FILE_BYTES, "private key")
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except TypeError:
        raise TrustError(
            f"{path}: the private key is encrypted",
            hint="patchd keys have no passphrase: protect the file instead",
        ) from None
    except (ValueError, UnsupportedAlgorithm):
        # The library's message is not shown: it could quote the file.
        raise TrustError(f"{path}: not a PEM private key") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise TrustError(
            f"{path}: not an Ed25519 private key", hint="make one with `patchd key generate`"
        )
    with contextlib.suppress(OSError):
        mode = path.stat().st_mode & 0o777
        if mode & 0o077:
            log.warning(
                "%s: private key is accessible to others (mode %04o): chmod 600 it", path, mode
            )
    return PrivateKey(key)


def load_public_key(path: Path) -> PublicKey:
    """Load a PEM Ed25519 public key; :class:`TrustError` if missing or not one."""
    return PublicKey.from_pem(read_bounded_file(path, MAX_KEY_FILE_BYTES, "public key"), str(path))
