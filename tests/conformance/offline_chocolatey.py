"""The Chocolatey backend's offline fixture: ``choco outdated`` from real Chocolatey 0.10.8.

The scan answers with the captured ``outdated-0.10.8.txt`` (atom 1.23.3, 1.24.0
available); ``choco list``, the database the verdict reads, lists the same machine's
packages at the installed versions that capture reports, in the ``name|version`` form
of ``list-local-only.txt``. ``version.txt`` says 0.11.0, so patchd must list with
``--local-only``. The feed's search answers in the form of ``search-exact.txt`` with
atom's two versions: no capture lists atom's.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from patchd.backends.chocolatey.backend import (
    ChocolateyBackend,
    downgrade_argv,
    list_argv,
    outdated_argv,
    search_argv,
    upgrade_argv,
)
from patchd.backends.chocolatey.listing import parse_versions
from tests.backends.fakeprocess import CannedCommands, captured
from tests.backends.gateway import context, install_tool, make_tool_dir
from tests.conformance.harness import Expected
from tests.conformance.offline import OfflineFixture, OfflineHarness

NAME, OLD, NEW = "atom", "1.23.3", "1.24.0"


def build(tmp: Path, monkeypatch: pytest.MonkeyPatch) -> OfflineFixture:
    install_tool(make_tool_dir(tmp, monkeypatch), "choco")
    outdated = captured("chocolatey/outdated-0.10.8.txt")
    installed_at = dict(line.split("|")[:2] for line in outdated.splitlines() if line)
    assert installed_at[NAME] == OLD
    state = {"installs": True}

    def listing(argv: tuple[str, ...] = ()) -> str:
        return "".join(f"{name}|{version}\n" for name, version in installed_at.items())

    def upgrade(argv: tuple[str, ...]) -> str:
        if state["installs"]:
            installed_at[NAME] = NEW
        return "Chocolatey upgraded 1/1 packages.\n"

    def downgrade(argv: tuple[str, ...]) -> str:
        installed_at[NAME] = OLD
        return "Chocolatey installed 1/1 packages.\n"

    commands = CannedCommands(
        {
            ("choco", "--version"): captured("chocolatey/version.txt"),
            tuple(outdated_argv()): outdated,
            tuple(list_argv(0)): listing,
            tuple(upgrade_argv(NAME, NEW)): upgrade,
            tuple(search_argv(NAME)): f"{NAME}|{NEW}\n{NAME}|{OLD}\n",
            tuple(downgrade_argv(NAME, OLD)): downgrade,
        }
    ).install(monkeypatch)
    return OfflineFixture(
        backend=ChocolateyBackend(context(tmp, "win32")),
        commands=commands,
        update=Expected(NAME, OLD, NEW, "all"),
        versions=lambda: dict(parse_versions(listing())),
        manager_installs=lambda yes: state.update(installs=bool(yes)),
        rollback_available=True,  # the feed still offers 1.23.3
    )


HARNESS = OfflineHarness("chocolatey", build)
