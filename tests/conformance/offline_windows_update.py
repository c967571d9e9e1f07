"""The Windows Update backend's offline fixture: wua.ps1's JSON from tests/data/windows-update.

The search offers the captured cumulative update KB4519998 (uninstallable, so there
is a way back); the install answers the captured success either way, and WUA's list
of installed updates — the database the verdict reads — holds the update only once
it is really installed. Updates have no installed version, written ``""``.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from patchd.backends.windows_update.backend import WindowsUpdateBackend
from patchd.backends.windows_update.wua import script_argv
from tests.backends.fakeprocess import CannedCommands, captured
from tests.backends.gateway import context, install_tool, make_tool_dir
from tests.conformance.harness import Expected
from tests.conformance.offline import OfflineFixture, OfflineHarness

NAME = "KB4519998"
UPDATE_ID = "0c7eb702-e48b-48da-8ef8-e984aa6cb0b8:1"  # its identity and revision


def build(tmp: Path, monkeypatch: pytest.MonkeyPatch) -> OfflineFixture:
    install_tool(make_tool_dir(tmp, monkeypatch), "powershell.exe")
    state = {"installed": False, "installs": True}

    def install(argv: tuple[str, ...]) -> str:
        if state["installs"]:
            state["installed"] = True
        return captured("windows-update/install-succeeded.json")

    def installed(argv: tuple[str, ...]) -> str:
        name = "installed-pending-restart.json" if state["installed"] else "installed-none.json"
        return captured(f"windows-update/{name}")

    def uninstall(argv: tuple[str, ...]) -> str:
        state["installed"] = False
        # wua.ps1 reports an uninstall in the same form as an install (no capture of one).
        return captured("windows-update/install-succeeded.json")

    commands = CannedCommands(
        {
            tuple(script_argv("probe")): captured("windows-update/probe.json"),
            tuple(script_argv("search")): captured("windows-update/search.json"),
            tuple(script_argv("install", (UPDATE_ID,))): install,
            tuple(script_argv("uninstall", (UPDATE_ID,))): uninstall,
            tuple(script_argv("installed")): installed,
        }
    ).install(monkeypatch)
    return OfflineFixture(
        backend=WindowsUpdateBackend(context(tmp, "win32")),
        commands=commands,
        update=Expected(NAME, "", UPDATE_ID, "all"),
        versions=lambda: {NAME: UPDATE_ID if state["installed"] else ""},
        manager_installs=lambda yes: state.update(installs=yes),
        rollback_available=True,  # IsUninstallable in the captured search
    )


HARNESS = OfflineHarness("windows-update", build)
