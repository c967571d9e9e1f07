"""Real filesystems for the snapshot tests, and stand-ins for tools that cannot run here.

Every mount, loop device, pool, snapper configuration and daemon made here is removed
in ``finally`` blocks, even when the test fails: ``umount``, ``losetup -d``, ``zpool
destroy``, ``snapper delete-config``, and the zfs-fuse daemon stopped by the pid it wrote.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from patchd.process import CommandResult

TOOL_TIMEOUT_S = 120
DATA = Path(__file__).resolve().parent.parent / "data" / "snapshots"
BTRFS_TOOLS = ("mkfs.btrfs", "btrfs", "losetup", "mount", "umount")
ZFS_TOOLS = ("zfs-fuse", "zpool", "zfs")
DAEMON_START_TRIES = 200  # x 0.05 s waiting for zfs-fuse to answer
DAEMON_STOP_TRIES = 600  # x 0.05 s waiting for zfs-fuse to exit before SIGKILL


def sh(*argv: str | Path, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run a tool for the test itself (not through patchd)."""
    return subprocess.run(
        [str(a) for a in argv],
        check=check,
        capture_output=True,
        text=True,
        timeout=TOOL_TIMEOUT_S,
        env={**os.environ, "LC_ALL": "C"},
    )


def captured(name: str) -> str:
    return (DATA / name).read_text()


class Clock:
    """A clock the test moves by hand."""

    def __init__(self, start: datetime = datetime(2026, 12, 4, 2, 0, tzinfo=UTC)) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def advance(self, minutes: int = 1) -> None:
        self.now += timedelta(minutes=minutes)


def make_tree(root: Path, files: dict[str, str]) -> None:
    for relative, content in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content)


def read_tree(root: Path) -> dict[str, str]:
    """Every regular file under ``root`` (not descending into patchd's or snapper's dirs)."""
    found = {}
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if d not in (".snapshots", ".patchd-snapshots")]
        for name in filenames:
            path = Path(dirpath) / name
            found[str(path.relative_to(root))] = path.read_text()
    return found


@contextlib.contextmanager
def btrfs_loop(workdir: Path) -> Iterator[Path]:
    """A fresh btrfs filesystem on a sparse 1 GiB file, mounted through a loop device."""
    image, mount = workdir / "btrfs.img", workdir / "btrfs"
    mount.mkdir()
    sh("truncate", "-s", "1G", image)
    sh("mkfs.btrfs", "-q", image)
    device = sh("losetup", "--find", "--show", image).stdout.strip()
    try:
        sh("mount", device, mount)
        try:
            yield mount
        finally:
            if sh("umount", mount, check=False).returncode != 0:
                sh("umount", "-l", mount)
    finally:
        sh("losetup", "-d", device, check=False)


@contextlib.contextmanager
def tmpfs(path: Path) -> Iterator[Path]:
    """A small tmpfs at ``path``: a root no provider covers, whatever the host's disks are."""
    path.mkdir(parents=True, exist_ok=True)
    sh("mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", path)
    try:
        yield path
    finally:
        if sh("umount", path, check=False).returncode != 0:
            sh("umount", "-l", path)


def subvolume(mount: Path, name: str, files: dict[str, str]) -> Path:
    path = mount / name
    sh("btrfs", "subvolume", "create", path)
    make_tree(path, files)
    return path


@contextlib.contextmanager
def snapper_config(name: str, subvolume_path: Path) -> Iterator[str]:
    """A snapper configuration for ``subvolume_path`` (in /etc/snapper), deleted afterwards."""
    sh("snapper", "--no-dbus", "-c", name, "create-config", subvolume_path)
    try:
        yield name
    finally:
        sh("snapper", "--no-dbus", "-c", name, "delete-config", check=False)


def _zfs_answers() -> bool:
    return sh("zpool", "list", check=False).returncode == 0


@contextlib.contextmanager
def zfs_fuse_daemon(workdir: Path) -> Iterator[None]:
    """zfs-fuse running: the one already running, or one started here and stopped after."""
    if _zfs_answers():
        yield  # someone else's daemon: used, never stopped
        return
    pidfile = workdir / "zfs-fuse.pid"  # fresh: zfs-fuse quietly exits on a stale one
    sh("zfs-fuse", "--pidfile", pidfile, "--no-kstat-mount")
    pid = None
    try:
        for _ in range(DAEMON_START_TRIES):
            if pid is None and pidfile.exists() and pidfile.read_text().strip():
                pid = int(pidfile.read_text())
            if pid is not None and _zfs_answers():
                break
            time.sleep(0.05)
        else:
            raise RuntimeError("zfs-fuse did not start answering")
        yield
    finally:
        if pid is not None:
            _stop(pid)


def _stop(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
        for _ in range(DAEMON_STOP_TRIES):
            os.kill(pid, 0)  # raises ProcessLookupError once it is gone
            time.sleep(0.05)
        os.kill(pid, signal.SIGKILL)


@contextlib.contextmanager
def zfs_pool(workdir: Path, name: str) -> Iterator[Path]:
    """A pool on a 128 MiB file, mounted under ``workdir``; destroyed afterwards."""
    image, mount = workdir / f"{name}.img", workdir / name
    sh("truncate", "-s", "128M", image)
    sh("zpool", "create", "-m", mount, name, image)
    try:
        yield mount
    finally:
        sh("zpool", "destroy", "-f", name, check=False)


@dataclass
class ReplayRunner:
    """Answers commands with captured output, for tools that cannot run here; records argv.

    ``answers`` maps an argv prefix to the standard output to give (or an exception to
    raise, or a list of outputs given one per call); the longest matching prefix wins. An
    unexpected command fails the test.
    """

    answers: dict[tuple[str, ...], str | Exception | list[str]]
    calls: list[tuple[str, ...]] = field(default_factory=list)

    def __call__(
        self, argv: Sequence[str], *, timeout_s: float, ok_codes: Sequence[int] = (0,)
    ) -> CommandResult:
        call = tuple(argv)
        self.calls.append(call)
        matches = [p for p in self.answers if call[: len(p)] == p]
        assert matches, f"unexpected command: {call}"
        answer = self.answers[max(matches, key=len)]
        if isinstance(answer, list):
            answer = answer.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return CommandResult(call, 0, answer, "", 0.0)
