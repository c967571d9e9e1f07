"""The rpm database of a target: where it is, and what it records as installed.

Distributions keep it in ``/usr/lib/sysimage/rpm`` (Fedora 36+, openSUSE) or
``/var/lib/rpm``; patchd looks inside the target for either, and always names it to
rpm (``--dbpath``), so a host whose own rpm is configured elsewhere (Debian keeps it in
``~/.rpmdb``) still reads the target's database.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from functools import cached_property
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
RELEASEVER_PROVIDE = "system-release(releasever)"
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

    @cached_property
    def _releasever_lookup(self) -> process.CommandResult:
        # One indexed lookup serves both as the health check and as dnf's release probe.
        return process.run(
            self.query_argv("-q", "--whatprovides", RELEASEVER_PROVIDE),
            timeout_s=QUERY_TIMEOUT_S,
            ok_codes=range(256),
        )

    def health_problem(self) -> str:
        """Why the database cannot be read, or ``""`` (rpm prints ``error:`` lines then)."""
        result = self._releasever_lookup
        errors = [line for line in result.output.splitlines() if line.startswith("error:")]
        if not errors and result.returncode in (0, 1):
            return ""
        reason = errors[-1] if errors else f"rpm exited with status {result.returncode}"
        return f"rpm cannot read {self.db_dir} in {self.target}: {reason}"

    def provides_releasever(self) -> bool:
        """Whether a package tells dnf the release (``system-release(releasever)``)."""
        return self._releasever_lookup.returncode == 0 and not self.health_problem()

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
