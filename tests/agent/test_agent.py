"""``patchd agent`` for real: a subprocess on a real apt root, talking sd_notify to a socket
the test binds, picking up a newly signed policy, reloading on SIGHUP, stopping on SIGTERM."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import CLI_TIMEOUT_S, run_patchd
from tests.support.aptroot import AptRoot

WAIT_S = 120.0  # generous bound for each awaited event; tests never assert durations


def _stamp(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def _policy(version: int) -> dict[str, Any]:
    now = datetime.now(UTC).replace(microsecond=0)
    return {
        "version": version,
        "name": "agent-test",
        "issued_at": _stamp(now - timedelta(hours=1)),
        "expires": _stamp(now + timedelta(days=30)),
        "segments": [{"name": "everyone"}],
        "rings": [{"name": "all", "members": {"percentage": 100}, "deferrals": {"default": "30d"}}],
        "rules": [{"action": "auto"}],
        # Version 2 makes hello's security update due at once.
        "emergency": [{"name": "hello-now", "packages": [{"name": "hello", "version": "1.1"}]}]
        if version > 1
        else [],
    }


class NotifySocket:
    """The socket systemd would listen on; collects every notification the agent sends."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._sock.bind(str(path))
        self._sock.settimeout(WAIT_S)
        self.messages: list[dict[str, str]] = []

    def wait_for(
        self, key: str, value: str | None = None, contains: str | None = None
    ) -> dict[str, str]:
        """The first notification (from now, or already received) with ``key`` (and value)."""
        for message in self.messages:
            if self._matches(message, key, value, contains):
                self.messages.remove(message)
                return message
        while True:
            data = self._sock.recv(65536)  # raises TimeoutError after WAIT_S: the test fails
            message = dict(line.split("=", 1) for line in data.decode().splitlines() if "=" in line)
            if self._matches(message, key, value, contains):
                return message
            self.messages.append(message)

    @staticmethod
    def _matches(
        message: dict[str, str], key: str, value: str | None, contains: str | None
    ) -> bool:
        if key not in message:
            return False
        return (value is None or message[key] == value) and (
            contains is None or contains in message[key]
        )

    def close(self) -> None:
        self._sock.close()


class StderrLines:
    """Reads the agent's standard error in a thread; lets the test wait for a line."""

    def __init__(self, stream: Any) -> None:
        self.lines: list[str] = []
        self._changed = threading.Condition()
        self._stream = stream
        self._thread = threading.Thread(target=self._read, args=(stream,), daemon=True)
        self._thread.start()

    def _read(self, stream: Any) -> None:
        for line in stream:
            with self._changed:
                self.lines.append(line.rstrip("\n"))
                self._changed.notify_all()

    def join(self) -> None:
        """Wait for the reader to reach the end of the stream, then close it."""
        self._thread.join(timeout=WAIT_S)
        self._stream.close()

    def wait_for(self, fragment: str) -> str:
        with self._changed:
            found = self._changed.wait_for(
                lambda: any(fragment in line for line in self.lines), timeout=WAIT_S
            )
        assert found, f"no line with {fragment!r} in:\n" + "\n".join(self.lines)
        return next(line for line in self.lines if fragment in line)


@pytest.fixture
def setup(tmp_path: Path, apt_root: AptRoot) -> dict[str, Path]:
    admins = tmp_path / "admins"
    admins.mkdir()
    for name in ("alice", "bob"):
        assert run_patchd(["key", "generate", "--out", str(admins / name)]).returncode == 0
    root = admins / "root.json"
    assert run_patchd(["trust", "init", "--key", str(admins / "alice.pub"), "--key", str(admins / "bob.pub"),
                       "--threshold", "2", "--out", str(root)]).returncode == 0  # fmt: skip
    policy_dir = tmp_path / "policy"
    policy_dir.mkdir()
    config = tmp_path / "agent.yaml"
    config.write_text(yaml.safe_dump({
        "policy": {"file": str(policy_dir / "policy.yaml"), "trust_root": str(root)},
        "agent": {"scan_interval": "1h", "refresh": False},
        "apt": {"lock_timeout": 30},
    }))  # fmt: skip
    return {"admins": admins, "policy": policy_dir / "policy.yaml", "config": config,
            "state": tmp_path / "state", "root": apt_root.path}  # fmt: skip


