"""``patchd``'s entry point: parse, set up logging, dispatch, map errors to exit codes.

This is the only place that turns a :class:`PatchdError` into a message and an exit
status. A user never sees a traceback for bad input; ``--debug`` shows one for
unexpected errors.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from patchd.cli.logsetup import setup_logging
from patchd.cli.parser import COMMANDS, build_parser, command_in, command_name
from patchd.errors import ExitCode, PatchdError, UsageError

if TYPE_CHECKING:
    from patchd.session import Session

log = logging.getLogger("patchd")


@dataclass(frozen=True)
class Invocation:
    """What every command handler gets: the parsed arguments and the global options."""

    args: argparse.Namespace
    config_path: Path | None
    state_dir: Path | None
    root: Path
    debug: bool

    def session(self) -> Session:
        """Open a session on the target (loads the configuration)."""
        from patchd.config import load_config
        from patchd.paths import default_state_dir
        from patchd.session import Session
        from patchd.target import Target

        config = load_config(self.config_path)
        if config.log_format == "json":
            setup_logging(debug=self.debug, json_lines=True)
        state_dir = self.state_dir or config.state_dir or default_state_dir()
        return Session(config, Target.at(self.root), state_dir)


Handler = Callable[[Invocation], int]


def _invocation(args: argparse.Namespace) -> Invocation:
    root = Path(args.root) if args.root else Path("/")
    if not root.is_dir():
        raise UsageError(f"--root {root}: no such directory")
    return Invocation(
        args=args,
        config_path=Path(args.config) if args.config else None,
        state_dir=Path(os.path.abspath(args.state_dir)) if args.state_dir else None,
        root=root,
        debug=bool(args.debug),
    )


def _handler(command: str) -> Handler:
    module_name, _, function = COMMANDS[command].partition(":")
    handler: Handler = getattr(importlib.import_module(module_name), function)
    return handler


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``patchd`` with ``argv`` (default: the process arguments); return the exit status."""
    parser = build_parser(command_in(sys.argv[1:] if argv is None else argv))
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # argparse has printed usage or --help/--version
        return int(e.code) if isinstance(e.code, int) else ExitCode.USAGE
    del parser  # the grammar of every command is not needed by the one that runs (the agent)
    setup_logging(debug=bool(args.debug))
    try:
        return _handler(command_name(args))(_invocation(args))
    except PatchdError as e:
        log.debug("error", exc_info=True)
        print(f"patchd: error: {e}", file=sys.stderr)
        return int(e.exit_code)
    except KeyboardInterrupt:
        print("patchd: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader went away (patchd scan | head): not an error of patchd's.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return int(ExitCode.FAILURE)
    except Exception as e:  # a bug: say so in one line; --debug shows the traceback
        if args.debug:
            log.exception("internal error")
        print(
            f"patchd: internal error: {type(e).__name__}: {e} "
            "(run with --debug for a traceback, and please report it)",
            file=sys.stderr,
        )
        return int(ExitCode.FAILURE)


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
