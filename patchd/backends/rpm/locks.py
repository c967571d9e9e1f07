"""Bounded waits on the pid-file locks dnf and zypper take (besides rpm's ``fcntl`` lock).

dnf (``*_lock.pid``) and libzypp (``zypp.pid``) write their pid into a file and treat a
live pid there as "locked". patchd reads the pid, checks that the process lives, and
waits for it for a bounded time, naming it when it gives up.
"""

from __future__ import annotations

import os
import random
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from patchd.errors import LockHeldError
from patchd.locks import LockHolder, lock_holder

MAX_PID_FILE_BYTES = 64
BACKOFF_FIRST_S = 0.5
BACKOFF_MAX_S = 10.0


def pid_file_holder(path: Path, proc: Path = Path("/proc")) -> LockHolder | None:
    """The live process named in pid file ``path`` (not patchd itself), or ``None``."""
    try:
        with path.open("rb") as f:
            text = f.read(MAX_PID_FILE_BYTES).decode("ascii", "replace").strip()
        pid = int(text)
    except (OSError, ValueError):
        return None
    if pid <= 0 or pid == os.getpid() or not (proc / str(pid)).is_dir():
        return None  # a stale file: its process is gone, and the tools ignore it too
    try:
        name: str | None = (proc / str(pid) / "comm").read_text(errors="replace").strip()
    except OSError:
        name = None
    return LockHolder(pid, name)


def wait_for_rpm_locks(
    pid_files: Sequence[Path],
    fcntl_files: Sequence[Path],
    timeout_s: float,
    *,
    sleep: Callable[[float], None] = time.sleep,
    monotonic: Callable[[], float] = time.monotonic,
) -> None:
    """Return once no pid file names a live process and nobody holds the fcntl locks.

    Raises :class:`LockHeldError` naming the holder after ``timeout_s`` seconds.
    """
    started = monotonic()
    delay = BACKOFF_FIRST_S
    while True:
        busy = [(p, h) for p in pid_files if (h := pid_file_holder(p)) is not None]
        busy += [(p, h) for p in fcntl_files if (h := lock_holder(p)) is not None]
        if not busy:
            return
        path, holder = busy[0]
        waited = monotonic() - started
        if waited >= timeout_s:
            raise LockHeldError(
                str(path), holder_pid=holder.pid, holder_name=holder.name, waited_s=waited
            )
        sleep(min(delay * random.uniform(0.5, 1.0), max(0.0, timeout_s - waited)))  # noqa: S311
        delay = min(delay * 2, BACKOFF_MAX_S)
