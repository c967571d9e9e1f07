"""The flatpak backend: the system installation, on the host or under --root.

An update is a newer commit of an installed ref on its remote; the "version" patchd
shows is the commit, abbreviated as flatpak prints it, because flatpak's version
strings are optional metadata and commits are what it installs. Applying one is
``flatpak update --commit=FULL REF`` for exactly the commit scanned (resolved with
``flatpak remote-info --show-commit``, refused if the remote has moved on); the way
back is the old commit, recorded before applying, restored with the same command —
flatpak's own downgrade mechanism, which needs the remote to keep its history (Flathub
does). ``--root`` works through ``FLATPAK_SYSTEM_DIR``; per-user installations belong
to their users and are not managed. Flatpak has no security metadata: every update is
``other``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from patchd import process
from patchd.atomicfile import atomic_write_text
from patchd.backends.base import (
    Backend,
    BackendContext,
    Probe,
    ProbeStatus,
    RollbackSource,
    ScanResult,
)
from patchd.backends.recorded import run_recorded
from patchd.backends.rpm.toolversion import remembered_version  # not RPM-specific
from patchd.errors import BackendError, CommandError, ToolNotFoundError
from patchd.models import Classification, InstalledPackage, PackageChange, Update
from patchd.transcript import Transcript

if TYPE_CHECKING:  # the listing's parsers load only when flatpak is there to list
    from patchd.backends.flatpak.listing import InstalledRef

PROBE_TIMEOUT_S = 30.0
LIST_TIMEOUT_S = 300.0  # remote-ls fetches each remote's summary
INFO_TIMEOUT_S = 120.0
UPDATE_TIMEOUT_S = 3600.0  # a runtime update is hundreds of MiB
SYSTEM_DIR = "/var/lib/flatpak"
CONFIG_DIR = "/etc/flatpak"
_FULL_COMMIT = re.compile(r"^[0-9a-f]{64}$")
_VERSION = re.compile(r"^Flatpak (\S+)$", re.MULTILINE)


class FlatpakBackend(Backend):
    """flatpak's system installation (``flatpak --system``)."""

    name = "flatpak"

    def __init__(self, context: BackendContext) -> None:
        super().__init__(context)
        # One scan's `flatpak list` and `remote-ls --updates`, started together.
        self._listing: tuple[process.RunningCommand, process.RunningCommand] | None = None
        self._scan_refs: list[InstalledRef] | None = None

    @property
    def env(self) -> dict[str, str]:
        """For another root: its installation and configuration, not the host's."""
        target = self.context.target
        if target.is_host:
            return {}
        return {
            "FLATPAK_SYSTEM_DIR": str(target.path(SYSTEM_DIR)),
            "FLATPAK_CONFIG_DIR": str(target.path(CONFIG_DIR)),
        }

    def _flatpak(self, *args: str) -> list[str]:
        return ["flatpak", "--system", *args]

    def _run(self, argv: list[str], timeout_s: float) -> process.CommandResult:
        return process.run(argv, timeout_s=timeout_s, env=self.env)

    # -- probe and read --------------------------------------------------------------

    def _probe(self) -> Probe:
        # The cheap check first: most roots patchd manages have no flatpak installation.
        installation = self.context.target.path(SYSTEM_DIR)
        if not self.context.target.is_host and not installation.is_dir():
            return Probe(ProbeStatus.ABSENT, f"no system flatpak installation at {installation}")
        try:
            # Asked once per installed binary: the probe runs before every scan's listings.
            version = remembered_version(
                "flatpak", self.context.work_dir / "flatpak" / "version", self._ask_version
            )
        except ToolNotFoundError:
            version = None
        if version is None:
            return Probe(ProbeStatus.ABSENT, "flatpak is not installed")
        return Probe(ProbeStatus.PRESENT, f"flatpak {version}", version)

    def _ask_version(self) -> str:
        result = process.run(["flatpak", "--version"], timeout_s=PROBE_TIMEOUT_S)
        match = _VERSION.search(result.stdout)
        if match is None:
            line = result.stdout.strip().splitlines()[:1]
            raise BackendError(f"unexpected `flatpak --version` output: {line}")
        return match[1]

    def _refs(self) -> list[InstalledRef]:
        from patchd.backends.flatpak.listing import LIST_COLUMNS, parse_list

        result = self._run(self._flatpak("list", f"--columns={LIST_COLUMNS}"), LIST_TIMEOUT_S)
        return parse_list(result.stdout)

    def _scanned_refs(self) -> list[InstalledRef]:
        """The installed refs of this scan: read once, by the listing started in the background."""
        if self._listing is None:
            return self._refs()  # no scan running: what is installed now
        if self._scan_refs is None:
            from patchd.backends.flatpak.listing import parse_list

            self._scan_refs = parse_list(self._listing[0].wait().stdout)
        return self._scan_refs

    def _start_listing(self) -> None:
        if self._listing is None:
            from patchd.backends.flatpak.listing import LIST_COLUMNS, UPDATE_COLUMNS

            self._scan_refs = None
            installed = self._flatpak("list", f"--columns={LIST_COLUMNS}")
            updates = self._flatpak("remote-ls", "--updates", f"--columns={UPDATE_COLUMNS}")
            first = process.start(installed, timeout_s=LIST_TIMEOUT_S, env=self.env)
            try:
                second = process.start(updates, timeout_s=LIST_TIMEOUT_S, env=self.env)
            except BaseException:
                first.stop()  # nothing else would: the pair is kept only once both run
                raise
            self._listing = (first, second)

    def _stop_listing(self) -> None:
        if self._listing is not None:
            process.stop_all(*self._listing)
            self._listing, self._scan_refs = None, None

    def _installed_packages(self) -> list[InstalledPackage]:
        return [InstalledPackage(r.name, r.commit, r.arch, self.name) for r in self._scanned_refs()]

    def _list_updates(self) -> ScanResult:
        from patchd.backends.flatpak.listing import UPDATE_COLUMNS, parse_updates

        if self._listing is None:  # not started by start_scan: read one after the other
            installed = {(r.name, r.arch): r for r in self._refs()}
            argv = self._flatpak("remote-ls", "--updates", f"--columns={UPDATE_COLUMNS}")
            result = self._run(argv, LIST_TIMEOUT_S)
        else:
            try:
                installed = {(r.name, r.arch): r for r in self._scanned_refs()}
                result = self._listing[1].wait()
            finally:
                self._listing, self._scan_refs = None, None  # the next scan reads afresh
        updates = []
        for available in parse_updates(result.stdout):
            current = installed.get((available.name, available.arch))
            if current is None:
                continue  # a ref of another installation
            updates.append(
                Update(
                    backend=self.name,
                    name=available.name,
                    arch=available.arch,
                    installed_version=current.commit,
                    available_version=available.commit,
                    classification=Classification.OTHER,
                    notes=(f"{available.ref} from {available.origin}",),
                )
            )
        return ScanResult(updates=tuple(updates))

    # -- change ----------------------------------------------------------------------

    def _ref_for(self, change: PackageChange, refs: Sequence[InstalledRef]) -> InstalledRef:
        for ref in refs:
            if (ref.name, ref.arch) == (change.name, change.arch):
                return ref
        raise BackendError(
            f"{change.name} ({change.arch}) is not installed in flatpak's system installation"
        )

    def _install(
        self,
        changes: Sequence[PackageChange],
        transcript: Transcript,
        kept_files: Mapping[tuple[str, str, str], Path],
        *,
        downgrade: bool,
    ) -> list[str]:
        refs = self._refs()
        notes = []
        for change in changes:
            ref = self._ref_for(change, refs)
            if downgrade:
                commit = _recorded_commit(kept_files.get(change.key), change)
            else:
                commit = self._offered_commit(ref, transcript)
            if commit is None or not commit.startswith(change.to_version):
                notes.append(
                    f"{change.name}: commit {change.to_version} is not available "
                    f"({'no recorded commit' if commit is None else 'the remote offers ' + commit[:12]}); "
                    "nothing done"
                )
                continue
            run_recorded(
                self._flatpak("update", "-y", "--noninteractive", f"--commit={commit}", ref.ref),
                transcript,
                timeout_s=UPDATE_TIMEOUT_S,
                env=self.env,
            )
        return notes

    def _offered_commit(self, ref: InstalledRef, transcript: Transcript) -> str | None:
        try:
            result = run_recorded(
                self._flatpak("remote-info", "--show-commit", ref.origin, ref.ref),
                transcript,
                timeout_s=INFO_TIMEOUT_S,
                env=self.env,
            )
        except CommandError:
            return None
        commit = result.stdout.strip()
        return commit if _FULL_COMMIT.match(commit) else None

    def _prepare_rollback(
        self, changes: Sequence[PackageChange], keep_dir: Path, transcript: Transcript
    ) -> list[RollbackSource]:
        refs = self._refs()
        keep_dir.mkdir(parents=True, exist_ok=True)
        sources = []
        for change in changes:
            ref = self._ref_for(change, refs)
            result = run_recorded(
                self._flatpak("info", "--show-commit", ref.ref),
                transcript,
                timeout_s=INFO_TIMEOUT_S,
                env=self.env,
            )
            commit = result.stdout.strip()
            if not (_FULL_COMMIT.match(commit) and commit.startswith(change.from_version)):
                sources.append(
                    RollbackSource(
                        change,
                        False,
                        detail=f"{ref.ref} is at {commit[:12] or '?'}, not {change.from_version}",
                    )
                )
                continue
            kept = keep_dir / f"{ref.application}-{ref.arch}-{ref.branch}.commit"
            atomic_write_text(kept, commit + "\n", mode=0o644)
            sources.append(
                RollbackSource(
                    change,
                    True,
                    kept,
                    f"commit {commit[:12]} recorded; `flatpak update --commit` fetches it "
                    f"again from {ref.origin}, which must still carry it",
                )
            )
        return sources


def _recorded_commit(kept: Path | None, change: PackageChange) -> str | None:
    """The full commit prepare_rollback wrote for ``change``, if it is there and sound."""
    if kept is None or not kept.is_file():
        return None
    commit = kept.read_text(encoding="ascii", errors="replace").strip()
    return commit if _FULL_COMMIT.match(commit) and commit.startswith(change.to_version) else None
