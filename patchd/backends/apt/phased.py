"""Ubuntu's phased updates: which candidates the distribution is still rolling out.

A phased version carries ``Phased-Update-Percentage`` in its repository's Packages index.
``apt list --upgradable`` lists it like any other update while ``apt upgrade`` may keep
it back, so patchd reads the field from the indexes apt downloaded: a byte search of
each uncompressed index (fast), or of a compressed one through ``apt-helper cat-file``
where the OS profile says the distribution phases updates.
"""

from __future__ import annotations

import contextlib
import mmap
from collections.abc import Callable, Collection
from pathlib import Path

from patchd.backends.apt.stanzas import first_stanza

PHASED_FIELD = b"\nPhased-Update-Percentage:"
MAX_STANZA_BYTES = 256 * 1024  # Packages stanzas are a few KiB; bounds the search around a hit
_COMPRESSED_SUFFIXES = (".gz", ".xz", ".lz4", ".zst", ".bz2", ".lzma")

Decompressor = Callable[[Path], bytes]


def _packages_files(lists_dir: Path, prefixes: Collection[str]) -> list[Path]:
    try:
        files = sorted(lists_dir.iterdir())
    except OSError:
        return []
    return [
        f
        for f in files
        if "_Packages" in f.name and any(f.name.startswith(p + "_") for p in prefixes)
    ]


def _scan_bytes(
    data: bytes | mmap.mmap, wanted: Collection[tuple[str, str]]
) -> dict[tuple[str, str], int]:
    found: dict[tuple[str, str], int] = {}
    pos = data.find(PHASED_FIELD)
    while pos != -1:
        start = data.rfind(b"\n\n", max(0, pos - MAX_STANZA_BYTES), pos)
        end = data.find(b"\n\n", pos, pos + MAX_STANZA_BYTES)
        # No blank line within reach: start at the window's edge, never at the file's start
        # (which would read the first stanza of the file as this one).
        begin = start + 1 if start != -1 else max(0, pos - MAX_STANZA_BYTES)
        chunk = bytes(data[begin : end if end != -1 else len(data)])
        stanza = first_stanza(chunk.decode("utf-8", "replace"))
        key = (stanza.get("Package", ""), stanza.get("Version", ""))
        if key in wanted:
            with contextlib.suppress(ValueError):
                found[key] = max(0, min(100, int(stanza.get("Phased-Update-Percentage", "100"))))
        pos = data.find(PHASED_FIELD, pos + 1)
    return found


def phased_percentages(
    lists_dir: Path,
    list_prefixes: Collection[str],
    wanted: Collection[tuple[str, str]],
    *,
    decompress: Decompressor | None,
) -> dict[tuple[str, str], int]:
    """(package, version) → phased percentage, for the ``wanted`` candidates that have one.

    Only index files whose names start with one of ``list_prefixes`` (the repositories
    the candidates come from) are read. Compressed indexes are read only when
    ``decompress`` is given.
    """
    wanted = set(wanted)
    found: dict[tuple[str, str], int] = {}
    for path in _packages_files(lists_dir, list_prefixes):
        if path.name.endswith(_COMPRESSED_SUFFIXES):
            if decompress is not None:
                found.update(_scan_bytes(decompress(path), wanted))
            continue
        try:
            with path.open("rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as data:
                found.update(_scan_bytes(data, wanted))
        except (OSError, ValueError):  # ValueError: mmap of an empty file
            continue
    return found
