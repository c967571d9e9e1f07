"""Gathering a report's sections from a scan, its plan and the local state.

Each section is a JSON-ready dict, every list in it capped here (with ``"truncated":
true`` and the full count when capped), every free text cut to a bound. The payload
builder (:mod:`.payload`) then bounds the whole. What each field means is
docs/reporting.md.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from patchd.discovery.inventory import Inventory
from patchd.models import Update
from patchd.policy.evaluate import Decision, Plan, UpdateDecision
from patchd.policy.gate import PolicyGate
from patchd.runs.journal import unfinished_runs
from patchd.state.store import RunRecord, StateStore
from patchd.timeutil import format_time

MAX_UPDATES = 2000
MAX_CVES = 64  # per update
MAX_RUNS = 20
MAX_RUN_ITEMS = 200  # per run
MAX_NOTES = 32  # per run
MAX_TEXT_CHARS = 1000  # a note, a reason, a detail
MAX_UNFINISHED_RUNS = 20
# Not waiting for anything patchd may do by itself: not counted as due.
NOT_PENDING = frozenset({Decision.HELD_BY_PACKAGE_MANAGER})


def text(value: str | None) -> str | None:
    """``value`` cut to :data:`MAX_TEXT_CHARS`."""
    if value is None or len(value) <= MAX_TEXT_CHARS:
        return value
    return value[: MAX_TEXT_CHARS - 3] + "..."


def capped(items: Sequence[Any], limit: int) -> dict[str, Any]:
    """``{"items", "total", "truncated"}`` of at most ``limit`` items."""
    return {"items": list(items[:limit]), "total": len(items), "truncated": len(items) > limit}


# -- inventory and reboot ----------------------------------------------------------------


def inventory_section(inventory: Inventory) -> dict[str, Any]:
    """The inventory without the package list (its count stays) and without reboot state."""
    document = inventory.as_dict(include_packages=False)
    document.pop("reboot", None)  # its own section
    return document


def reboot_section(inventory: Inventory) -> dict[str, Any]:
    state = inventory.reboot.as_dict()
    state["reasons"] = [text(r) for r in state["reasons"][:MAX_NOTES]]
    return state


# -- updates and compliance --------------------------------------------------------------


FirstSeen = Mapping[str, datetime]  # update id → first sighting, from the scan


def _deadline(plan: Plan, update: Update, first_seen: datetime | None) -> datetime | None:
    if plan.policy is None or first_seen is None:
        return None
    allowed = plan.policy.policy.deadlines.for_severity(update.severity)
    return first_seen + allowed if allowed is not None else None


def update_item(plan: Plan, decision: UpdateDecision, first_seen: FirstSeen) -> dict[str, Any]:
    """One update with the policy's decision, its reason, and its deadline."""
    u = decision.update
    seen = decision.first_seen or first_seen.get(u.id)
    deadline = _deadline(plan, u, seen)
    return {
        "id": u.id,
        "backend": u.backend,
        "name": u.name,
        "arch": u.arch,
        "installed_version": u.installed_version,
        "available_version": u.available_version,
        "classification": u.classification.value,
        "severity": u.severity.value,
        "cves": list(u.cves[:MAX_CVES]),
        "state": u.state.value,
        "first_seen": format_time(seen) if seen else None,
        "deadline": format_time(deadline) if deadline else None,
        "overdue": deadline is not None and plan.at >= deadline,
        "decision": decision.decision.value,
        "reason": text(decision.reason),
        "not_before": format_time(decision.not_before) if decision.not_before else None,
    }


def still_pending(store: StateStore, plan: Plan) -> list[UpdateDecision]:
    """The plan's decisions minus updates installed since the scan (by the cycle's run)."""

    def key(d: UpdateDecision) -> tuple[str, str, str, str]:
        return (d.update.backend, d.update.name, d.update.arch, d.update.available_version)

    installed = store.installed_among(key(d) for d in plan.decisions)
    return [d for d in plan.decisions if key(d) not in installed]


def updates_section(
    plan: Plan, decisions: Sequence[UpdateDecision], first_seen: FirstSeen
) -> dict[str, Any]:
    return capped([update_item(plan, d, first_seen) for d in decisions], MAX_UPDATES)


