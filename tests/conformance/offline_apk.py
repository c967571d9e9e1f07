"""The apk backend's offline fixture: the captured installed database in a test root."""

from __future__ import annotations

from pathlib import Path

import pytest

from patchd.backends.apk.backend import ApkBackend
from patchd.backends.apk.installeddb import parse_installed
from patchd.backends.base import BackendContext
from patchd.platforms import ALPINE
from patchd.target import Target
from tests.backends.fakeprocess import CannedCommands, captured
from tests.conformance.harness import Expected
from tests.conformance.offline import OfflineFixture, OfflineHarness

NAME, OLD, NEW = "alpine-baselayout", "3.6.5-r0", "3.6.5-r1"
# One line in the format of tests/data/apk/list-upgradable.txt, for a package the
# captured database holds.
LISTING = f"{NAME}-{NEW} x86_64 {{{NAME}}} (GPL-2.0-only) [upgradable from: {NAME}-{OLD}]\n"


def build(tmp: Path, monkeypatch: pytest.MonkeyPatch) -> OfflineFixture:
    root = tmp / "root"
    db = root / "lib/apk/db/installed"
    db.parent.mkdir(parents=True)
    db.write_text(captured("apk/installed"))
    installs = {"yes": True}

    def add(argv: tuple[str, ...]) -> str:
        if installs["yes"]:
            db.write_text(db.read_text().replace(f"P:{NAME}\nV:{OLD}\n", f"P:{NAME}\nV:{NEW}\n"))
        return "OK: 8 MiB in 15 packages\n"

    apk = ("apk", "--root", str(root))
    commands = CannedCommands(
        {
            ("apk", "--version"): captured("apk/apk-version.txt"),
            (*apk, "list", "--upgradable"): LISTING,
            (*apk, "add"): add,
            (*apk, "fetch"): "",  # answers, but writes no file: no way back
        }
    ).install(monkeypatch)
    backend = ApkBackend(BackendContext(Target.at(root), ALPINE, tmp / "work"))
    return OfflineFixture(
        backend=backend,
        commands=commands,
        update=Expected(NAME, OLD, NEW, "x86_64"),
        versions=lambda: {p.name: p.version for p in parse_installed(db.read_text())},
        manager_installs=lambda yes: installs.update(yes=yes),
        rollback_available=False,
    )


HARNESS = OfflineHarness("apk", build)
