"""The rpm database of a target: where it is, and what it records as installed.

Distributions keep it in ``/usr/lib/sysimage/rpm`` (Fedora 36+, openSUSE) or
``/var/lib/rpm``; patchd looks inside the target for either, and always names it to
rpm (``--dbpath``), so a host whose own rpm is configured elsewhere (Debian keeps it in
``~/.rpmdb``) still reads the target's database.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from patchd import process
from patchd.atomicfile import atomic_write_text
from patchd.backends.installedmemo import SETTLE_S, InstalledMemo, settled_fingerprint
from patchd.backends.rpm.versions import compare, evr
from patchd.filestate import stat_line
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
    """Reads one target's rpm database with the host's ``rpm``.

    With a ``memo_file``, the health check's answer is kept there, keyed by the
    database's files and the ``rpm`` binary (see :func:`database_fingerprint`): while
    neither changes, the next probe needs no ``rpm`` process before the listing starts.
    """

    def __init__(self, target: Target, db_dir: str, memo_file: Path | None = None) -> None:
        self.target = target
        self.db_dir = db_dir
        self._memo_file = memo_file

    def query_argv(self, *args: str) -> list[str]:
        """An ``rpm`` command line that reads the target's database."""
        root = [] if self.target.is_host else ["--root", str(self.target.root)]
        return ["rpm", *root, "--dbpath", self.db_dir, *args]

    @cached_property
    def _releasever_lookup(self) -> tuple[int, str]:
        """rpm's exit status and output for the release provide (0 found, 1 not found).

        One indexed lookup serves both as the health check and as dnf's release probe.
        A healthy answer is remembered for an unchanged database; a failure never is.
        """
        fingerprint = database_fingerprint(self.target.path(self.db_dir))
        remembered = _read_memo(self._memo_file, fingerprint)
        if remembered is not None:
            return remembered, ""
        result = process.run(
            self.query_argv("-q", "--whatprovides", RELEASEVER_PROVIDE),
            timeout_s=QUERY_TIMEOUT_S,
            ok_codes=range(256),
        )
        if _healthy(result.returncode, result.output):
            _write_memo(self._memo_file, fingerprint, result.returncode)
        return result.returncode, result.output

    def health_problem(self) -> str:
        """Why the database cannot be read, or ``""`` (rpm prints ``error:`` lines then)."""
        returncode, output = self._releasever_lookup
        if _healthy(returncode, output):
            return ""
        errors = [line for line in output.splitlines() if line.startswith("error:")]
        reason = errors[-1] if errors else f"rpm exited with status {returncode}"
        return f"rpm cannot read {self.db_dir} in {self.target}: {reason}"

    def provides_releasever(self) -> bool:
        """Whether a package tells dnf the release (``system-release(releasever)``)."""
        return self._releasever_lookup[0] == 0 and not self.health_problem()

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


def _healthy(returncode: int, output: str) -> bool:
    return returncode in (0, 1) and not any(
        line.startswith("error:") for line in output.splitlines()
    )


# Files a mere reader changes (SQLite's shared-memory index) or that hold no data.
_VOLATILE_SUFFIXES = ("-shm", ".rpm.lock")
MAX_DB_FILES = 1000  # an rpm database directory holds a handful; a bound all the same


def _database_files(db_path: Path) -> list[tuple[str, os.stat_result]] | None:
    """The ``rpm`` binary and the database's files, each with its ``stat``; ``None`` if unknown."""
    import shutil

    rpm = shutil.which("rpm", path=process.base_environment()["PATH"])
    if rpm is None:
        return None
    try:
        found = [(rpm, os.stat(rpm))]
        with os.scandir(db_path) as entries:
            files = sorted(entries, key=lambda e: e.name)
        if len(files) > MAX_DB_FILES:
            return None
        for entry in files:
            if not entry.name.endswith(_VOLATILE_SUFFIXES):
                found.append((entry.path, entry.stat(follow_symlinks=False)))
    except OSError:
        return None
    return found


