"""The apk backend: Alpine Linux (and other apk-tools systems), on the host or under --root.

Reads the installed database directly, lists updates with ``apk list --upgradable``
(from the indexes apk already fetched), and installs exact versions with
``apk add NAME=VERSION`` — then puts ``/etc/apk/world`` back as it was, because apk
records ``NAME=VERSION`` there as a pin that would hold the package at that version
for ever. apk keeps no security metadata locally; see :mod:`.secdb` for how updates
are classified. The way back is an old ``.apk``: from apk's cache when it is enabled,
else ``apk fetch`` from a repository that still has it (Alpine's keep only the newest),
else none, which the run records before changing anything.
"""

from __future__ import annotations

import logging
import re
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path

from patchd import process
from patchd.atomicfile import atomic_write_bytes
from patchd.backends.apk.installeddb import find_database, parse_installed
from patchd.backends.apk.listing import parse_upgradable
from patchd.backends.apk.secdb import SecFixes, load_secdb, security_facts
from patchd.backends.base import (
    Backend,
    BackendContext,
    Probe,
    ProbeStatus,
    RollbackSource,
    ScanResult,
)
from patchd.backends.recorded import run_recorded
from patchd.errors import CommandError, ConfigError, ToolNotFoundError
from patchd.models import Classification, InstalledPackage, PackageChange, Update
from patchd.transcript import Transcript

log = logging.getLogger(__name__)

PROBE_TIMEOUT_S = 30.0
LIST_TIMEOUT_S = 300.0
UPDATE_TIMEOUT_S = 900.0
FETCH_TIMEOUT_S = 900.0
INSTALL_TIMEOUT_S = 7200.0
MAX_WARNINGS = 20  # lines apk printed that were not entries, passed on as scan warnings
WORLD = "/etc/apk/world"
CACHE_DIRS = ("/etc/apk/cache", "/var/cache/apk")

# "apk-tools 2.14.4, compiled for x86_64."
_VERSION = re.compile(r"^apk-tools (\S+), compiled for ([^\s.]+)\.?$", re.MULTILINE)


