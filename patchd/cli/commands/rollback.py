"""``patchd rollback RUN_ID``: return an apply run's packages to their recorded versions."""

from __future__ import annotations

import sys

from patchd.cli.main import Invocation
from patchd.cli.output import Style, colour_enabled, write_json
from patchd.cli.render import render_run
from patchd.runs.rollback import rollback_run
from patchd.scan import SCHEMA_VERSION


def run(invocation: Invocation) -> int:
    with invocation.session() as session:
        record = rollback_run(session, invocation.args.run_id)
    if invocation.args.json:
        write_json({"schema_version": SCHEMA_VERSION, "run": record.as_dict()})
    else:
        print(render_run(record, Style(colour_enabled(sys.stdout))))
    return 0 if record.status == "succeeded" else 1
