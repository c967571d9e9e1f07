"""The flatpak backend's offline fixture: flatpak's tab-separated listings, canned.

(flatpak also runs for real in tests/backends/test_flatpak.py; this fixture checks the
same promises as the other offline backends, side by side.)
"""

from __future__ import annotations

from pathlib import Path

import pytest

from patchd.backends.base import BackendContext
from patchd.backends.flatpak.backend import FlatpakBackend
from patchd.platforms import DEBIAN
from patchd.target import Target
from tests.backends.fakeprocess import CannedCommands
from tests.conformance.harness import Expected
from tests.conformance.offline import OfflineFixture, OfflineHarness

# Commits of the capture in tests/data/flatpak (flatpak 1.14.10 on this machine).
OLD = "da5dd192247703f5999e982450553b202f922646022910067d2245f6f83b0804"
NEW = "70d74989257e4491dad32797540beacc5814c9d28299c830784fcac75da0437a"
REF = "app/org.patchd.Hello/x86_64/stable"


def build(tmp: Path, monkeypatch: pytest.MonkeyPatch) -> OfflineFixture:
    root = tmp / "root"
    (root / "var/lib/flatpak").mkdir(parents=True)
    state = {"active": OLD, "installs": True}

    def update(argv: tuple[str, ...]) -> str:
        if state["installs"]:
            state["active"] = argv[-2].removeprefix("--commit=")
        return ""

    def listing(argv: tuple[str, ...]) -> str:
        return f"org.patchd.Hello\tx86_64\tstable\t{str(state['active'])[:12]}\ttest\tcurrent\n"

    flatpak = ("flatpak", "--system")
    commands = CannedCommands(
        {
            ("flatpak", "--version"): "Flatpak 1.14.10\n",
            (*flatpak, "list"): listing,
            (*flatpak, "remote-ls", "--updates"): f"{REF}\t{NEW[:12]}\ttest\n",
            (*flatpak, "remote-info", "--show-commit"): NEW + "\n",
            (*flatpak, "info", "--show-commit"): lambda argv: f"{state['active']}\n",
            (*flatpak, "update"): update,
        }
    ).install(monkeypatch)
    backend = FlatpakBackend(BackendContext(Target.at(root), DEBIAN, tmp / "work"))
    return OfflineFixture(
        backend=backend,
        commands=commands,
        update=Expected("org.patchd.Hello//stable", OLD[:12], NEW[:12], "x86_64"),
        versions=lambda: {"org.patchd.Hello//stable": str(state["active"])[:12]},
        manager_installs=lambda yes: state.update(installs=yes),
        rollback_available=True,
    )


HARNESS = OfflineHarness("flatpak", build)
