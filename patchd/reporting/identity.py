"""This endpoint's own Ed25519 key: made once, kept private, refused if anyone else could read it.

The key signs every report; the collector pins its public half at enrolment. It lives in
``STATE_DIR/keys/endpoint.key`` (PKCS#8 PEM), in a 0700 directory, mode 0600 from the
moment it exists (created exclusively, then linked into place: a crash leaves the whole
key or none). A key file or directory another user owns, or that others may read or
write, is refused rather than used: a report signed with a key someone else may hold
proves nothing.
"""

from __future__ import annotations

import base64
import logging
import os
import stat
from pathlib import Path

from patchd.errors import ConfigError, TrustError, UsageError
from patchd.signing.keys import (
    PRIVATE_KEY_MODE,
    PrivateKey,
    load_private_key,
    write_new_file,
)

log = logging.getLogger(__name__)

KEYS_DIR = "keys"
KEY_NAME = "endpoint.key"
KEYS_DIR_MODE = 0o700


def endpoint_key_path(state_dir: Path) -> Path:
    """Where the endpoint key lives: ``STATE_DIR/keys/endpoint.key``."""
    return state_dir / KEYS_DIR / KEY_NAME


def public_key_text(key: PrivateKey) -> str:
    """The public key as the collector wants it: base64 of the raw 32 bytes."""
    return base64.b64encode(key.public_key.raw).decode("ascii")


def ensure_endpoint_key(state_dir: Path) -> PrivateKey:
    """The endpoint's key, made now if there is none.

    Raises :class:`ConfigError` (exit 78) if the key file or its directory is owned by
    another user, open to others, not a regular file or unreadable as an Ed25519 key.
    """
    path = endpoint_key_path(state_dir)
    _ensure_directory(path.parent)
    if not os.path.lexists(path):
        try:
            write_new_file(path, PrivateKey.generate().to_pem(), mode=PRIVATE_KEY_MODE)
            log.info("made this endpoint's key %s", path)
        except UsageError:
            pass  # another patchd made it a moment ago: use theirs
    _check_private(path, "file")
    try:
        return load_private_key(path)
    except TrustError:
        raise _refused(path, "file", "is not an Ed25519 private key in PEM form") from None


def _ensure_directory(directory: Path) -> None:
    try:
        directory.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        directory.mkdir(mode=KEYS_DIR_MODE, exist_ok=True)
    except OSError as e:
        raise ConfigError(
            f"cannot create the key directory {directory}: {e.strerror or e}",
            hint="check --state-dir and its permissions",
        ) from None
    _check_private(directory, "directory")


def _check_private(path: Path, kind: str) -> None:
    """Refuse ``path`` unless it is ours, of the right kind, and closed to everyone else."""
    try:
        info = os.lstat(path)
    except OSError as e:
        raise _refused(path, kind, f"cannot be read: {e.strerror or e}") from None
    is_right_kind = (
        stat.S_ISDIR(info.st_mode) if kind == "directory" else stat.S_ISREG(info.st_mode)
    )
    if not is_right_kind:
        raise _refused(path, kind, f"is not a {kind} (a symbolic link, or something else)")
    if hasattr(os, "geteuid") and info.st_uid != os.geteuid():
        raise _refused(
            path, kind, f"is owned by uid {info.st_uid}, not by this user ({os.geteuid()})"
        )
    mode = stat.S_IMODE(info.st_mode)
    if mode & 0o077:
        wanted = KEYS_DIR_MODE if kind == "directory" else PRIVATE_KEY_MODE
        raise _refused(path, kind, f"has mode {mode:04o}; it must be {wanted:04o}")


def _refused(path: Path, kind: str, problem: str) -> ConfigError:
    what = "the endpoint key" if kind == "file" else "the endpoint key's directory"
    return ConfigError(
        f"{what} {path} {problem}",
        hint="fix its owner and mode (chown, chmod 600, its directory 700), "
        "or move it aside to make a new key and enrol again",
    )
