"""Tests for patchd.atomicfile: real files; faults injected into os.replace and os.fsync."""

from __future__ import annotations

import os
import stat
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from patchd.atomicfile import atomic_write_bytes, atomic_write_text, fsync_directory

ORIGINAL = b"the original content\n"


@pytest.fixture
def permissive_umask() -> Iterator[None]:
    """A umask that would make files world-writable if the mode were left to it."""
    previous = os.umask(0)
    try:
        yield
    finally:
        os.umask(previous)


def listing(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


@pytest.mark.parametrize("mode", [0o600, 0o644, 0o755, 0o400], ids=oct)
def test_writes_content_with_the_mode_asked(mode: int, tmp_path: Path) -> None:
    target = tmp_path / "file"

    atomic_write_bytes(target, b"\x00binary\xff", mode=mode)

    assert target.read_bytes() == b"\x00binary\xff"
    assert stat.S_IMODE(target.stat().st_mode) == mode
    assert listing(tmp_path) == ["file"]


@pytest.mark.usefixtures("permissive_umask")
def test_default_mode_is_private_whatever_the_umask(tmp_path: Path) -> None:
    target = tmp_path / "secret"

    atomic_write_bytes(target, b"x")

    assert stat.S_IMODE(target.stat().st_mode) == 0o600


def test_replaces_an_existing_file_and_its_mode(tmp_path: Path) -> None:
    target = tmp_path / "file"
    target.write_bytes(ORIGINAL)
    target.chmod(0o666)
    old_inode = target.stat().st_ino

    atomic_write_bytes(target, b"new", mode=0o640)

    assert target.read_bytes() == b"new"
    assert stat.S_IMODE(target.stat().st_mode) == 0o640
    assert target.stat().st_ino != old_inode  # a new file was renamed over it
    assert listing(tmp_path) == ["file"]


def test_text_is_written_as_utf8(tmp_path: Path) -> None:
    target = tmp_path / "file.txt"

    atomic_write_text(target, "grüße\n", mode=0o644)

    assert target.read_bytes() == "grüße\n".encode()
    assert stat.S_IMODE(target.stat().st_mode) == 0o644


def test_an_empty_write_gives_an_empty_file(tmp_path: Path) -> None:
    target = tmp_path / "file"
    target.write_bytes(ORIGINAL)

    atomic_write_bytes(target, b"")

    assert target.read_bytes() == b""


def failing(error: BaseException) -> Callable[..., None]:
    def fail(*args: object) -> None:
        raise error

    return fail


@pytest.mark.parametrize(
    ("function", "error"),
    [
        ("replace", OSError(28, "No space left on device")),
        ("fsync", OSError(5, "Input/output error")),
        ("fchmod", PermissionError(1, "Operation not permitted")),
        ("replace", KeyboardInterrupt()),
    ],
    ids=["replace-fails", "fsync-fails", "fchmod-fails", "interrupted"],
)
@pytest.mark.parametrize("existing", [True, False], ids=["over-a-file", "new-file"])
def test_a_failed_write_leaves_the_old_file_and_no_temporary(
    function: str,
    error: BaseException,
    existing: bool,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    target = tmp_path / "file"
    if existing:
        target.write_bytes(ORIGINAL)
        target.chmod(0o644)
    before = listing(tmp_path)
    monkeypatch.setattr(os, function, failing(error))

    with pytest.raises(type(error)):
        atomic_write_bytes(target, b"half-written new content", mode=0o600)

    monkeypatch.undo()
    assert listing(tmp_path) == before
    if existing:
        assert target.read_bytes() == ORIGINAL
        assert stat.S_IMODE(target.stat().st_mode) == 0o644
    else:
        assert not target.exists()


def test_the_file_and_then_its_directory_are_synced(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "file"
    synced: list[tuple[bool, bytes | None]] = []  # (is a directory, target content then)
    real_fsync = os.fsync

    def spy(fd: int) -> None:
        is_dir = stat.S_ISDIR(os.fstat(fd).st_mode)
        synced.append((is_dir, target.read_bytes() if target.exists() else None))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", spy)

    atomic_write_bytes(target, b"durable")

    # The data is synced before the rename, the directory after it.
    assert synced == [(False, None), (True, b"durable")]


def test_fsync_directory_needs_an_existing_directory(tmp_path: Path) -> None:
    fsync_directory(tmp_path)

    with pytest.raises(FileNotFoundError):
        fsync_directory(tmp_path / "absent")


def test_a_missing_directory_is_an_error_and_creates_nothing(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        atomic_write_bytes(tmp_path / "absent" / "file", b"x")

    assert listing(tmp_path) == []
