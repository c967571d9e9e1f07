"""A package-manager command run for a patch run: recorded in its transcript, failed or not.

The apt backend keeps its own (it also recognises apt's lock messages); the backends
whose managers cannot run here (apk, snap, flatpak) share this one, so their tests can
replace :func:`patchd.process.run` with a recording fake and see every argv.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from patchd import process
from patchd.errors import CommandError
from patchd.transcript import Transcript


def run_recorded(
    argv: Sequence[str],
    transcript: Transcript,
    *,
    timeout_s: float,
    env: Mapping[str, str] | None = None,
    ok_codes: Sequence[int] = (0,),
) -> process.CommandResult:
    """Run ``argv`` through the process gateway; the transcript gets it either way."""
    try:
        result = process.run(argv, timeout_s=timeout_s, env=env, ok_codes=ok_codes)
    except CommandError as e:
        transcript.failure(e)
        raise
    transcript.command(result)
    return result
