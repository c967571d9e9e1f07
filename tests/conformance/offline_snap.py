"""The snap backend's offline fixture: snap's tables, with the active revision kept here."""

from __future__ import annotations

from pathlib import Path

import pytest

from patchd.backends.base import BackendContext
from patchd.backends.snap.backend import SnapBackend
from patchd.platforms import UBUNTU
from patchd.target import Target
from tests.backends.fakeprocess import CannedCommands, captured
from tests.conformance.harness import Expected
from tests.conformance.offline import OfflineFixture, OfflineHarness

# The revisions and versions of tests/data/snap/snap-list-all-vlc.txt.
ROWS = {
    "768": "vlc   3.0.5-1  768  stable    videolan✓  -",
    "770": "vlc   3.0.6    770  stable    videolan✓  -",
}
HEADER = "Name  Version  Rev  Tracking  Publisher  Notes\n"


def build(tmp: Path, monkeypatch: pytest.MonkeyPatch) -> OfflineFixture:
    state = {"active": "768", "installs": True}

    def refresh(argv: tuple[str, ...]) -> str:
        if state["installs"]:
            state["active"] = "770"
        return "vlc 3.0.6 from VideoLAN✓ refreshed\n"

    def revert(argv: tuple[str, ...]) -> str:
        state["active"] = argv[-1].removeprefix("--revision=")
        return captured("snap/snap-revert.txt")

    commands = CannedCommands(
        {
            ("snap", "version"): captured("snap/snap-version.txt"),
            ("snap", "list"): lambda argv: HEADER + ROWS[str(state["active"])] + "\n",
            ("snap", "list", "--all"): captured("snap/snap-list-all-vlc.txt"),
            (
                "snap",
                "refresh",
                "--list",
            ): "Name  Version  Rev  Size  Publisher  Notes\nvlc   3.0.6    770  40MB  videolan✓  -\n",
            ("snap", "refresh", "vlc"): refresh,
            ("snap", "revert", "vlc"): revert,
        }
    ).install(monkeypatch)
    context = BackendContext(Target(Path("/")), UBUNTU, tmp / "work", {"arch": "amd64"})
    return OfflineFixture(
        backend=SnapBackend(context),
        commands=commands,
        update=Expected("vlc", "768", "770", "amd64"),
        versions=lambda: {"vlc": str(state["active"])},
        manager_installs=lambda yes: state.update(installs=yes),
        rollback_available=True,
    )


HARNESS = OfflineHarness("snap", build)
