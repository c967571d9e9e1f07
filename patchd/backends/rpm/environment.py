"""Keeping rpm, dnf and libzypp inside a target root.

``--installroot``/``--root`` move where packages go, but librpm still takes the
database's location from the *host's* ``%_dbpath`` macro (Debian's rpm says
``~/.rpmdb``), so on such a host a root's own database would be missed and a new one
made in the wrong place. For an alternate root patchd therefore runs the tools with a
``HOME`` of its own whose ``.rpmmacros`` names the database the root really has; rpm
reads ``~/.rpmmacros`` after the system's macro files.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from patchd.atomicfile import atomic_write_text
from patchd.target import Target


def rpm_home(target: Target, db_dir: str, work_dir: Path) -> dict[str, str]:
    """Environment additions that point librpm at ``db_dir`` (nothing for the host)."""
    if target.is_host:
        return {}
    digest = hashlib.sha256(str(target.root).encode()).hexdigest()[:16]
    home = work_dir / f"home-{digest}"
    home.mkdir(parents=True, exist_ok=True, mode=0o700)
    text = f"# written by patchd: the rpm database of {target.root}\n%_dbpath {db_dir}\n"
    macros = home / ".rpmmacros"
    if not macros.is_file() or macros.read_text(encoding="utf-8", errors="replace") != text:
        atomic_write_text(macros, text, mode=0o644)
    return {"HOME": str(home)}
