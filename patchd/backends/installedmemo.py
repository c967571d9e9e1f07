"""The installed set last read, remembered while the package database is unchanged.

Reading the installed set costs a scan more than anything else patchd does itself: an
``rpm -qa`` of a thousand packages, or a thousand pacman ``desc`` files. Between two
scans the set rarely changes, and every change rewrites the database's files. So the
set is kept in a file under patchd's work directory (the agent scans in a fresh worker
process each cycle: a memory of the process would not outlive it), keyed by a
fingerprint of the database's files — their device, inode, size, modification and
status-change times — and read again whenever that fingerprint differs.

A change made within the same tick of the file system's clock as the fingerprint could
leave every time unchanged, so a database changed less than :data:`SETTLE_S` ago is not
remembered at all: it is read again by the next scan (as git treats "racily clean"
files). Anything that changes packages :meth:`~InstalledMemo.forget`\\ s the memo first.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from collections.abc import Collection, Iterable, Sequence
from pathlib import Path

from patchd import __version__
from patchd.atomicfile import atomic_write_text
from patchd.boundedread import read_bounded
from patchd.filestate import stat_line
from patchd.models import InstalledPackage

log = logging.getLogger(__name__)

MEMO_FORMAT = 1
MAX_MEMO_BYTES = 64 * 1024 * 1024  # ~60 bytes a package: far beyond any real system
# Coarse file-system clocks tick every few milliseconds (a jiffy; FAT: 2 s); a database
# changed more recently than this is read again instead of remembered.
SETTLE_S = 2.0


def settled_fingerprint(
    files: Iterable[tuple[str, os.stat_result]],
    *,
    ctime_moves_on_read: Collection[str] = (),
    now: float | None = None,
) -> str | None:
    """A digest of the files' signatures, or ``None`` if one changed in the last ``SETTLE_S``.

    ``ctime_moves_on_read`` names files judged by their other fields only.
    """
    horizon = (time.time() if now is None else now) - SETTLE_S
    parts = []
    for name, st in files:
        ctime = name not in ctime_moves_on_read
        if max(st.st_mtime, st.st_ctime if ctime else 0.0) > horizon:
            return None
        parts.append(stat_line(name, st, ctime=ctime))
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()


class InstalledMemo:
    """One backend's remembered installed set, in ``path`` (a file patchd owns)."""

    def __init__(self, path: Path, backend: str) -> None:
        self.path = path
        self.backend = backend

    def recall(self, fingerprint: str | None) -> list[InstalledPackage] | None:
        """The set remembered for ``fingerprint``, or ``None`` (then read the database).

        Never raises: a missing, unreadable or malformed memo is simply not used.
        """
        if fingerprint is None:
            return None
        try:
            doc = json.loads(read_bounded(self.path, MAX_MEMO_BYTES + 1))
        except (OSError, ValueError):
            return None
        if (
            not isinstance(doc, dict)
            or doc.get("format") != MEMO_FORMAT
            or doc.get("patchd") != __version__  # another patchd may read differently
            or doc.get("backend") != self.backend
            or doc.get("fingerprint") != fingerprint
            or not isinstance(doc.get("packages"), str)
        ):
            return None
        packages = []
        for line in doc["packages"].splitlines():
            fields = line.split("\t")
            if len(fields) != 4:
                return None
            name, version, arch, status = fields
            packages.append(InstalledPackage(name, version, arch, self.backend, status))
        return packages

    def keep(self, fingerprint: str | None, packages: Sequence[InstalledPackage]) -> None:
        """Remember ``packages`` as the set read at ``fingerprint`` (``None``: forget instead)."""
        if fingerprint is None:
            self.forget()
            return
        rows = [(p.name, p.version, p.arch, p.status) for p in packages]
        if any("\t" in field or "\n" in field for row in rows for field in row):
            self.forget()  # not expected of package names and versions; then not remembered
            return
        doc = {
            "format": MEMO_FORMAT,
            "patchd": __version__,
            "backend": self.backend,
            "fingerprint": fingerprint,
            # One line a package, tab-separated: a tenth of the cost of a list of lists to read.
            "packages": "".join("\t".join(row) + "\n" for row in rows),
        }
        text = json.dumps(doc, separators=(",", ":"))
        if len(text) > MAX_MEMO_BYTES:
            self.forget()
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_text(self.path, text)
        except OSError as e:  # a read-only state directory: the database is read each time
            log.debug("installed set not remembered in %s: %s", self.path, e)

    def forget(self) -> None:
        """Drop the memo: the next reading asks the database."""
        try:
            self.path.unlink()
        except FileNotFoundError:
            pass
        except OSError as e:
            log.warning("cannot remove %s: %s", self.path, e)
