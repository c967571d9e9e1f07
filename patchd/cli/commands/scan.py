"""``patchd scan``: what this machine is and which updates it lacks."""

from __future__ import annotations

import sys

from patchd.cli.main import Invocation
from patchd.cli.output import Style, colour_enabled, write_json
from patchd.scan import scan


def run(invocation: Invocation) -> int:
    with invocation.session() as session:
        report = scan(session, refresh=invocation.args.refresh)
    if invocation.args.json:
        write_json(report.as_dict())
    else:
        from patchd.cli.render import render_scan

        print(render_scan(report, Style(colour_enabled(sys.stdout))))
    # Nothing listed because a package manager is broken or missing is not "up to date".
    return 1 if report.incomplete else 0
