"""Arch security tracker exports: parsing, and which updates they make security updates."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from patchd.backends.pacman.tracker import AdvisoryIndex, load_groups, parse_groups
from patchd.backends.pacman.versions import compare
from patchd.errors import ConfigError
from patchd.models import Severity

DATA = Path(__file__).resolve().parent.parent / "data" / "pacman"


@pytest.fixture
def index() -> AdvisoryIndex:
    return AdvisoryIndex(load_groups(DATA / "security-tracker-all.json"))


def test_the_captured_export_parses_into_groups() -> None:
    groups = {g.name: g for g in load_groups(DATA / "security-tracker-all.json")}
    assert set(groups) == {"AVG-1146", "AVG-1157", "AVG-708"}
    wireshark = groups["AVG-708"]
    assert wireshark.fixed == "2.6.1-1"
    assert wireshark.severity is Severity.CRITICAL
    assert wireshark.cves == ("CVE-2018-11362", "CVE-2018-11361")
    assert wireshark.advisories == ("ASA-201805-22", "ASA-201805-23")
    assert groups["AVG-1157"].fixed is None
    assert groups["AVG-1157"].severity is Severity.IMPORTANT  # the tracker's "High"


def test_an_update_reaching_the_fixed_version_is_a_security_fix(index: AdvisoryIndex) -> None:
    fix = index.fixes("wireshark-cli", "2.6.0-1", "2.6.1-1", compare)
    assert fix is not None
    assert fix.groups == ("AVG-708",)
    assert fix.cves == ("CVE-2018-11362", "CVE-2018-11361")
    assert fix.severity is Severity.CRITICAL


@pytest.mark.parametrize(
    ("name", "installed", "available"),
    [
        ("wireshark-cli", "2.6.1-1", "2.6.2-1"),  # already fixed before this update
        ("wireshark-cli", "2.5.0-1", "2.6.0-2"),  # the update stops short of the fix
        ("openconnect", "1:8.05-1", "1:8.06-1"),  # no fixed version yet: nothing is fixed
        ("bash", "5.0-1", "5.1-1"),  # no group at all
    ],
    ids=["already-fixed", "short-of-fix", "unfixed-group", "no-group"],
)
def test_updates_that_fix_nothing_the_tracker_knows(
    index: AdvisoryIndex, name: str, installed: str, available: str
) -> None:
    assert index.fixes(name, installed, available, compare) is None


def test_not_affected_groups_and_foreign_records_are_ignored() -> None:
    groups = parse_groups(
        [
            {"name": "AVG-1", "packages": ["a"], "status": "Not affected", "fixed": "2-1"},
            "not a group",
            {"packages": ["a"]},
        ],
        "test",
    )
    assert [g.name for g in groups] == ["AVG-1"]
    assert AdvisoryIndex(groups).fixes("a", "1-1", "2-1", compare) is None


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"<html>", "not valid JSON"),
        (json.dumps({"name": "AVG-1"}).encode(), "expected a JSON list"),
    ],
    ids=["not-json", "not-a-list"],
)
def test_a_file_that_is_no_export_is_a_clear_error(
    tmp_path: Path, content: bytes, message: str
) -> None:
    path = tmp_path / "all.json"
    path.write_bytes(content)
    with pytest.raises(ConfigError, match=message) as caught:
        load_groups(path)
    assert str(path) in str(caught.value)
    assert path.read_bytes() == content


def test_a_missing_file_names_the_setting(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"cannot read .*nope.json.*pacman.advisories"):
        load_groups(tmp_path / "nope.json")
