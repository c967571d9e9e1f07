"""The backend registry: an explicit table of package managers, imported lazily.

Only the backends an endpoint uses are imported, so Windows- or macOS-only code never
loads on Linux and the agent's start-up stays cheap.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable, Sequence

from patchd.backends.base import Backend, BackendContext, ProbeStatus
from patchd.errors import BackendUnavailable, ConfigError
from patchd.platforms import OsProfile

log = logging.getLogger(__name__)

BACKENDS: dict[str, str] = {
    "apt": "patchd.backends.apt.backend:AptBackend",
    "dnf": "patchd.backends.dnf.backend:DnfBackend",
    "yum": "patchd.backends.dnf.backend:YumBackend",
    "zypper": "patchd.backends.zypper.backend:ZypperBackend",
    "homebrew": "patchd.backends.homebrew.backend:HomebrewBackend",
    "softwareupdate": "patchd.backends.softwareupdate.backend:SoftwareUpdateBackend",
    "windows-update": "patchd.backends.windows_update.backend:WindowsUpdateBackend",
    "winget": "patchd.backends.winget.backend:WingetBackend",
    "chocolatey": "patchd.backends.chocolatey.backend:ChocolateyBackend",
    "apk": "patchd.backends.apk.backend:ApkBackend",
    "snap": "patchd.backends.snap.backend:SnapBackend",
    "flatpak": "patchd.backends.flatpak.backend:FlatpakBackend",
    "pacman": "patchd.backends.pacman.backend:PacmanBackend",
}

# How each backend orders its versions: ``compare(a, b)`` is <0, 0 or >0. Kept apart from
# the backend classes so the policy can compare versions without loading a backend.
# Homebrew, softwareupdate, Windows Update and winget have none: their versions are
# publishers' strings or update identities that the managers themselves do not order.
VERSION_COMPARATORS: dict[str, str] = {
    "apt": "patchd.backends.apt.versions:compare",
    "dnf": "patchd.backends.rpm.versions:compare",
    "yum": "patchd.backends.rpm.versions:compare",
    "zypper": "patchd.backends.rpm.versions:compare",
    "chocolatey": "patchd.backends.chocolatey.versions:compare",
    "apk": "patchd.backends.apk.versions:compare",
    "pacman": "patchd.backends.pacman.versions:compare",
}


def backend_class(name: str) -> type[Backend]:
    """The class implementing backend ``name``; :class:`ConfigError` for an unknown name."""
    try:
        module_name, _, class_name = BACKENDS[name].partition(":")
    except KeyError:
        known = ", ".join(sorted(BACKENDS))
        raise ConfigError(f"unknown backend {name!r}", hint=f"known backends: {known}") from None
    cls: type[Backend] = getattr(importlib.import_module(module_name), class_name)
    return cls


def compare_versions(backend: str, a: str, b: str) -> int:
    """Order two versions as ``backend``'s package manager does (<0, 0, >0).

    :class:`ValueError` for a version the manager could not parse, or a backend with no
    known ordering (its versions can only be compared for equality).
    """
    try:
        module_name, _, function = VERSION_COMPARATORS[backend].partition(":")
    except KeyError:
        raise ValueError(f"the {backend} backend has no version ordering") from None
    compare: Callable[[str, str], int] = getattr(importlib.import_module(module_name), function)
    return compare(a, b)


def select_backends(
    profile: OsProfile,
    context_for: Callable[[str], BackendContext],
    names: Sequence[str] | None = None,
    found: Callable[[Backend], None] | None = None,
) -> tuple[list[Backend], list[str]]:
    """The usable backends, and a problem line for each broken one.

    With ``names`` (from the configuration) every named backend must be present.
    Without, the OS profile's backends are probed: absent ones are skipped quietly.
    ``context_for(name)`` gives each backend its context. Without ``names``,
    ``found(backend)`` is called for each usable backend as soon as its probe says so,
    before the next one is probed: a scan starts its listing there. (With ``names`` the
    selection may still fail, so nothing is started before it is complete.)
    """
    wanted = list(names) if names else [n for n in profile.backends if n in BACKENDS]
    usable: list[Backend] = []
    problems: list[str] = []
    for name in wanted:
        backend = backend_class(name)(context_for(name))
        probe = backend.probe()
        if probe.status is ProbeStatus.PRESENT:
            usable.append(backend)
            if found is not None and not names:
                found(backend)
        elif probe.status is ProbeStatus.BROKEN or names:
            problems.append(f"{name}: {probe.status.value}: {probe.detail}")
    if names and problems:
        raise BackendUnavailable(
            "configured backend unusable: " + "; ".join(problems),
            hint="fix the package manager or remove it from `backends` in the agent configuration",
        )
    return usable, problems
