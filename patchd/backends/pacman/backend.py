"""The pacman backend: Arch Linux and its derivatives.

Scanning costs one ``pacman -Qu`` (started in the background) plus a read of pacman's
local database, which later scans reuse while the database is unchanged
(:mod:`patchd.backends.installedmemo`). Arch's repositories carry no security metadata: updates are security
updates only where a local copy of the Arch security tracker says so (see
:mod:`patchd.backends.pacman.tracker`); otherwise they are ``other``, severity unknown.

Applying installs exactly the chosen packages from the repository that carries the
chosen version (``pacman -S repo/name``), never refreshing the databases in between;
rolling back installs the old package file, kept from pacman's cache (``pacman -U``).
"""

from __future__ import annotations

import logging
import re
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from patchd import process
from patchd.backends.base import (
    Backend,
    BackendContext,
    Probe,
    ProbeStatus,
    RollbackSource,
    ScanResult,
)
from patchd.backends.installedmemo import InstalledMemo
from patchd.backends.pacman.environment import PacmanEnvironment
from patchd.backends.pacman.listing import UpgradableEntry, parse_upgradable
from patchd.backends.pacman.localdb import DB_VERSION_FILE, database_fingerprint, read_installed
from patchd.backends.pacman.lock import wait_for_lock
from patchd.backends.pacman.syncinfo import parse_sync_info
from patchd.backends.pacman.versions import compare
from patchd.backends.rpm.toolversion import remembered_version  # not RPM-specific
from patchd.errors import CommandError, ConfigError, LockHeldError
from patchd.models import (
    Classification,
    InstalledPackage,
    PackageChange,
    Severity,
    Update,
    UpdateSource,
    UpdateState,
)
from patchd.transcript import Transcript

if TYPE_CHECKING:  # the tracker export's reader loads only when one is configured
    from patchd.backends.pacman.tracker import AdvisoryIndex

log = logging.getLogger(__name__)

PROBE_TIMEOUT_S = 30.0
LIST_TIMEOUT_S = 300.0
INFO_TIMEOUT_S = 120.0
REFRESH_TIMEOUT_S = 900.0  # -Sy over slow mirrors
INSTALL_TIMEOUT_S = 7200.0  # a kernel or desktop upgrade, downloads included, on a slow disk
DEFAULT_LOCK_WAIT_S = 300.0
PACKAGE_SUFFIXES = (".pkg.tar.zst", ".pkg.tar.xz", ".pkg.tar.gz", ".pkg.tar.bz2", ".pkg.tar")
TRACKER_ORIGIN = "arch-security-tracker"

_VERSION_LINE = re.compile(r"Pacman v(\S+)")
_CONFLICT = re.compile(r"^(?P<name>[^\s:]+): (?P<path>/.*) exists in filesystem", re.MULTILINE)
_SCRIPTLET_FAILED = "error: command failed to execute correctly"
_LOCK_FAILED = "unable to lock database"


