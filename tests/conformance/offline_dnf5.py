"""dnf 5's offline fixture: a Fedora root whose dnf and rpm answer in dnf 5's captured formats.

dnf 5 is not packaged for Debian. The fake ``dnf`` prints the captures of
tests/data/rpm (``check-upgrade`` with its ``Upgrades`` header, ``advisory info --json``,
``--version``); the fake ``rpm -qa`` reads a small table standing in for the root's
database, which the fake ``dnf upgrade``/``downgrade`` change as dnf would — or, for the
suite's negative test, do not. ``dnf download`` writes the old package into the keep
directory, as dnf 5 does, so the way back is stated and used.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from patchd.backends.base import BackendContext
from patchd.backends.dnf.dnf5_backend import Dnf5Backend
from patchd.backends.rpm.failures import rpm_filename
from patchd.platforms import RHEL
from patchd.target import Target
from tests.backends.fakeprocess import CannedCommands, Reply, captured
from tests.conformance.harness import Expected
from tests.conformance.offline import OfflineFixture, OfflineHarness
from tests.conformance.offline_rpm import FakeRpmDatabase, rpm_root

# The package of tests/data/rpm/dnf5-check-upgrade.txt, installed at the version the same
# ci-dnf-stack scenario installs first.
NAME, ARCH, OLD, NEW = "flac", "x86_64", "1.3.2-8.fc29", "1.4.0-1.fc29"
OTHERS = {"glibc": ("2.28-9.fc29", "x86_64"), "fedora-release-common": ("41-1", "noarch")}
FEDORA_OS_RELEASE = 'NAME="Fedora Linux"\nID=fedora\nVERSION_ID=41\n'
REPO = "[updates]\nname=Fedora updates\nbaseurl=https://example.invalid/updates\nenabled=1\n"


def dnf5_root(tmp: Path) -> Path:
    """A Fedora 41 root with an rpm database file, one repository and dnf 5's cache dir."""
    root = rpm_root(tmp, FEDORA_OS_RELEASE)
    (root / "etc/yum.repos.d/fedora-updates.repo").write_text(REPO)
    (root / "var/cache/libdnf5").mkdir(parents=True)
    return root


def fedora_database() -> FakeRpmDatabase:
    return FakeRpmDatabase({NAME: (OLD, ARCH), **OTHERS})


def dnf_prefix(root: Path) -> tuple[str, ...]:
    """What every dnf 5 command line on this root starts with."""
    dirs = ",".join(
        str(root / d.lstrip("/"))
        for d in ("/etc/yum.repos.d", "/etc/distro.repos.d", "/usr/share/dnf5/repos.d")
    )
    return (
        "dnf",
        "-y",
        "--setopt=exit_on_lock=True",
        f"--installroot={root}",
        f"--setopt=reposdir={dirs}",
        "--no-plugins",
    )


def canned_dnf5(root: Path, db: FakeRpmDatabase, installs: dict[str, bool]) -> CannedCommands:
    rpm = ("rpm", "--root", str(root), "--dbpath", "/var/lib/rpm")
    dnf = dnf_prefix(root)
    cached = ("--cacheonly", "-q", "--setopt=skip_if_unavailable=True")

    def upgrade(argv: tuple[str, ...]) -> str:
        if installs["yes"] and f"{NAME}-{NEW}.{ARCH}" in argv:
            db.packages[NAME] = (NEW, ARCH)
        return ""

    def downgrade(argv: tuple[str, ...]) -> str:
        if any(
            a == f"{NAME}-{OLD}.{ARCH}" or a.endswith(rpm_filename(NAME, OLD, ARCH)) for a in argv
        ):
            db.packages[NAME] = (OLD, ARCH)
        return ""

    def download(argv: tuple[str, ...]) -> str:
        destdir = Path(next(a for a in argv if a.startswith("--destdir=")).partition("=")[2])
        if f"{NAME}-{OLD}.{ARCH}" in argv:
            (destdir / rpm_filename(NAME, OLD, ARCH)).write_bytes(b"an rpm")
        return ""

    return CannedCommands(
        {
            ("dnf", "--version"): captured("rpm/dnf5-5.4.3.0-version.txt"),
            (*rpm, "-q", "--whatprovides"): "fedora-release-common-41-1.noarch\n",
            (*rpm, "-qa"): db.query,
            (*dnf, *cached, "check-upgrade"): Reply(100, captured("rpm/dnf5-check-upgrade.txt")),
            (*dnf, *cached, "advisory", "info", "--json", "--updates"): captured(
                "rpm/dnf5-updateinfo-info-object.json"
            ),
            (*dnf, "upgrade"): upgrade,
            (*dnf, "downgrade"): downgrade,
            (*dnf, "download"): download,
        }
    )


def backend(root: Path, work: Path) -> Dnf5Backend:
    return Dnf5Backend(BackendContext(Target.at(root), RHEL, work, {"lock_timeout_s": 1}))


def build(tmp: Path, monkeypatch: pytest.MonkeyPatch) -> OfflineFixture:
    root = dnf5_root(tmp)
    db = fedora_database()
    installs = {"yes": True}
    commands = canned_dnf5(root, db, installs).install(monkeypatch, start=True)
    return OfflineFixture(
        backend=backend(root, tmp / "work"),
        commands=commands,
        update=Expected(NAME, OLD, NEW, ARCH),
        versions=db.versions,
        manager_installs=lambda yes: installs.update(yes=yes),
        rollback_available=True,
    )


HARNESS = OfflineHarness("dnf", build, variant="dnf5")
