"""Reading at most N bytes of a file, cheaply, where a scan reads many files.

``f.read(limit)`` allocates ``limit`` bytes before reading; with a generous bound (a
megabyte for a pacman ``desc`` file, 256 KiB for a process's memory map) that
allocation costs several times the read itself, for every one of a thousand files.
"""

from __future__ import annotations

import os

READ_CHUNK_BYTES = 64 * 1024


def read_bounded(path: str | os.PathLike[str], limit: int) -> bytes:
    """At most ``limit`` bytes of ``path``, read in pieces of :data:`READ_CHUNK_BYTES`.

    :class:`OSError` as :func:`open` raises it.
    """
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_BINARY", 0))
    try:
        chunks = []
        remaining = limit
        while remaining > 0:
            chunk = os.read(fd, min(READ_CHUNK_BYTES, remaining))
            if not chunk:
                break
            chunks.append(chunk)
            remaining -= len(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)
