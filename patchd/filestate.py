"""What identifies one state of a file: where it is on disk, its size and its times.

Compared with what was seen before, it tells whether a file changed without reading it:
the agent's recheck of its policy file, the memo of a package database's installed set.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import NamedTuple


class FileState(NamedTuple):
    """A file's device, inode, size, and modification and status-change times (ns)."""

    device: int
    inode: int
    size: int
    mtime_ns: int
    ctime_ns: int

    @classmethod
    def of(cls, st: os.stat_result) -> FileState:
        return cls(st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def state_of(path: Path) -> FileState | None:
    """The state of ``path``, followed through symlinks; ``None`` if it cannot be looked at."""
    try:
        return FileState.of(os.stat(path))
    except OSError:
        return None


def stat_line(name: str, st: os.stat_result, *, ctime: bool = True) -> str:
    """``name`` and its state as one line of text, for a digest of several files.

    ``ctime=False`` leaves out the status-change time, for a file whose status-change
    time moves on mere reads.
    """
    state = FileState.of(st)
    fields = state if ctime else state[:4]
    return ":".join([name, *map(str, fields)])
