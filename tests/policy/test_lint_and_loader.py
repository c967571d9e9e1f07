"""``policy check``: located schema errors, and warnings about valid but doubtful policies."""

from __future__ import annotations

import copy
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from patchd.policy.lint import lint
from patchd.policy.loader import PolicyInvalid, load_policy

EXAMPLE = Path(__file__).resolve().parents[2] / "config" / "policy.example.yaml"
AT = datetime(2026, 12, 4, tzinfo=UTC)


def test_the_shipped_example_is_valid_and_clean() -> None:
    loaded = load_policy(EXAMPLE.read_bytes(), str(EXAMPLE))
    assert loaded.policy.name == "acme-fleet"
    assert set(loaded.schedule.windows) == {
        "sunday-night",
        "weekday-lunch",
        "lunch-everywhere",
        "patch-tuesday-plus-2",
    }
    assert lint(loaded, AT) == []


@pytest.mark.parametrize(
    ("text", "where"),
    [
        ("version: 1\nname: t\n", "t.yaml:1:1: issued_at: Field required"),
        ("version: '1'\nname: t\nissued_at: 2026-01-01\nexpires: 2027-01-01\n",
         "t.yaml:1:10: version: Input should be a valid integer"),
        ("version: 1\nname: t\nissued_at: 2026-01-01\nexpires: 2027-01-01\nbogus: 1\n",
         "t.yaml:5:1: bogus: Extra inputs are not permitted"),
        ("version: 1\nname: t\nissued_at: 2026-01-01\nexpires: 2025-01-01\n",
         "t.yaml:4:10: expires: must be after issued_at"),
        ("version: 1\nname: t\nissued_at: 2026-01-01\nexpires: 2027-01-01\n"
         "rings:\n  - name: r\n    deferrals: {default: 3x}\n",
         "t.yaml:7:26: rings.0.deferrals.default: '3x' is not a duration"),
        ("version: 1\nname: t\nissued_at: 2026-01-01\nexpires: 2027-01-01\n"
         "segments:\n  - name: s\n    windows: [nope]\n", "t.yaml:7:15: segments.0.windows.0: no window named 'nope'"),
        ("version: 1\nname: t\nissued_at: 2026-01-01\nexpires: 2027-01-01\n"
         "windows:\n  w:\n    timezone: Mars/Olympus\n    weekly: {days: [sun], start: '02:00', duration: 1h}\n",
         "t.yaml:7:15: windows.w.timezone: unknown time zone"),
        ("version: 1\nversion: 2\n", "t.yaml:2:1: version: duplicate key 'version'"),
        ("- a\n- b\n", "t.yaml:1:1: (document): a policy is a mapping of fields"),
    ],
    ids=["missing-field", "string-not-integer", "unknown-field", "expires-before-issued", "bad-duration",
         "unknown-window", "unknown-zone", "duplicate-key", "not-a-mapping"],
)  # fmt: skip
def test_errors_name_file_line_column_and_field(text: str, where: str) -> None:
    with pytest.raises(PolicyInvalid) as raised:
        load_policy(text.encode(), "t.yaml")
    formatted = [p.format("t.yaml") for p in raised.value.problems]
    assert any(f.startswith(where) for f in formatted), formatted


def _document(**changes: Any) -> bytes:
    base: dict[str, Any] = yaml.safe_load(EXAMPLE.read_bytes())
    document = copy.deepcopy(base)
    for key, value in changes.items():
        document[key] = value
    return yaml.safe_dump(document).encode()


@pytest.mark.parametrize(
    ("changes", "warning"),
    [
        ({"expires": "2026-12-08T00:00:00Z"}, "expires: warning: expires in less than 7 days"),
        ({"windows": {"gone": {"timezone": "UTC", "dates": ["2025-01-01"], "start": "00:00",
                                "duration": "1h"}}, "segments": []},
         "windows.gone: warning: this window never opens in the coming year"),
        ({"exceptions": [{"name": "old", "packages": ["x"], "reason": "r", "owner": "o",
                          "expires": "2026-11-01"}]}, "exceptions.0.expires: warning: exception old has already expired"),
        ({"segments": [{"name": "nobody", "match": {"tags_all": ["a"], "tags_none": ["a"]}}]},
         "segment nobody can match nothing: it requires and excludes the tag(s) a"),
        ({"segments": [{"name": "nobody", "match": {"os_version": ">=14, <11"}}]},
         "the version range '>=14, <11' is empty"),
        ({"segments": [{"name": "nobody", "match": {"os_family": ["bsd"]}}]},
         "no operating-system family is called bsd"),
        ({"deadlines": {"critical": "1d", "important": "2d"}},
         "ring broad defers important security/bugfix/enhancement/other updates longer than their deadline (2d)"),
        ({"rules": [{"match": {"classification": ["security"]}, "action": "auto"}]},
         "rules: warning: no rule matches everything"),
    ],
    ids=["expires-soon", "window-never-opens", "exception-expired", "contradictory-tags", "empty-version-range",
         "unknown-family", "deadline-shorter-than-deferral", "no-catch-all-rule"],
)  # fmt: skip
def test_warnings(changes: dict[str, Any], warning: str) -> None:
    loaded = load_policy(_document(**changes), "p.yaml")
    messages = [w.format("p.yaml") for w in lint(loaded, AT)]
    assert any(warning in m for m in messages), messages
    assert all(w.level == "warning" for w in lint(loaded, AT))