class ApkBackend(Backend):
    """apk-tools, on the host or in an alternate root (``apk --root``)."""

    name = "apk"

    def __init__(self, context: BackendContext) -> None:
        super().__init__(context)
        self._secfixes: SecFixes | None = None

    def apk_argv(self, *args: str) -> list[str]:
        """``apk`` with ``--root`` when patchd manages another root."""
        target = self.context.target
        return ["apk", *([] if target.is_host else ["--root", str(target.root)]), *args]

    # -- probe and read --------------------------------------------------------------

    def _probe(self) -> Probe:
        try:
            result = process.run(["apk", "--version"], timeout_s=PROBE_TIMEOUT_S)
        except ToolNotFoundError:
            return Probe(ProbeStatus.ABSENT, "apk is not installed")
        if find_database(self.context.target.root) is None:
            return Probe(ProbeStatus.ABSENT, f"no apk database under {self.context.target}")
        match = _VERSION.search(result.stdout)
        if match is None:
            line = result.stdout.strip().splitlines()[:1]
            return Probe(ProbeStatus.BROKEN, f"unexpected `apk --version` output: {line}")
        return Probe(ProbeStatus.PRESENT, f"apk-tools {match[1]} ({match[2]})", match[1])

    def _installed_packages(self) -> list[InstalledPackage]:
        database = find_database(self.context.target.root)
        if database is None:
            return []
        text = database.read_text(encoding="utf-8", errors="replace")
        return [p.installed(self.name) for p in parse_installed(text, str(database))]

    def _list_updates(self) -> ScanResult:
        result = process.run(self.apk_argv("list", "--upgradable"), timeout_s=LIST_TIMEOUT_S)
        entries, others = parse_upgradable(result.stdout + "\n" + result.stderr)
        secfixes = self._security_database()
        warnings = [f"apk: {line}" for line in others[:MAX_WARNINGS]]
        if secfixes is None:
            warnings.append(
                "apk keeps no security metadata locally: updates are not classified as "
                "security unless `apk: secdb:` names copies of Alpine's secdb"
            )
        updates = []
        for entry in entries:
            facts = security_facts(
                secfixes or {}, entry.origin, entry.installed_version, entry.version
            )
            updates.append(
                Update(
                    backend=self.name,
                    name=entry.name,
                    arch=entry.arch,
                    installed_version=entry.installed_version,
                    available_version=entry.version,
                    classification=Classification.SECURITY if facts else Classification.OTHER,
                    cves=facts.cves if facts else (),
                    reboot_required=self._needs_reboot(entry.name),
                    notes=(f"secfixes {', '.join(facts.fixed_in)} of {entry.origin}",)
                    if facts
                    else (),
                )
            )
        return ScanResult(updates=tuple(updates), warnings=tuple(warnings))

    def _security_database(self) -> SecFixes | None:
        if self._secfixes is None:
            paths = self.context.settings.get("secdb") or []
            if not isinstance(paths, list) or not all(isinstance(p, str) for p in paths):
                raise ConfigError("`apk: secdb:` must be a list of file paths")
            if not paths:
                return None
            self._secfixes = load_secdb([Path(p) for p in paths])
        return self._secfixes

    def _needs_reboot(self, name: str) -> bool:
        profile = self.context.profile
        return name.startswith(profile.kernel_packages) or name in profile.reboot_packages

    # -- change ----------------------------------------------------------------------

    def _refresh(self, transcript: Transcript) -> None:
        run_recorded(self.apk_argv("update"), transcript, timeout_s=UPDATE_TIMEOUT_S)

    def _install(
        self,
        changes: Sequence[PackageChange],
        transcript: Transcript,
        kept_files: Mapping[tuple[str, str, str], Path],
        *,
        downgrade: bool,
    ) -> list[str]:
        specs = [
            str(kept_files[c.key]) if c.key in kept_files else f"{c.name}={c.to_version}"
            for c in changes
        ]
        world = self.context.target.path(WORLD)
        before = world.read_bytes() if world.is_file() else None
        try:
            run_recorded(
                self.apk_argv("add", "--no-progress", *specs),
                transcript,
                timeout_s=INSTALL_TIMEOUT_S,
            )
        finally:
            notes = self._restore_world(world, before, transcript)
        return notes

    def _restore_world(
        self, world: Path, before: bytes | None, transcript: Transcript
    ) -> list[str]:
        """Undo the ``NAME=VERSION`` pins ``apk add`` wrote into the world file."""
        if before is None or (world.is_file() and world.read_bytes() == before):
            return []
        atomic_write_bytes(world, before, mode=0o644)
        note = f"restored {WORLD} as it was, so the versions installed are not pinned"
        transcript.note(note)
        return [note]

    def _prepare_rollback(
        self, changes: Sequence[PackageChange], keep_dir: Path, transcript: Transcript
    ) -> list[RollbackSource]:
        keep_dir.mkdir(parents=True, exist_ok=True)
        return [self._keep(change, keep_dir, transcript) for change in changes]

    def _keep(
        self, change: PackageChange, keep_dir: Path, transcript: Transcript
    ) -> RollbackSource:
        name, version = change.name, change.from_version
        cached = self._cached_apk(name, version)
        if cached is not None:
            kept = keep_dir / cached.name
            shutil.copy2(cached, kept)
            return RollbackSource(change, True, kept, f"kept {cached.name} from apk's cache")
        try:
            run_recorded(
                self.apk_argv("fetch", "--no-progress", "-o", str(keep_dir), f"{name}={version}"),
                transcript,
                timeout_s=FETCH_TIMEOUT_S,
            )
        except CommandError:
            return RollbackSource(
                change,
                False,
                detail=f"{name} {version} is in neither apk's cache nor its repositories "
                "(Alpine's keep only the newest version); enable apk's cache to keep a way back",
            )
        kept = keep_dir / f"{name}-{version}.apk"
        if not kept.is_file():
            return RollbackSource(change, False, detail=f"apk fetch did not write {kept.name}")
        return RollbackSource(change, True, kept, f"fetched {kept.name} from the repositories")

    def _cached_apk(self, name: str, version: str) -> Path | None:
        """``NAME-VERSION.HASH.apk`` in apk's cache (as ``apk cache`` keeps it), if there."""
        prefix = f"{name}-{version}."
        for relative in CACHE_DIRS:
            directory = self.context.target.path(relative)
            if not directory.is_dir():
                continue
            for candidate in sorted(directory.iterdir()):
                if candidate.name.startswith(prefix) and candidate.name.endswith(".apk"):
                    rest = candidate.name[len(prefix) : -len(".apk")]
                    if "." not in rest and candidate.is_file():  # not a longer version
                        return candidate
        return None