def compliance_section(
    plan: Plan,
    decisions: Sequence[UpdateDecision],
    first_seen: FirstSeen,
    store: StateStore,
    since: datetime | None,
) -> dict[str, Any]:
    """Counts a dashboard needs without reading every item: pending, overdue, failed, installed.

    ``since`` is when the previous report was made: ``installed`` and ``failed`` count
    what happened after it (everything recorded, for the first report).
    """
    items = [update_item(plan, d, first_seen) for d in decisions if d.decision not in NOT_PENDING]
    stamp = format_time(since) if since else ""
    (installed,) = store.query(
        "SELECT COUNT(*) FROM update_sightings WHERE installed_at IS NOT NULL AND installed_at > ?",
        (stamp,),
    )[0]
    (failed,) = store.query(
        """SELECT COUNT(*) FROM run_items i JOIN runs r ON r.id = i.run_id
           WHERE i.outcome = 'failed' AND r.kind = 'apply' AND r.started_at > ?""",
        (stamp,),
    )[0]
    return {
        "pending": len(items),
        "pending_by_severity": dict(sorted(Counter(i["severity"] for i in items).items())),
        "pending_security": sum(i["classification"] == "security" for i in items),
        "overdue": sum(i["overdue"] for i in items),
        "overdue_by_severity": dict(
            sorted(Counter(i["severity"] for i in items if i["overdue"]).items())
        ),
        "due_now": sum(i["decision"] == Decision.INSTALL_NOW.value for i in items),
        "failed_since_last_report": int(failed),
        "installed_since_last_report": int(installed),
        "since": stamp or None,
    }


# -- runs, journal and policy --------------------------------------------------------------


def run_item(run: RunRecord) -> dict[str, Any]:
    items = [
        {
            "backend": i.change.backend,
            "name": i.change.name,
            "arch": i.change.arch,
            "from_version": i.change.from_version,
            "to_version": i.change.to_version,
            "update_id": i.update_id,
            "classification": i.classification,
            "severity": i.severity,
            "outcome": i.outcome,
            "found_version": i.found_version,
            "detail": text(i.detail),
            "rollback_available": i.rollback_available,
        }
        for i in run.items
    ]
    return {
        "id": run.id,
        "kind": run.kind,
        "status": run.status,
        "dry_run": run.dry_run,
        "parent_run": run.parent_run,
        "started_at": format_time(run.started_at),
        "finished_at": format_time(run.finished_at) if run.finished_at else None,
        "notes": [text(n) for n in run.notes[:MAX_NOTES]],
        "items": items[:MAX_RUN_ITEMS],
        "items_total": len(items),
        "items_truncated": len(items) > MAX_RUN_ITEMS,
    }


def runs_section(store: StateStore) -> dict[str, Any]:
    (total,) = store.query("SELECT COUNT(*) FROM runs")[0]
    section = capped([run_item(r) for r in store.list_runs(MAX_RUNS)], MAX_RUNS)
    section["total"] = int(total)
    section["truncated"] = int(total) > len(section["items"])
    return section


def journal_section(store: StateStore) -> dict[str, Any]:
    """The newest journal entry (which run, which step) and the runs a crash left open."""
    rows = store.query("SELECT run_id, step, at FROM run_journal ORDER BY rowid DESC LIMIT 1")
    head = {"run_id": rows[0][0], "step": rows[0][1], "at": rows[0][2]} if rows else None
    return {"head": head, "unfinished": unfinished_runs(store)[:MAX_UNFINISHED_RUNS]}


def policy_section(gate: PolicyGate, plan: Plan | None) -> dict[str, Any]:
    """The policy in force (or none), where this endpoint sits in it, and the last refusal."""
    status = gate.status()
    refusal = status["last_refusal"]
    if refusal is not None:
        refusal = {**refusal, "reason": text(refusal["reason"])}
    return {
        "name": status["name"],
        "version": status["version"],
        "sha256": status["sha256"],
        "state": status["state"],
        "issued_at": status["issued_at"],
        "expires": status["expires"],
        "activated_at": status["activated_at"],
        "signed_by": status["signed_by"],
        "segments": list(plan.segments) if plan else [],
        "ring": plan.ring if plan else None,
        "evaluated_at": format_time(plan.at) if plan else None,
        "warnings": [text(w) for w in plan.warnings[:MAX_NOTES]] if plan else [],
        "refusal": refusal,
    }
