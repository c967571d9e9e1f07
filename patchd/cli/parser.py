"""The command-line grammar. Building it imports nothing heavy: handlers load on dispatch."""

from __future__ import annotations

import argparse

from patchd import __version__
from patchd.errors import EXIT_CODE_HELP

# command → "module:function" of its handler, imported only when that command runs
COMMANDS: dict[str, str] = {
    "scan": "patchd.cli.commands.scan:run",
    "status": "patchd.cli.commands.status:run",
    "apply": "patchd.cli.commands.apply:run",
    "rollback": "patchd.cli.commands.rollback:run",
}

DESCRIPTION = """\
patchd keeps this endpoint patched: it discovers the machine and its software, lists
the updates its package managers offer (classified by risk), applies them, and rolls
them back."""


def _global_options(parser: argparse.ArgumentParser, *, suppress: bool) -> None:
    """Options valid before or after the command; after it they override without defaults."""
    default = argparse.SUPPRESS if suppress else None
    parser.add_argument(
        "--config",
        metavar="FILE",
        default=default,
        help="agent configuration (env PATCHD_CONFIG; default /etc/patchd/agent.yaml, "
        "built-in defaults if that file is missing)",
    )
    parser.add_argument(
        "--state-dir",
        metavar="DIR",
        default=default,
        help="local state (default /var/lib/patchd as root, the XDG state dir otherwise)",
    )
    parser.add_argument(
        "--root",
        metavar="DIR",
        default=default,
        help="root of the installed system to manage (default /): a mounted image or container root",
    )
    parser.add_argument(
        "--debug",
        action="store_true",
        default=default if suppress else False,
        help="verbose logs, and tracebacks for unexpected errors",
    )


def _json_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--json",
        action="store_true",
        help='write one JSON document (with "schema_version") to standard output',
    )


def build_parser() -> argparse.ArgumentParser:
    """The ``patchd`` argument parser."""
    parser = argparse.ArgumentParser(
        prog="patchd",
        description=DESCRIPTION,
        epilog=EXIT_CODE_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"patchd {__version__}")
    _global_options(parser, suppress=False)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def command(name: str, help_text: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(
            name,
            help=help_text,
            description=help_text,
            epilog=EXIT_CODE_HELP,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        _global_options(sub, suppress=True)
        return sub

    scan = command(
        "scan", "discover this machine and list the updates it lacks, classified by risk"
    )
    _json_option(scan)
    scan.add_argument(
        "--refresh",
        action="store_true",
        help="fetch fresh repository metadata first (apt-get update)",
    )

    status = command(
        "status", "show the last scan and the recent runs (does not run a package manager)"
    )
    _json_option(status)
    status.add_argument("--runs", type=int, default=10, metavar="N", help="how many runs to show")

    apply = command("apply", "install available updates, keeping a way back for each")
    _json_option(apply)
    apply.add_argument(
        "packages",
        nargs="*",
        metavar="PACKAGE",
        help="only these packages (default: every available update)",
    )
    apply.add_argument("--security", action="store_true", help="only security updates")
    apply.add_argument(
        "--dry-run",
        action="store_true",
        help="show and record what would be installed; change nothing",
    )
    apply.add_argument(
        "--yes",
        "-y",
        action="store_true",
        help="do not ask for confirmation (required without a terminal)",
    )

    rollback = command(
        "rollback", "undo an apply run: return its packages to their recorded versions"
    )
    _json_option(rollback)
    rollback.add_argument(
        "run_id", metavar="RUN_ID", help="the apply run to undo (see `patchd status`)"
    )
    return parser
