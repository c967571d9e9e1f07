"""The Homebrew backend: formulae and casks on macOS (and Homebrew on Linux).

Homebrew refuses to run as root, and patchd's agent runs as root: so every ``brew``
command runs as the user who owns the Homebrew installation, through
``sudo -n -H -u OWNER /usr/bin/env HOMEBREW_...=1 brew ...`` (``sudo`` resets the
environment, hence ``env``). Run by that user itself, patchd calls ``brew`` directly.

Homebrew installs only the current version of a formula or cask, so there is no way
back after an upgrade: ``brew switch`` was removed in Homebrew 2.6.0, and an older keg
left in the Cellar cannot be made current again by any supported command. Every change
therefore reports "no rollback path" before it is applied. A pinned formula
(``brew pin``) is reported as held and never upgraded.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

from patchd.backends.base import (
    Backend,
    BackendContext,
    Probe,
    ProbeStatus,
    RollbackSource,
    ScanResult,
)
from patchd.backends.homebrew.listing import (
    CASK,
    FORMULA,
    Outdated,
    parse_list_versions,
    parse_outdated,
)
from patchd.backends.native import check_size, find_program, run_tool
from patchd.errors import BackendError, CommandError
from patchd.models import Classification, InstalledPackage, PackageChange, Update, UpdateState
from patchd.process import CommandResult
from patchd.transcript import Transcript

PROBE_TIMEOUT_S = 60.0
LIST_TIMEOUT_S = 600.0
UPDATE_TIMEOUT_S = 900.0  # brew update fetches the taps
UPGRADE_TIMEOUT_S = 7200.0  # a formula built from source can take long
# Where Homebrew installs itself: Apple silicon, Intel macOS, Linux.
BREW_LOCATIONS = (
    "/opt/homebrew/bin/brew",
    "/usr/local/bin/brew",
    "/home/linuxbrew/.linuxbrew/bin/brew",
)
# No network fetch behind patchd's back, no analytics, no hints, plain output.
BREW_ENV = {
    "HOMEBREW_NO_AUTO_UPDATE": "1",
    "HOMEBREW_NO_ANALYTICS": "1",
    "HOMEBREW_NO_ENV_HINTS": "1",
    "HOMEBREW_NO_COLOR": "1",
}
NO_ROLLBACK = (
    "Homebrew installs only the current version: `brew switch` was removed in Homebrew "
    "2.6.0 and no command makes an older keg current again"
)


def brew_argv(brew: str, owner: str | None, *args: str) -> list[str]:
    """The argv running ``brew args`` — as ``owner`` through sudo when patchd is root.

    ``owner`` is None when patchd already runs as the installation's owner.
    """
    if owner is None:
        return [brew, *args]
    env = [f"{k}={v}" for k, v in sorted(BREW_ENV.items())]
    return ["sudo", "-n", "-H", "-u", owner, "/usr/bin/env", *env, brew, *args]


class HomebrewBackend(Backend):
    """Homebrew formulae and casks, run as the owner of the installation."""

    name = "homebrew"

    def __init__(self, context: BackendContext) -> None:
        super().__init__(context)
        self._brew: str | None = None
        self._owner: str | None = None

    # -- probe and read --------------------------------------------------------------

    def _probe(self) -> Probe:
        if not self.context.target.is_host:
            return Probe(ProbeStatus.ABSENT, "Homebrew manages only the running system")
        brew = find_program(("brew",), BREW_LOCATIONS)
        if brew is None:
            return Probe(
                ProbeStatus.ABSENT, "brew is not installed (looked on PATH and in its prefixes)"
            )
        self._brew = brew
        owner_uid = Path(brew).resolve().stat().st_uid
        if os.geteuid() == 0:
            import pwd  # POSIX only; Homebrew is never found on Windows

            if owner_uid == 0:
                return Probe(
                    ProbeStatus.BROKEN,
                    f"{brew} is owned by root, and Homebrew refuses to run as root",
                )
            try:
                self._owner = pwd.getpwuid(owner_uid).pw_name
            except KeyError:
                return Probe(ProbeStatus.BROKEN, f"{brew} is owned by unknown user id {owner_uid}")
        elif owner_uid != os.geteuid():
            return Probe(
                ProbeStatus.BROKEN,
                f"{brew} belongs to user id {owner_uid}; run patchd as root or as that user",
            )
        first_line = self._brew_run("--version", timeout_s=PROBE_TIMEOUT_S).stdout.partition("\n")[
            0
        ]
        version = first_line.removeprefix("Homebrew ").strip() or None
        runs_as = f", run as {self._owner}" if self._owner else ""
        return Probe(ProbeStatus.PRESENT, f"Homebrew {version}{runs_as}", version)

    def _installed_packages(self) -> list[InstalledPackage]:
        packages = []
        for kind in (FORMULA, CASK):
            text = self._brew_run("list", "--versions", f"--{kind}", timeout_s=LIST_TIMEOUT_S)
            for listed in parse_list_versions(check_size(text.stdout, "brew list")):
                status = "missing" if listed.missing else "installed"
                packages.append(
                    InstalledPackage(listed.name, listed.version, kind, self.name, status)
                )
        return packages

    def _list_updates(self) -> ScanResult:
        result = self._brew_run("outdated", "--json=v2", timeout_s=LIST_TIMEOUT_S)
        entries = parse_outdated(check_size(result.stdout, "brew outdated"))
        return ScanResult(updates=tuple(self._update(e) for e in entries))

    def _update(self, entry: Outdated) -> Update:
        notes = []
        state = UpdateState.AVAILABLE
        if entry.pinned:
            state = UpdateState.HELD
            notes.append(f"pinned by the administrator (brew pin) at {entry.pinned_version}")
        if len(entry.installed) > 1:
            notes.append("several versions are installed: " + ", ".join(entry.installed))
        return Update(
            backend=self.name,
            name=entry.name,
            arch=entry.kind,
            installed_version=entry.installed_version,
            available_version=entry.current,
            # Homebrew publishes no security metadata for its formulae or casks.
            classification=Classification.OTHER,
            state=state,
            notes=tuple(notes),
        )

    # -- change ----------------------------------------------------------------------

    def _refresh(self, transcript: Transcript) -> None:
        run_tool(
            self._argv("update"), env=self._env, timeout_s=UPDATE_TIMEOUT_S, transcript=transcript
        )

    def _install(
        self,
        changes: Sequence[PackageChange],
        transcript: Transcript,
        kept_files: Mapping[tuple[str, str, str], Path],
        *,
        downgrade: bool,
    ) -> list[str]:
        if downgrade:
            raise BackendError(f"cannot roll back with Homebrew: {NO_ROLLBACK}")
        unknown = [c.name for c in changes if c.arch not in (FORMULA, CASK)]
        if unknown:
            raise BackendError(f"not a Homebrew formula or cask: {', '.join(unknown)}")
        failure: CommandError | None = None
        for kind in (FORMULA, CASK):
            names = [c.name for c in changes if c.arch == kind]
            if not names:
                continue
            try:
                run_tool(
                    self._argv("upgrade", f"--{kind}", *names),
                    env=self._env,
                    timeout_s=UPGRADE_TIMEOUT_S,
                    transcript=transcript,
                )
            except CommandError as e:
                failure = failure or e  # the casks still get their turn
        if failure is not None:
            raise failure
        return []

    def _prepare_rollback(
        self, changes: Sequence[PackageChange], keep_dir: Path, transcript: Transcript
    ) -> list[RollbackSource]:
        return [RollbackSource(c, available=False, detail=NO_ROLLBACK) for c in changes]

    # -- helpers ---------------------------------------------------------------------

    @property
    def _env(self) -> dict[str, str] | None:
        # Through sudo the variables travel in argv (env); directly, in the environment.
        return None if self._owner else dict(BREW_ENV)

    def _argv(self, *args: str) -> list[str]:
        if self._brew is None:
            raise BackendError("the homebrew backend was used before it was probed")
        return brew_argv(self._brew, self._owner, *args)

    def _brew_run(self, *args: str, timeout_s: float) -> CommandResult:
        return run_tool(self._argv(*args), env=self._env, timeout_s=timeout_s)
