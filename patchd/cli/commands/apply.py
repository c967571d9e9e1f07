"""``patchd apply``: install available updates, keeping a way back for each."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from patchd.cli.main import Invocation
from patchd.cli.output import Style, colour_enabled, confirm, write_json
from patchd.cli.render import render_run, render_updates
from patchd.errors import UsageError
from patchd.models import Classification, Update, UpdateState
from patchd.policy.evaluate import Decision, Plan
from patchd.policy.planner import plan_for
from patchd.runs.apply import apply_updates
from patchd.scan import SCHEMA_VERSION, scan


def select_updates(
    updates: Sequence[Update], packages: Sequence[str], *, security_only: bool
) -> list[Update]:
    """Without a policy: all available updates, or the named packages.

    A named package must have an update; a held one is refused (release the hold in the
    package manager first). Phased updates are applied only when named.
    """
    by_name: dict[str, list[Update]] = {}
    for u in updates:
        by_name.setdefault(u.name, []).append(u)
    if packages:
        chosen = []
        for name in dict.fromkeys(packages):
            if name not in by_name:
                raise UsageError(f"{name}: no update available", hint="see `patchd scan`")
            for u in by_name[name]:
                if u.state is UpdateState.HELD:
                    raise UsageError(
                        f"{name} is held in the package manager",
                        hint=f"release the hold (apt-mark unhold {name}) to update it",
                    )
                chosen.append(u)
    else:
        chosen = [u for u in updates if u.state is UpdateState.AVAILABLE]
    if security_only:
        chosen = [u for u in chosen if u.classification is Classification.SECURITY]
    return chosen


def select_planned(plan: Plan, packages: Sequence[str], *, security_only: bool) -> list[Update]:
    """Under a policy, only what its plan installs now; a named package must be due now."""
    due = plan.install_now()
    if packages:
        by_name = {d.update.name: d for d in plan.decisions}
        for name in packages:
            decision = by_name.get(name)
            if decision is None:
                raise UsageError(f"{name}: no update available", hint="see `patchd scan`")
            if decision.decision is not Decision.INSTALL_NOW:
                raise UsageError(
                    f"{name} is not due under the policy in force: {decision.reason}",
                    hint="see `patchd plan`",
                )
        due = [u for u in due if u.name in packages]
    if security_only:
        due = [u for u in due if u.classification is Classification.SECURITY]
    return due


def run(invocation: Invocation) -> int:
    args = invocation.args
    style = Style(colour_enabled(sys.stdout))
    with invocation.session() as session:
        report = scan(session)
        active = session.policy_gate.active()
        limits = {}
        if active is None:
            chosen = select_updates(report.updates, args.packages, security_only=args.security)
        else:
            plan = plan_for(session, report)
            chosen = select_planned(plan, args.packages, security_only=args.security)
            limits = plan.window_limits()
        if not chosen:
            if args.json:
                write_json(
                    {"schema_version": SCHEMA_VERSION, "run": None, "message": "nothing to apply"}
                )
            else:
                print("Nothing to apply.")
            return 0
        if not args.json:
            print(render_updates(chosen, style), file=sys.stderr if args.dry_run else sys.stdout)
        if not args.dry_run and not args.yes and not confirm(f"Apply {len(chosen)} update(s)?"):
            print("Nothing changed.", file=sys.stderr)
            return 1
        run_record = apply_updates(
            session,
            chosen,
            dry_run=args.dry_run,
            policy=active.loaded if active else None,
            limits=limits,
        )
    if args.json:
        write_json({"schema_version": SCHEMA_VERSION, "run": run_record.as_dict()})
    else:
        print(render_run(run_record, style))
        if run_record.status in ("succeeded", "partial"):
            print(f"Undo with: patchd rollback {run_record.id}")
    return 0 if run_record.status in ("succeeded", "dry-run") else 1
