"""The package-state provider: on a crafted Debian root, and with real dpkg and apt."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest

from patchd.backends.apt.dpkgdb import DpkgDatabase
from patchd.models import InstalledPackage, PackageChange
from patchd.snapshots.base import SnapshotContext, SnapshotError
from patchd.snapshots.package_state import MAX_CONFFILE_BYTES, PackageStateProvider
from patchd.target import Target
from tests.snapshots.realfs import Clock
from tests.support.aptroot import AptRoot

PRISTINE = {
    "/etc/ssh/sshd_config": "PermitRootLogin prohibit-password\n",
    "/etc/ssh/moduli": "# moduli\n",
    "/etc/host.conf": "multi on\n",
    "/etc/motd": "Debian\n",
    "/etc/big.conf": "x" * (MAX_CONFFILE_BYTES + 1),
}
ADMIN_SSHD = "PermitRootLogin no\nPasswordAuthentication no\n"


def md5(text: str) -> str:
    return hashlib.md5(text.encode(), usedforsecurity=False).hexdigest()


def stanza(name: str, version: str, conffiles: dict[str, str], extra: str = "") -> str:
    lines = [
        f"Package: {name}",
        "Status: install ok installed",
        "Architecture: amd64",
        f"Version: {version}",
    ]
    if conffiles:
        lines.append("Conffiles:")
        lines += [f" {path} {digest}" for path, digest in conffiles.items()]
    return "\n".join(lines) + extra + "\n\n"


def write_status(root: Path, ssh_version: str, *, with_newpkg: bool = False) -> None:
    status = stanza("base-files", "12.4+deb12u5", {"/etc/host.conf": md5(PRISTINE["/etc/host.conf"]), "/etc/motd": md5(PRISTINE["/etc/motd"]), "/etc/big.conf": md5(PRISTINE["/etc/big.conf"])})  # fmt: skip
    status += stanza(
        "openssh-server",
        ssh_version,
        {
            "/etc/ssh/sshd_config": md5(PRISTINE["/etc/ssh/sshd_config"]),
            "/etc/ssh/moduli": md5(PRISTINE["/etc/ssh/moduli"]) + " obsolete",
            "/etc/pam.d/sshd": "newconffile",
        },
    )
    status += stanza("libc6", "2.36-9+deb12u7", {}, "\nMulti-Arch: same")
    if with_newpkg:
        status += stanza("newpkg", "1.0", {})
    (root / "var/lib/dpkg").mkdir(parents=True, exist_ok=True)
    (root / "var/lib/dpkg/status").write_text(status)


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """A Debian-ish root: dpkg status with Conffiles, the files on disk, some changed."""
    root = tmp_path / "root"
    for path, content in PRISTINE.items():
        (root / path.lstrip("/")).parent.mkdir(parents=True, exist_ok=True)
        (root / path.lstrip("/")).write_text(content)
    write_status(root, "1:9.2p1-2+deb12u2")
    sshd = root / "etc/ssh/sshd_config"
    sshd.write_text(ADMIN_SSHD)  # the administrator's edit
    sshd.chmod(0o640)
    (root / "etc/host.conf").unlink()  # deleted by the administrator
    (root / "etc/big.conf").write_text("y" * (MAX_CONFFILE_BYTES + 1))
    (root / "etc/motd").unlink()
    (root / "etc/motd").symlink_to("/etc/shadow")  # must never be read from the host
    return root


def provider(root: Path, state_dir: Path) -> PackageStateProvider:
    database = DpkgDatabase(root / "var/lib/dpkg")
    context = SnapshotContext(
        Target.at(root), state_dir, clock=Clock(), installed=database.installed
    )
    return PackageStateProvider(context)


def test_the_manifest_records_versions_and_the_modified_conffiles(
    root: Path, tmp_path: Path
) -> None:
    snapshots = provider(root, tmp_path / "state")
    taken = snapshots.create("before patching", "run-1")

    where = tmp_path / "state/snapshots/run-1"
    assert sorted(p.name for p in (tmp_path / "state/snapshots").iterdir()) == ["run-1"]
    manifest = json.loads((where / "manifest.json").read_text())
    assert [(p["name"], p["version"]) for p in manifest["packages"]] == [
        ("base-files", "12.4+deb12u5"),
        ("openssh-server", "1:9.2p1-2+deb12u2"),
        ("libc6", "2.36-9+deb12u7"),
    ]
    by_path = {c["path"]: c for c in manifest["conffiles"]}
    assert sorted(by_path) == [
        "/etc/big.conf",
        "/etc/host.conf",
        "/etc/motd",
        "/etc/ssh/sshd_config",
    ]
    sshd = by_path["/etc/ssh/sshd_config"]
    assert (sshd["package"], sshd["md5_found"], sshd["mode"]) == (
        "openssh-server",
        md5(ADMIN_SSHD),
        0o640,
    )
    assert (where / sshd["saved"]).read_text() == ADMIN_SSHD
    assert by_path["/etc/host.conf"]["note"] == "missing"
    assert by_path["/etc/motd"]["note"].startswith("unreadable")  # a symlink: not followed
    assert by_path["/etc/big.conf"]["saved"] is None
    assert by_path["/etc/big.conf"]["note"] == f"modified, larger than {MAX_CONFFILE_BYTES} bytes"
    assert sorted(p.name for p in (where / "conffiles").iterdir()) == ["00003"]
    assert snapshots.list() == [taken]


def test_restore_puts_the_conffile_back_and_returns_the_downgrades(
    root: Path, tmp_path: Path
) -> None:
    snapshots = provider(root, tmp_path / "state")
    taken = snapshots.create("", "run-1")
    # The patch run: a newer openssh-server replaces the administrator's sshd_config.
    write_status(root, "1:9.2p1-2+deb12u3", with_newpkg=True)
    (root / "etc/ssh/sshd_config").write_text("# new default\n")
    (root / "etc/ssh/sshd_config").chmod(0o644)

    outcome = snapshots.restore(taken)

    assert outcome.package_changes == (
        PackageChange("apt", "openssh-server", "amd64", "1:9.2p1-2+deb12u3", "1:9.2p1-2+deb12u2"),
    )
    sshd = root / "etc/ssh/sshd_config"
    assert sshd.read_text() == ADMIN_SSHD
    assert sshd.stat().st_mode & 0o777 == 0o640
    assert not (root / "etc/host.conf").exists()  # deleted before: left deleted
    assert "conffiles put back: /etc/ssh/sshd_config" in outcome.detail
    assert "installed since, left as they are: newpkg:amd64" in outcome.detail
    assert outcome.reboot_required is False


def test_a_failed_snapshot_leaves_nothing_behind(root: Path, tmp_path: Path) -> None:
    def broken() -> list[InstalledPackage]:
        raise OSError("database locked")

    context = SnapshotContext(Target.at(root), tmp_path, clock=Clock(), installed=broken)
    with pytest.raises(SnapshotError, match="database locked"):
        PackageStateProvider(context).create("", "run-1")
    assert list((tmp_path / "snapshots").iterdir()) == []


def test_without_a_package_backend_package_state_is_absent(tmp_path: Path) -> None:
    probe = PackageStateProvider(SnapshotContext(Target.at(tmp_path), tmp_path)).probe()
    assert (probe.status.value, probe.detail) == (
        "absent",
        "no package backend to read versions from",
    )


def test_prune_and_delete_remove_whole_snapshot_directories(root: Path, tmp_path: Path) -> None:
    snapshots = provider(root, tmp_path / "state")
    clock = snapshots.context.clock
    assert isinstance(clock, Clock)
    for run in ("a", "b", "c"):
        snapshots.create("", run)
        clock.advance()
    assert [s.id for s in snapshots.prune(2)] == ["a"]
    snapshots.delete(snapshots.list()[0])
    assert sorted(os.listdir(tmp_path / "state/snapshots")) == ["c"]


def test_with_real_dpkg_an_overwritten_conffile_comes_back_and_the_downgrade_keeps_it(
    apt_root: AptRoot, tmp_path: Path
) -> None:
    conf = apt_root.path / "etc/hello.conf"
    conf.write_text("# hello configuration\ngreeting=hi there\n")
    snapshots = provider(apt_root.path, tmp_path / "state")
    taken = snapshots.create("before patching", "run-1")
    apt_root.apt_get("install", "-o", "Dpkg::Options::=--force-confnew", "hello=1.1")
    assert "hello, safely" in conf.read_text()

    outcome = snapshots.restore(taken)

    assert conf.read_text() == "# hello configuration\ngreeting=hi there\n"
    assert [(c.name, c.from_version, c.to_version) for c in outcome.package_changes] == [
        ("hello", "1.1", "1.0")
    ]
    # What the caller does next, as the apt backend does it: keep local conffiles.
    apt_root.apt_get(
        "install", "--allow-downgrades", "-o", "Dpkg::Options::=--force-confdef",
        "-o", "Dpkg::Options::=--force-confold", "hello=1.0",
    )  # fmt: skip
    assert apt_root.versions()["hello"] == "1.0"
    assert conf.read_text() == "# hello configuration\ngreeting=hi there\n"
