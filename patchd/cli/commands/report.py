"""``patchd report send|show|status``: this endpoint's signed reports to its collector."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

from patchd.cli.main import Invocation
from patchd.cli.output import write_json
from patchd.errors import ExitCode

if TYPE_CHECKING:
    from patchd.reporting.sender import FlushResult

SCHEMA_VERSION = 1


def send_exit_code(result: FlushResult) -> int:
    """0 all delivered; 77 identity refused; 75 reports still queued; 1 a report was dropped."""
    if result.unauthorized:
        return int(ExitCode.NOPERM)
    if result.remaining:
        return int(ExitCode.TEMPORARY)
    if result.dropped:
        return int(ExitCode.FAILURE)
    return int(ExitCode.OK)


def send(invocation: Invocation) -> int:
    from patchd.reporting.reporter import Reporter, fresh_scan

    with invocation.session() as session:
        reporter = Reporter(session)
        reporter.require_enrolment()
        seq = reporter.queue(*fresh_scan(session))
        result = reporter.flush()
    code = send_exit_code(result)
    if invocation.args.json:
        write_json(
            {
                "schema_version": SCHEMA_VERSION,
                "queued_seq": seq,
                "delivered": result.delivered,
                "dropped": result.dropped,
                "remaining": result.remaining,
                "error": result.error,
                "retry_in_s": result.retry_in_s,
            }
        )
    else:
        print(
            f"Report {seq} queued; {result.delivered} delivered, {result.dropped} dropped, "
            f"{result.remaining} still queued"
        )
    if result.error:
        print(f"patchd: error: {result.error}", file=sys.stderr)
    return code


def show(invocation: Invocation) -> int:
    from patchd.reporting.reporter import Reporter, fresh_scan

    with invocation.session() as session:
        document = Reporter(session).preview(*fresh_scan(session))
    if invocation.args.json:
        write_json(document)
    else:
        print(render_report(document))
    return 0


def render_report(document: dict[str, Any]) -> str:
    """A person's summary of a report payload: one line per section."""
    lines = [
        f"Report {document['seq']} of endpoint {document['endpoint_id'] or '(not enrolled)'}"
        f" ({document['hostname']}), {document['created_at']}"
    ]
    inventory = document.get("inventory")
    if inventory:
        os_info = inventory["os"]
        lines.append(
            f"Inventory:  {os_info.get('pretty_name') or os_info.get('id')}, "
            f"kernel {os_info.get('kernel') or '-'}, {inventory['package_count']} packages"
        )
    compliance = document.get("compliance")
    if compliance:
        severities = ", ".join(f"{n} {s}" for s, n in compliance["pending_by_severity"].items())
        lines.append(
            f"Updates:    {compliance['pending']} pending ({severities or 'none'}), "
            f"{compliance['overdue']} overdue, {compliance['due_now']} due now"
        )
    policy = document.get("policy")
    if policy:
        name = f"{policy['name']} v{policy['version']}" if policy["name"] else "none"
        lines.append(f"Policy:     {name} ({policy['state']})")
        if policy["refusal"]:
            lines.append(f"Refused:    {policy['refusal']['reason']}")
    reboot = document.get("reboot")
    if reboot:
        lines.append(f"Reboot:     {'required' if reboot['required'] else 'not required'}")
    runs = document.get("runs")
    if runs:
        lines.append(f"Runs:       {runs['total']} recorded, {len(runs['items'])} in the report")
    journal = document.get("journal")
    if journal and journal["head"]:
        head = journal["head"]
        lines.append(f"Journal:    run {head['run_id']} at {head['step']}")
    outbox = document.get("outbox")
    if outbox:
        lines.append(f"Outbox:     {outbox['queued']} queued, {outbox['dropped']} dropped so far")
    if document.get("truncated"):
        lines.append("(truncated to fit the size limit)")
    return "\n".join(lines)


def status(invocation: Invocation) -> int:
    from patchd.reporting.identity import endpoint_key_path
    from patchd.reporting.reporter import Reporter

    with invocation.session() as session:
        reporter = Reporter(session)
        enrolment = reporter.enrolment()
        outbox = reporter.outbox.status().as_dict()
        key_path = endpoint_key_path(session.state_dir)
    document = {
        "schema_version": SCHEMA_VERSION,
        "enrolment": enrolment.as_dict() if enrolment else None,
        "endpoint_key": str(key_path) if key_path.exists() else None,
        **outbox,
    }
    if invocation.args.json:
        write_json(document)
        return 0
    if enrolment is None:
        print("Enrolment: none (run `patchd enroll --collector URL --token TOKEN`)")
    else:
        print(f"Enrolment: endpoint {enrolment.endpoint_id} at {enrolment.as_dict()['collector']}")
    oldest = outbox["oldest"]
    print(
        f"Queued:    {outbox['queued']} report(s), {outbox['queued_bytes']} bytes"
        + (f"; oldest {oldest['seq']} from {oldest['created_at']}" if oldest else "")
    )
    delivery = outbox["last_delivery"]
    shown = f"report {delivery['seq']} at {delivery['at']}" if delivery else "never"
    print(f"Delivered: {shown}")
    error = outbox["last_error"]
    if error:
        print(f"Error:     {error['at']}: {error['message']}")
    if outbox["next_attempt_at"]:
        print(f"Retry:     not before {outbox['next_attempt_at']}")
    print(
        f"Dropped:   {outbox['dropped_total']}"
        + (f" {outbox['dropped']}" if outbox["dropped"] else "")
    )
    return 0
