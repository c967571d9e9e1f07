"""``patchd windows``: when this endpoint's maintenance windows open next, local time and UTC."""

from __future__ import annotations

from typing import Any

from patchd.cli.main import Invocation
from patchd.cli.output import write_json
from patchd.discovery.timezone import local_zone
from patchd.errors import UsageError
from patchd.policy.planner import facts_now
from patchd.policy.selectors import matching_segments
from patchd.policy.windows import openings
from patchd.scan import SCHEMA_VERSION
from patchd.timeutil import format_time, parse_time

MAX_OPENINGS = 1000


def run(invocation: Invocation) -> int:
    count = invocation.args.next
    if not 1 <= count <= MAX_OPENINGS:
        raise UsageError(f"--next must be between 1 and {MAX_OPENINGS}")
    with invocation.session() as session:
        active = session.policy_gate.active()
        if active is None:
            raise UsageError(
                "no policy is in force on this endpoint",
                hint="activate one with `patchd policy activate`",
            )
        after = parse_time(invocation.args.at) if invocation.args.at else session.policy_gate.now()
        facts = facts_now(session)
        policy = active.loaded.policy
        segments = matching_segments(policy, facts)
        names = list(
            dict.fromkeys(w for s in policy.segments if s.name in segments for w in s.windows)
        )
        zone = local_zone(session.target)
        found = (
            openings(
                active.loaded.schedule,
                names,
                after,
                local_zone=zone,
                splay_key=facts.endpoint_key,
                count=count,
            )
            if names
            else []
        )
    document: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "timezone": str(zone),
        "windows": names,
        "openings": [
            {
                "window": o.window,
                "start": format_time(o.start),
                "end": format_time(o.end),
                "start_local": o.start.astimezone(zone).isoformat(),
                "end_local": o.end.astimezone(zone).isoformat(),
            }
            for o in found
        ],
    }
    if invocation.args.json:
        write_json(document)
        return 0
    if not names:
        print("No maintenance window restricts this endpoint: updates may install at any time.")
        return 0
    print(f"Windows of this endpoint: {', '.join(names)} (local zone {zone})")
    for o in found:
        local = (
            f"{o.start.astimezone(zone):%a %Y-%m-%d %H:%M %Z} - {o.end.astimezone(zone):%H:%M %Z}"
        )
        print(f"  {local}   ({format_time(o.start)} - {format_time(o.end)})   {o.window}")
    return 0
