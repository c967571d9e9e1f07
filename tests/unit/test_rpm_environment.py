"""The exact command lines and environments the RPM-family backends build, and their locks."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from patchd.backends.dnf.environment import DNF, YUM, DnfEnvironment
from patchd.backends.rpm.locks import pid_file_holder, wait_for_rpm_locks
from patchd.backends.rpm.rpmdb import RpmDatabase, find_db_dir, newest_per_package, parse_query
from patchd.backends.zypper.environment import ZypperEnvironment
from patchd.errors import LockHeldError
from patchd.target import Target
from tests.conftest import require

HOST = Target.at("/")


def _root(tmp_path: Path) -> Target:
    (tmp_path / "root/etc").mkdir(parents=True)
    (tmp_path / "root/etc/os-release").write_text('ID="rocky"\nVERSION_ID="9.4"\n')
    return Target.at(tmp_path / "root")


def test_dnf_on_the_host_uses_dnfs_own_configuration() -> None:
    env = DnfEnvironment(HOST, DNF, RpmDatabase(HOST, "/var/lib/rpm"), Path("/unused"))
    assert env.argv("upgrade", "hello-1.1-1.noarch") == [
        "dnf", "-y", "--setopt=exit_on_lock=True", "upgrade", "hello-1.1-1.noarch",
    ]  # fmt: skip
    assert env.env == {}


def test_dnf_in_a_root_stays_in_the_root(tmp_path: Path) -> None:
    require("rpm")
    target = _root(tmp_path)
    env = DnfEnvironment(target, DNF, RpmDatabase(target, "/var/lib/rpm"), tmp_path / "work")
    root = str(target.root)
    assert env.argv("-C", "-q", "check-update") == [
        "dnf", "-y", "--setopt=exit_on_lock=True", f"--installroot={root}",
        f"--setopt=reposdir={root}/etc/yum.repos.d", "--noplugins", "--releasever=9",
        "-C", "-q", "check-update",
    ]  # fmt: skip
    home = Path(env.env["HOME"])
    assert (home / ".rpmmacros").read_text().endswith("%_dbpath /var/lib/rpm\n")
    assert home.is_relative_to(tmp_path / "work")


def test_yum_differs_in_data_only(tmp_path: Path) -> None:
    target = _root(tmp_path)
    env = DnfEnvironment(target, YUM, RpmDatabase(target, "/var/lib/rpm"), tmp_path / "work")
    assert env.argv("x")[0] == "yum"
    assert YUM.refresh == (("clean", "expire-cache"), ("makecache",))
    assert env.cachedir == target.root / "var/cache/yum"


def test_zypper_in_a_root_moves_log_lock_and_database(tmp_path: Path) -> None:
    target = _root(tmp_path)
    env = ZypperEnvironment(target, RpmDatabase(target, "/var/lib/rpm"), tmp_path / "work")
    root = str(target.root)
    assert env.argv("list-updates", "-t", "package", "-t", "patch", xml=True) == [
        "zypper", "--non-interactive", "--xmlout", "--no-refresh", "--root", root,
        "list-updates", "-t", "package", "-t", "patch",
    ]  # fmt: skip
    assert env.argv("refresh", refresh=True) == [
        "zypper", "--non-interactive", "--root", root, "refresh",
    ]  # fmt: skip
    assert env.argv("install", "--oldpackage", "/k/a.rpm", global_options=("--no-gpg-checks",)) == [
        "zypper", "--non-interactive", "--no-gpg-checks", "--no-refresh", "--root", root,
        "install", "--oldpackage", "/k/a.rpm",
    ]  # fmt: skip
    assert env.env["ZYPP_LOGFILE"] == f"{root}/var/log/zypper.log"
    assert env.env["ZYPP_LOCKFILE_ROOT"] == root
    assert env.env["ZYPP_LOCK_TIMEOUT"] == "0"
    assert env.lock_files() == [target.root / "run/zypp.pid", Path("/run/zypp.pid")]


def test_zypper_on_the_host_keeps_its_defaults() -> None:
    env = ZypperEnvironment(HOST, RpmDatabase(HOST, "/var/lib/rpm"), Path("/unused"))
    assert env.argv("lu") == ["zypper", "--non-interactive", "--no-refresh", "lu"]
    assert env.env == {"ZYPP_LOCK_TIMEOUT": "0"}


def test_rpm_queries_name_the_database(tmp_path: Path) -> None:
    target = _root(tmp_path)
    assert RpmDatabase(target, "/usr/lib/sysimage/rpm").query_argv("-qa") == [
        "rpm", "--root", str(target.root), "--dbpath", "/usr/lib/sysimage/rpm", "-qa",
    ]  # fmt: skip
    assert RpmDatabase(HOST, "/var/lib/rpm").query_argv("-qa") == [
        "rpm", "--dbpath", "/var/lib/rpm", "-qa",
    ]  # fmt: skip


def test_the_database_is_found_where_distributions_keep_it(tmp_path: Path) -> None:
    target = _root(tmp_path)
    assert find_db_dir(target) is None
    (target.root / "var/lib/rpm").mkdir(parents=True)
    (target.root / "var/lib/rpm/Packages").write_bytes(b"")
    assert find_db_dir(target) == "/var/lib/rpm"
    (target.root / "usr/lib/sysimage/rpm").mkdir(parents=True)
    (target.root / "usr/lib/sysimage/rpm/rpmdb.sqlite").write_bytes(b"")
    assert find_db_dir(target) == "/usr/lib/sysimage/rpm"


def test_installonly_packages_report_their_newest_version() -> None:
    rows = parse_query(
        "kernel\t(none)\t5.14.0\t362.8.1.el9_3\tx86_64\n"
        "kernel\t(none)\t5.14.0\t362.24.1.el9_3\tx86_64\n"
        "gpg-pubkey\t(none)\tfd431d51\t4ae0493b\t(none)\n"
        "broken line\n"
    )
    newest = newest_per_package(rows)
    assert list(newest) == [("kernel", "x86_64")]
    assert newest[("kernel", "x86_64")].evr == "5.14.0-362.24.1.el9_3"


@pytest.fixture
def sleeper() -> Iterator[subprocess.Popen[bytes]]:
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    yield proc
    proc.kill()
    proc.wait()


def test_a_live_pid_file_holds_and_is_named(
    tmp_path: Path, sleeper: subprocess.Popen[bytes]
) -> None:
    lock = tmp_path / "rpmdb_lock.pid"
    lock.write_text(f"{sleeper.pid}\n")
    holder = pid_file_holder(lock)
    assert holder is not None
    assert holder.pid == sleeper.pid
    clock = iter(range(100))
    with pytest.raises(LockHeldError, match=rf"process {sleeper.pid}"):
        wait_for_rpm_locks([lock], [], 3, sleep=lambda _s: None, monotonic=lambda: next(clock))


def test_stale_and_own_pid_files_do_not_hold(tmp_path: Path) -> None:
    lock = tmp_path / "metadata_lock.pid"
    finished = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                              capture_output=True, text=True, check=True)  # fmt: skip
    lock.write_text(finished.stdout)
    assert pid_file_holder(lock) is None
    lock.write_text(str(os.getpid()))
    assert pid_file_holder(lock) is None
    lock.write_text("garbage")
    assert pid_file_holder(lock) is None
    wait_for_rpm_locks([lock, tmp_path / "absent.pid"], [], 0)


def test_a_tools_version_is_asked_once_per_installed_binary(tmp_path: Path) -> None:
    from patchd.backends.rpm.toolversion import remembered_version

    asked: list[str] = []

    def ask() -> str:
        asked.append("sh")
        return "9.9"

    cache = tmp_path / "version"
    assert remembered_version("sh", cache, ask) == "9.9"
    assert remembered_version("sh", cache, ask) == "9.9"
    assert asked == ["sh"]
    cache.write_text("/bin/sh:0:0\n1.0\n")  # another binary than the one installed now
    assert remembered_version("sh", cache, ask) == "9.9"
    assert asked == ["sh", "sh"]
    assert remembered_version("no-such-program-here", tmp_path / "x", ask) is None


def test_a_version_that_cannot_be_remembered_is_still_given(tmp_path: Path) -> None:
    from patchd.backends.rpm.toolversion import remembered_version

    (tmp_path / "state").write_text("a file where the state directory should be\n")
    cache = tmp_path / "state" / "work" / "version"
    asked: list[str] = []

    def ask() -> str:
        asked.append("sh")
        return "9.9"

    assert remembered_version("sh", cache, ask) == "9.9"
    assert remembered_version("sh", cache, ask) == "9.9"
    assert asked == ["sh", "sh"]  # asked each time, and no error


def test_yum_is_absent_where_it_is_not_installed(tmp_path: Path) -> None:
    import shutil

    from patchd.backends.base import BackendContext, ProbeStatus
    from patchd.backends.dnf.backend import YumBackend
    from patchd.platforms import RHEL

    if shutil.which("yum"):
        pytest.skip("yum is installed here")
    target = _root(tmp_path)
    (target.root / "var/lib/rpm").mkdir(parents=True)
    (target.root / "var/lib/rpm/rpmdb.sqlite").write_bytes(b"")
    probe = YumBackend(BackendContext(target, RHEL, tmp_path / "work")).probe()
    assert probe.status is ProbeStatus.ABSENT
    assert "yum" in probe.detail


@pytest.mark.parametrize("backend", ["dnf", "zypper"])
def test_a_database_rpm_cannot_open_makes_the_backend_broken(tmp_path: Path, backend: str) -> None:
    from patchd.backends import backend_class
    from patchd.backends.base import BackendContext, ProbeStatus
    from patchd.platforms import RHEL

    require("rpm", backend)
    target = _root(tmp_path)
    (target.root / "etc/zypp").mkdir(parents=True)
    (target.root / "var/lib/rpm").mkdir(parents=True)
    (target.root / "var/lib/rpm/rpmdb.sqlite").write_bytes(b"this is not a database\n")
    probe = backend_class(backend)(BackendContext(target, RHEL, tmp_path / "work")).probe()
    assert probe.status is ProbeStatus.BROKEN
    assert "rpm cannot read /var/lib/rpm" in probe.detail
