"""The service definitions: systemd units lint clean, the plist loads, the settings that matter.

``systemd-analyze verify`` needs ExecStart's program to exist, so each unit is verified
from a copy in a temporary directory whose only change is ExecStart's path: the packaged
``/opt/patchd/bin/patchd`` becomes a stub script in that directory.
"""

from __future__ import annotations

import plistlib
import subprocess
from pathlib import Path
from xml.parsers.expat import ExpatError

import pytest

from patchd import process
from patchd.backends.apt.backend import INSTALL_TIMEOUT_S
from patchd.service.layout import AGENT_UNIT, COLLECTOR_UNIT, LAUNCHD_LABEL, service_file
from tests.conftest import require

REPO = Path(__file__).resolve().parents[2]
PACKAGED_EXEC = "/opt/patchd/bin/patchd"
VERIFY_TIMEOUT_S = 120


def unit_settings(text: str) -> dict[str, list[str]]:
    """``Key=value`` lines of a unit, every value of a repeated key, sections ignored."""
    settings: dict[str, list[str]] = {}
    for line in text.splitlines():
        if line and not line.startswith(("#", "[")):
            key, _, value = line.partition("=")
            settings.setdefault(key, []).append(value)
    return settings


def verify(unit_text: str, name: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    stub = tmp_path / "patchd"
    stub.write_text("#!/bin/sh\nexit 0\n")
    stub.chmod(0o755)
    unit = tmp_path / name
    unit.write_text(unit_text.replace(PACKAGED_EXEC, str(stub)))
    return subprocess.run(
        ["systemd-analyze", "verify", "--man=no", str(unit)],
        capture_output=True,
        text=True,
        timeout=VERIFY_TIMEOUT_S,
        check=False,
    )


@pytest.mark.parametrize("name", [AGENT_UNIT, COLLECTOR_UNIT])
def test_unit_verifies_without_a_warning(name: str, tmp_path: Path) -> None:
    require("systemd-analyze")
    text = service_file(name)
    assert PACKAGED_EXEC in text  # the stub replaces exactly this path
    result = verify(text, name, tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    assert result.stdout == ""


def test_verify_catches_an_unknown_key(tmp_path: Path) -> None:
    """The check above can fail: a misspelt key is only a warning, with exit status 0."""
    require("systemd-analyze")
    text = service_file(AGENT_UNIT).replace("KillMode=mixed", "KillMod=mixed")
    result = verify(text, AGENT_UNIT, tmp_path)
    assert "KillMod" in result.stderr


def seconds(span: str) -> float:
    units = {"s": 1, "min": 60, "h": 3600}
    number = span.rstrip("abcdefghijklmnopqrstuvwxyz")
    return float(number) * units[span[len(number) :]]


def test_agent_unit_is_a_notify_service_that_never_cuts_a_transaction() -> None:
    settings = unit_settings(service_file(AGENT_UNIT))
    assert settings["Type"] == ["notify"]
    assert settings["ExecStart"] == [f"{PACKAGED_EXEC} agent"]
    assert settings["ExecReload"] == ["/bin/systemctl kill --kill-who=main --signal=SIGHUP %n"]
    assert settings["Restart"] == ["always"]
    assert settings["KillMode"] == ["mixed"]
    assert seconds(settings["WatchdogSec"][0]) > 0
    assert seconds(settings["TimeoutStopSec"][0]) > INSTALL_TIMEOUT_S


@pytest.mark.parametrize(
    "option",
    [
        "ProtectSystem",
        "ProtectHome",
        "PrivateTmp",
        "PrivateDevices",
        "NoNewPrivileges",
        "CapabilityBoundingSet",
        "SystemCallFilter",
        "RestrictAddressFamilies",
        "DynamicUser",
        "User",
        "ReadOnlyPaths",
        "ProtectKernelModules",
    ],
)
def test_agent_unit_has_no_sandboxing_that_breaks_package_managers(option: str) -> None:
    assert option not in unit_settings(service_file(AGENT_UNIT))


def test_collector_unit_is_unprivileged_and_hardened() -> None:
    settings = unit_settings(service_file(COLLECTOR_UNIT))
    expected = {
        "DynamicUser": ["yes"],
        "StateDirectory": ["patchd-collector"],
        "ProtectSystem": ["strict"],
        "ProtectHome": ["yes"],
        "PrivateTmp": ["yes"],
        "NoNewPrivileges": ["yes"],
        "CapabilityBoundingSet": [""],
        "RestrictAddressFamilies": ["AF_INET AF_INET6 AF_UNIX"],
    }
    for key, value in expected.items():
        assert settings[key] == value, key
    assert "@system-service" in settings["SystemCallFilter"]
    credential = settings["LoadCredential"][0]
    assert credential == "admin-token:/etc/patchd-collector/admin-token"
    assert "--admin-token-file ${CREDENTIALS_DIRECTORY}/admin-token" in settings["ExecStart"][0]


def test_plist_loads_with_the_keys_launchd_needs() -> None:
    with (REPO / "packaging/launchd/org.patchd.agent.plist").open("rb") as f:
        plist = plistlib.load(f)
    assert plist["Label"] == LAUNCHD_LABEL
    assert plist["ProgramArguments"] == [PACKAGED_EXEC, "agent"]
    assert plist["RunAtLoad"] is True
    assert plist["KeepAlive"] is True
    assert plist["StandardErrorPath"].startswith("/Library/Logs/patchd/")
    agent = unit_settings(service_file(AGENT_UNIT))
    assert plist["ExitTimeOut"] == seconds(agent["TimeoutStopSec"][0])  # same stop budget


def test_malformed_plist_is_refused(tmp_path: Path) -> None:
    """plistlib is a real check: a truncated plist does not load."""
    broken = service_file(f"{LAUNCHD_LABEL}.plist").replace("</dict>\n</plist>", "")
    with pytest.raises((plistlib.InvalidFileException, ExpatError)):
        plistlib.loads(broken.encode())


@pytest.mark.parametrize(
    "path",
    [
        "packaging/systemd/patchd-agent.service",
        "packaging/systemd/patchd-collector.service",
        "packaging/launchd/org.patchd.agent.plist",
    ],
)
def test_packaging_files_are_the_installed_ones(path: str) -> None:
    """packaging/ links to the package data patchd service install lays down."""
    assert (REPO / path).read_text() == service_file(Path(path).name)


def test_package_managers_run_in_a_session_of_their_own() -> None:
    """Why KillMode=mixed is safe: no signal meant for the agent's group reaches them.

    The gateway starts every command as the leader of a new session and process group.
    """
    code = "import os; print(os.getsid(0) == os.getpid(), os.getpgid(0) == os.getpid())"
    result = process.run(["python3", "-c", code], timeout_s=60)
    assert result.stdout.split() == ["True", "True"]
