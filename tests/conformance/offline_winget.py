"""The winget backend's offline fixture: winget's tables from tests/data/winget.

The scan answers with the captured ``upgrade-unknown-issue2381.txt`` (Firefox 86.0,
103.0 available); ``winget list``, the database the verdict reads, prints the same
table with Firefox's installed version as it stands. ``winget show --versions`` is the
captured ``show-versions-issue318.txt`` with Firefox's name and two versions in place
of Badlion's: no capture lists Firefox's versions.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from patchd.backends.winget.backend import (
    WingetBackend,
    install_argv,
    list_installed_argv,
    list_upgrades_argv,
    upgrade_argv,
    versions_argv,
)
from patchd.backends.winget.table import parse_table
from tests.backends.fakeprocess import CannedCommands, captured
from tests.backends.gateway import context, install_tool, make_tool_dir
from tests.conformance.harness import Expected
from tests.conformance.offline import OfflineFixture, OfflineHarness

NAME, OLD, NEW = "Mozilla.Firefox", "86.0", "103.0"
ROW = "86.0    103.0 "  # Firefox's Version and Available columns in the capture


def _versions_table() -> str:
    text = captured("winget/show-versions-issue318.txt")
    text = text.replace("Badlion Client [Badlion.BadlionClient]", f"Mozilla Firefox [{NAME}]")
    return text.replace("3.12.0\n3.11.0\n3.8.0\n3.6.4\n", f"{NEW}\n{OLD}\n")


def build(tmp: Path, monkeypatch: pytest.MonkeyPatch) -> OfflineFixture:
    install_tool(make_tool_dir(tmp, monkeypatch), "winget")
    upgrades = captured("winget/upgrade-unknown-issue2381.txt")
    assert ROW in upgrades
    state = {"version": OLD, "installs": True}

    def installed(argv: tuple[str, ...] = ()) -> str:
        return upgrades.replace(ROW, f"{state['version']:<8}{NEW:<6}")

    def upgrade(argv: tuple[str, ...]) -> str:
        if state["installs"]:
            state["version"] = NEW
        return "Successfully installed\r\n"

    def reinstall(argv: tuple[str, ...]) -> str:
        state["version"] = OLD
        return "Successfully installed\r\n"

    versions = _versions_table()
    assert f"\n{OLD}\n" in versions
    commands = CannedCommands(
        {
            ("winget", "--version"): "v1.3.431\r\n",
            tuple(list_upgrades_argv()): upgrades,
            tuple(list_installed_argv()): installed,
            tuple(upgrade_argv(NAME, NEW)): upgrade,
            tuple(versions_argv(NAME)): versions,
            tuple(install_argv(NAME, OLD)): reinstall,
        }
    ).install(monkeypatch)
    return OfflineFixture(
        backend=WingetBackend(context(tmp, "win32")),
        commands=commands,
        update=Expected(NAME, OLD, NEW, "all"),
        versions=lambda: {row.id: row.version for row in parse_table(installed())},
        manager_installs=lambda yes: state.update(installs=yes),
        rollback_available=True,  # the source still offers 86.0
    )


HARNESS = OfflineHarness("winget", build)
