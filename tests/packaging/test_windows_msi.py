"""The Windows installer recipe (packaging/windows), as far as Linux can take it.

WiX, msiexec and the service control manager exist only on Windows. Here: the .wxs
parses, and every value it gives Windows — the service's name, command line, account,
start type, recovery actions, ProgramData paths and ACL — is checked against
:mod:`patchd.service.windows`, the single definition (each ``install_argvs()`` call must
be accounted for, so a new one fails this test until the installer makes it too).
"""

from __future__ import annotations

import itertools
import re
import shlex
from pathlib import Path, PureWindowsPath
from typing import Any

import defusedxml.ElementTree as SafeET
import pytest

from patchd.service.windows import (
    DESCRIPTION,
    DISPLAY_NAME,
    SERVICE_NAME,
    STOP_WAIT_HINT_S,
    WindowsPaths,
    install_argvs,
)

REPO = Path(__file__).resolve().parents[2]
WINDOWS = REPO / "packaging/windows"
NS = {"w": "http://wixtoolset.org/schemas/v4/wxs"}
STANDARD_DIRS = {
    "ProgramFiles64Folder": PureWindowsPath(r"C:\Program Files"),
    "CommonAppDataFolder": PureWindowsPath(r"C:\ProgramData"),
}
PATHS = WindowsPaths()  # the defaults: C:\Program Files\patchd, C:\ProgramData


def wxs(text: str | None = None) -> Any:
    source = (WINDOWS / "patchd.wxs").read_text() if text is None else text
    return SafeET.fromstring(source.encode())


def directories(root: Any) -> dict[str, PureWindowsPath]:
    """Every Directory id → its path on a default Windows installation."""
    found: dict[str, PureWindowsPath] = {}

    def walk(element: Any, parent: PureWindowsPath) -> None:
        for child in element.findall("w:Directory", NS):
            path = parent / child.get("Name")
            found[child.get("Id")] = path
            walk(child, path)

    for standard in root.iter(f"{{{NS['w']}}}StandardDirectory"):
        walk(standard, STANDARD_DIRS[standard.get("Id")])
    return found


def command(value: str, dirs: dict[str, PureWindowsPath]) -> list[str]:
    """A custom action's command line as argv, with MSI's [Property] references resolved."""
    lexer = shlex.shlex(value, posix=True)
    lexer.whitespace_split = True
    lexer.escape = ""  # Windows paths: a backslash is not an escape
    argv = list(lexer)
    # "[System64Folder]icacls.exe" and install_argvs()'s "icacls" are the same program.
    argv[0] = PureWindowsPath(argv[0].replace("[System64Folder]", "")).name.removesuffix(".exe")
    resolved = []
    for arg in argv:
        match = re.fullmatch(r"\[(\w+)\]\.?", arg)
        resolved.append(str(dirs[match.group(1)]) if match else arg)
    return resolved


def deferred_commands(root: Any) -> dict[str, list[str]]:
    dirs = directories(root)
    return {
        prop.get("Id"): command(prop.get("Value"), dirs)
        for prop in root.iter(f"{{{NS['w']}}}SetProperty")
        if prop.get("Id") != "WixQuietExec64CmdLine"
    }


def service_install(root: Any) -> Any:
    (element,) = root.iter(f"{{{NS['w']}}}ServiceInstall")
    return element


def unaccounted_argvs(root: Any) -> list[list[str]]:
    """install_argvs() calls the .wxs neither declares nor runs; [] when it agrees."""
    service = service_install(root)
    dirs = directories(root)
    (python_exe,) = [f for f in root.iter(f"{{{NS['w']}}}File") if f.get("Id") == "PythonExe"]
    component = next(
        c for c in root.iter(f"{{{NS['w']}}}Component") if c.find("w:File", NS) is python_exe
    )
    exe = dirs[component.get("Directory")] / PureWindowsPath(python_exe.get("Source")).name
    commands = list(deferred_commands(root).values())
    missing = []
    for argv in install_argvs(PATHS):
        options = dict(zip(argv[3::2], argv[4::2], strict=False))
        if argv[:2] == ["sc.exe", "create"]:
            declared = (
                service.get("Name") == argv[2]
                and f'"{exe}" {service.get("Arguments")}' == options["binPath="]
                and service.get("DisplayName") == options["DisplayName="]
                and service.get("Account") == options["obj="]
                and service.get("Start") == "auto"
                and ["sc", "config", argv[2], "start=", options["start="]] in commands
            )
        elif argv[:2] == ["sc.exe", "description"]:
            declared = service.get("Description") == argv[3]
        else:
            declared = [argv[0].removesuffix(".exe"), *argv[1:]] in commands
        if not declared:
            missing.append(argv)
    return missing


def test_wxs_is_wix_v4_schema_xml() -> None:
    root = wxs()
    assert root.tag == f"{{{NS['w']}}}Wix"
    package = root.find("w:Package", NS)
    assert package is not None
    assert package.get("Scope") == "perMachine"
    assert re.fullmatch(r"[0-9A-F]{8}(-[0-9A-F]{4}){3}-[0-9A-F]{12}", package.get("UpgradeCode"))
    assert package.find("w:MajorUpgrade", NS) is not None


