"""The rpm database of a target: where it is, and what it records as installed.

Distributions keep it in ``/usr/lib/sysimage/rpm`` (Fedora 36+, openSUSE) or
``/var/lib/rpm``; patchd looks inside the target for either, and always names it to
rpm (``--dbpath``), so a host whose own rpm is configured elsewhere (Debian keeps it in
``~/.rpmdb``) still reads the target's database.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from patchd import process
from patchd.backends.rpm.versions import compare, evr
from patchd.models import InstalledPackage
from patchd.target import Target

log = logging.getLogger(__name__)

QUERY_TIMEOUT_S = 120.0
MAX_QUERY_BYTES = 64 * 1024 * 1024  # ~100 bytes a package: far beyond any real system
DB_DIRS = ("/usr/lib/sysimage/rpm", "/var/lib/rpm")
DB_FILES = ("rpmdb.sqlite", "Packages", "Packages.db")  # sqlite, bdb, ndb backends
PSEUDO_PACKAGES = frozenset({"gpg-pubkey", "gpg-pubkey-release"})  # imported keys, not software
PROBE_PACKAGE = "patchd-probe-no-such-package"  # looked up to check the database opens
_QUERY_FORMAT = "%{NAME}\\t%{EPOCH}\\t%{VERSION}\\t%{RELEASE}\\t%{ARCH}\\n"


def find_db_dir(target: Target) -> str | None:
    """The rpm database directory inside ``target`` (as a path in the target), if any."""
    for directory in DB_DIRS:
        found = target.path(directory)
        if any((found / name).is_file() for name in DB_FILES):
            return directory
    return None


@dataclass(frozen=True)
class RpmRow:
    name: str
    evr: str
    arch: str


def parse_query(text: str) -> list[RpmRow]:
    """Rows of ``rpm -qa --qf`` in :data:`_QUERY_FORMAT`; malformed lines are skipped."""
    rows = []
    for line in text.splitlines():
        fields = line.split("\t")
        if len(fields) != 5 or not fields[0] or not fields[2]:
            continue
        name, epoch, version, release, arch = fields
        if name in PSEUDO_PACKAGES:
            continue
        rows.append(RpmRow(name, evr(epoch, version, release), arch))
    return rows


def newest_per_package(rows: list[RpmRow]) -> dict[tuple[str, str], RpmRow]:
    """One row per (name, arch): the newest, where several versions are installed (kernels)."""
    newest: dict[tuple[str, str], RpmRow] = {}
    for row in rows:
        key = (row.name, row.arch)
        kept = newest.get(key)
        if kept is None or compare(row.evr, kept.evr) > 0:
            newest[key] = row
    return newest


class RpmDatabase:
    """Reads one target's rpm database with the host's ``rpm``."""

    def __init__(self, target: Target, db_dir: str) -> None:
        self.target = target
        self.db_dir = db_dir

    def query_argv(self, *args: str) -> list[str]:
        """An ``rpm`` command line that reads the target's database."""
        root = [] if self.target.is_host else ["--root", str(self.target.root)]
        return ["rpm", *root, "--dbpath", self.db_dir, *args]

    def health_problem(self) -> str:
        """Why the database cannot be read, or ``""``: one cheap indexed lookup."""
        result = process.run(
            self.query_argv("-q", PROBE_PACKAGE), timeout_s=QUERY_TIMEOUT_S, ok_codes=range(256)
        )
        if result.returncode == 0 or "is not installed" in result.output:
            return ""
        lines = [line for line in result.output.splitlines() if line.strip()]
        return f"rpm cannot read {self.db_dir} in {self.target}: {lines[-1] if lines else 'no reason given'}"

    def start_query(self) -> process.RunningCommand:
        """Start reading every installed package (collect with :meth:`collect`)."""
        return process.start(
            self.query_argv("-qa", "--qf", _QUERY_FORMAT),
            timeout_s=QUERY_TIMEOUT_S,
            max_output_bytes=MAX_QUERY_BYTES,
        )

    @staticmethod
    def collect(running: process.RunningCommand, backend: str) -> list[InstalledPackage]:
        rows = newest_per_package(parse_query(running.wait().stdout))
        return [InstalledPackage(r.name, r.evr, r.arch, backend) for r in rows.values()]

    def installed(self, backend: str) -> list[InstalledPackage]:
        """Every package installed, the newest version where several are (installonly kernels)."""
        return self.collect(self.start_query(), backend)

    def lock_file(self) -> Path:
        """The file rpm locks (``fcntl``) during a transaction."""
        return self.target.path(self.db_dir) / ".rpm.lock"


class InstalledSnapshot:
    """The installed set, read once per scan and in the background.

    A scan needs it twice (the inventory, then the updates' installed versions); the
    query starts with the package manager's listing and runs alongside it. Anything
    that changes packages must :meth:`forget` it first.
    """

    def __init__(self, rpmdb: RpmDatabase, backend: str) -> None:
        self._rpmdb = rpmdb
        self._backend = backend
        self._running: process.RunningCommand | None = None
        self._packages: list[InstalledPackage] | None = None

    def start(self) -> None:
        """Begin a fresh reading (a new scan)."""
        self.forget()
        self._running = self._rpmdb.start_query()

    def get(self) -> list[InstalledPackage]:
        if self._packages is None:
            running, self._running = self._running, None
            self._packages = RpmDatabase.collect(
                running or self._rpmdb.start_query(), self._backend
            )
        return self._packages

    def forget(self) -> None:
        if self._running is not None:
            self._running.stop()
            self._running = None
        self._packages = None
