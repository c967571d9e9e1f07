"""The dnf backend (RHEL 8+, Fedora, Rocky, Alma, Oracle, Amazon Linux) and yum (EL7).

A scan costs one ``dnf check-update`` on already-fetched metadata (``-C``: no
network), run in the background while patchd reads the rpm database and the
repositories' cached updateinfo.xml — the advisories dnf's own ``updateinfo`` shows, with
their type, severity, CVE ids and reboot suggestions. Applying installs exact versions;
the verdict comes from the rpm database. A rollback downgrades from a kept .rpm (saved
before applying, from the repositories) or from the repositories.
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
from patchd.backends.dnf.environment import DNF, YUM, DnfEnvironment, Flavour
from patchd.backends.dnf.listing import CheckUpdateEntry, parse_check_update, repos_without_cache
from patchd.backends.dnf.repos import dnf_repodata_dirs, enabled_repo_ids, yum_repodata_dirs
from patchd.backends.installedmemo import InstalledMemo
from patchd.backends.rpm.advisories import AdvisoryIndex, combine, facts_from_updateinfo
from patchd.backends.rpm.failures import failure_reasons
from patchd.backends.rpm.keep import keep_old_rpms
from patchd.backends.rpm.locks import wait_for_rpm_locks
from patchd.backends.rpm.reboot import needs_reboot
from patchd.backends.rpm.rpmdb import InstalledSnapshot, RpmDatabase, find_db_dir
from patchd.backends.rpm.toolversion import module_version
from patchd.backends.rpm.updateinfo import RepoAdvisory, read_updateinfo, updateinfo_location
from patchd.errors import CommandError, LockHeldError
from patchd.models import InstalledPackage, PackageChange, Update, UpdateSource
from patchd.transcript import Transcript

log = logging.getLogger(__name__)

LIST_TIMEOUT_S = 600.0
REFRESH_TIMEOUT_S = 1800.0  # makecache over slow mirrors
DOWNLOAD_TIMEOUT_S = 3600.0
INSTALL_TIMEOUT_S = 7200.0  # a kernel upgrade on a slow disk
DEFAULT_LOCK_WAIT_S = 300.0

_NO_MATCH = re.compile(r"^No match for argument: (?P<spec>\S+)$", re.MULTILINE)
_LOCKED_BY = re.compile(
    r"already locked by (\d+)|Existing lock \S+: another copy is running as pid (\d+)"
)


class DnfBackend(Backend):
    """dnf and rpm, on the host or in an alternate root (``--installroot``)."""

    name = "dnf"
    flavour: Flavour = DNF
    _locked_by: re.Pattern[str] = _LOCKED_BY  # the tool's message when another holds its lock

    def __new__(cls, context: BackendContext) -> DnfBackend:
        """A :class:`Dnf5Backend` where the host's ``dnf`` is dnf 5 (Fedora 41 and later)."""
        chosen: type[DnfBackend] = cls
        if cls is DnfBackend:
            from patchd.backends.dnf import dnf5

            if dnf5.is_dnf5(dnf5.host_dnf()):
                from patchd.backends.dnf.dnf5_backend import Dnf5Backend

                chosen = Dnf5Backend
        return super().__new__(chosen)

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
    def env(self) -> DnfEnvironment:
        work = self.context.work_dir / self.name
        return DnfEnvironment(self.context.target, self.flavour, self.rpmdb, work)

    @property
    def _lock_wait_s(self) -> float:
        return float(self.context.settings.get("lock_timeout_s", DEFAULT_LOCK_WAIT_S))

    # -- probe and read --------------------------------------------------------------

    def _probe(self) -> Probe:
        search_path = process.base_environment()["PATH"]
        missing = [
            t for t in (self.flavour.program, "rpm") if shutil.which(t, path=search_path) is None
        ]
        if missing:
            return Probe(ProbeStatus.ABSENT, f"{', '.join(missing)} not installed")
        if find_db_dir(self.context.target) is None:
            return Probe(ProbeStatus.ABSENT, f"no rpm database under {self.context.target}")
        other = self._other_flavour_here(search_path)
        if other:
            return Probe(ProbeStatus.ABSENT, other)
        problem = self.rpmdb.health_problem()
        if problem:
            return Probe(ProbeStatus.BROKEN, problem)
        version = self._tool_version()
        return Probe(
            ProbeStatus.PRESENT,
            f"{self.flavour.program} {version or '(version unknown)'}",
            version or "unknown",
        )

    def _other_flavour_here(self, search_path: str) -> str:
        """Why this flavour should stay quiet although its program exists (for yum)."""
        return ""

    def _tool_version(self) -> str | None:
        return module_version(self.flavour.program)

    def _installed_packages(self) -> list[InstalledPackage]:
        return self._installed.get()

    def _start_listing(self) -> None:
        if self._listing is None:
            self._listing = process.start(
                self._listing_argv(),
                env=self.env.env,
                timeout_s=LIST_TIMEOUT_S,
                ok_codes=(0, 100),  # 100: updates are available
            )
            self._installed.start()  # read alongside: the scan needs the installed versions

    def _listing_argv(self) -> list[str]:
        return self.env.argv("-C", "-q", "--setopt=skip_if_unavailable=True", "check-update")

    def _parse_listing(self, stdout: str) -> tuple[list[CheckUpdateEntry], list[str]]:
        return parse_check_update(stdout)

    def _list_updates(self) -> ScanResult:
        self._start_listing()
        assert self._listing is not None
        listing = self._listing  # stop_scan() stops it until it is collected
        installed = self._installed_packages()
        warnings: list[str] = []
        # Read while check-update runs: the advisories of installed packages only.
        advisories = self._repo_advisories(frozenset(p.name for p in installed), warnings)
        try:
            result = listing.wait()
        finally:
            self._listing = None  # collected, or failed: the next scan lists afresh
        entries, problems = self._parse_listing(result.stdout)
        warnings += problems
        for repo in repos_without_cache(result.stderr):
            warnings.append(
                f"{self.flavour.program} has no metadata for repository {repo}; "
                "run `patchd scan --refresh`"
            )
        by_key = {(p.name, p.arch): p.version for p in installed}
        by_name = {p.name: p.version for p in installed}
        index = AdvisoryIndex(advisories)
        updates = []
        for entry in entries:
            old = by_key.get((entry.name, entry.arch)) or by_name.get(entry.name)
            if old is None:
                warnings.append(f"{entry.name}.{entry.arch} is offered but not installed")
                continue
            updates.append(self._update(entry, old, index))
        return ScanResult(updates=tuple(updates), warnings=tuple(warnings))

    def _update(self, entry: CheckUpdateEntry, old: str, index: AdvisoryIndex) -> Update:
        facts = combine(
            facts_from_updateinfo(index.concerning(entry.name, entry.arch, old, entry.evr))
        )
        notes = (f"advisories: {', '.join(facts.advisory_ids)}",) if facts.advisory_ids else ()
        return Update(
            backend=self.name,
            name=entry.name,
            arch=entry.arch,
            installed_version=old,
            available_version=entry.evr,
            classification=facts.classification,
            severity=facts.severity,
            cves=facts.cves,
            source=UpdateSource(label=entry.repo),
            reboot_required=facts.reboot or needs_reboot(entry.name, self.context.profile),
            notes=notes,
        )

    def _repo_advisories(self, wanted: frozenset[str], warnings: list[str]) -> list[RepoAdvisory]:
        repo_ids = enabled_repo_ids(self.env.reposdir)
        if self.flavour.cache_layout == "dnf":
            dirs = dnf_repodata_dirs(self.env.cachedir, repo_ids)
        else:
            dirs = yum_repodata_dirs(self.env.cachedir, repo_ids)
        return cached_updateinfo(
            self.flavour.program,
            self.env.cachedir,
            repo_ids,
            dirs,
            wanted=wanted,
            warnings=warnings,
        )

    # -- change ----------------------------------------------------------------------

    def _stop_listing(self) -> None:
        process.stop_all(self._listing)
        self._listing = None
        self._installed.stop()  # started with the listing

    def _refresh(self, transcript: Transcript) -> None:
        self._stop_listing()  # started before the metadata changes: worthless now
        self._wait_for_locks()
        for command in self.flavour.refresh:
            self._run(self.env.argv(*command), transcript, timeout_s=REFRESH_TIMEOUT_S)

    def _install(
        self,
        changes: Sequence[PackageChange],
        transcript: Transcript,
        kept_files: Mapping[tuple[str, str, str], Path],
        *,
        downgrade: bool,
    ) -> list[str]:
        self._forget_prefetched()
        specs = [str(kept_files[c.key]) if c.key in kept_files else self._spec(c) for c in changes]
        self._wait_for_locks()
        result = self._run(
            self.env.argv("downgrade" if downgrade else "upgrade", *specs),
            transcript,
            timeout_s=INSTALL_TIMEOUT_S,
        )
        missing = _NO_MATCH.findall(result.output)
        return [f"{self.flavour.program} found no package {spec}" for spec in missing]

    def _prepare_rollback(
        self, changes: Sequence[PackageChange], keep_dir: Path, transcript: Transcript
    ) -> list[RollbackSource]:
        return keep_old_rpms(
            changes,
            keep_dir,
            cached=self._cached_rpm,
            download=lambda missing: self._download(
                [self._spec(c, c.from_version) for c in missing], keep_dir, transcript
            ),
            program=self.flavour.program,
        )

    def _failure_reasons(self, output: str) -> dict[str, str]:
        return failure_reasons(output)

    # -- helpers ---------------------------------------------------------------------

    def _spec(self, change: PackageChange, version: str | None = None) -> str:
        return f"{change.name}-{version or change.to_version}.{change.arch}"

    def _cached_rpm(self, filename: str) -> Path | None:
        """A package dnf kept in its cache (``keepcache=1``)."""
        try:
            for candidate in self.env.cachedir.glob(f"*/packages/{filename}"):
                if candidate.is_file():
                    return candidate
        except OSError:
            return None
        return None

    def _download_argv(self, specs: Sequence[str], keep_dir: Path) -> list[str]:
        """The command that fetches installed versions (a reinstall, downloaded only)."""
        return self.env.argv(
            "reinstall",
            "--downloadonly",
            f"--downloaddir={keep_dir}",
            "--setopt=strict=False",
            *specs,
        )

    def _download(self, specs: Sequence[str], keep_dir: Path, transcript: Transcript) -> None:
        """Fetch installed versions from the repositories into ``keep_dir``."""
        self._wait_for_locks()
        try:
            self._run(
                self._download_argv(specs, keep_dir), transcript, timeout_s=DOWNLOAD_TIMEOUT_S
            )
        except LockHeldError:
            raise
        except CommandError:
            pass  # what was found is in keep_dir; the rest has no way back, and says so

    def _forget_prefetched(self) -> None:
        self._installed.forget()

    def _wait_for_locks(self) -> None:
        wait_for_rpm_locks(self.env.pid_lock_files(), [self.rpmdb.lock_file()], self._lock_wait_s)

    def _lock_name(self) -> str:
        return str(self.env.pid_lock_files()[0])

    def _run(
        self, argv: list[str], transcript: Transcript, *, timeout_s: float
    ) -> process.CommandResult:
        try:
            result = process.run(argv, env=self.env.env, timeout_s=timeout_s)
        except CommandError as e:
            transcript.failure(e)
            holder = self._locked_by.search(e.output)
            if e.returncode == self.flavour.lock_exit_code or holder is not None:
                pid = next((int(g) for g in holder.groups() if g), None) if holder else None
                raise LockHeldError(
                    self._lock_name(),
                    holder_pid=pid,
                    holder_name=None,
                    waited_s=self._lock_wait_s,
                ) from e
            raise
        transcript.command(result)
        return result