def test_every_install_argv_is_made_by_the_installer() -> None:
    assert unaccounted_argvs(wxs()) == []


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("restart/60000/", "restart/90000/"),
        ('Account="LocalSystem"', 'Account="NT AUTHORITY\\LocalService"'),
        ("*S-1-5-32-544:(OI)(CI)F", "*S-1-5-32-545:(OI)(CI)F"),
        ('Name="python"', 'Name="py"'),
        ("config patchd-agent start= delayed-auto", "config patchd-agent start= auto"),
    ],
    ids=["recovery-delay", "account", "acl", "python-dir", "start-type"],
)
def test_a_drifted_value_is_caught(old: str, new: str) -> None:
    """The agreement check can fail: each of these edits breaks one install_argvs() call."""
    text = (WINDOWS / "patchd.wxs").read_text()
    assert old in text
    assert unaccounted_argvs(wxs(text.replace(old, new, 1))) != []


def test_service_identity_matches_the_host() -> None:
    service = service_install(wxs())
    assert service.get("Name") == SERVICE_NAME
    assert service.get("DisplayName") == DISPLAY_NAME
    assert service.get("Description") == DESCRIPTION
    assert service.get("Arguments") == "-m patchd.service.winhost"
    (control,) = wxs().iter(f"{{{NS['w']}}}ServiceControl")
    assert control.get("Name") == SERVICE_NAME
    assert (control.get("Stop"), control.get("Remove")) == ("both", "uninstall")


def test_programdata_layout_is_the_services() -> None:
    root = wxs()
    dirs = directories(root)
    assert dirs["INSTALLDIR"] == PATHS.install_dir
    assert dirs["DATADIR"] == PATHS.data_dir
    assert dirs["STATEDIR"] == PATHS.state_dir
    assert dirs["LOGDIR"] == PATHS.log_dir
    (config,) = [f for f in root.iter(f"{{{NS['w']}}}File") if f.get("Id") == "AgentYaml"]
    component = next(
        c for c in root.iter(f"{{{NS['w']}}}Component") if c.get("Id") == "Configuration"
    )
    assert (
        dirs[component.get("Directory")] / PureWindowsPath(config.get("Source")).name
        == PATHS.config
    )
    # The administrator's configuration survives upgrades and uninstalls.
    assert (component.get("NeverOverwrite"), component.get("Permanent")) == ("yes", "yes")


def test_custom_actions_run_as_system_after_the_service_exists() -> None:
    root = wxs()
    actions = {a.get("Id"): a for a in root.iter(f"{{{NS['w']}}}CustomAction")}
    sequence = {c.get("Action"): c for c in root.iter(f"{{{NS['w']}}}Custom")}
    for name in deferred_commands(root):
        assert actions[name].get("Execute") == "deferred", name
        assert actions[name].get("Impersonate") == "no", name
        assert actions[name].get("Return") == "check", name
        assert sequence[name].get("Condition") == 'NOT REMOVE~="ALL"', name
    # Chained after InstallServices, in install_argvs() order, before StartServices.
    chain = ["ServiceStartDelayed", "ServiceRecovery", "ServiceRecoveryOnError", "DataDirAcl"]
    assert sequence[chain[0]].get("After") == "InstallServices"
    for before, after in itertools.pairwise(chain):
        assert sequence[after].get("After") == before


def test_upgrade_and_uninstall_wait_for_the_agent_first() -> None:
    root = wxs()
    (wait,) = [
        c for c in root.iter(f"{{{NS['w']}}}Custom") if c.get("Action") == "WaitForAgentStop"
    ]
    assert wait.get("Before") == "InstallValidate"
    assert "WIX_UPGRADE_DETECTED" in wait.get("Condition")
    assert 'REMOVE~="ALL"' in wait.get("Condition")
    (upgrade,) = root.iter(f"{{{NS['w']}}}MajorUpgrade")
    assert upgrade.get("Schedule") == "afterInstallValidate"  # the old product goes after the wait
    script = (WINDOWS / "wait-agent-stop.ps1").read_text()
    assert re.findall(r"-Name '([^']+)'", script) == [SERVICE_NAME]
    assert f"Name='{SERVICE_NAME}'" in script
    assert [int(s) for s in re.findall(r"New-TimeSpan -Seconds (\d+)", script)] == [
        STOP_WAIT_HINT_S
    ]


def test_build_script_stages_what_the_wxs_names() -> None:
    script = (WINDOWS / "build.ps1").read_text()
    assert "'^windows-amd64\\s'" in script  # reads its pin from packaging/python-pins
    assert "Get-FileHash" in script
    for variable in ("Version", "StageDir", "WaitStopCommand"):
        assert f'"{variable}=$' in script, variable
        assert f"$(var.{variable})" in (WINDOWS / "patchd.wxs").read_text(), variable
    # The configuration it ships is the one patchd service install lays down.
    assert "'patchd\\service\\files\\agent.yaml'" in script
    assert (REPO / "patchd/service/files/agent.yaml").is_file()
