"""The zypper backend: SUSE Linux Enterprise and openSUSE.

A scan costs one ``zypper --xmlout list-updates -t package -t patch`` on the metadata
zypper already has (``--no-refresh``). The patches carry zypper's facts — category,
severity, CVE ids, whether they suggest a reboot (``restart``) or need a decision
(``interactive``); which packages a patch updates is read from the same repository's
updateinfo.xml in zypper's raw cache, the file zypper itself parsed. Applying installs
exact versions (``install name.arch=edition``); the verdict comes from the rpm database.
A rollback installs the kept .rpm, or the old version from the repositories, with
``--oldpackage``.
"""

from __future__ import annotations

import logging
import re
import shutil
from collections.abc import Mapping, Sequence
from functools import cached_property
from pathlib import Path

from patchd import process
from patchd.backends.base import (
    Backend,
    BackendContext,
    Probe,
    ProbeStatus,
    RollbackSource,
    ScanResult,
)
from patchd.backends.dnf.repos import enabled_repo_ids  # zypp's repos.d has the same format
from patchd.backends.installedmemo import InstalledMemo
from patchd.backends.rpm.advisories import AdvisoryIndex, combine
from patchd.backends.rpm.failures import failure_reasons, rpm_filename
from patchd.backends.rpm.keep import keep_old_rpms
from patchd.backends.rpm.locks import wait_for_rpm_locks
from patchd.backends.rpm.reboot import needs_reboot
from patchd.backends.rpm.rpmdb import InstalledSnapshot, RpmDatabase, find_db_dir
from patchd.backends.rpm.toolversion import remembered_version
from patchd.backends.rpm.updateinfo import RepoAdvisory, read_updateinfo, updateinfo_location
from patchd.backends.zypper.environment import ZypperEnvironment
from patchd.backends.zypper.listing import (
    PackageUpdate,
    PatchInfo,
    ZypperOutputError,
    parse_list_updates,
)
from patchd.errors import BackendError, CommandError, LockHeldError
from patchd.models import InstalledPackage, PackageChange, Update, UpdateSource
from patchd.transcript import Transcript

log = logging.getLogger(__name__)

PROBE_TIMEOUT_S = 30.0
LIST_TIMEOUT_S = 600.0
MAX_LIST_BYTES = 256 * 1024 * 1024
REFRESH_TIMEOUT_S = 1800.0
DOWNLOAD_TIMEOUT_S = 3600.0
INSTALL_TIMEOUT_S = 7200.0
DEFAULT_LOCK_WAIT_S = 300.0
EXIT_ZYPP_LOCKED = 7  # ZYPPER_EXIT_ZYPP_LOCKED
EXIT_INFO_CODES = (0, 100, 101, 102, 103, 106, 107)  # successes with information (zypper(8))
_VERSION = re.compile(r"^zypper (\S+)$", re.MULTILINE)
_NO_PROVIDER = re.compile(r"^No provider of '(?P<spec>[^']+)' found\.$", re.MULTILINE)


