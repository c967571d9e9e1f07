"""The pacman backend's pieces that need no package manager: argv, output readings, the lock.

Outputs are the real pacman's (tests/data/pacman); the lock is held by a real process.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from patchd.backends.base import BackendContext, ProbeStatus
from patchd.backends.pacman.backend import PacmanBackend
from patchd.backends.pacman.environment import PacmanEnvironment
from patchd.backends.pacman.lock import lock_holder, wait_for_lock
from patchd.config import PacmanSettings, parse_config
from patchd.errors import BackendError, ConfigError, LockHeldError
from patchd.models import PackageChange
from patchd.platforms import ARCH
from patchd.target import Target
from tests.conftest import require

DATA = Path(__file__).resolve().parent.parent / "data" / "pacman"


def _backend(root: Path) -> PacmanBackend:
    return PacmanBackend(BackendContext(Target.at(root), ARCH, root / "work"))


def test_every_path_pacman_uses_points_into_the_root(tmp_path: Path) -> None:
    env = PacmanEnvironment(Target.at(tmp_path))
    r = str(tmp_path)
    assert env.change_argv("-S", "core/hello") == [
        "pacman",
        "--root", r,
        "--dbpath", f"{r}/var/lib/pacman",
        "--config", f"{r}/etc/pacman.conf",
        "--cachedir", f"{r}/var/cache/pacman/pkg",
        "--logfile", f"{r}/var/log/pacman.log",
        "--hookdir", f"{r}/etc/pacman.d/hooks",
        "--gpgdir", f"{r}/etc/pacman.d/gnupg",
        "--noconfirm", "--noprogressbar", "--color", "never",
        "-S", "core/hello",
    ]  # fmt: skip
    assert env.query_argv("-Qu")[-3:] == ["--color", "never", "-Qu"]
    assert env.paths.lock_file == tmp_path / "var/lib/pacman/db.lck"


def test_on_the_host_pacman_keeps_its_own_configuration() -> None:
    env = PacmanEnvironment(Target.at("/"))
    assert env.change_argv("-Sy") == [
        "pacman", "--noconfirm", "--noprogressbar", "--color", "never", "-Sy"
    ]  # fmt: skip
    assert env.query_argv("-Qu") == ["pacman", "--color", "never", "-Qu"]


def test_host_paths_come_from_pacman_conf() -> None:
    require("pacman-conf")
    paths = PacmanEnvironment(Target.at("/")).paths
    expected = subprocess.run(
        ["pacman-conf", "DBPath"], capture_output=True, text=True, check=True, timeout=30
    ).stdout.strip()
    assert paths.db_dir == Path(expected)
    assert paths.cache_dirs


def test_no_database_under_the_root_is_absent_not_broken(tmp_path: Path) -> None:
    require("pacman")
    probe = _backend(tmp_path).probe()
    assert probe.status is ProbeStatus.ABSENT
    assert probe.detail == f"no pacman database under {tmp_path}"


def test_failure_reasons_name_the_conflicting_file() -> None:
    output = (DATA / "S-conflict.stdout").read_text() + (DATA / "S-conflict.stderr").read_text()
    reasons = _backend(Path("/nonexistent"))._failure_reasons(output)
    assert reasons == {
        "clash": "/tmp/pt/root2/usr/share/shared/world.txt exists in filesystem (conflicting files)"
    }


def test_a_failed_scriptlet_is_named_when_one_changed_package_has_a_scriptlet(
    tmp_path: Path,
) -> None:
    backend = _backend(tmp_path)
    local = tmp_path / "var/lib/pacman/local"
    for entry, scriptlet in (("fragile-2.0-1", True), ("hello-1.1-1", False)):
        (local / entry).mkdir(parents=True)
        if scriptlet:
            (local / entry / "install").write_text("post_upgrade() { return 1; }\n")
    output = (DATA / "S-scriptlet.stdout").read_text() + (DATA / "S-scriptlet.stderr").read_text()
    changes = [
        PackageChange("pacman", "fragile", "any", "1.0-1", "2.0-1"),
        PackageChange("pacman", "hello", "any", "1.0-1", "1.1-1"),
    ]
    (note,) = backend._scriptlet_failures(output, changes)
    assert note.startswith("the scriptlet of fragile failed")
    assert backend._scriptlet_failures((DATA / "Qu.stdout").read_text(), changes) == []


def test_the_pacman_section_of_the_agent_configuration(tmp_path: Path) -> None:
    path = tmp_path / "agent.yaml"
    cfg = parse_config(
        b"pacman:\n  lock_timeout: 7\n  advisories: /var/lib/arch-security.json\n", path
    )
    assert cfg.pacman == PacmanSettings(7.0, Path("/var/lib/arch-security.json"))
    assert cfg.backend_settings("pacman") == {
        "lock_timeout_s": 7.0,
        "advisories": "/var/lib/arch-security.json",
    }
    with pytest.raises(
        ConfigError, match=r"agent\.yaml:2:3: pacman\.advisories: must be an absolute path"
    ):
        parse_config(b"pacman:\n  advisories: relative.json\n", path)
    with pytest.raises(ConfigError, match=r"pacman\.mirror: unknown setting"):
        parse_config(b"pacman:\n  mirror: x\n", path)


@pytest.fixture
def held_lock(tmp_path: Path) -> Iterator[tuple[Path, int]]:
    lock = tmp_path / "db.lck"
    holder = subprocess.Popen(
        [sys.executable, "-c", f"f = open({str(lock)!r}, 'x'); print('held', flush=True); input()"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    with holder:
        assert holder.stdout is not None
        assert holder.stdout.readline() == "held\n"
        yield lock, holder.pid
        holder.kill()


def test_the_holder_of_the_lock_is_found_by_its_open_file(held_lock: tuple[Path, int]) -> None:
    lock, pid = held_lock
    holder = lock_holder(lock)
    assert holder is not None
    assert holder.pid == pid
    assert holder.name is not None
    assert holder.name.startswith("python")


class _Clock:
    def __init__(self) -> None:
        self.now = 0.0
        self.slept: list[float] = []

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds

    def monotonic(self) -> float:
        return self.now


def test_waiting_for_a_held_lock_ends_with_the_holder_named(held_lock: tuple[Path, int]) -> None:
    lock, pid = held_lock
    clock = _Clock()
    with pytest.raises(LockHeldError, match=f"held by process {pid}") as caught:
        wait_for_lock(lock, 30, sleep=clock.sleep, monotonic=clock.monotonic)
    assert caught.value.exit_code == 75
    assert clock.now >= 30
    assert len(clock.slept) < 20  # backoff, not a busy loop
    assert lock.exists()


def test_a_lock_nobody_holds_is_reported_as_left_by_an_interrupted_run(tmp_path: Path) -> None:
    lock = tmp_path / "db.lck"
    lock.touch()
    clock = _Clock()
    with pytest.raises(BackendError, match="no process has it open"):
        wait_for_lock(lock, 5, sleep=clock.sleep, monotonic=clock.monotonic)
    assert lock.exists()  # left for the administrator, as pacman advises


def test_a_lock_that_goes_away_ends_the_wait(tmp_path: Path) -> None:
    lock = tmp_path / "db.lck"
    lock.touch()
    clock = _Clock()

    def sleep(seconds: float) -> None:
        clock.sleep(seconds)
        lock.unlink(missing_ok=True)

    wait_for_lock(lock, 60, sleep=sleep, monotonic=clock.monotonic)
    assert len(clock.slept) == 1
    wait_for_lock(tmp_path / "absent.lck", 60, sleep=clock.sleep, monotonic=clock.monotonic)
    assert len(clock.slept) == 1


def test_pacmans_version_is_asked_once_per_installed_binary(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from patchd import process

    require("pacman")
    local = tmp_path / "var/lib/pacman/local"
    local.mkdir(parents=True)
    (local / "ALPM_DB_VERSION").write_text("9\n")
    calls: list[list[str]] = []
    real_run = process.run

    def spy(argv: list[str], **kwargs: object) -> process.CommandResult:
        calls.append(list(argv))
        return real_run(argv, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(process, "run", spy)
    first = _backend(tmp_path).probe()
    asked = subprocess.run(
        ["pacman", "--version"], capture_output=True, text=True, timeout=30, check=True
    )
    assert first.status is ProbeStatus.PRESENT
    assert f"Pacman v{first.version}" in asked.stdout
    assert calls == [["pacman", "--version"]]
    second = _backend(tmp_path).probe()  # a new process would be a new backend
    assert second == first
    assert calls == [["pacman", "--version"]]
    (tmp_path / "work/pacman/version").write_text("/usr/bin/pacman:0:0\n0.1\n")  # another binary
    assert _backend(tmp_path).probe() == first
    assert len(calls) == 2


def test_a_listing_whose_scan_fails_before_collecting_it_is_stopped(tmp_path: Path) -> None:
    from patchd import process

    backend = _backend(tmp_path)
    listing = process.start(["sleep", "300"], timeout_s=600)  # as `pacman -Qu` would run
    backend._listing = listing
    (tmp_path / "var/lib/pacman/local/damaged-1.0-1").mkdir(parents=True)  # no desc file

    try:
        with pytest.raises(BackendError, match="damaged"):
            backend._list_updates()  # reading the local database while it lists fails
        assert listing.running()  # still the backend's, so the scan's clean-up can stop it
        backend.stop_scan()
        assert not listing.running()
        assert backend._listing is None
    finally:
        listing.stop()