def _signed(setup: dict[str, Path], version: int) -> Path:
    """A policy version signed with both keys, staged (its signatures in ``.sig`` beside it)."""
    staging = setup["admins"] / f"policy-v{version}.yaml"
    staging.write_text(yaml.safe_dump(_policy(version)))
    for name in ("alice", "bob"):
        result = run_patchd(
            ["policy", "sign", str(staging), "--key", str(setup["admins"] / f"{name}.key")]
        )
        assert result.returncode == 0, result.stderr
    return staging


def _place(staging: Path, target: Path) -> None:
    """Put a staged policy in place as an admin would: .sig first."""
    os.replace(staging.with_name(staging.name + ".sig"), target.with_name(target.name + ".sig"))
    os.replace(staging, target)


def publish(setup: dict[str, Path], version: int) -> None:
    _place(_signed(setup, version), setup["policy"])


@pytest.fixture
def agent(
    setup: dict[str, Path], tmp_path: Path
) -> Iterator[tuple[subprocess.Popen[str], NotifySocket, StderrLines]]:
    publish(setup, 1)
    with _running_agent(setup, tmp_path) as running:
        yield running


@contextlib.contextmanager
def _running_agent(
    setup: dict[str, Path], tmp_path: Path
) -> Iterator[tuple[subprocess.Popen[str], NotifySocket, StderrLines]]:
    notify = NotifySocket(tmp_path / "notify.sock")
    env = {k: v for k, v in os.environ.items() if k not in ("PATCHD_CONFIG", "JOURNAL_STREAM")}
    env["NOTIFY_SOCKET"] = str(notify.path)
    proc = subprocess.Popen(
        [sys.executable, "-m", "patchd", "--config", str(setup["config"]), "--root", str(setup["root"]),
         "--state-dir", str(setup["state"]), "agent"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    lines = StderrLines(proc.stderr)
    try:
        yield proc, notify, lines
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=CLI_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        lines.join()
        notify.close()


def _status(setup: dict[str, Path]) -> dict[str, Any]:
    result = run_patchd(["--config", str(setup["config"]), "--root", str(setup["root"]), "--state-dir",
                         str(setup["state"]), "status", "--json"])  # fmt: skip
    assert result.returncode == 0, result.stderr
    document: dict[str, Any] = result.json()
    return document


def test_agent_lifecycle(
    agent: tuple[subprocess.Popen[str], NotifySocket, StderrLines],
    setup: dict[str, Path],
    apt_root: AptRoot,
) -> None:
    proc, notify, lines = agent
    ready = notify.wait_for("READY", "1")
    assert ready["MAINPID"] == str(proc.pid)
    assert "policy agent-test v1 active" in ready["STATUS"]
    # The first cycle scans; version 1 defers everything by 30 days: nothing changes.
    lines.wait_for("next change due at")
    assert apt_root.versions()["hello"] == "1.0"
    # A second agent on the same state directory is refused.
    second = run_patchd(["--config", str(setup["config"]), "--root", str(setup["root"]), "--state-dir",
                         str(setup["state"]), "agent", "--once"])  # fmt: skip
    assert second.returncode == 75
    assert f"another patchd agent (pid {proc.pid})" in second.stderr
    # A newly signed version, dropped in place, is picked up and enforced at once.
    publish(setup, 2)
    lines.wait_for("policy version 2")
    lines.wait_for(": succeeded")  # the agent logs each run and its verdict
    assert apt_root.versions()["hello"] == "1.1"
    status = _status(setup)
    assert status["policy"]["version"] == 2
    assert status["runs"][0]["status"] == "succeeded"
    transcript = setup["state"] / "runs" / status["runs"][0]["id"] / "transcript.log"
    assert "Setting up hello (1.1)" in transcript.read_text()
    # SIGHUP reloads; SIGTERM stops cleanly.
    proc.send_signal(signal.SIGHUP)
    notify.wait_for("RELOADING", "1")
    # The reload ends with READY=1: until then systemd holds the unit in "reloading".
    assert "policy agent-test v2 active" in notify.wait_for("READY", "1")["STATUS"]
    proc.send_signal(signal.SIGTERM)
    notify.wait_for("STOPPING", "1")
    assert proc.wait(timeout=CLI_TIMEOUT_S) == 0
    lines.wait_for("agent stopped")


def test_without_a_policy_the_agent_only_scans(setup: dict[str, Path], apt_root: AptRoot) -> None:
    config = setup["config"]
    config.write_text("agent: {refresh: false}\n")
    before = apt_root.status_bytes()
    result = run_patchd(["--config", str(config), "--root", str(setup["root"]), "--state-dir", str(setup["state"]),
                         "agent", "--once"])  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert apt_root.status_bytes() == before
    status = _status(setup)
    assert status["last_scan"]["pending"] == 8
    assert status["runs"] == []
    assert status["policy"]["state"] == "none"


def test_each_cycle_prunes_the_history_once_a_day(setup: dict[str, Path]) -> None:
    from patchd.models import PackageChange
    from patchd.runs.retention import MIN_RUNS_KEPT
    from patchd.state.store import StateStore

    setup["config"].write_text("agent: {refresh: false}\nretention: {history: 30d}\n")
    long_ago = datetime(2020, 1, 1, tzinfo=UTC)
    change = PackageChange("apt", "hello", "all", "1.0", "1.1")
    with StateStore.open(setup["state"]) as store:
        recorded = []
        for n in range(MIN_RUNS_KEPT + 1):  # the newest MIN_RUNS_KEPT stay whatever their age
            run_id = store.create_run("apply", [(change, None)], long_ago + timedelta(days=n))
            store.finish_run(run_id, "succeeded", [], long_ago + timedelta(days=n))
            recorded.append(run_id)
    old = recorded[0]
    (setup["state"] / "runs" / old).mkdir(parents=True)
    once = ["--config", str(setup["config"]), "--root", str(setup["root"]), "--state-dir",
            str(setup["state"]), "agent", "--once"]  # fmt: skip
    result = run_patchd(once)
    assert result.returncode == 0, result.stderr
    assert "history pruned: removed 1 run(s)" in result.stderr
    assert not (setup["state"] / "runs" / old).exists()
    with StateStore.open(setup["state"]) as store:
        assert {r.id for r in store.list_runs(100)} == set(recorded[1:])
        (pruned_at,) = store.query("SELECT last_pruned_at FROM housekeeping")[0]
    assert pruned_at is not None
    again = run_patchd(once)  # the same day: not again
    assert again.returncode == 0, again.stderr
    assert "history pruned" not in again.stderr
    with StateStore.open(setup["state"]) as store:
        assert store.query("SELECT last_pruned_at FROM housekeeping")[0] == (pruned_at,)


def test_a_policy_swapped_in_without_a_file_event_is_read(
    setup: dict[str, Path], tmp_path: Path, apt_root: AptRoot
) -> None:
    """A ``..data`` symlink swap (how Kubernetes updates a mounted ConfigMap, and how some
    configuration tools replace a directory) renames no file the watcher looks at; the
    periodic recheck of the file's metadata (``policy.file_recheck``) still finds it."""
    mounted = tmp_path / "mounted"
    mounted.mkdir()
    for version in (1, 2):
        (mounted / f"..v{version}").mkdir()
        _place(_signed(setup, version), mounted / f"..v{version}" / "policy.yaml")
    (mounted / "..data").symlink_to("..v1")
    for name in ("policy.yaml", "policy.yaml.sig"):
        (mounted / name).symlink_to(f"..data/{name}")
    config = yaml.safe_load(setup["config"].read_text())
    config["policy"].update({"file": str(mounted / "policy.yaml"), "file_recheck": 1})
    setup["config"].write_text(yaml.safe_dump(config))
    with _running_agent(setup, tmp_path) as (_, notify, lines):
        assert "policy agent-test v1 active" in notify.wait_for("READY", "1")["STATUS"]
        lines.wait_for("next change due at")  # the first cycle: v1 defers everything
        assert apt_root.versions()["hello"] == "1.0"
        swap = mounted / "..data_tmp"
        swap.symlink_to("..v2")
        os.replace(swap, mounted / "..data")
        lines.wait_for("changed without a file event")
        lines.wait_for("policy version 2")
        lines.wait_for(": succeeded")
        assert apt_root.versions()["hello"] == "1.1"