class ZypperBackend(Backend):
    """zypper and rpm, on the host or in an alternate root (``--root``)."""

    name = "zypper"

    def __init__(self, context: BackendContext) -> None:
        super().__init__(context)
        self._listing: process.RunningCommand | None = None

    @cached_property
    def rpmdb(self) -> RpmDatabase:
        return RpmDatabase(
            self.context.target,
            find_db_dir(self.context.target) or "/var/lib/rpm",
            memo_file=self.context.work_dir / self.name / "rpmdb-health",
        )

    @cached_property
    def _installed(self) -> InstalledSnapshot:
        memo = InstalledMemo(self.context.work_dir / self.name / "installed.json", self.name)
        return InstalledSnapshot(self.rpmdb, self.name, memo)

    @cached_property
    def env(self) -> ZypperEnvironment:
        return ZypperEnvironment(self.context.target, self.rpmdb, self.context.work_dir / "zypper")

    @property
    def _lock_wait_s(self) -> float:
        return float(self.context.settings.get("lock_timeout_s", DEFAULT_LOCK_WAIT_S))

    # -- probe and read --------------------------------------------------------------

    def _probe(self) -> Probe:
        search_path = process.base_environment()["PATH"]
        missing = [t for t in ("zypper", "rpm") if shutil.which(t, path=search_path) is None]
        if missing:
            return Probe(ProbeStatus.ABSENT, f"{', '.join(missing)} not installed")
        if find_db_dir(self.context.target) is None:
            return Probe(ProbeStatus.ABSENT, f"no rpm database under {self.context.target}")
        if not self.context.target.path("/etc/zypp").is_dir():
            return Probe(ProbeStatus.ABSENT, f"no zypp configuration under {self.context.target}")
        problem = self.rpmdb.health_problem()
        if problem:
            return Probe(ProbeStatus.BROKEN, problem)
        version = remembered_version(
            "zypper", self.context.work_dir / "zypper" / "version", self._ask_version
        )
        return Probe(ProbeStatus.PRESENT, f"zypper {version or '(version unknown)'}", version)

    def _ask_version(self) -> str | None:
        result = process.run(["zypper", "--version"], env=self.env.env, timeout_s=PROBE_TIMEOUT_S)
        match = _VERSION.search(result.stdout)
        return match[1] if match else None

    def _installed_packages(self) -> list[InstalledPackage]:
        return self._installed.get()

    def _start_listing(self) -> None:
        if self._listing is None:
            self._listing = process.start(
                self.env.argv("list-updates", "-t", "package", "-t", "patch", xml=True),
                env=self.env.env,
                timeout_s=LIST_TIMEOUT_S,
                max_output_bytes=MAX_LIST_BYTES,
                ok_codes=EXIT_INFO_CODES,
            )
            self._installed.start()  # the inventory reads it while zypper lists

    def _list_updates(self) -> ScanResult:
        self._start_listing()
        assert self._listing is not None
        listing = self._listing  # stop_scan() stops it until it is collected
        # Read while zypper lists: its repositories' advisories of installed packages.
        installed = frozenset(p.name for p in self._installed.get())
        advisories = {alias: self._repo_advisories(alias, installed) for alias in self._aliases()}
        try:
            result = listing.wait()
        finally:
            self._listing = None  # collected, or failed: the next scan lists afresh
        try:
            listed = parse_list_updates(result.stdout)
        except ZypperOutputError as e:
            raise BackendError(str(e), hint="run the same zypper command by hand") from None
        warnings = [f"zypper: {m}" for m in listed.messages]
        warnings += [f"zypper cannot install {b} as things are" for b in listed.blocked]
        index = self._patch_index(
            listed.patches, advisories, frozenset(p.name for p in listed.packages)
        )
        by_id = {p.facts.id: p for p in listed.patches}
        updates = tuple(self._update(p, index, by_id) for p in listed.packages)
        return ScanResult(updates=updates, warnings=tuple(warnings))

    def _update(
        self, package: PackageUpdate, index: AdvisoryIndex, patches: Mapping[str, PatchInfo]
    ) -> Update:
        matches = index.concerning(package.name, package.arch, package.installed_evr, package.evr)
        facts = combine([patches[a.id].facts for a, _ in matches if a.id in patches])
        notes = [f"patches: {', '.join(facts.advisory_ids)}"] if facts.advisory_ids else []
        if facts.interactive:
            notes.append(
                "zypper marks its patch interactive: it suggests a reboot or carries a licence or message"
            )
        return Update(
            backend=self.name,
            name=package.name,
            arch=package.arch,
            installed_version=package.installed_evr,
            available_version=package.evr,
            classification=facts.classification,
            severity=facts.severity,
            cves=facts.cves,
            source=UpdateSource(label=package.repo),
            reboot_required=facts.reboot or needs_reboot(package.name, self.context.profile),
            notes=tuple(notes),
        )

    def _patch_index(
        self,
        patches: Sequence[PatchInfo],
        read: Mapping[str, list[RepoAdvisory]],
        wanted: frozenset[str],
    ) -> AdvisoryIndex:
        """Which packages zypper's listed patches update, from their repositories' updateinfo.

        ``read`` holds what was read while zypper listed; a repository not in it is read now.
        """
        listed = {p.facts.id for p in patches}
        found: list[RepoAdvisory] = []
        for alias in sorted({p.repo for p in patches if p.repo}):
            advisories = read[alias] if alias in read else self._repo_advisories(alias, wanted)
            found += [a for a in advisories if a.id in listed]
        return AdvisoryIndex(found)

    def _aliases(self) -> list[str]:
        """The repositories enabled in zypp's ``repos.d`` (the same INI files as dnf's)."""
        return enabled_repo_ids(self.context.target.path("/etc/zypp/repos.d"))

    def _repo_advisories(self, alias: str, wanted: frozenset[str]) -> list[RepoAdvisory]:
        path = updateinfo_location(self.env.raw_cache(alias) / "repodata")
        return read_updateinfo(path, wanted) if path is not None else []

    # -- change ----------------------------------------------------------------------

    def _stop_listing(self) -> None:
        process.stop_all(self._listing)
        self._listing = None
        self._installed.stop()  # started with the listing

    def _refresh(self, transcript: Transcript) -> None:
        self._stop_listing()  # started before the metadata changes: worthless now
        self._wait_for_locks()
        self._run(self.env.argv("refresh", refresh=True), transcript, timeout_s=REFRESH_TIMEOUT_S)

    def _install(
        self,
        changes: Sequence[PackageChange],
        transcript: Transcript,
        kept_files: Mapping[tuple[str, str, str], Path],
        *,
        downgrade: bool,
    ) -> list[str]:
        """Install, and where one package fails, go on with the others.

        zypper aborts the whole commit at the first package rpm cannot install (the
        non-interactive answer to "Abort, retry, ignore?"), so patchd installs the
        packages that were not reached in another run, up to once per package.
        """
        pending = list(changes)
        failures: list[CommandError] = []
        notes: list[str] = []
        for _ in range(len(changes)):
            try:
                result = self._install_once(pending, transcript, kept_files, downgrade=downgrade)
            except CommandError as e:
                if e.returncode is None:  # a timeout: nothing more to try
                    raise
                failures.append(e)
                failed = set(self._failure_reasons(e.output))
                notes += [f"zypper found no package {s}" for s in _NO_PROVIDER.findall(e.output)]
                state = self._installed_state()
                pending = [
                    c
                    for c in pending
                    if c.name not in failed
                    and state.get((c.name, c.arch), ("",))[0] != c.to_version
                ]
                if not failed or not pending:
                    break
                continue
            notes += [f"zypper found no package {s}" for s in _NO_PROVIDER.findall(result.output)]
            break
        if failures:
            first = failures[0]
            raise CommandError(first.argv, first.returncode, "\n".join(f.output for f in failures))
        return notes

    def _install_once(
        self,
        changes: Sequence[PackageChange],
        transcript: Transcript,
        kept_files: Mapping[tuple[str, str, str], Path],
        *,
        downgrade: bool,
    ) -> process.CommandResult:
        self._installed.forget()
        specs = [str(kept_files[c.key]) if c.key in kept_files else self._spec(c) for c in changes]
        options = ["--oldpackage"] if downgrade else []
        # A kept file is a package zypper downloaded (and verified) from a configured
        # repository before the run, kept in patchd's private state directory; as a
        # local file it has no repository to vouch for it.
        unsigned = ("--no-gpg-checks",) if any(c.key in kept_files for c in changes) else ()
        self._wait_for_locks()
        return self._run(
            self.env.argv("install", *options, *specs, global_options=unsigned),
            transcript,
            timeout_s=INSTALL_TIMEOUT_S,
        )

    def _prepare_rollback(
        self, changes: Sequence[PackageChange], keep_dir: Path, transcript: Transcript
    ) -> list[RollbackSource]:
        return keep_old_rpms(
            changes,
            keep_dir,
            cached=lambda name: self._find_rpm(self.env.package_cache, name),
            download=lambda missing: self._download(missing, keep_dir, transcript),
            program="zypper",
        )

    def _failure_reasons(self, output: str) -> dict[str, str]:
        return failure_reasons(output)

    # -- helpers ---------------------------------------------------------------------

    def _spec(self, change: PackageChange, version: str | None = None) -> str:
        return f"{change.name}.{change.arch}={version or change.to_version}"

    @staticmethod
    def _find_rpm(directory: Path, filename: str) -> Path | None:
        try:
            return next((p for p in directory.rglob(filename) if p.is_file()), None)
        except OSError:
            return None

    def _download(
        self, changes: Sequence[PackageChange], keep_dir: Path, transcript: Transcript
    ) -> None:
        """Fetch the installed versions into ``keep_dir`` (zypper files them by repository)."""
        staging = keep_dir / ".download"
        self._wait_for_locks()
        try:
            self._run(
                [
                    *self.env.argv("download", global_options=("--pkg-cache-dir", str(staging))),
                    *(self._spec(c, c.from_version) for c in changes),
                ],
                transcript,
                timeout_s=DOWNLOAD_TIMEOUT_S,
            )
        except LockHeldError:
            raise
        except CommandError:
            pass  # what was found is kept; the rest has no way back, and says so
        for change in changes:
            filename = rpm_filename(change.name, change.from_version, change.arch)
            found = self._find_rpm(staging, filename)
            if found is not None:
                found.replace(keep_dir / filename)
        shutil.rmtree(staging, ignore_errors=True)

    def _wait_for_locks(self) -> None:
        wait_for_rpm_locks(self.env.lock_files(), [self.rpmdb.lock_file()], self._lock_wait_s)

    def _run(
        self, argv: list[str], transcript: Transcript, *, timeout_s: float
    ) -> process.CommandResult:
        try:
            result = process.run(
                argv, env=self.env.env, timeout_s=timeout_s, ok_codes=EXIT_INFO_CODES
            )
        except CommandError as e:
            transcript.failure(e)
            if e.returncode == EXIT_ZYPP_LOCKED:
                raise LockHeldError(
                    str(self.env.lock_files()[0]),
                    holder_pid=None,
                    holder_name=None,
                    waited_s=self._lock_wait_s,
                ) from e
            raise
        transcript.command(result)
        return result
