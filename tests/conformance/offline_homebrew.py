"""The Homebrew backend's offline fixture: ``brew outdated`` and ``brew list`` from real Homebrew.

The scan answers with the captured ``outdated-formula-v2.json``; the formula database
is the captured ``list-versions-formula.txt`` plus the two formulae that capture's
machine had outdated, at the versions it reported installed. ``brew`` is a stand-in
that must never run, owned (as Homebrew must be) by an ordinary user when the suite
runs as root, so patchd goes through ``sudo -u``.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from patchd.backends.homebrew.backend import HomebrewBackend, brew_argv
from patchd.backends.homebrew.listing import parse_list_versions
from tests.backends.fakeprocess import CannedCommands, captured
from tests.backends.gateway import context, install_tool, make_tool_dir
from tests.conformance.harness import Expected
from tests.conformance.offline import OfflineFixture, OfflineHarness

NAME, OLD, NEW = "rav1e", "0.3.3", "0.3.4"  # from outdated-formula-v2.json
NOBODY = 65534


def build(tmp: Path, monkeypatch: pytest.MonkeyPatch) -> OfflineFixture:
    brew = install_tool(make_tool_dir(tmp, monkeypatch), "brew")
    owner = None
    if os.geteuid() == 0:
        os.chown(brew, NOBODY, -1)
        owner = "nobody"
    state = {"rav1e": OLD, "installs": True}

    def formulae(argv: tuple[str, ...] = ()) -> str:
        extra = f"pygobject3 3.36.1\n{NAME} {state['rav1e']}\n"
        return captured("homebrew/list-versions-formula.txt") + extra

    def upgrade(argv: tuple[str, ...]) -> str:
        if state["installs"]:
            state["rav1e"] = NEW
        return ""

    def argv(*args: str) -> tuple[str, ...]:
        return tuple(brew_argv(str(brew), owner, *args))

    commands = CannedCommands(
        {
            argv("--version"): captured("homebrew/version.txt"),
            argv("outdated", "--json=v2"): captured("homebrew/outdated-formula-v2.json"),
            argv("list", "--versions", "--formula"): formulae,
            argv("list", "--versions", "--cask"): captured("homebrew/list-versions-cask.txt"),
            argv("upgrade", "--formula", NAME): upgrade,
        }
    ).install(monkeypatch)
    return OfflineFixture(
        backend=HomebrewBackend(context(tmp, "darwin")),
        commands=commands,
        update=Expected(NAME, OLD, NEW, "formula"),
        versions=lambda: {x.name: x.version for x in parse_list_versions(formulae())},
        manager_installs=lambda yes: state.update(installs=yes),
        rollback_available=False,  # Homebrew keeps no way back to an older keg
    )


HARNESS = OfflineHarness("homebrew", build)
