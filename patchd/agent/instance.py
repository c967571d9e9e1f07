"""One agent per state directory: an exclusive lock held for the agent's lifetime."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from patchd.errors import TemporaryFailure

LOCK_NAME = "agent.lock"


class InstanceLock:
    """An ``flock`` on ``STATE_DIR/agent.lock``, which also records the holder's pid."""

    def __init__(self, state_dir: Path) -> None:
        self.path = state_dir / LOCK_NAME
        self._fd: int | None = None

    def acquire(self) -> None:
        """Take the lock, or raise :class:`TemporaryFailure` naming the agent that holds it."""
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 32).decode("ascii", "replace").strip() or "unknown"
            os.close(fd)
            raise TemporaryFailure(
                f"another patchd agent (pid {holder}) is running on {self.path.parent}",
                hint="stop it first, or use another --state-dir",
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing drops the flock
            self._fd = None
