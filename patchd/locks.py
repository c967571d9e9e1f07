"""Waiting, for a bounded time, on locks other programs hold (the dpkg lock, say).

Package managers lock their databases with ``fcntl`` locks. Linux lists every lock in
``/proc/locks`` with the holder's pid, which lets patchd name the holder ("held by
process 812 (unattended-upgr)") instead of failing mutely.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from patchd.errors import LockHeldError

log = logging.getLogger(__name__)

PROC_LOCKS = Path("/proc/locks")
MAX_PROC_LOCKS_BYTES = 4 * 1024 * 1024
BACKOFF_FIRST_S = 0.5
BACKOFF_MAX_S = 10.0


@dataclass(frozen=True)
class LockHolder:
    """The process holding a lock, as far as the kernel tells."""

    pid: int | None
    name: str | None


def _process_name(pid: int) -> str | None:
    try:
        return Path(f"/proc/{pid}/comm").read_text(encoding="utf-8", errors="replace").strip()
    except OSError:
        return None


def lock_holder(path: Path, proc_locks: Path = PROC_LOCKS) -> LockHolder | None:
    """Who holds a lock on ``path``, or ``None`` if nobody does (or the file is absent)."""
    try:
        st = path.stat()
        with proc_locks.open("rb") as f:
            table = f.read(MAX_PROC_LOCKS_BYTES).decode("ascii", "replace")
    except OSError:
        return None
    device = f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}:{st.st_ino}"
    for line in table.splitlines():
        fields = line.split()
        # "1: POSIX  ADVISORY  WRITE 2541 fe:00:2146572 0 EOF"; blocked waiters carry "->".
        if len(fields) < 6 or fields[1] == "->":
            continue
        if fields[5] != device:
            continue
        try:
            pid: int | None = int(fields[4])
        except ValueError:
            pid = None
        if pid is not None and pid <= 0:
            pid = None  # open file description locks have no owning process
        return LockHolder(pid, _process_name(pid) if pid else None)
    return None


def wait_for_locks(
    paths: Sequence[Path],
    timeout_s: float,
    *,
    proc_locks: Path = PROC_LOCKS,
    sleep: Callable[[float], None] = time.sleep,
    monotonic: Callable[[], float] = time.monotonic,
) -> None:
    """Return once nobody holds a lock on any of ``paths``.

    Waits with exponential backoff and jitter for at most ``timeout_s`` seconds, then
    raises :class:`LockHeldError` naming the holder.
    """
    started = monotonic()
    delay = BACKOFF_FIRST_S
    announced: set[int | None] = set()
    while True:
        busy = [(p, h) for p in paths if (h := lock_holder(p, proc_locks)) is not None]
        if not busy:
            return
        path, holder = busy[0]
        waited = monotonic() - started
        if waited >= timeout_s:
            raise LockHeldError(
                str(path), holder_pid=holder.pid, holder_name=holder.name, waited_s=waited
            )
        if holder.pid not in announced:
            announced.add(holder.pid)
            log.warning(
                "waiting up to %.0f s for %s, held by process %s (%s)",
                timeout_s,
                path,
                holder.pid,
                holder.name or "unknown",
            )
        import random

        sleep(min(delay * random.uniform(0.5, 1.0), max(0.0, timeout_s - waited)))  # noqa: S311
        delay = min(delay * 2, BACKOFF_MAX_S)
