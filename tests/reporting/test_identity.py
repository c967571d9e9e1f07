"""The endpoint key: made once with safe modes, reused, and refused when others could use it."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from patchd.errors import ConfigError, ExitCode
from patchd.reporting.identity import endpoint_key_path, ensure_endpoint_key, public_key_text


def test_made_on_first_use_private_and_reused(tmp_path: Path) -> None:
    state = tmp_path / "state"
    key = ensure_endpoint_key(state)
    path = endpoint_key_path(state)
    assert path == state / "keys" / "endpoint.key"
    assert path.stat().st_mode & 0o777 == 0o600
    assert path.parent.stat().st_mode & 0o777 == 0o700
    assert path.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")
    assert len(key.public_key.raw) == 32
    again = ensure_endpoint_key(state)
    assert again.key_id == key.key_id
    assert public_key_text(again) == public_key_text(key)
    assert [p.name for p in path.parent.iterdir()] == ["endpoint.key"]  # no temporary left


@pytest.mark.parametrize(
    ("target", "mode", "problem"),
    [
        pytest.param("file", 0o644, "has mode 0644; it must be 0600", id="key-readable-by-others"),
        pytest.param("file", 0o660, "has mode 0660; it must be 0600", id="key-group-writable"),
        pytest.param("dir", 0o755, "has mode 0755; it must be 0700", id="dir-open-to-others"),
    ],
)
def test_refused_when_others_may_read_it(
    tmp_path: Path, target: str, mode: int, problem: str
) -> None:
    state = tmp_path / "state"
    ensure_endpoint_key(state)
    path = endpoint_key_path(state)
    before = path.read_bytes()
    os.chmod(path if target == "file" else path.parent, mode)
    with pytest.raises(ConfigError) as error:
        ensure_endpoint_key(state)
    assert problem in str(error.value)
    assert error.value.exit_code == ExitCode.CONFIG
    assert "\n" not in str(error.value)
    assert path.read_bytes() == before  # never replaced by a new key


@pytest.mark.skipif(os.geteuid() != 0, reason="changing a file's owner needs root")
def test_refused_when_owned_by_another_user(tmp_path: Path) -> None:
    state = tmp_path / "state"
    ensure_endpoint_key(state)
    path = endpoint_key_path(state)
    os.chown(path, 65534, 65534)
    with pytest.raises(ConfigError, match="is owned by uid 65534"):
        ensure_endpoint_key(state)


def test_symbolic_link_refused(tmp_path: Path) -> None:
    state = tmp_path / "state"
    ensure_endpoint_key(tmp_path / "elsewhere")
    (state / "keys").mkdir(parents=True, mode=0o700)
    os.chmod(state / "keys", 0o700)
    endpoint_key_path(state).symlink_to(endpoint_key_path(tmp_path / "elsewhere"))
    with pytest.raises(ConfigError, match="is not a file"):
        ensure_endpoint_key(state)


def test_not_a_key_refused(tmp_path: Path) -> None:
    state = tmp_path / "state"
    ensure_endpoint_key(state)
    endpoint_key_path(state).write_bytes(b"garbage\n")
    with pytest.raises(ConfigError, match="is not an Ed25519 private key in PEM form"):
        ensure_endpoint_key(state)
