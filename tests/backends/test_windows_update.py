"""The Windows Update backend: wua.ps1's argv, its JSON, classification and verdicts.

The script cannot run here; its JSON in tests/data/windows-update/ is composed in the
script's format with values from a real Windows Update Agent listing (PROVENANCE.md
there says exactly which). The process gateway is a recording fake.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from patchd.backends import backend_class
from patchd.backends.base import Outcome, ProbeStatus
from patchd.backends.windows_update.backend import WindowsUpdateBackend
from patchd.backends.windows_update.wua import (
    SCRIPT,
    classify,
    parse_operation,
    parse_reboot_state,
    parse_updates,
    script_argv,
    split_version,
)
from patchd.errors import BackendError
from patchd.models import Classification, PackageChange, Severity
from patchd.transcript import Transcript
from tests.backends.gateway import (
    Answer,
    FakeGateway,
    captured,
    context,
    install_gateway,
    install_tool,
    make_tool_dir,
)

PS = (
    "powershell.exe",
    "-NoProfile",
    "-NonInteractive",
    "-ExecutionPolicy",
    "Bypass",
    "-File",
    str(SCRIPT),
    "-Action",
)
CU = "0c7eb702-e48b-48da-8ef8-e984aa6cb0b8:1"
SSU = "83d7bc64-ff39-4073-9d77-02102226aff6:1"


@pytest.fixture
def gateway(monkeypatch: pytest.MonkeyPatch) -> FakeGateway:
    return install_gateway(monkeypatch)


@pytest.fixture
def windows(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, gateway: FakeGateway
) -> WindowsUpdateBackend:
    install_tool(make_tool_dir(tmp_path, monkeypatch), "powershell.exe")
    gateway.answers[(*PS, "probe")] = captured("windows-update", "probe.json")
    gateway.answers[(*PS, "search")] = captured("windows-update", "search.json")
    return WindowsUpdateBackend(context(tmp_path, "win32"))


def test_the_script_ships_with_the_package_and_runs_with_a_fixed_argv() -> None:
    assert SCRIPT.is_file()
    text = SCRIPT.read_text()
    assert "IsInstalled=0 and Type='Software' and IsHidden=0" in text
    assert script_argv("install", (CU, SSU)) == [*PS, "install", "-Updates", f"{CU},{SSU}"]
    assert script_argv("search") == [*PS, "search"]


@pytest.mark.parametrize(
    "bad",
    [
        pytest.param("KB5034441", id="kb-not-id"),
        pytest.param("0c7eb702-e48b-48da-8ef8-e984aa6cb0b8", id="no-revision"),
        pytest.param("0c7eb702-e48b-48da-8ef8-e984aa6cb0b8:1;Remove-Item C:\\", id="injection"),
        pytest.param("0c7eb702-e48b-48da-8ef8-e984aa6cb0b8:x", id="revision-not-number"),
    ],
)
def test_only_update_ids_reach_the_script(bad: str) -> None:
    with pytest.raises(BackendError, match="not a Windows Update version"):
        script_argv("install", (bad,))
    with pytest.raises(BackendError):
        split_version(bad)


def test_search_json_is_parsed_with_classification_severity_and_reboot() -> None:
    ssu, cu = parse_updates(captured("windows-update", "search.json"))
    assert (cu.name, cu.version) == ("KB4519998", CU)
    assert cu.classification is Classification.SECURITY
    assert cu.severity is Severity.CRITICAL
    assert cu.cves == ()  # the real listing's CveIDs were empty, as WUA often leaves them
    assert (cu.may_restart, ssu.may_restart) == (True, False)
    assert (cu.uninstallable, ssu.uninstallable) == (True, False)
    assert ssu.size_bytes == int(11.6 * 1024 * 1024)


@pytest.mark.parametrize(
    ("categories", "expected"),
    [
        pytest.param([{"id": "0FA1201D-4330-4FA8-8AE9-B877473B6441", "name": "Sicherheitsupdates", "type": "UpdateClassification"}], Classification.SECURITY, id="security-by-id-in-german"),
        pytest.param([{"id": "", "name": "Critical Updates", "type": "UpdateClassification"}], Classification.BUGFIX, id="critical-by-name"),
        pytest.param([{"id": "28bc880e-0592-4cbf-8f95-c79b17911d5f", "name": "Update Rollups", "type": "UpdateClassification"}], Classification.BUGFIX, id="rollup"),
        pytest.param([{"id": "e0789628-ce08-4437-be74-2495b842f43b", "name": "Definition Updates", "type": "UpdateClassification"}], Classification.OTHER, id="definitions"),
        pytest.param([{"id": "3689bdc8-b205-4af4-8d4a-a63924c5e9d5", "name": "Upgrades", "type": "UpdateClassification"}], Classification.ENHANCEMENT, id="upgrade"),
        pytest.param([], Classification.OTHER, id="none"),
        pytest.param([{"id": "cd5ffd1e-e932-4e3a-bf74-18bf0b1bbd83", "name": "Updates", "type": "UpdateClassification"}, {"id": "0fa1201d-4330-4fa8-8ae9-b877473b6441", "name": "Security Updates", "type": "UpdateClassification"}], Classification.SECURITY, id="most-urgent-wins"),
    ],
)  # fmt: skip
def test_classification_categories_map_by_their_fixed_ids(
    categories: list[dict[str, str]], expected: Classification
) -> None:
    assert classify(categories) is expected


def test_results_reboot_state_and_errors() -> None:
    ok = parse_operation(captured("windows-update", "install-succeeded.json"), "install")
    assert (ok.succeeded, ok.reboot_required, ok.per_update) == (True, True, {CU: 2})
    failed = parse_operation(captured("windows-update", "install-failed.json"), "install")
    assert (failed.succeeded, failed.per_update) == (False, {CU: 4})
    pending, reasons = parse_reboot_state(captured("windows-update", "reboot-state.json"))
    assert pending is True
    assert reasons[-1] == "ISystemInformation.RebootRequired"
    with pytest.raises(BackendError, match=r"HRESULT 0x8024402C"):
        parse_updates(captured("windows-update", "error.json"))
    with pytest.raises(BackendError, match="not JSON"):
        parse_updates("WARNING: something\r\n")


def test_probe_on_windows_and_elsewhere(
    tmp_path: Path, windows: WindowsUpdateBackend, gateway: FakeGateway
) -> None:
    probe = windows.probe()
    assert (probe.status, probe.version) == (ProbeStatus.PRESENT, "10.0.14393.3269")
    assert gateway.calls == [(*PS, "probe")]
    linux = WindowsUpdateBackend(context(tmp_path, "linux"))
    assert linux.probe().status is ProbeStatus.ABSENT
    assert linux.probe().detail == "Windows Update exists only on Windows"
    assert backend_class("windows-update") is WindowsUpdateBackend


def test_scan_reports_kb_updates_with_their_metadata(
    windows: WindowsUpdateBackend, gateway: FakeGateway
) -> None:
    updates = {u.name: u for u in windows.scan().updates}
    assert gateway.calls[-1] == (*PS, "search")
    cu = updates["KB4519998"]
    assert cu.id == f"windows-update:KB4519998:all={CU}"
    assert (cu.classification, cu.severity, cu.reboot_required) == (
        Classification.SECURITY,
        Severity.CRITICAL,
        True,
    )
    assert cu.notes[0].startswith("2019-10 Cumulative Update for Windows Server 2016")
    assert updates["KB4521858"].reboot_required is False


def test_install_is_judged_from_wua_and_a_pending_restart_counts_as_installed(
    windows: WindowsUpdateBackend, gateway: FakeGateway
) -> None:
    gateway.answers[(*PS, "install")] = captured("windows-update", "install-succeeded.json")
    gateway.answers[(*PS, "installed")] = captured(
        "windows-update", "installed-pending-restart.json"
    )
    change = next(u for u in windows.scan().updates if u.name == "KB4519998").change()
    transcript = Transcript()
    result = windows.apply([change], transcript)
    assert [(r.outcome, r.found_version) for r in result.results] == [(Outcome.DONE, CU)]
    assert (*PS, "install", "-Updates", CU) in gateway.calls
    assert "Windows needs a restart to finish" in result.notes
    assert transcript.entries[0].argv == (*PS, "install", "-Updates", CU)


def test_a_failed_install_is_failed_whatever_the_script_exits_with(
    windows: WindowsUpdateBackend, gateway: FakeGateway
) -> None:
    gateway.answers[(*PS, "install")] = captured("windows-update", "install-failed.json")
    gateway.answers[(*PS, "installed")] = captured("windows-update", "installed-none.json")
    change = PackageChange("windows-update", "KB4519998", "all", "", CU)
    result = windows.apply([change], Transcript())
    assert result.results[0].outcome is Outcome.FAILED
    assert f"{CU}: failed" in result.notes


def test_rollback_uninstalls_a_removable_update_and_refuses_the_others(
    tmp_path: Path, windows: WindowsUpdateBackend, gateway: FakeGateway
) -> None:
    cu = PackageChange("windows-update", "KB4519998", "all", "", CU)
    ssu = PackageChange("windows-update", "KB4521858", "all", "", SSU)
    sources = windows.prepare_rollback([cu, ssu], tmp_path / "keep", Transcript())
    assert [(s.change.name, s.available) for s in sources] == [
        ("KB4519998", True),
        ("KB4521858", False),
    ]
    assert "not uninstallable" in sources[1].detail
    gateway.answers[(*PS, "uninstall")] = Answer(
        stdout='{"resultCode":2,"hresult":0,"rebootRequired":true,"updates":[],"missing":[],"refused":[]}'
    )
    gateway.answers[(*PS, "installed")] = captured("windows-update", "installed-none.json")
    result = windows.rollback([cu.reversed()], Transcript())
    assert [(r.outcome, r.found_version) for r in result.results] == [(Outcome.DONE, "")]
    assert (*PS, "uninstall", "-Updates", CU) in gateway.calls


def test_a_rollback_to_another_revision_and_foreign_changes_are_refused(
    windows: WindowsUpdateBackend, gateway: FakeGateway
) -> None:
    older = PackageChange("windows-update", "KB4519998", "all", CU, SSU)
    with pytest.raises(BackendError, match="can only uninstall"):
        windows.rollback([older], Transcript())
    with pytest.raises(BackendError, match="belongs to winget"):
        windows.apply([PackageChange("winget", "KB1", "all", "", CU)], Transcript())
    assert not any("install" in call or "uninstall" in call for call in gateway.calls)


def test_a_pending_windows_restart_shows_in_the_inventory_like_linux_markers(
    tmp_path: Path, windows: WindowsUpdateBackend, gateway: FakeGateway
) -> None:
    from datetime import UTC, datetime

    from patchd.discovery.inventory import discover
    from patchd.discovery.osinfo import OsInfo
    from patchd.platforms import profile_for
    from patchd.target import Target

    gateway.answers[(*PS, "reboot-state")] = captured("windows-update", "reboot-state.json")
    reasons = windows.pending_reboot_reasons()
    assert gateway.calls[-1] == (*PS, "reboot-state")
    assert reasons == (
        "Windows Update waits for a restart (HKLM:\\SOFTWARE\\Microsoft\\Windows\\"
        "CurrentVersion\\WindowsUpdate\\Auto Update\\RebootRequired, "
        "ISystemInformation.RebootRequired)",
    )
    root = tmp_path / "root"
    root.mkdir()
    inventory = discover(
        target=Target.at(root),
        os_info=OsInfo("windows-server", (), "Windows Server 2016", "10.0.14393", "", "", ""),
        profile=profile_for("windows-server"),
        packages=[],
        backends=[],
        tags=[],
        now=datetime(2026, 12, 5, tzinfo=UTC),
        reboot_reasons=reasons,
    )
    assert inventory.reboot.as_dict() == {"required": True, "reasons": list(reasons)}


@pytest.mark.parametrize(
    "answer",
    [
        pytest.param(Answer(stdout='{"rebootRequired":false,"reasons":[]}'), id="no-restart"),
        pytest.param(Answer(stdout="WARNING: not JSON\r\n"), id="garbage"),
        pytest.param(Answer(stderr="Access is denied.", returncode=1), id="script-fails"),
    ],
)
def test_no_pending_restart_or_an_unreadable_state_adds_no_reason(
    windows: WindowsUpdateBackend, gateway: FakeGateway, answer: Answer
) -> None:
    gateway.answers[(*PS, "reboot-state")] = answer
    assert windows.pending_reboot_reasons() == ()
    assert gateway.calls[-1] == (*PS, "reboot-state")