def database_fingerprint(db_path: Path) -> str | None:
    """A digest of the database's files and of the ``rpm`` that reads them, or ``None``.

    Every transaction rewrites at least one file of the database (its size, time or
    inode changes), so an equal fingerprint means rpm would answer as it did before.
    ``None`` when anything cannot be looked at: then nothing is remembered.
    """
    import hashlib

    files = _database_files(db_path)
    if files is None:
        return None
    parts = [stat_line(name, st, ctime=False) for name, st in files]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()


def settled_database_fingerprint(db_path: Path) -> str | None:
    """The database's state for the installed set's memo; ``None`` just after a change.

    See :mod:`patchd.backends.installedmemo`.
    """
    files = _database_files(db_path)
    if files is None:
        return None
    # Every rpm that reads a SQLite database resets its write-ahead log on closing: the
    # log's status-change time moves on each read. Its size and modification time move
    # only with a write.
    wal = {name for name, _ in files if name.endswith("-wal")}
    return settled_fingerprint(files, ctime_moves_on_read=wal)


def _read_memo(memo_file: Path | None, fingerprint: str | None) -> int | None:
    if memo_file is None or fingerprint is None:
        return None
    try:
        key, _, value = memo_file.read_text(encoding="utf-8").partition("\n")
    except OSError:
        return None
    value = value.strip()
    return int(value) if key == fingerprint and value in ("0", "1") else None


def _write_memo(memo_file: Path | None, fingerprint: str | None, returncode: int) -> None:
    if memo_file is None or fingerprint is None:
        return
    try:
        memo_file.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(memo_file, f"{fingerprint}\n{returncode}\n", mode=0o644)
    except OSError:
        pass  # a read-only state directory: rpm is asked again next time


class InstalledSnapshot:
    """The installed set, read once per scan and in the background.

    A scan needs it twice (the inventory, then the updates' installed versions); the
    query starts with the package manager's listing and runs alongside it. With a
    ``memo``, the set an earlier scan read is reused while the database is unchanged
    (no ``rpm`` process at all). Anything that changes packages must :meth:`forget` it
    first.
    """

    def __init__(self, rpmdb: RpmDatabase, backend: str, memo: InstalledMemo | None = None) -> None:
        self._rpmdb = rpmdb
        self._backend = backend
        self._memo = memo
        self._running: process.RunningCommand | None = None
        self._fingerprint: str | None = None  # the database's state when the query started
        self._packages: list[InstalledPackage] | None = None

    def start(self) -> None:
        """Begin a fresh reading (a new scan); the memo answers if the database is unchanged."""
        self._drop()
        looked_at = time.monotonic()
        if self._memo is not None:
            self._fingerprint = settled_database_fingerprint(
                self._rpmdb.target.path(self._rpmdb.db_dir)
            )
            self._packages = self._memo.recall(self._fingerprint)
            if self._packages is not None:
                return
        self._running = self._rpmdb.start_query()
        if self._running.started_at < looked_at - SETTLE_S:
            # Taken over as it ran (process.started_ahead), and started before the last
            # SETTLE_S in which the fingerprint says the database did not change: it may
            # have read an older database, so what it reads is not remembered.
            self._fingerprint = None

    def get(self) -> list[InstalledPackage]:
        if self._packages is None and self._running is None:
            self.start()
        packages = self._packages
        if packages is None:
            running, self._running = self._running, None
            assert running is not None
            packages = self._packages = RpmDatabase.collect(running, self._backend)
            if self._memo is not None:
                self._memo.keep(self._fingerprint, packages)
        return packages

    def stop(self) -> None:
        """Stop a reading still running (no scan will use it); what was read is kept."""
        if self._running is not None:
            process.stop_all(self._running)
            self._running = self._fingerprint = None

    def forget(self) -> None:
        """Drop what was read, and the memo: the packages are about to change."""
        self._drop()
        if self._memo is not None:
            self._memo.forget()

    def _drop(self) -> None:
        process.stop_all(self._running)
        self._running = self._packages = self._fingerprint = None
