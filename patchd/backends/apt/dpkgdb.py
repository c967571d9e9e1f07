"""dpkg's package database, read directly: ``/var/lib/dpkg/status`` and its journal.

This is the source of truth for what is installed; apply and rollback are judged by it,
never by a command's exit status.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from patchd.backends.apt.stanzas import first_stanza, iter_stanzas
from patchd.errors import BackendError
from patchd.models import InstalledPackage

MAX_STATUS_BYTES = 256 * 1024 * 1024  # a 10,000-package status file is ~10 MiB
# dpkg states of a package whose last operation did not finish (dpkg(1) "Package states").
UNFINISHED_STATES = frozenset(
    {"half-installed", "unpacked", "half-configured", "triggers-awaited", "triggers-pending"}
)
PRESENT_STATES = UNFINISHED_STATES | {"installed"}


@dataclass(frozen=True)
class DpkgEntry:
    """One package stanza of the status file."""

    name: str
    arch: str
    version: str
    want: str  # install, hold, deinstall, purge, unknown
    flag: str  # ok, reinstreq
    state: str  # installed, half-configured, config-files, ...
    source: str

    @property
    def present(self) -> bool:
        return self.state in PRESENT_STATES

    @property
    def unfinished(self) -> bool:
        return self.state in UNFINISHED_STATES or self.flag == "reinstreq"

    def as_installed(self) -> InstalledPackage:
        return InstalledPackage(self.name, self.version, self.arch, "apt", self.state)


class DpkgDatabase:
    """Reads dpkg's administrative directory (``/var/lib/dpkg`` inside the target)."""

    def __init__(self, admin_dir: Path) -> None:
        self.admin_dir = admin_dir
        self._cache: tuple[tuple[int, int, int], list[DpkgEntry]] | None = None

    @property
    def status_path(self) -> Path:
        return self.admin_dir / "status"

    def entries(self) -> list[DpkgEntry]:
        """Every package stanza; raises :class:`BackendError` if the file is unreadable.

        The parse is reused while the file is unchanged (dpkg replaces it on every
        change, so its inode, size and modification time tell).
        """
        try:
            with self.status_path.open("rb") as f:
                st = os.fstat(f.fileno())
                signature = (st.st_ino, st.st_size, st.st_mtime_ns)
                if self._cache is not None and self._cache[0] == signature:
                    return self._cache[1]
                data = f.read(MAX_STATUS_BYTES + 1)
        except OSError as e:
            raise BackendError(
                f"cannot read the dpkg database {self.status_path}: {e.strerror}",
                hint="is this a Debian-family system, and is --root right?",
            ) from e
        if len(data) > MAX_STATUS_BYTES:
            raise BackendError(f"{self.status_path} is larger than {MAX_STATUS_BYTES} bytes")
        result = []
        for stanza in iter_stanzas(data.decode("utf-8", "replace")):
            name = stanza.get("Package")
            status = stanza.get("Status", "").split()
            if not name or len(status) != 3:
                continue
            want, flag, state = status
            source = stanza.get("Source", name).split(" ", 1)[0]
            result.append(
                DpkgEntry(
                    name=name,
                    arch=stanza.get("Architecture", ""),
                    version=stanza.get("Version", ""),
                    want=want,
                    flag=flag,
                    state=state,
                    source=source,
                )
            )
        self._cache = (signature, result)
        return result

    def version_of(self, name: str) -> str | None:
        """The installed version of one package, found without parsing the whole file.

        Raises :class:`BackendError` if the file cannot be read.
        """
        try:
            data = self.status_path.read_bytes()[:MAX_STATUS_BYTES]
        except OSError as e:
            raise BackendError(
                f"cannot read the dpkg database {self.status_path}: {e.strerror}"
            ) from e
        marker = f"Package: {name}\n".encode()
        start = 0 if data.startswith(marker) else data.find(b"\n" + marker) + 1
        if start == 0 and not data.startswith(marker):
            return None
        end = data.find(b"\n\n", start)
        stanza = first_stanza(
            data[start : end if end != -1 else len(data)].decode("utf-8", "replace")
        )
        if stanza.get("Status", "").split()[-1:] != ["installed"]:
            return None
        return stanza.get("Version")

    def installed(self) -> list[InstalledPackage]:
        """Packages present on the system (including ones left unfinished)."""
        return [e.as_installed() for e in self.entries() if e.present]

    def versions(self) -> dict[tuple[str, str], str]:
        """(name, arch) → installed version, for present packages."""
        return {(e.name, e.arch): e.version for e in self.entries() if e.present}

    def held(self) -> set[str]:
        """Names of packages on hold (``apt-mark hold``, ``dpkg --set-selections``)."""
        return {e.name for e in self.entries() if e.want == "hold"}

    def interrupted(self) -> list[str]:
        """What shows an interrupted dpkg run: journal files or unfinished packages."""
        reasons = []
        updates = self.admin_dir / "updates"
        try:
            pending = sorted(p.name for p in updates.iterdir() if p.name.isdigit())
        except OSError:
            pending = []
        if pending:
            reasons.append(f"{len(pending)} unapplied journal entries in {updates}")
        reasons.extend(
            f"{e.name}:{e.arch} is {e.state}"
            + (" (reinstall required)" if e.flag == "reinstreq" else "")
            for e in self.entries()
            if e.unfinished
        )
        return reasons
