"""``patchd prune``: remove the history the retention settings no longer keep, now."""

from __future__ import annotations

import sqlite3

from patchd.cli.main import Invocation
from patchd.cli.output import write_json
from patchd.errors import StateError
from patchd.policy.durations import format_duration
from patchd.scan import SCHEMA_VERSION


def run(invocation: Invocation) -> int:
    from patchd.runs.retention import prune

    dry_run = bool(invocation.args.dry_run)
    with invocation.session() as session:
        settings = session.config.retention
        try:
            result = prune(
                session.store, session.state_dir, settings, session.clock(), dry_run=dry_run
            )
        except (OSError, sqlite3.Error) as e:
            raise StateError(
                f"cannot prune the history in {session.state_dir}: {e}",
                hint="what was removed before this stays removed; run `patchd prune` again",
            ) from None
    if invocation.args.json:
        write_json(
            {
                "schema_version": SCHEMA_VERSION,
                "retention": settings.as_dict(),
                **result.as_dict(),
            }
        )
        return 0
    print(
        f"History is kept for {format_duration(settings.history)}, kept packages for "
        f"{format_duration(settings.rollback_files)} (retention: in the agent configuration)."
    )
    said = result.describe()
    print(said[0].upper() + said[1:] + ".")
    return 0
