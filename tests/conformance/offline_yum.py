"""yum 3's offline fixture (EL7): a CentOS 7 root whose yum answers in yum's captured format.

yum 3 is not packaged for Debian. The fake installation is what the backend's probe
looks at: a ``yum`` program on the ``PATH`` (a stub that is never run: the recording
fake of the process gateway answers every command) and yum's Python module carrying its
version constant as yum 3.4.3 does (``__version__ = '3.4.3'`` in ``yum/__init__.py``,
rpm-software-management/yum). ``check-update`` answers with the capture
tests/data/rpm/yum-rhel6-check-update-wrapped.txt (a long name wrapping its columns onto
the next line); the installed version of that package is the fixture's choice. The fake
``rpm -qa`` reads a small table that ``yum upgrade``/``downgrade`` change as yum would —
or, for the suite's negative test, do not; ``yum reinstall --downloadonly`` writes the
old package into the keep directory, so the way back is stated and used.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from patchd.backends.base import BackendContext
from patchd.backends.dnf.backend import YumBackend
from patchd.backends.rpm import toolversion
from patchd.backends.rpm.failures import rpm_filename
from patchd.platforms import RHEL
from patchd.target import Target
from tests.backends.fakeprocess import CannedCommands, Reply, captured
from tests.conformance.harness import Expected
from tests.conformance.offline import OfflineFixture, OfflineHarness
from tests.conformance.offline_rpm import FakeRpmDatabase, rpm_root

# The package of the capture; its older version is the fixture's.
NAME, ARCH = "java-1.7.0-openjdk-devel", "x86_64"
OLD, NEW = "1:1.7.0.95-2.6.4.0.el6_7", "1:1.7.0.99-2.6.5.0.el6_7"
CENTOS_OS_RELEASE = 'NAME="CentOS Linux"\nID="centos"\nID_LIKE="rhel fedora"\nVERSION_ID="7"\n'
REPO = "[base]\nname=CentOS-7 - Base\nbaseurl=https://example.invalid/centos/7/os\nenabled=1\n"
YUM_MODULE = "__version__ = '3.4.3'\n__version_info__ = tuple([int(num) for num in __version__.split('.')])\n"


def install_fake_yum(tmp: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A ``yum`` on the PATH and yum's module where the probe looks for its version."""
    bin_dir = tmp / "bin"
    bin_dir.mkdir()
    stub = bin_dir / "yum"
    stub.write_text("#!/bin/sh\necho 'this stub is never run' >&2\nexit 1\n")
    stub.chmod(0o755)
    monkeypatch.setenv("PATH", f"{os.environ.get('PATH', '')}:{bin_dir}")
    module = tmp / "python2.7/site-packages/yum/__init__.py"
    module.parent.mkdir(parents=True)
    module.write_text(YUM_MODULE)
    monkeypatch.setitem(toolversion.MODULE_PATTERNS, "yum", (str(module),))


def yum_prefix(root: Path) -> tuple[str, ...]:
    """What every yum command line on this root starts with."""
    return (
        "yum",
        "-y",
        "--setopt=exit_on_lock=True",
        f"--installroot={root}",
        f"--setopt=reposdir={root}/etc/yum.repos.d",
        "--noplugins",
    )


def canned_yum(root: Path, db: FakeRpmDatabase, installs: dict[str, bool]) -> CannedCommands:
    rpm = ("rpm", "--root", str(root), "--dbpath", "/var/lib/rpm")
    yum = yum_prefix(root)

    def upgrade(argv: tuple[str, ...]) -> str:
        if installs["yes"] and f"{NAME}-{NEW}.{ARCH}" in argv:
            db.packages[NAME] = (NEW, ARCH)
        return ""

    def downgrade(argv: tuple[str, ...]) -> str:
        old_file = rpm_filename(NAME, OLD, ARCH)
        if any(a == f"{NAME}-{OLD}.{ARCH}" or a.endswith(old_file) for a in argv):
            db.packages[NAME] = (OLD, ARCH)
        return ""

    def download(argv: tuple[str, ...]) -> str:
        keep = Path(next(a for a in argv if a.startswith("--downloaddir=")).partition("=")[2])
        if f"{NAME}-{OLD}.{ARCH}" in argv:
            (keep / rpm_filename(NAME, OLD, ARCH)).write_bytes(b"an rpm")
        return ""

    listing = (*yum, "-C", "-q", "--setopt=skip_if_unavailable=True", "check-update")
    return CannedCommands(
        {
            (*rpm, "-q", "--whatprovides"): "centos-release-7-9.2009.1.el7.centos.x86_64\n",
            (*rpm, "-qa"): db.query,
            listing: Reply(100, captured("rpm/yum-rhel6-check-update-wrapped.txt")),
            (*yum, "upgrade"): upgrade,
            (*yum, "downgrade"): downgrade,
            (*yum, "reinstall", "--downloadonly"): download,
        }
    )


def build(tmp: Path, monkeypatch: pytest.MonkeyPatch) -> OfflineFixture:
    install_fake_yum(tmp, monkeypatch)
    root = rpm_root(tmp, CENTOS_OS_RELEASE, db_file="var/lib/rpm/Packages")
    (root / "etc/yum.repos.d/CentOS-Base.repo").write_text(REPO)
    db = FakeRpmDatabase({NAME: (OLD, ARCH), "centos-release": ("7-9.2009.1.el7.centos", ARCH)})
    installs = {"yes": True}
    commands = canned_yum(root, db, installs).install(monkeypatch, start=True)
    context = BackendContext(Target.at(root), RHEL, tmp / "work", {"lock_timeout_s": 1})
    return OfflineFixture(
        backend=YumBackend(context),
        commands=commands,
        update=Expected(NAME, OLD, NEW, ARCH),
        versions=db.versions,
        manager_installs=lambda yes: installs.update(yes=yes),
        rollback_available=True,
    )


HARNESS = OfflineHarness("yum", build)
