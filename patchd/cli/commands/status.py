"""``patchd status``: the last scan and recent runs, from local state only."""

from __future__ import annotations

import sys
from typing import Any

from patchd.cli.main import Invocation
from patchd.cli.output import Style, colour_enabled, write_json
from patchd.cli.render import render_run_line
from patchd.policy.durations import format_duration
from patchd.scan import SCHEMA_VERSION


def run(invocation: Invocation) -> int:
    limit = max(0, invocation.args.runs)
    with invocation.session() as session:
        store = session.store
        last_scan = store.last_scan()
        runs = store.list_runs(limit)
        policy = session.policy_gate.status()
        root = session.policy_gate.trust.current()
        (pruned_at,) = store.query("SELECT last_pruned_at FROM housekeeping")[0]
    retention = session.config.retention
    document: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "state_dir": str(session.state_dir),
        "root": str(session.target),
        "last_scan": last_scan,
        "policy": policy,
        "trust_root": (
            {"version": root.version, "threshold": root.threshold, "key_ids": sorted(root.keys)}
            if root
            else None
        ),
        "runs": [r.as_dict() for r in runs],
        "retention": {**retention.as_dict(), "last_pruned_at": pruned_at},
    }
    if invocation.args.json:
        write_json(document)
        return 0
    style = Style(colour_enabled(sys.stdout))
    print(f"State:     {session.state_dir}")
    if last_scan is None:
        print("Last scan: never (run `patchd scan`)")
    else:
        print(
            f"Last scan: {last_scan['at']}: {last_scan['pending']} pending update(s), "
            f"{last_scan['security']} security"
        )
    if policy["state"] == "none":
        print("Policy:    none in force (nothing is installed automatically)")
    else:
        state = policy["state"] if policy["state"] == "active" else style(policy["state"], "red")
        print(
            f"Policy:    {policy['name']} version {policy['version']}: {state}, "
            f"expires {policy['expires']}"
        )
    if policy["last_refusal"]:
        refusal = policy["last_refusal"]
        print(style(f"Refused:   {refusal['at']}: {refusal['reason']}", "yellow"))
    print(
        f"History:   kept {format_duration(retention.history)}, kept packages "
        f"{format_duration(retention.rollback_files)}; last pruned {pruned_at or 'never'}"
    )
    if runs:
        print(style("Runs:", "bold"))
        for r in runs:
            print(render_run_line(r, style))
    else:
        print("Runs:      none yet")
    return 0
