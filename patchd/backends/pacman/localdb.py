"""pacman's local database, read directly: one directory per installed package.

``DBPath/local/NAME-VERSION/desc`` holds ``%NAME%``, ``%VERSION%`` and ``%ARCH%`` as
blocks of a ``%FIELD%`` line followed by value lines. Reading the files is faster than
asking ``pacman -Q`` and, unlike it, gives each package's architecture.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from patchd.backends.installedmemo import settled_fingerprint
from patchd.boundedread import read_bounded
from patchd.errors import BackendError
from patchd.models import InstalledPackage

MAX_PACKAGES = 200_000  # far beyond any real system; a bound against a runaway directory
MAX_DESC_BYTES = 1024 * 1024
DB_VERSION_FILE = "ALPM_DB_VERSION"
# A scan reads every entry: three anchored searches cost far less than a full parse.
_FIELDS = {
    name: re.compile(rb"^%" + name.encode() + rb"%\n([^\n]*)$", re.MULTILINE)
    for name in ("NAME", "VERSION", "ARCH")
}


def _read_entry(entry: str) -> InstalledPackage | None:
    try:
        data = read_bounded(os.path.join(entry, "desc"), MAX_DESC_BYTES)  # no pathlib: hot
    except OSError:
        return None
    found = {name: pattern.search(data) for name, pattern in _FIELDS.items()}
    name, version, arch = found["NAME"], found["VERSION"], found["ARCH"]
    if name is None or version is None or not name[1] or not version[1]:
        return None
    return InstalledPackage(
        name=name[1].decode("utf-8", "replace"),
        version=version[1].decode("utf-8", "replace"),
        arch=arch[1].decode("utf-8", "replace") if arch is not None and arch[1] else "any",
        backend="pacman",
    )


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
        package = _read_entry(os.path.join(local_db, name))
        if package is None:
            raise BackendError(
                f"pacman's local database entry {local_db / name} is damaged (no readable desc)",
                hint="run `pacman -Dk` on the target to check the database",
            )
        packages.append(package)
    return packages


def database_fingerprint(local_db: Path) -> str | None:
    """The local database's state, for :class:`~patchd.backends.installedmemo.InstalledMemo`.

    pacman removes a package's entry directory and writes a new one on every install,
    upgrade, downgrade, reinstall and removal, so the directory's own times and inode
    change with the installed set. ``None`` if it cannot be looked at, or changed just now.
    """
    try:
        st = os.stat(local_db)
    except OSError:
        return None
    return settled_fingerprint([(str(local_db), st)])
