"""The apt backend: Debian, Ubuntu and their derivatives.

Scanning costs one ``apt list --upgradable`` plus reads of files apt and dpkg already
keep (Release headers, the dpkg status file), so it stays close to apt's own speed.
Applying downloads first, then installs non-interactively, keeping locally changed
configuration files and recording that it did.
"""

from __future__ import annotations

import logging
import re
import shutil
import time
from collections.abc import Mapping, Sequence
from functools import cached_property
from pathlib import Path

from patchd import process
from patchd.backends.apt.classify import URGENCY_SEVERITY, classify_update, needs_reboot
from patchd.backends.apt.dpkgdb import DpkgDatabase
from patchd.backends.apt.environment import AptEnvironment
from patchd.backends.apt.listing import UpgradableEntry, parse_upgradable
from patchd.backends.apt.phased import phased_percentages
from patchd.backends.apt.policy import parse_policy
from patchd.backends.apt.releases import ReleaseIndex, ReleaseInfo, read_releases
from patchd.backends.base import (
    Backend,
    BackendContext,
    Probe,
    ProbeStatus,
    RollbackSource,
    ScanResult,
)
from patchd.errors import BackendError, CommandError, LockHeldError
from patchd.locks import wait_for_locks
from patchd.models import Advisory, InstalledPackage, PackageChange, Severity, Update, UpdateState
from patchd.transcript import Transcript

log = logging.getLogger(__name__)

PROBE_TIMEOUT_S = 30.0
LIST_TIMEOUT_S = 300.0
UPDATE_TIMEOUT_S = 900.0  # apt-get update over slow mirrors
DOWNLOAD_TIMEOUT_S = 3600.0
INSTALL_TIMEOUT_S = 7200.0  # a kernel or desktop upgrade on a slow disk
REPAIR_TIMEOUT_S = 3600.0
DEFAULT_LOCK_WAIT_S = 300.0  # how long to wait for another package manager to finish
MAX_DPKG_LOG_BYTES = 8 * 1024 * 1024  # what a run may append to dpkg's log that patchd reads
APT_HELPER = "/usr/lib/apt/apt-helper"
# Reading changelogs from downloaded packages costs ~50 ms each; results are kept, so a
# host with many downloaded updates spreads the first reading over a few scans.
ADVISORY_BUDGET_S = 2.0
DECOMPRESS_TIMEOUT_S = 120.0

# dpkg(1): "dpkg: error processing package fragile (--configure):\n <reason>"
_DPKG_ERROR = re.compile(
    r"^dpkg: error processing (?:package|archive) (?P<name>[^\s:]+)\S* \((?P<op>[^)]*)\):\n\s*(?P<why>.+)$",
    re.MULTILINE,
)
_LOCK_MESSAGE = re.compile(r"held by process (\d+)(?: \(([^)]*)\))?")
_CONFFILE_KEPT = re.compile(r"^\S+ \S+ conffile (\S+) keep$", re.MULTILINE)


