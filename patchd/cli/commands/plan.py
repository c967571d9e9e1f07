"""``patchd plan``: every update, the policy's decision about it, and why."""

from __future__ import annotations

import sys

from patchd.cli.main import Invocation
from patchd.cli.output import Style, colour_enabled, table, write_json
from patchd.policy.evaluate import Decision, Plan
from patchd.policy.planner import plan_for
from patchd.scan import scan
from patchd.timeutil import format_time, parse_time

_DECISION_STYLE = {
    Decision.INSTALL_NOW: ("green", "bold"),
    Decision.INSTALL_LATER: ("green",),
    Decision.DEFERRED: ("cyan",),
    Decision.NEEDS_APPROVAL: ("yellow",),
    Decision.HELD_BY_EXCEPTION: ("yellow",),
    Decision.BLOCKED: ("red",),
}


def render_plan(plan: Plan, style: Style) -> str:
    lines = []
    if plan.policy is None:
        lines.append(style("No policy is in force: nothing is installed automatically.", "yellow"))
    else:
        p = plan.policy.policy
        lines.append(
            style(f"Policy {p.name} version {p.version}", "bold")
            + f" (expires {format_time(p.expires)}), evaluated at {format_time(plan.at)}"
        )
        lines.append(
            f"Segments: {', '.join(plan.segments) or 'none'}; ring: {plan.ring or 'none'}; "
            f"windows: {', '.join(plan.windows) or 'none (any time)'}"
        )
    if not plan.decisions:
        lines.append("No updates available.")
    else:
        rows = [
            [
                d.update.name,
                d.update.available_version,
                d.update.classification.value,
                d.update.severity.value,
                d.decision.value,
                d.reason,
            ]
            for d in plan.decisions
        ]
        lines.append(
            table(
                ["PACKAGE", "VERSION", "CLASS", "SEVERITY", "DECISION", "REASON"],
                rows,
                style,
                row_styles=[_DECISION_STYLE.get(d.decision, ()) for d in plan.decisions],
            )
        )
    lines += [style(f"warning: {w}", "yellow") for w in plan.warnings]
    return "\n".join(lines)


def run(invocation: Invocation) -> int:
    at = parse_time(invocation.args.at) if invocation.args.at else None
    with invocation.session() as session:
        plan = plan_for(session, scan(session), at)
    if invocation.args.json:
        write_json(plan.as_dict())
    else:
        print(render_plan(plan, Style(colour_enabled(sys.stdout))))
    return 0
