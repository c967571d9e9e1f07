"""A process that holds a package manager's pid-file lock, for the lock tests."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def pid_lock_held(lock_file: Path) -> Iterator[int]:
    """Write a live process's pid into ``lock_file`` (as dnf and libzypp do) while in the block."""
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        lock_file.parent.mkdir(parents=True, exist_ok=True)
        lock_file.write_text(f"{proc.pid}\n")
        yield proc.pid
    finally:
        proc.kill()
        proc.wait()
        lock_file.unlink(missing_ok=True)
