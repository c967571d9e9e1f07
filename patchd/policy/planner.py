"""Gathers what the pure evaluator needs from the endpoint: facts, sightings, zone, time."""

from __future__ import annotations

from datetime import datetime

from patchd.discovery.identity import endpoint_key
from patchd.discovery.inventory import Inventory, discover
from patchd.discovery.timezone import local_zone
from patchd.policy.evaluate import Plan, evaluate
from patchd.policy.selectors import EndpointFacts
from patchd.runs.quarantine import quarantined
from patchd.scan import ScanReport
from patchd.session import Session
from patchd.target import Target


def endpoint_facts(inventory: Inventory, target: Target) -> EndpointFacts:
    """The inventory facts a policy selects endpoints by."""
    return EndpointFacts(
        endpoint_key=endpoint_key(target, inventory.hostname),
        hostname=inventory.hostname,
        os_family=inventory.os_family,
        os_id=inventory.os.id,
        os_version=inventory.os.version,
        machine_type=inventory.machine_type,
        tags=inventory.tags,
    )


def facts_now(session: Session) -> EndpointFacts:
    """The endpoint's facts without listing updates (cheaper than a scan)."""
    inventory = discover(
        target=session.target,
        os_info=session.os_info,
        profile=session.profile,
        packages=[],
        backends=[],
        tags=session.config.tags,
        now=session.clock(),
    )
    return endpoint_facts(inventory, session.target)


def plan_for(session: Session, report: ScanReport, at: datetime | None = None) -> Plan:
    """The plan for ``report``'s updates under the policy in force, at ``at`` (default: now).

    "Now" is the policy clock: never earlier than the newest signed ``issued_at`` seen.
    """
    gate = session.policy_gate
    active = gate.active()
    return evaluate(
        active.loaded if active else None,
        endpoint_facts(report.inventory, session.target),
        report.updates,
        first_seen=report.first_seen,
        now=at or gate.now(),
        local_zone=local_zone(session.target),
        quarantined=quarantined(session.store, active.loaded.sha256) if active else None,
    )