class PacmanBackend(Backend):
    """pacman, on the host or in an alternate root."""

    name = "pacman"

    def __init__(self, context: BackendContext) -> None:
        super().__init__(context)
        self.pacman = PacmanEnvironment(context.target)
        self._listing: process.RunningCommand | None = None
        # The local database as read for this scan; a transaction forgets it.
        self._installed: list[InstalledPackage] | None = None
        # ... and as read by an earlier scan, reused while the database is unchanged.
        self._memo = InstalledMemo(context.work_dir / "pacman" / "installed.json", self.name)

    @property
    def _lock_wait_s(self) -> float:
        return float(self.context.settings.get("lock_timeout_s", DEFAULT_LOCK_WAIT_S))

    @property
    def _advisories_file(self) -> Path | None:
        value = self.context.settings.get("advisories")
        return Path(value) if value else None

    # -- probe and read --------------------------------------------------------------

    def _probe(self) -> Probe:
        # Cheap on purpose: it runs before the scan's listing starts, which it delays.
        if shutil.which("pacman", path=process.base_environment()["PATH"]) is None:
            return Probe(ProbeStatus.ABSENT, "pacman not installed")
        local = self.pacman.paths.local_db
        if not local.is_dir():
            return Probe(ProbeStatus.ABSENT, f"no pacman database under {self.context.target}")
        if not (local / DB_VERSION_FILE).is_file() and any(local.iterdir()):
            return Probe(
                ProbeStatus.BROKEN,
                f"{local} has no {DB_VERSION_FILE}: a database from an old pacman "
                "(run pacman-db-upgrade)",
            )
        # `pacman --version` once per installed binary: a process per probe would delay
        # every scan's listing by as much as the listing itself takes on a small system.
        version = remembered_version(
            "pacman", self.context.work_dir / "pacman" / "version", self._ask_version
        )
        return Probe(ProbeStatus.PRESENT, f"pacman {version or '(version unknown)'}", version)

    def _ask_version(self) -> str | None:
        result = process.run(["pacman", "--version"], timeout_s=PROBE_TIMEOUT_S)
        found = _VERSION_LINE.search(result.stdout)
        return found[1] if found else None

    def _installed_packages(self) -> list[InstalledPackage]:
        local = self.pacman.paths.local_db
        fingerprint = database_fingerprint(local)  # before reading: a change after it shows
        installed = self._memo.recall(fingerprint)
        if installed is None:
            installed = read_installed(local)
            self._memo.keep(fingerprint, installed)
        self._installed = installed
        return installed

    def _start_listing(self) -> None:
        if self._listing is None:
            self._listing = process.start(
                self.pacman.query_argv("-Qu"), timeout_s=LIST_TIMEOUT_S, ok_codes=(0, 1)
            )

    def _list_updates(self) -> ScanResult:
        self._start_listing()
        assert self._listing is not None
        listing = self._listing  # stop_scan() stops it until it is collected
        # Read while pacman lists: whether it has synced databases, the installed packages.
        synced = any(self.pacman.paths.sync_db.glob("*.db"))
        installed = self._installed if self._installed is not None else self._installed_packages()
        arches = {p.name: p.arch for p in installed}
        try:
            result = listing.wait()
        finally:
            self._listing = None  # collected, or failed: the next scan lists afresh
        errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
        if result.returncode != 0 and errors:
            # Exit status 1 alone means "nothing to upgrade"; with errors it means broken.
            raise CommandError(result.argv, result.returncode, result.output)
        entries, unknown = parse_upgradable(result.stdout)
        warnings = [f"pacman -Qu printed a line patchd does not understand: {u}" for u in unknown]
        if not synced:
            warnings.append(
                f"pacman has no synced repository databases in {self.pacman.paths.sync_db}; "
                "run `patchd scan --refresh` (pacman -Sy)"
            )
        index = self._advisory_index(warnings) if entries else None  # megabytes: if needed
        updates = tuple(self._update(e, arches.get(e.name, "any"), index) for e in entries)
        return ScanResult(updates=updates, warnings=tuple(warnings))

    def _advisory_index(self, warnings: list[str]) -> AdvisoryIndex | None:
        path = self._advisories_file
        if path is None:
            return None
        from patchd.backends.pacman.tracker import AdvisoryIndex, load_groups

        try:
            return AdvisoryIndex(load_groups(path))
        except ConfigError as e:
            warnings.append(f"security advisories not used: {e}")
            return None

    def _update(self, entry: UpgradableEntry, arch: str, index: AdvisoryIndex | None) -> Update:
        fix = (
            index.fixes(entry.name, entry.installed_version, entry.version, compare)
            if index is not None
            else None
        )
        notes = []
        if entry.ignored:
            notes.append("held by the administrator (IgnorePkg in pacman.conf)")
        if fix is not None:
            notes.append("fixes " + ", ".join(fix.groups + fix.advisories))
        profile = self.context.profile
        return Update(
            backend=self.name,
            name=entry.name,
            arch=arch,
            installed_version=entry.installed_version,
            available_version=entry.version,
            classification=Classification.SECURITY if fix else Classification.OTHER,
            severity=fix.severity if fix else Severity.UNKNOWN,
            cves=fix.cves if fix else (),
            source=UpdateSource(origin=TRACKER_ORIGIN) if fix else UpdateSource(),
            reboot_required=entry.name in profile.kernel_packages
            or entry.name in profile.reboot_packages,
            state=UpdateState.HELD if entry.ignored else UpdateState.AVAILABLE,
            notes=tuple(notes),
        )

    # -- change ----------------------------------------------------------------------

    def _stop_listing(self) -> None:
        process.stop_all(self._listing)
        self._listing = None

    def _refresh(self, transcript: Transcript) -> None:
        self._stop_listing()  # started before the metadata changes: worthless now
        self._installed = None
        self._wait_for_lock()
        self._run(self.pacman.change_argv("-Sy"), transcript, timeout_s=REFRESH_TIMEOUT_S)

    def _install(
        self,
        changes: Sequence[PackageChange],
        transcript: Transcript,
        kept_files: Mapping[tuple[str, str, str], Path],
        *,
        downgrade: bool,
    ) -> list[str]:
        self._installed = None
        self._memo.forget()
        notes: list[str] = []
        files = [str(kept_files[c.key]) for c in changes if c.key in kept_files]
        wanted = [c for c in changes if c.key not in kept_files]
        carried = self._repositories_carrying(wanted)
        cache = self._package_cache() if downgrade else {}
        specs = []
        for change in wanted:
            spec = carried.get((change.name, change.to_version))
            cached = _cached_package(cache, change.name, change.to_version, change.arch)
            if spec is not None:
                specs.append(spec)
            elif downgrade and cached is not None:
                files.append(str(cached))
            else:
                notes.append(
                    f"{change.name}: no synced repository carries version {change.to_version}"
                    + (" and pacman's cache has no such package" if downgrade else "")
                    + "; not attempted"
                )
                transcript.note(notes[-1])
        self._wait_for_lock()
        if files:
            # A kept package file says exactly which version; -U installs it as it is.
            result = self._run(self.pacman.change_argv("-U", *files), transcript)
            notes += self._scriptlet_failures(result.output, changes)
        if specs:
            result = self._run(self.pacman.change_argv("-S", *specs), transcript)
            notes += self._scriptlet_failures(result.output, changes)
        return notes

    def _scriptlet_failures(self, output: str, changes: Sequence[PackageChange]) -> list[str]:
        """A note when an install scriptlet failed: pacman keeps such packages installed.

        pacman reports the failure on standard error without the package's name, and its
        standard output is buffered apart, so the name is inferred: the changed packages
        that ship a scriptlet (an ``install`` file in their local database entry).
        """
        if _SCRIPTLET_FAILED not in output:
            return []
        local = self.pacman.paths.local_db
        with_scriptlet = [
            c.name for c in changes if (local / f"{c.name}-{c.to_version}" / "install").is_file()
        ]
        which = (
            f"the scriptlet of {with_scriptlet[0]}"
            if len(with_scriptlet) == 1
            else "an install scriptlet"
            + (f" (one of {', '.join(with_scriptlet)})" if with_scriptlet else "")
        )
        return [
            f"{which} failed; pacman keeps the package installed anyway "
            "(the transcript has the scriptlet's output)"
        ]

    def _prepare_rollback(
        self, changes: Sequence[PackageChange], keep_dir: Path, transcript: Transcript
    ) -> list[RollbackSource]:
        keep_dir.mkdir(parents=True, exist_ok=True)
        cache = self._package_cache()
        sources = []
        for change in changes:
            cached = _cached_package(cache, change.name, change.from_version, change.arch)
            if cached is None:
                sources.append(
                    RollbackSource(
                        change,
                        False,
                        detail=f"version {change.from_version} is not in pacman's package "
                        "cache, and Arch's repositories keep only the newest version",
                    )
                )
                continue
            kept = Path(shutil.copy2(cached, keep_dir / cached.name))
            signature = cached.with_name(cached.name + ".sig")
            if signature.is_file():
                shutil.copy2(signature, keep_dir / signature.name)
            transcript.note(f"kept {kept.name} from {cached.parent} for a rollback")
            sources.append(RollbackSource(change, True, kept, f"kept {kept.name}"))
        return sources

    def _failure_reasons(self, output: str) -> dict[str, str]:
        reasons = {
            m["name"]: f"{m['path'].strip()} exists in filesystem (conflicting files)"
            for m in _CONFLICT.finditer(output)
        }
        for line in output.splitlines():
            if line.startswith("error: target not found: "):
                name = line.removeprefix("error: target not found: ").split("/")[-1].strip()
                reasons[name] = "target not found"
        return reasons

    # -- helpers ---------------------------------------------------------------------

    def _repositories_carrying(
        self, changes: Sequence[PackageChange]
    ) -> dict[tuple[str, str], str]:
        """(name, version) → ``repo/name`` for the first repository carrying that version."""
        if not changes:
            return {}
        names = list(dict.fromkeys(c.name for c in changes))
        result = process.run(
            self.pacman.query_argv("-Si", *names), timeout_s=INFO_TIMEOUT_S, ok_codes=(0, 1)
        )
        carried: dict[tuple[str, str], str] = {}
        for package in parse_sync_info(result.stdout):
            carried.setdefault(
                (package.name, package.version), f"{package.repository}/{package.name}"
            )
        return carried

    def _package_cache(self) -> dict[str, Path]:
        """File name → path for every package file in pacman's cache directories, now."""
        found: dict[str, Path] = {}
        for directory in self.pacman.paths.cache_dirs:
            try:
                for entry in directory.iterdir():
                    if entry.name.endswith(PACKAGE_SUFFIXES):
                        found.setdefault(entry.name, entry)
            except OSError:
                continue
        return found

    def _wait_for_lock(self) -> None:
        wait_for_lock(self.pacman.paths.lock_file, self._lock_wait_s)

    def _run(
        self, argv: list[str], transcript: Transcript, *, timeout_s: float = INSTALL_TIMEOUT_S
    ) -> process.CommandResult:
        try:
            result = process.run(argv, timeout_s=timeout_s)
        except CommandError as e:
            transcript.failure(e)
            if _LOCK_FAILED in e.output:
                raise LockHeldError(
                    str(self.pacman.paths.lock_file),
                    holder_pid=None,
                    holder_name=None,
                    waited_s=self._lock_wait_s,
                ) from e
            raise
        transcript.command(result)
        return result


def _cached_package(cache: Mapping[str, Path], name: str, version: str, arch: str) -> Path | None:
    """pacman's file ``name-version-arch.pkg.tar.*`` in ``cache``, if it is there."""
    stem = f"{name}-{version}-"
    for candidate_arch in dict.fromkeys((arch, "any")):
        for suffix in PACKAGE_SUFFIXES:
            path = cache.get(f"{stem}{candidate_arch}{suffix}")
            if path is not None:
                return path
    return None
