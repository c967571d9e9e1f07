"""What the collector keeps from a report's payload, read defensively.

A report may carry any subset of its sections (a minimal report carries none), and a
newer agent may add fields: everything here tolerates absence and ignores the unknown.
Values are bounded before they reach the database; the envelope itself is stored whole.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

MAX_TEXT = 1024
MAX_UPDATES = 5000
MAX_RUNS = 100
MAX_NOTES = 20
KNOWN_SEVERITIES = ("critical", "important", "moderate", "low", "unknown")


def _text(value: object, limit: int = MAX_TEXT) -> str:
    return value[:limit] if isinstance(value, str) else ""


def _opt_text(value: object, limit: int = MAX_TEXT) -> str | None:
    return value[:limit] if isinstance(value, str) else None


def _dict(value: object) -> Mapping[str, Any]:
    return value if isinstance(value, dict) else {}


def _list(value: object) -> list[Any]:
    return value if isinstance(value, list) else []


def _int(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _section(payload: Mapping[str, Any], name: str) -> Mapping[str, Any]:
    value = payload.get(name)
    return value if isinstance(value, dict) else {}


def _items(section: Mapping[str, Any], limit: int) -> Iterator[Mapping[str, Any]]:
    items = section.get("items")
    if isinstance(items, list):
        for item in items[:limit]:
            if isinstance(item, dict):
                yield item


@dataclass(frozen=True)
class Summary:
    """The endpoint row's fields from its latest report; ``None`` where it did not say."""

    values: dict[str, Any]
    compliant: bool | None  # None: the report carries no compliance facts
    overdue: int


def summary(payload: Mapping[str, Any]) -> Summary:
    inventory = _section(payload, "inventory")
    os_info = _dict(inventory.get("os"))
    eol = _dict(inventory.get("end_of_life"))
    policy = _section(payload, "policy")
    reboot = _section(payload, "reboot")
    compliance = _section(payload, "compliance")
    segments = policy.get("segments")
    overdue = _int(compliance.get("overdue"))
    values: dict[str, Any] = {
        "hostname": _text(payload.get("hostname"), 255),
        "os_family": _opt_text(os_info.get("family"), 64),
        "os_name": _opt_text(os_info.get("pretty_name") or os_info.get("name"), 255),
        "os_version": _opt_text(os_info.get("version"), 64),
        "eol_past": eol.get("past_security_end") if isinstance(eol.get("past_security_end"), bool) else None,
        "eol_date": _opt_text(eol.get("security_end"), 16),
        "segments": json.dumps(
            [s[:128] for s in segments[:32] if isinstance(s, str)] if isinstance(segments, list) else []
        ),
        "ring": _opt_text(policy.get("ring"), 128),
        "policy_name": _opt_text(policy.get("name"), 255),
        "policy_version": _int(policy.get("version")),
        "policy_state": _opt_text(policy.get("state"), 32),
        "reboot_required": reboot.get("required") if isinstance(reboot.get("required"), bool) else None,
        "pending": _int(compliance.get("pending")),
        "pending_security": _int(compliance.get("pending_security")),
        "overdue": overdue,
        "summary": json.dumps(dict(compliance), sort_keys=True)[:16384] if compliance else "{}",
    }  # fmt: skip
    return Summary(values, None if overdue is None else overdue == 0, overdue or 0)


def update_rows(payload: Mapping[str, Any]) -> list[dict[str, Any]] | None:
    """The pending updates the report lists; ``None`` when it has no updates section.

    A truncated list is still taken: updates it leaves out keep their previous rows.
    """
    section = payload.get("updates")
    if not isinstance(section, dict):
        return None
    rows = []
    for item in _items(section, MAX_UPDATES):
        update_id = _opt_text(item.get("id"), 512)
        if not update_id:
            continue
        severity = _text(item.get("severity"), 32)
        cves = _list(item.get("cves"))
        rows.append(
            {
                "update_id": update_id,
                "backend": _text(item.get("backend"), 64),
                "name": _text(item.get("name"), 255),
                "available_version": _text(item.get("available_version"), 255),
                "classification": _text(item.get("classification"), 32) or "other",
                "severity": severity if severity in KNOWN_SEVERITIES else "unknown",
                "cves": json.dumps([c[:64] for c in cves[:64] if isinstance(c, str)]),
                "first_seen": _opt_text(item.get("first_seen"), 32),
                "deadline": _opt_text(item.get("deadline"), 32),
                "overdue": item.get("overdue") is True,
                "decision": _text(item.get("decision"), 64),
                "reason": _text(item.get("reason")),
                "not_before": _opt_text(item.get("not_before"), 32),
            }
        )
    return rows


def updates_truncated(payload: Mapping[str, Any]) -> bool:
    return _section(payload, "updates").get("truncated") is True


def run_rows(payload: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Recent runs, with counts of changes done and failed, and which updates landed."""
    rows = []
    for item in _items(_section(payload, "runs"), MAX_RUNS):
        run_id = _opt_text(item.get("id"), 64)
        if not run_id:
            continue
        changes = _list(item.get("items"))
        outcomes = [c for c in changes if isinstance(c, dict)]
        notes = _list(item.get("notes"))
        rows.append(
            {
                "run_id": run_id,
                "kind": _text(item.get("kind"), 32) or "apply",
                "status": _text(item.get("status"), 32),
                "dry_run": item.get("dry_run") is True,
                "started_at": _opt_text(item.get("started_at"), 32),
                "finished_at": _opt_text(item.get("finished_at"), 32),
                "done": sum(c.get("outcome") == "done" for c in outcomes),
                "failed": sum(c.get("outcome") == "failed" for c in outcomes),
                "notes": json.dumps([_text(n) for n in notes[:MAX_NOTES]]),
                "installed": [
                    _text(c.get("update_id"), 512)
                    for c in outcomes
                    if c.get("outcome") == "done" and isinstance(c.get("update_id"), str)
                ],
            }
        )
    return rows
