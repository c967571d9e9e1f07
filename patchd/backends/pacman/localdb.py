"""pacman's local database, read directly: one directory per installed package.

``DBPath/local/NAME-VERSION/desc`` holds ``%NAME%``, ``%VERSION%`` and ``%ARCH%`` as
blocks of a ``%FIELD%`` line followed by value lines. Reading the files is faster than
asking ``pacman -Q`` and, unlike it, gives each package's architecture.
"""

from __future__ import annotations

import os
from pathlib import Path

from patchd.errors import BackendError
from patchd.models import InstalledPackage

MAX_PACKAGES = 200_000  # far beyond any real system; a bound against a runaway directory
MAX_DESC_BYTES = 1024 * 1024
DB_VERSION_FILE = "ALPM_DB_VERSION"


def parse_desc(text: str) -> dict[str, list[str]]:
    """The ``%FIELD%`` blocks of a ``desc`` file: field name → its value lines."""
    fields: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in text.splitlines():
        if len(line) > 2 and line.startswith("%") and line.endswith("%"):
            current = fields.setdefault(line[1:-1], [])
        elif not line:
            current = None
        elif current is not None:
            current.append(line)
    return fields


def _read_entry(entry: Path) -> InstalledPackage | None:
    try:
        with (entry / "desc").open("rb") as f:
            text = f.read(MAX_DESC_BYTES).decode("utf-8", "replace")
    except OSError:
        return None
    fields = parse_desc(text)
    name, version = fields.get("NAME"), fields.get("VERSION")
    if not name or not version:
        return None
    arch = fields.get("ARCH") or ["any"]
    return InstalledPackage(name=name[0], version=version[0], arch=arch[0], backend="pacman")


def read_installed(local_db: Path) -> list[InstalledPackage]:
    """Every package the local database records, sorted by name.

    :class:`BackendError` when the directory is unreadable or an entry is damaged (a
    package directory without a readable ``desc``): pacman itself would refuse it too.
    """
    try:
        names = [e.name for e in os.scandir(local_db) if e.is_dir()]
    except OSError as e:
        raise BackendError(
            f"cannot read pacman's local database {local_db}: {e.strerror}",
            hint="check --root and that pacman works on its own",
        ) from None
    if len(names) > MAX_PACKAGES:
        raise BackendError(f"{local_db} holds {len(names)} entries, more than {MAX_PACKAGES}")
    packages = []
    for name in sorted(names):
        package = _read_entry(local_db / name)
        if package is None:
            raise BackendError(
                f"pacman's local database entry {local_db / name} is damaged (no readable desc)",
                hint="run `pacman -Dk` on the target to check the database",
            )
        packages.append(package)
    return packages
