"""What the backends for tools patchd cannot bundle have in common: finding and running them.

Homebrew, softwareupdate, Windows Update, winget and Chocolatey are programs the
endpoint already has (or not). Each backend finds its program once, runs every command
through :mod:`patchd.process` with a timeout and a cap on the output it reads, and
records the commands of a run in its transcript. Nothing here is specific to one
operating system, so every module imports cleanly everywhere.
"""

from __future__ import annotations

import shutil
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from patchd import process
from patchd.backends.base import BackendContext
from patchd.errors import BackendError, CommandError
from patchd.process import CommandResult
from patchd.transcript import Transcript

MAX_LISTING_BYTES = 8 * 1024 * 1024  # what a listing may print before patchd stops reading it
MAX_ENTRIES = 20_000  # packages or updates one listing may name


def host_platform(context: BackendContext) -> str:
    """The platform patchd runs on (``sys.platform``); tests set ``settings["platform"]``.

    Probes ask this rather than ``sys.platform`` so that a test can exercise the
    Windows and macOS code paths on Linux, as the snapshot providers do.
    """
    return str(context.settings.get("platform", sys.platform))


def find_program(names: Sequence[str], extra_paths: Sequence[str] = ()) -> str | None:
    """The first of ``names`` on patchd's search path, else the first of ``extra_paths`` that exists.

    ``extra_paths`` are the places a tool installs itself outside ``PATH`` (Homebrew's
    prefixes), tried in order after the search path.
    """
    search_path = process.base_environment()["PATH"]
    for name in names:
        found = shutil.which(name, path=search_path)
        if found is not None:
            return found
    for candidate in extra_paths:
        if Path(candidate).is_file():
            return candidate
    return None


def check_size(text: str, what: str, limit: int = MAX_LISTING_BYTES) -> str:
    """``text`` unchanged if it is at most ``limit`` bytes, else :class:`BackendError`.

    The process gateway elides the middle of output over its cap; a parser must not
    read a listing with a hole in it as if it were whole.
    """
    if len(text.encode("utf-8", "replace")) > limit or "bytes elided ..." in text:
        raise BackendError(
            f"{what} printed more than {limit} bytes; patchd does not parse a listing that large",
            hint="report this with the size of the listing",
        )
    return text


def check_count(count: int, what: str) -> None:
    """:class:`BackendError` when a listing names more than :data:`MAX_ENTRIES` items."""
    if count > MAX_ENTRIES:
        raise BackendError(f"{what} names more than {MAX_ENTRIES} entries; refusing to parse it")


def run_tool(
    argv: Sequence[str],
    *,
    timeout_s: float,
    transcript: Transcript | None = None,
    env: Mapping[str, str] | None = None,
    ok_codes: Sequence[int] = (0,),
) -> CommandResult:
    """Run ``argv`` through the process gateway, recording it in ``transcript`` if given.

    Raises the gateway's errors; a failed command is recorded before it is raised.
    """
    try:
        result = process.run(
            argv,
            timeout_s=timeout_s,
            env=env,
            ok_codes=ok_codes,
            max_output_bytes=MAX_LISTING_BYTES,
        )
    except CommandError as e:
        if transcript is not None:
            transcript.failure(e)
        raise
    if transcript is not None:
        transcript.command(result)
    return result
