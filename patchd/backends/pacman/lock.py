"""pacman's lock: the file ``DBPath/db.lck``, which exists while a transaction runs.

pacman creates it with ``O_EXCL`` and keeps it open until the transaction ends; it is
not an ``fcntl`` lock, so ``/proc/locks`` does not list it. The holder is found by
looking for a process with the file open (``/proc/PID/fd``). A lock file that no
process has open was left by an interrupted run.
"""

from __future__ import annotations

import logging
import os
import random
import time
from collections.abc import Callable
from pathlib import Path

from patchd.errors import BackendError, LockHeldError
from patchd.locks import LockHolder

log = logging.getLogger(__name__)

PROC = Path("/proc")
MAX_FDS_EXAMINED = 200_000  # a bound on the /proc walk on a very busy machine
BACKOFF_FIRST_S = 0.5
BACKOFF_MAX_S = 10.0


def _comm(proc: Path, pid: int) -> str | None:
    try:
        return (proc / str(pid) / "comm").read_text(encoding="utf-8", errors="replace").strip()
    except OSError:
        return None


def lock_holder(lock_file: Path, proc: Path = PROC) -> LockHolder | None:
    """The process that has ``lock_file`` open, or ``None`` if none visible here does."""
    wanted = os.path.realpath(lock_file)
    examined = 0
    try:
        pids = [int(e.name) for e in os.scandir(proc) if e.name.isdigit()]
    except OSError:
        return None
    for pid in pids:
        fd_dir = proc / str(pid) / "fd"
        try:
            fds = os.listdir(fd_dir)
        except OSError:
            continue  # gone, or not ours to look at
        for fd in fds:
            examined += 1
            if examined > MAX_FDS_EXAMINED:
                return None
            try:
                if os.readlink(fd_dir / fd) == wanted:
                    return LockHolder(pid, _comm(proc, pid))
            except OSError:
                continue
    return None


def wait_for_lock(
    lock_file: Path,
    timeout_s: float,
    *,
    proc: Path = PROC,
    sleep: Callable[[float], None] = time.sleep,
    monotonic: Callable[[], float] = time.monotonic,
) -> None:
    """Return once ``lock_file`` is gone; wait at most ``timeout_s`` seconds.

    Raises :class:`LockHeldError` naming the holder when one is still running, and
    :class:`BackendError` when the file remains but no process has it open (a run was
    interrupted: pacman's advice is to remove it once sure nothing runs).
    """
    started = monotonic()
    delay = BACKOFF_FIRST_S
    announced = False
    while lock_file.exists():
        waited = monotonic() - started
        holder = lock_holder(lock_file, proc)
        if waited >= timeout_s:
            if holder is None:
                raise BackendError(
                    f"{lock_file} exists but no process has it open: a pacman run was interrupted",
                    hint="make sure no package manager runs on this system (nor in a "
                    "container sharing it), remove the file, and check `pacman -Dk`",
                )
            raise LockHeldError(
                str(lock_file), holder_pid=holder.pid, holder_name=holder.name, waited_s=waited
            )
        if not announced:
            announced = True
            who = f"process {holder.pid} ({holder.name or 'unknown'})" if holder else "nobody"
            log.warning("waiting up to %.0f s for %s, held by %s", timeout_s, lock_file, who)
        sleep(min(delay * random.uniform(0.5, 1.0), max(0.0, timeout_s - waited)))  # noqa: S311
        delay = min(delay * 2, BACKOFF_MAX_S)
