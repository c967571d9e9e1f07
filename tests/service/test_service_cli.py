"""``patchd service install|uninstall|status`` through the real command, in throwaway roots.

Each root starts as a small system skeleton (the directories a real system has, one unit
already enabled), so "uninstall leaves the root as it was" is checked against something
realistic. Only ``systemctl --root`` (offline) runs: nothing on the host changes.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import replace
from pathlib import Path

import pytest

from patchd.config import load_config
from patchd.service.layout import AGENT_UNIT, COLLECTOR_UNIT, service_file
from tests.conftest import CliResult, require, run_patchd

Snapshot = dict[str, tuple[str, int, int, int, str]]


def snapshot(root: Path) -> Snapshot:
    """Every path under ``root``: kind, mode, owner, group and content (or link target)."""
    found: Snapshot = {}
    for path in [root, *sorted(root.rglob("*"))]:
        st = path.lstat()
        if path.is_symlink():
            kind, content = "link", os.readlink(path)
        elif path.is_dir():
            kind, content = "dir", ""
        else:
            kind, content = "file", hashlib.sha256(path.read_bytes()).hexdigest()
        found[str(path.relative_to(root))] = (
            kind,
            st.st_mode & 0o7777,
            st.st_uid,
            st.st_gid,
            content,
        )
    return found


@pytest.fixture
def system_root(tmp_path: Path) -> Path:
    """A skeleton of an installed system: etc, var/lib, var/log and one enabled unit."""
    require("systemctl")
    root = tmp_path / "root"
    units = root / "etc/systemd/system"
    (units / "multi-user.target.wants").mkdir(parents=True)
    (units / "other.service").write_text(
        "[Service]\nExecStart=/bin/true\n[Install]\nWantedBy=multi-user.target\n"
    )
    (units / "multi-user.target.wants/other.service").symlink_to(
        "/etc/systemd/system/other.service"
    )
    for directory in ("var/lib", "var/log", "opt"):
        (root / directory).mkdir(parents=True)
    return root


def service(root: Path, *args: str) -> CliResult:
    return run_patchd(["--root", str(root), "service", *args])


def test_install_lays_down_unit_config_and_directories(system_root: Path) -> None:
    result = service(system_root, "install", "--json")
    assert result.returncode == 0, result.stderr
    expected = {
        "etc/patchd": ("dir", 0o755),
        "etc/patchd/agent.yaml": ("file", 0o644),
        "var/lib/patchd": ("dir", 0o700),
        "var/lib/patchd/keys": ("dir", 0o700),
        "var/log/patchd": ("dir", 0o750),
        f"etc/systemd/system/{AGENT_UNIT}": ("file", 0o644),
    }
    after = snapshot(system_root)
    for path, (kind, mode) in expected.items():
        assert after[path][:4] == (kind, mode, 0, 0), path
    assert (system_root / "etc/systemd/system" / AGENT_UNIT).read_text() == service_file(AGENT_UNIT)
    wants = system_root / "etc/systemd/system/multi-user.target.wants" / AGENT_UNIT
    assert os.readlink(wants) == f"/etc/systemd/system/{AGENT_UNIT}"
    assert result.json()["commands"] == [
        ["systemctl", f"--root={system_root}", "enable", AGENT_UNIT]
    ]
    assert [c["action"] for c in result.json()["changes"]] == ["created"] * len(expected)


def test_installed_configuration_means_the_built_in_defaults(
    system_root: Path, tmp_path: Path
) -> None:
    assert service(system_root, "install").returncode == 0
    empty = tmp_path / "empty.yaml"
    empty.write_text("{}\n")
    installed = load_config(system_root / "etc/patchd/agent.yaml")
    assert replace(installed, source=empty) == load_config(empty)


def test_install_twice_changes_nothing(system_root: Path) -> None:
    assert service(system_root, "install").returncode == 0
    before = snapshot(system_root)
    again = service(system_root, "install", "--json")
    assert again.returncode == 0
    assert {c["action"] for c in again.json()["changes"]} == {"unchanged", "kept"}
    assert snapshot(system_root) == before


def test_install_replaces_an_outdated_unit_but_keeps_the_configuration(system_root: Path) -> None:
    assert service(system_root, "install").returncode == 0
    unit = system_root / "etc/systemd/system" / AGENT_UNIT
    config = system_root / "etc/patchd/agent.yaml"
    unit.write_text("[Service]\nExecStart=/old/patchd agent\n")
    config.write_text("tags: [edited]\n")
    assert service(system_root, "status", "--json").json()["installed"] == "outdated"
    assert service(system_root, "install").returncode == 0
    assert unit.read_text() == service_file(AGENT_UNIT)
    assert config.read_text() == "tags: [edited]\n"


@pytest.mark.parametrize("collector", [False, True], ids=["agent", "collector"])
def test_uninstall_leaves_the_root_as_it_was(system_root: Path, collector: bool) -> None:
    flag = ["--collector"] if collector else []
    before = snapshot(system_root)
    assert service(system_root, "install", *flag).returncode == 0
    assert snapshot(system_root) != before
    result = service(system_root, "uninstall", *flag)
    assert result.returncode == 0, result.stderr
    assert snapshot(system_root) == before


def test_uninstall_keeps_state_and_an_edited_configuration(system_root: Path) -> None:
    assert service(system_root, "install").returncode == 0
    (system_root / "var/lib/patchd/patchd.db").write_bytes(b"runs")
    (system_root / "etc/patchd/agent.yaml").write_text("tags: [edited]\n")
    result = service(system_root, "uninstall", "--json")
    assert result.returncode == 0
    kept = {
        Path(c["path"]).relative_to(system_root).as_posix(): c["why"]
        for c in result.json()["changes"]
        if c["action"] == "kept"
    }
    assert kept == {
        "var/lib/patchd": "not empty",
        "etc/patchd/agent.yaml": "changed since installed",
        "etc/patchd": "not empty",
    }
    assert not (system_root / "etc/systemd/system" / AGENT_UNIT).exists()
    assert (system_root / "var/lib/patchd/patchd.db").read_bytes() == b"runs"


def test_collector_install_makes_a_secret_admin_token(system_root: Path) -> None:
    assert service(system_root, "install", "--collector").returncode == 0
    token = system_root / "etc/patchd-collector/admin-token"
    assert token.stat().st_mode & 0o7777 == 0o600
    assert len(token.read_text().strip()) >= 40
    first = token.read_text()
    token.chmod(0o644)
    assert service(system_root, "install", "--collector").returncode == 0
    assert token.read_text() == first  # never replaced
    assert token.stat().st_mode & 0o7777 == 0o600  # but never left readable by others
    assert (system_root / "etc/systemd/system" / COLLECTOR_UNIT).is_file()


def test_status_says_installed_enabled_running(system_root: Path) -> None:
    absent = service(system_root, "status", "--json")
    assert absent.returncode == 0
    assert absent.json() | {"definition": ""} == {
        "schema_version": 1,
        "unit": AGENT_UNIT,
        "manager": "systemd",
        "definition": "",
        "installed": "absent",
        "enabled": False,
        "running": False,
    }
    assert service(system_root, "install").returncode == 0
    present = service(system_root, "status", "--json").json()
    assert (present["installed"], present["enabled"], present["running"]) == (
        "installed",
        True,
        None,
    )
    text = service(system_root, "status")
    assert "installed: installed" in text.stdout
    assert "enabled:   yes" in text.stdout
    assert "running:   unknown (not the running system)" in text.stdout


def test_launchd_layout_in_a_root_runs_no_launchctl(tmp_path: Path) -> None:
    root = tmp_path / "mac"
    root.mkdir()
    result = service(root, "install", "--manager", "launchd", "--json")
    assert result.returncode == 0, result.stderr
    assert result.json()["commands"] == []
    plist = root / "Library/LaunchDaemons/org.patchd.agent.plist"
    assert plist.stat().st_mode & 0o7777 == 0o644
    assert (root / "Library/Logs/patchd").is_dir()
    assert service(root, "uninstall", "--manager", "launchd").returncode == 0
    assert not plist.exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["install", "--manager", "windows"],
            "the Windows service is installed by the Windows installer",
        ),
        (
            ["install", "--manager", "launchd", "--collector"],
            "the collector runs under systemd only",
        ),
        (["install", "--manager", "upstart"], "invalid choice"),
    ],
    ids=["windows", "launchd-collector", "unknown-manager"],
)
def test_bad_input_is_one_line_and_changes_nothing(
    system_root: Path, args: list[str], message: str
) -> None:
    before = snapshot(system_root)
    result = service(system_root, *args)
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    assert snapshot(system_root) == before


def test_a_symlink_in_the_way_is_refused_before_any_change(
    system_root: Path, tmp_path: Path
) -> None:
    elsewhere = tmp_path / "elsewhere.service"
    (system_root / "etc/systemd/system" / AGENT_UNIT).symlink_to(elsewhere)
    before = snapshot(system_root)
    result = service(system_root, "install")
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert "is a symbolic link; patchd will not write through it" in lines[0]
    assert snapshot(system_root) == before
    assert not elsewhere.exists()


def test_missing_root_is_a_usage_error(tmp_path: Path) -> None:
    result = service(tmp_path / "nowhere", "install")
    assert result.returncode == 2
    assert (
        result.stderr.strip() == f"patchd: error: --root {tmp_path / 'nowhere'}: no such directory"
    )