class AptBackend(Backend):
    """apt and dpkg, on the host or in an alternate root."""

    name = "apt"
    looks_up_advisories = True  # the listing has no security facts; changelogs have some

    def __init__(self, context: BackendContext) -> None:
        super().__init__(context)
        self.apt = AptEnvironment(context.target, context.work_dir / "apt")
        self._listing: process.RunningCommand | None = None

    @cached_property
    def _dpkg(self) -> DpkgDatabase:
        return DpkgDatabase(self.apt.paths.admin_dir)

    @property
    def _lock_wait_s(self) -> float:
        return float(self.context.settings.get("lock_timeout_s", DEFAULT_LOCK_WAIT_S))

    # -- probe and read --------------------------------------------------------------

    def _probe(self) -> Probe:
        # Cheap on purpose: it runs before the scan's listing starts, which it delays.
        search_path = process.base_environment()["PATH"]
        missing = [
            t
            for t in ("apt", "apt-get", "apt-config", "dpkg")
            if shutil.which(t, path=search_path) is None
        ]
        if missing:
            return Probe(ProbeStatus.ABSENT, f"{', '.join(missing)} not installed")
        status = self.context.target.path("/var/lib/dpkg/status")
        if not status.exists():
            return Probe(ProbeStatus.ABSENT, f"no dpkg database under {self.context.target}")
        # The programs are the host's, also when they manage another root.
        version = DpkgDatabase(Path("/var/lib/dpkg")).version_of("apt")
        return Probe(ProbeStatus.PRESENT, f"apt {version or '(version unknown)'}", version)

    def _installed_packages(self) -> list[InstalledPackage]:
        return self._dpkg.installed()

    def _start_listing(self) -> None:
        if self._listing is None:
            self._listing = process.start(
                ["apt", "list", "--upgradable"], env=self.apt.env, timeout_s=LIST_TIMEOUT_S
            )

    def _list_updates(self) -> ScanResult:
        self._start_listing()
        assert self._listing is not None
        listing, self._listing = self._listing, None
        result = listing.wait()
        entries = parse_upgradable(result.stdout)
        releases = read_releases(self.apt.paths.lists_dir)
        warnings = []
        if not releases:
            warnings.append(
                f"apt has no repository metadata in {self.apt.paths.lists_dir}; "
                "run `patchd scan --refresh` (apt-get update)"
            )
        index = ReleaseIndex(releases)
        held = self._dpkg.held() if entries else set()
        phased = self._phased(entries, releases) if entries else {}
        origins = self._origins([e for e in entries if index.ambiguous(e.suites)], releases)
        profile = self.context.profile
        updates = []
        for entry in entries:
            carrying = origins.get((entry.name, entry.version)) or index.for_suites(entry.suites)
            classification, source = classify_update(carrying, entry.suites, profile)
            percentage = phased.get((entry.name, entry.version))
            state = UpdateState.AVAILABLE
            notes = []
            if entry.name in held:
                state = UpdateState.HELD
                notes.append("held by the administrator (apt-mark hold)")
            elif percentage is not None and percentage < 100:
                state = UpdateState.PHASED
                notes.append(
                    f"the distribution is phasing this update in ({percentage}% of machines)"
                )
            updates.append(
                Update(
                    backend=self.name,
                    name=entry.name,
                    arch=entry.arch,
                    installed_version=entry.installed_version,
                    available_version=entry.version,
                    classification=classification,
                    source=source,
                    reboot_required=needs_reboot(entry.name, profile),
                    state=state,
                    phased_percentage=percentage,
                    notes=tuple(notes),
                )
            )
        return ScanResult(updates=tuple(updates), warnings=tuple(warnings))

    def _phased(
        self, entries: Sequence[UpgradableEntry], releases: Sequence[ReleaseInfo]
    ) -> dict[tuple[str, str], int]:
        wanted = {(e.name, e.version) for e in entries}
        suites = {s for e in entries for s in e.suites}
        prefixes = {r.list_prefix for r in releases if r.suite in suites or r.codename in suites}
        decompress = self._decompress if self.context.profile.phased_updates else None
        return phased_percentages(self.apt.paths.lists_dir, prefixes, wanted, decompress=decompress)

    def _origins(
        self, entries: Sequence[UpgradableEntry], releases: Sequence[ReleaseInfo]
    ) -> dict[tuple[str, str], list[ReleaseInfo]]:
        """For candidates whose suite name is shared by several repositories: the ones carrying them."""
        if not entries:
            return {}
        names = [
            e.name if e.arch in ("all", self._native_arch) else f"{e.name}:{e.arch}"
            for e in entries
        ]
        result = process.run(
            ["apt-cache", "policy", *names], env=self.apt.env, timeout_s=LIST_TIMEOUT_S
        )
        by_prefix = {r.list_prefix: r for r in releases}
        found = {}
        for name, origin in parse_policy(result.stdout).items():
            carrying = [by_prefix[p] for p in origin.list_prefixes if p in by_prefix]
            if carrying:
                found[(name.split(":", 1)[0], origin.version)] = carrying
        return found

    def _decompress(self, path: Path) -> bytes:
        result = process.run(
            [APT_HELPER, "cat-file", str(path)], env=self.apt.env, timeout_s=DECOMPRESS_TIMEOUT_S
        )
        return result.stdout.encode("utf-8", "surrogateescape")

    def _advisories(self, updates: Sequence[Update]) -> dict[str, Advisory]:
        from patchd.backends.apt.changelog import facts_since, read_deb_changelog

        found = {}
        deadline = time.monotonic() + ADVISORY_BUDGET_S
        for update in updates:
            if time.monotonic() > deadline:
                log.debug("advisories: time budget spent; the rest are read on later scans")
                break
            deb = self._cached_deb(update.name, update.available_version, update.arch)
            if deb is None:
                continue
            text = read_deb_changelog(deb, update.name)
            if text is None:
                # Recorded as known-empty, so the package is not read again on every scan.
                found[update.id] = Advisory(cves=(), severity=Severity.UNKNOWN, origin="changelog")
                continue
            facts = facts_since(text, update.installed_version)
            severity = URGENCY_SEVERITY.get(facts.urgency or "", Severity.UNKNOWN)
            found[update.id] = Advisory(cves=facts.cves, severity=severity, origin="changelog")
        return found

    def _cached_deb(self, name: str, version: str, arch: str) -> Path | None:
        # apt names downloaded files name_version_arch.deb with ':' (epochs) as %3a.
        filename = f"{name}_{version.replace(':', '%3a')}_{arch}.deb"
        for directory in (self.apt.paths.archives_dir, self.context.work_dir / "apt" / "downloads"):
            candidate = directory / filename
            if candidate.is_file():
                return candidate
        return None

    # -- change ----------------------------------------------------------------------

    def _stop_listing(self) -> None:
        process.stop_all(self._listing)
        self._listing = None

    def _refresh(self, transcript: Transcript) -> None:
        self._stop_listing()  # started before the metadata changes: worthless now
        self._wait_for_locks()
        self._run(
            self.apt.apt_get_argv("update", lock_timeout_s=self._lock_wait_s),
            transcript,
            timeout_s=UPDATE_TIMEOUT_S,
        )

    def _repair(self, transcript: Transcript) -> list[str]:
        problems = self._dpkg.interrupted()
        if not problems:
            return []
        log.warning("dpkg was interrupted (%s); repairing", "; ".join(problems))
        transcript.note("dpkg was interrupted: " + "; ".join(problems))
        self._wait_for_locks()
        with self.apt.services_held():
            self._run(
                self.apt.dpkg_argv(
                    "--force-confdef", "--force-confold", "--configure", "--pending"
                ),
                transcript,
                timeout_s=REPAIR_TIMEOUT_S,
                check=False,
            )
            if self._dpkg.interrupted():
                self._run(
                    self.apt.apt_get_argv("install", "-f", lock_timeout_s=self._lock_wait_s),
                    transcript,
                    timeout_s=REPAIR_TIMEOUT_S,
                    check=False,
                )
        remaining = self._dpkg.interrupted()
        if remaining:
            raise BackendError(
                "dpkg was interrupted and patchd could not repair it: " + "; ".join(remaining),
                hint="run `dpkg --configure -a` and `apt-get install -f` by hand and read their output",
            )
        return ["repaired an interrupted dpkg run: " + "; ".join(problems)]

    def _install(
        self,
        changes: Sequence[PackageChange],
        transcript: Transcript,
        kept_files: Mapping[tuple[str, str, str], Path],
        *,
        downgrade: bool,
    ) -> list[str]:
        specs = [str(kept_files[c.key]) if c.key in kept_files else self._spec(c) for c in changes]
        options = ["--allow-downgrades"] if downgrade else ["--only-upgrade"]
        self._wait_for_locks()
        self._run(
            self.apt.apt_get_argv(
                "install", "--download-only", *options, *specs, lock_timeout_s=self._lock_wait_s
            ),
            transcript,
            timeout_s=DOWNLOAD_TIMEOUT_S,
        )
        log_offset = self._dpkg_log_size()
        with self.apt.services_held():
            self._run(
                self.apt.apt_get_argv(
                    "install", *options, *specs, lock_timeout_s=self._lock_wait_s
                ),
                transcript,
                timeout_s=INSTALL_TIMEOUT_S,
            )
        return self._kept_conffiles(log_offset)

    def _prepare_rollback(
        self, changes: Sequence[PackageChange], keep_dir: Path, transcript: Transcript
    ) -> list[RollbackSource]:
        keep_dir.mkdir(parents=True, exist_ok=True)
        sources = []
        for change in changes:
            kept = self._cached_deb(change.name, change.from_version, change.arch)
            if kept is None:
                kept = self._download(change, keep_dir, transcript)
            if kept is not None and kept.parent != keep_dir:
                kept = Path(shutil.copy2(kept, keep_dir / kept.name))
            if kept is not None:
                sources.append(RollbackSource(change, True, kept, f"kept {kept.name}"))
            else:
                sources.append(
                    RollbackSource(
                        change,
                        False,
                        detail=f"version {change.from_version} is in no repository and not in apt's cache",
                    )
                )
        return sources

    def _failure_reasons(self, output: str) -> dict[str, str]:
        return {m["name"]: f"{m['why'].strip()} ({m['op']})" for m in _DPKG_ERROR.finditer(output)}

    # -- helpers ---------------------------------------------------------------------

    @cached_property
    def _native_arch(self) -> str:
        result = process.run(
            ["apt-config", "shell", "A", "APT::Architecture"],
            env=self.apt.env,
            timeout_s=PROBE_TIMEOUT_S,
        )
        return result.stdout.partition("=")[2].strip().strip("'")

    def _spec(self, change: PackageChange) -> str:
        if change.arch in ("all", self._native_arch):
            return f"{change.name}={change.to_version}"
        return f"{change.name}:{change.arch}={change.to_version}"

    def _download(
        self, change: PackageChange, keep_dir: Path, transcript: Transcript
    ) -> Path | None:
        spec = self._spec(
            PackageChange(change.backend, change.name, change.arch, "", change.from_version)
        )
        try:
            self._run(
                self.apt.apt_get_argv("download", spec),
                transcript,
                timeout_s=DOWNLOAD_TIMEOUT_S,
                cwd=str(keep_dir),
            )
        except CommandError:
            return None
        filename = f"{change.name}_{change.from_version.replace(':', '%3a')}_{change.arch}.deb"
        path = keep_dir / filename
        return path if path.is_file() else None

    def _wait_for_locks(self) -> None:
        wait_for_locks(self.apt.lock_files(), self._lock_wait_s)

    def _run(
        self,
        argv: list[str],
        transcript: Transcript,
        *,
        timeout_s: float,
        check: bool = True,
        cwd: str | None = None,
    ) -> process.CommandResult | None:
        try:
            result = process.run(
                argv,
                env=self.apt.env,
                timeout_s=timeout_s,
                cwd=cwd,
                ok_codes=(0,) if check else range(256),
            )
        except CommandError as e:
            transcript.failure(e)
            holder = _LOCK_MESSAGE.search(e.output)
            if holder is not None or "Could not get lock" in e.output:
                pid = int(holder[1]) if holder else None
                raise LockHeldError(
                    str(self.apt.lock_files()[0]),
                    holder_pid=pid,
                    holder_name=holder[2] if holder else None,
                    waited_s=self._lock_wait_s,
                ) from e
            raise
        transcript.command(result)
        return result

    def _dpkg_log_size(self) -> int:
        try:
            return self.apt.paths.dpkg_log.stat().st_size
        except OSError:
            return 0

    def _kept_conffiles(self, offset: int) -> list[str]:
        try:
            with self.apt.paths.dpkg_log.open("rb") as f:
                if f.seek(0, 2) < offset:
                    offset = 0  # the log was rotated during the run
                f.seek(offset)
                text = f.read(MAX_DPKG_LOG_BYTES).decode("utf-8", "replace")
        except OSError:
            return []
        return [
            f"kept the locally changed {path}; the package's version is in {path}.dpkg-dist"
            for path in dict.fromkeys(_CONFFILE_KEPT.findall(text))
        ]
