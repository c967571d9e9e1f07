"""What identifies one state of a file: where it is on disk, its size and its times.

Compared with what was seen before, it tells whether a file changed without reading it:
the agent's recheck of its policy file, the memo of a package database's installed set.
"""

from __future__ import annotations

import os
from pathlib import Path

FileState = tuple[int, ...]


def file_state(st: os.stat_result, *, ctime: bool = True) -> FileState:
    """Device, inode, size, modification and status-change times (nanoseconds).

    ``ctime=False`` leaves out the status-change time, for a file whose status-change
    time moves on mere reads.
    """
    found = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
    return (*found, st.st_ctime_ns) if ctime else found


def state_of(path: Path) -> FileState | None:
    """:func:`file_state` of ``path``, followed through symlinks; ``None`` if unreadable."""
    try:
        return file_state(os.stat(path))
    except OSError:
        return None


def signature(name: str, st: os.stat_result, *, ctime: bool = True) -> str:
    """``name`` and its :func:`file_state` as one line of text, for a digest of several."""
    return ":".join([name, *map(str, file_state(st, ctime=ctime))])
