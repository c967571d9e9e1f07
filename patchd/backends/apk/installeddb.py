"""apk's database of installed packages (``lib/apk/db/installed``), read directly.

The format is documented (https://wiki.alpinelinux.org/wiki/Apk_spec, "Installed
Database"): one stanza per package, blank-line separated, each line ``X:value`` where
``P`` is the name, ``V`` the version, ``A`` the architecture and ``o`` the origin (the
source package, which Alpine's security database is keyed by). File lines (``F``,
``R``, ``Z``, ``a``, ``M``) follow and are skipped. Reading the file is cheaper than
``apk info -v`` and works the same for ``--root``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from patchd.errors import BackendError
from patchd.models import InstalledPackage

# apk-tools 2 keeps the database in lib/apk/db; apk-tools 3 may keep it under usr/.
DATABASE_PATHS = ("/lib/apk/db/installed", "/usr/lib/apk/db/installed")
MAX_DATABASE_BYTES = 256 * 1024 * 1024  # a large desktop's database is tens of MiB
MAX_PACKAGES = 100_000


@dataclass(frozen=True)
class ApkPackage:
    """One stanza of the installed database: what patchd needs of it."""

    name: str
    version: str
    arch: str
    origin: str

    def installed(self, backend: str) -> InstalledPackage:
        return InstalledPackage(self.name, self.version, self.arch, backend)


def parse_installed(text: str, where: str = "installed database") -> list[ApkPackage]:
    """Every package stanza of an installed database; :class:`BackendError` if malformed."""
    if len(text) > MAX_DATABASE_BYTES:
        raise BackendError(f"{where} is larger than {MAX_DATABASE_BYTES} bytes")
    packages: list[ApkPackage] = []
    fields: dict[str, str] = {}
    for number, line in enumerate([*text.splitlines(), ""], start=1):
        if not line:
            if fields:
                packages.append(_package(fields, where, number))
                if len(packages) > MAX_PACKAGES:
                    raise BackendError(f"{where} lists more than {MAX_PACKAGES} packages")
                fields = {}
            continue
        key, sep, value = line.partition(":")
        if not sep or len(key) != 1:
            raise BackendError(f"{where}, line {number}: not a `X:value` line: {line[:80]!r}")
        if key in "PVAo" and key not in fields:  # file lines repeat keys; the header comes first
            fields[key] = value
    return packages


def _package(fields: dict[str, str], where: str, line: int) -> ApkPackage:
    missing = [k for k in "PV" if not fields.get(k)]
    if missing:
        raise BackendError(
            f"{where}: the stanza ending at line {line} has no {'/'.join(missing)} field"
        )
    name = fields["P"]
    return ApkPackage(name, fields["V"], fields.get("A", "noarch"), fields.get("o", name))


def find_database(root: Path) -> Path | None:
    """The installed database under ``root``, or ``None`` where apk manages nothing."""
    for relative in DATABASE_PATHS:
        candidate = root / relative.lstrip("/")
        if candidate.is_file():
            return candidate
    return None
