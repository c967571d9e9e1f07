"""The softwareupdate backend's offline fixture: the listing of a real Mac, before and after.

macOS keeps no database of installed updates by label: an update is installed once
``softwareupdate --list`` stops offering it. The fake answers with the captured
``list-mixed.txt``, and once Safari is installed with the same listing without Safari's
entry. Updates have no installed version, written ``""``.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from patchd.backends.softwareupdate.backend import SoftwareUpdateBackend
from tests.backends.fakeprocess import CannedCommands, captured
from tests.backends.gateway import context, install_tool, make_tool_dir
from tests.conformance.harness import Expected
from tests.conformance.offline import OfflineFixture, OfflineHarness

LABEL, VERSION = "Safari27.0TahoeAuto-27.0", "27.0"
ENTRY = (
    f"* Label: {LABEL}\n"
    "\tTitle: Safari, Version: 27.0, Size: 190512KiB, Recommended: YES, \n"
)  # Safari's two lines of list-mixed.txt


def build(tmp: Path, monkeypatch: pytest.MonkeyPatch) -> OfflineFixture:
    install_tool(make_tool_dir(tmp, monkeypatch), "softwareupdate")
    mixed = captured("softwareupdate/list-mixed.txt")
    assert ENTRY in mixed
    state = {"installed": False, "installs": True}

    def listing(argv: tuple[str, ...]) -> str:
        return mixed.replace(ENTRY, "") if state["installed"] else mixed

    def install(argv: tuple[str, ...]) -> str:
        if state["installs"]:
            state["installed"] = True
        return "Downloading Safari\nDone.\n"

    commands = CannedCommands(
        {
            ("sw_vers", "-productVersion"): "26.7\n",
            ("softwareupdate", "--list"): listing,
            ("softwareupdate", "--install", LABEL): install,
        }
    ).install(monkeypatch)
    return OfflineFixture(
        backend=SoftwareUpdateBackend(context(tmp, "darwin")),
        commands=commands,
        update=Expected(LABEL, "", VERSION, "all"),
        versions=lambda: {LABEL: VERSION if state["installed"] else ""},
        manager_installs=lambda yes: state.update(installs=yes),
        rollback_available=False,  # Apple offers no way to uninstall an update
    )


HARNESS = OfflineHarness("softwareupdate", build)
