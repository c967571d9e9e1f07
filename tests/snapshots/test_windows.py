"""The Windows restore-point provider on captured PowerShell output, with exact argv."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from patchd.snapshots.base import SnapshotContext, SnapshotError
from patchd.snapshots.windows import (
    WindowsRestorePointProvider,
    create_argv,
    delete_argv,
    list_argv,
    parse_restore_points,
    parse_wmi_time,
    quote,
    restore_argv,
)
from patchd.target import Target
from tests.snapshots.realfs import ReplayRunner, captured

PS = ("powershell.exe", "-NoProfile", "-NonInteractive", "-Command")
NEW_POINT = """,\r
    {\r
        "SequenceNumber":  42,\r
        "Description":  "patchd run-7: before patching",\r
        "CreationTime":  "20261204020011.000000-000",\r
        "RestorePointType":  12,\r
        "EventType":  100\r
    }\r
]"""


def windows(runner: ReplayRunner, tmp_path: Path, root: str = "/") -> WindowsRestorePointProvider:
    context = SnapshotContext(Target(Path(root)), tmp_path, run=runner, platform="win32")
    return WindowsRestorePointProvider(context)


def test_only_patchds_restore_points_are_listed() -> None:
    found = parse_restore_points(captured("get-computerrestorepoint.json"))
    assert [(s.id, s.run_id, s.label) for s in found] == [
        ("39", "20261202T020000Z-9a8b7c", "before patching"),
        ("41", "20261203T020000Z-5e6f70", ""),
    ]
    assert found[0].created_at == datetime(2026, 12, 2, 2, 0, 12, tzinfo=UTC)
    single = parse_restore_points(captured("get-computerrestorepoint-single.json"))
    assert [s.id for s in single] == ["39"]
    assert parse_restore_points("") == []


def test_wmi_times_carry_their_offset_in_minutes() -> None:
    moment = parse_wmi_time("20261204093015.123456+060")
    assert moment == datetime(2026, 12, 4, 9, 30, 15, tzinfo=timezone(timedelta(hours=1)))
    with pytest.raises(SnapshotError):
        parse_wmi_time("4 December 2026")


def test_descriptions_are_single_quoted_for_powershell() -> None:
    assert quote("it's $HOME `n \u2019x") == "'it''s $HOME `n \u2019\u2019x'"
    assert create_argv("patchd r: it's") == [
        *PS,
        "Checkpoint-Computer -Description 'patchd r: it''s' -RestorePointType MODIFY_SETTINGS "
        "-ErrorAction Stop",
    ]
    assert list_argv() == [
        *PS,
        "ConvertTo-Json -InputObject @(Get-ComputerRestorePoint | Select-Object "
        "SequenceNumber,Description,CreationTime,RestorePointType,EventType)",
    ]
    assert restore_argv("41") == [*PS, "Restore-Computer -RestorePoint 41 -Confirm:$false"]
    assert delete_argv("41")[-1].endswith("exit [Patchd.SystemRestore]::SRRemoveRestorePoint(41)")
    with pytest.raises(ValueError, match="invalid literal"):
        restore_argv("41; Remove-Item C:\\")


def test_create_restore_and_delete_through_powershell(tmp_path: Path) -> None:
    before = captured("get-computerrestorepoint.json")
    after = before.rstrip().removesuffix("]").rstrip() + NEW_POINT
    runner = ReplayRunner(
        {
            PS: "enabled\r\n",
            tuple(list_argv()): [before, after, after],
            (*PS, "Checkpoint-Computer"): "",
            (*PS, "Restore-Computer"): "",
            (*PS, "Add-Type"): "",
        }
    )
    points = windows(runner, tmp_path)
    assert points.probe().usable

    taken = points.create("before patching", "run-7")
    assert (taken.id, taken.run_id, taken.label) == ("42", "run-7", "before patching")
    assert runner.calls[1:] == [
        tuple(list_argv()),
        tuple(create_argv("patchd run-7: before patching")),
        tuple(list_argv()),
    ]

    runner.answers[tuple(list_argv())] = after
    outcome = points.restore(taken)
    assert runner.calls[-1] == tuple(restore_argv("42"))
    assert outcome.reboot_required is True
    points.delete(taken)
    assert runner.calls[-1] == tuple(delete_argv("42"))


def test_a_restore_point_windows_skipped_is_an_error(tmp_path: Path) -> None:
    listing = captured("get-computerrestorepoint.json")
    runner = ReplayRunner(
        {PS: "enabled", tuple(list_argv()): listing, (*PS, "Checkpoint-Computer"): ""}
    )
    with pytest.raises(SnapshotError, match=r"did not create the restore point.*24 hours"):
        windows(runner, tmp_path).create("", "run-8")


@pytest.mark.parametrize(
    ("platform", "root", "probe_says", "expected"),
    [
        pytest.param("linux", "/", "", "absent: restore points exist only on Windows", id="linux"),
        pytest.param("win32", "/", "absent", "absent: this Windows edition has no System Restore", id="server"),
        pytest.param("win32", "/", "disabled", "present, does not cover the target: System Protection is turned off", id="off"),
        pytest.param("win32", "/mnt/image", "", "present, does not cover the target: restore points cover only the host", id="image"),
    ],
)  # fmt: skip
def test_probe(platform: str, root: str, probe_says: str, expected: str, tmp_path: Path) -> None:
    context = SnapshotContext(
        Target(Path(root)), tmp_path, run=ReplayRunner({PS: probe_says}), platform=platform
    )
    assert str(WindowsRestorePointProvider(context).probe()) == expected