class YumBackend(DnfBackend):
    """yum 3 (EL7): dnf's flow with yum's cache layout, refresh and locks.

    On EL8 and later ``yum`` is dnf under another name; there this backend says it is
    absent, so one system is not scanned twice.
    """

    name = "yum"
    flavour = YUM

    def _other_flavour_here(self, search_path: str) -> str:
        yum = shutil.which("yum", path=search_path)
        dnf = shutil.which("dnf", path=search_path)
        if yum and dnf and Path(yum).resolve().name.startswith("dnf"):
            return "yum is dnf here: the dnf backend manages this system"
        if module_version("yum") is None and dnf:
            return "yum is dnf here: the dnf backend manages this system"
        return ""


def cached_updateinfo(
    program: str,
    cachedir: Path,
    repo_ids: Sequence[str],
    dirs: Mapping[str, Path],
    *,
    wanted: frozenset[str],
    warnings: list[str],
) -> list[RepoAdvisory]:
    """The advisories in the updateinfo.xml of each repository's cached metadata (``dirs``).

    Enabled repositories without any cached metadata give a warning in ``warnings``.
    """
    if repo_ids and not dirs:
        warnings.append(
            f"{program} has no cached metadata in {cachedir}; run `patchd scan --refresh`"
        )
    found: list[RepoAdvisory] = []
    for repodata in dirs.values():
        path = updateinfo_location(repodata)
        if path is not None:
            found += read_updateinfo(path, wanted)
    return found
