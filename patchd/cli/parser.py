"""The command-line grammar. Building it imports nothing heavy: handlers load on dispatch."""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from typing import TypeAlias

from patchd import __version__
from patchd.cli.collector_parser import COLLECTOR_COMMANDS, add_collector_commands
from patchd.errors import EXIT_CODE_HELP

# command (with its subcommand) → "module:function" of its handler, imported only when it runs
COMMANDS: dict[str, str] = {
    "scan": "patchd.cli.commands.scan:run",
    "status": "patchd.cli.commands.status:run",
    "apply": "patchd.cli.commands.apply:run",
    "rollback": "patchd.cli.commands.rollback:run",
    "prune": "patchd.cli.commands.prune:run",
    "plan": "patchd.cli.commands.plan:run",
    "agent": "patchd.cli.commands.agent:run",
    "windows": "patchd.cli.commands.windows:run",
    "key generate": "patchd.cli.commands.key:generate",
    "trust init": "patchd.cli.commands.trust:init",
    "trust rotate": "patchd.cli.commands.trust:rotate",
    "trust sign": "patchd.cli.commands.trust:sign",
    "trust verify": "patchd.cli.commands.trust:verify",
    "trust update": "patchd.cli.commands.trust:update",
    "trust show": "patchd.cli.commands.trust:show",
    "policy sign": "patchd.cli.commands.policy:sign",
    "policy verify": "patchd.cli.commands.policy:verify",
    "policy check": "patchd.cli.commands.policy:check",
    "policy activate": "patchd.cli.commands.policy:activate",
    "enroll": "patchd.cli.commands.enroll:run",
    "report send": "patchd.cli.commands.report:send",
    "report show": "patchd.cli.commands.report:show",
    "report status": "patchd.cli.commands.report:status",
    "service install": "patchd.cli.commands.service:install",
    "service uninstall": "patchd.cli.commands.service:uninstall",
    "service status": "patchd.cli.commands.service:status",
    **COLLECTOR_COMMANDS,
}


def command_name(args: argparse.Namespace) -> str:
    """The ``COMMANDS`` key of a parsed command line: ``"trust init"``, ``"scan"``."""
    parts = [args.command, getattr(args, "subcommand", None), getattr(args, "action", None)]
    return " ".join(str(p) for p in parts if p)


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


_SubParsers: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"


def _group(commands: _SubParsers, name: str, help_text: str) -> _SubParsers:
    parser = commands.add_parser(name, help=help_text, description=help_text)
    return parser.add_subparsers(dest="subcommand", metavar="SUBCOMMAND", required=True)


def _subcommand(subs: _SubParsers, name: str, help_text: str) -> argparse.ArgumentParser:
    sub = subs.add_parser(
        name,
        help=help_text,
        description=help_text,
        epilog=EXIT_CODE_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _global_options(sub, suppress=True)
    return sub


def _key_commands(commands: _SubParsers) -> None:
    keys = _group(commands, "key", "administrator signing keys")
    generate = _subcommand(
        keys, "generate", "make an Ed25519 key pair: PREFIX.key (private) and PREFIX.pub"
    )
    generate.add_argument("--out", required=True, metavar="PREFIX", help="where to write the pair")


def _trust_commands(commands: _SubParsers) -> None:
    trust = _group(
        commands,
        "trust",
        "the trust root: which administrators' keys sign policies, and how many must",
    )
    init = _subcommand(trust, "init", "write version 1 of a trust root")
    init.add_argument(
        "--key",
        action="append",
        required=True,
        metavar="PUB",
        dest="keys",
        help="an administrator's public key (repeat for each)",
    )
    init.add_argument(
        "--threshold",
        type=int,
        required=True,
        metavar="N",
        help="how many distinct keys must sign a policy",
    )
    init.add_argument("--out", required=True, metavar="ROOT", help="the trust root file to write")
    rotate = _subcommand(trust, "rotate", "prepare the next version of a trust root, to be signed")
    rotate.add_argument("--trust", required=True, metavar="ROOT", help="the current trust root")
    rotate.add_argument(
        "--add-key", action="append", default=[], metavar="PUB", help="a key to add"
    )
    rotate.add_argument(
        "--remove-key", action="append", default=[], metavar="KEYID", help="a key to remove"
    )
    rotate.add_argument("--threshold", type=int, metavar="N", help="the new threshold")
    rotate.add_argument("--out", required=True, metavar="NEXT", help="the new version's file")
    tsign = _subcommand(trust, "sign", "add a signature to a trust root version")
    tsign.add_argument("file", metavar="ROOT")
    tsign.add_argument("--key", required=True, metavar="KEY", help="a private key (PREFIX.key)")
    tverify = _subcommand(
        trust, "verify", "check a trust root version (and that it follows --trust)"
    )
    tverify.add_argument("file", metavar="ROOT")
    tverify.add_argument("--trust", metavar="CURRENT", help="the version it must follow")
    tupdate = _subcommand(trust, "update", "install a new trust root version on this endpoint")
    tupdate.add_argument("file", metavar="ROOT")
    tshow = _subcommand(trust, "show", "the trust root this endpoint uses")
    _json_option(tshow)


def _policy_commands(commands: _SubParsers) -> None:
    policy = _group(commands, "policy", "signed policies: sign, verify, lint and install them")
    psign = _subcommand(policy, "sign", "add your detached signature to FILE.sig")
    psign.add_argument("file", metavar="FILE")
    psign.add_argument("--key", required=True, metavar="KEY", help="a private key (PREFIX.key)")
    pverify = _subcommand(policy, "verify", "check FILE's signatures against a trust root")
    pverify.add_argument("file", metavar="FILE")
    pverify.add_argument(
        "--trust", metavar="ROOT", help="the trust root (default: this endpoint's)"
    )
    pcheck = _subcommand(
        policy, "check", "lint a policy: schema errors and warnings, FILE:LINE:COL"
    )
    pcheck.add_argument("file", metavar="FILE")
    pcheck.add_argument("--at", metavar="TIME", help="judge expiry and windows at this time")
    pactivate = _subcommand(
        policy, "activate", "install a signed policy on this endpoint, exactly as the agent does"
    )
    pactivate.add_argument("file", metavar="FILE")
    pactivate.add_argument(
        "--trust",
        metavar="ROOT",
        help="the trust root (installed on first use; else this endpoint's)",
    )


def _enroll_command(commands: _SubParsers) -> None:
    enroll = _subcommand(
        commands, "enroll", "register this endpoint's key with a collector, using an admin's token"
    )
    enroll.add_argument(
        "--collector", required=True, metavar="URL", help="the collector's base URL (https://...)"
    )
    token = enroll.add_mutually_exclusive_group(required=True)
    token.add_argument(
        "--token", metavar="TOKEN", help="an enrolment token from an administrator (visible in ps)"
    )
    token.add_argument(
        "--token-file",
        metavar="FILE",
        help="read the token from FILE ('-': standard input), keeping it out of the process list",
    )
    _json_option(enroll)


def _report_commands(commands: _SubParsers) -> None:
    report = _group(commands, "report", "signed status reports to the collector")
    send = _subcommand(report, "send", "make a report now, queue it, and send everything queued")
    _json_option(send)
    show = _subcommand(report, "show", "the report this endpoint would send now (unsigned)")
    _json_option(show)
    rstatus = _subcommand(report, "status", "the outbox: queued reports, last delivery, last error")
    _json_option(rstatus)


def _service_commands(commands: _SubParsers) -> None:
    service = _group(commands, "service", "patchd as this system's service (systemd, launchd)")
    for name, help_text in (
        ("install", "lay down the unit or plist, configuration and directories; enable it"),
        ("uninstall", "disable the service and remove what install made (state is kept)"),
        ("status", "whether the service is installed, enabled and running"),
    ):
        sub = _subcommand(service, name, help_text)
        sub.add_argument(
            "--collector", action="store_true", help="the collector's service, not the agent's"
        )
        sub.add_argument(
            "--manager",
            choices=("systemd", "launchd", "windows"),
            help="the service manager (default: this system's)",
        )
        _json_option(sub)


def _scan_command(commands: _SubParsers) -> None:
    scan = _subcommand(
        commands, "scan", "discover this machine and list the updates it lacks, classified by risk"
    )
    _json_option(scan)
    scan.add_argument(
        "--refresh",
        action="store_true",
        help="fetch fresh repository metadata first (apt-get update)",
    )


def _status_command(commands: _SubParsers) -> None:
    status = _subcommand(
        commands,
        "status",
        "show the last scan and the recent runs (does not run a package manager)",
    )
    _json_option(status)
    status.add_argument("--runs", type=int, default=10, metavar="N", help="how many runs to show")


def _apply_command(commands: _SubParsers) -> None:
    apply = _subcommand(commands, "apply", "install available updates, keeping a way back for each")
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


def _rollback_command(commands: _SubParsers) -> None:
    rollback = _subcommand(
        commands, "rollback", "undo an apply run: return its packages to their recorded versions"
    )
    _json_option(rollback)
    rollback.add_argument(
        "run_id", metavar="RUN_ID", help="the apply run to undo (see `patchd status`)"
    )


def _prune_command(commands: _SubParsers) -> None:
    prune = _subcommand(
        commands,
        "prune",
        "remove runs, sightings and kept packages older than the retention settings "
        "(the agent does it daily)",
    )
    _json_option(prune)
    prune.add_argument(
        "--dry-run", action="store_true", help="show what would be removed; remove nothing"
    )


def _plan_command(commands: _SubParsers) -> None:
    plan = _subcommand(
        commands, "plan", "every update with its decision under the active policy, and why"
    )
    _json_option(plan)
    plan.add_argument(
        "--at",
        metavar="TIME",
        help="evaluate at this time (ISO 8601, e.g. 2027-01-05T03:00:00Z) instead of now",
    )


def _windows_command(commands: _SubParsers) -> None:
    windows = _subcommand(
        commands, "windows", "the next openings of this endpoint's maintenance windows"
    )
    _json_option(windows)
    windows.add_argument(
        "--next", type=int, default=5, metavar="N", help="how many openings to show"
    )
    windows.add_argument("--at", metavar="TIME", help="start from this time instead of now")


def _agent_command(commands: _SubParsers) -> None:
    agent = _subcommand(
        commands, "agent", "run as the service: scan, enforce the signed policy, reload it live"
    )
    agent.add_argument("--once", action="store_true", help="one scan-plan-apply cycle, then exit")


def _collector_commands(commands: _SubParsers) -> None:
    add_collector_commands(commands, _subcommand, _json_option)


# Every top-level command's grammar, in the order `patchd --help` lists them.
_TOP_LEVEL: dict[str, Callable[[_SubParsers], None]] = {
    "scan": _scan_command,
    "status": _status_command,
    "apply": _apply_command,
    "rollback": _rollback_command,
    "prune": _prune_command,
    "plan": _plan_command,
    "windows": _windows_command,
    "agent": _agent_command,
    "key": _key_commands,
    "trust": _trust_commands,
    "policy": _policy_commands,
    "enroll": _enroll_command,
    "report": _report_commands,
    "service": _service_commands,
    "collector": _collector_commands,
}
# Top-level options that take a value (the next argument, or after "=").
_VALUE_OPTIONS = ("--config", "--state-dir", "--root")
_FLAG_OPTIONS = ("--debug", "--version", "--help")


def command_in(argv: Sequence[str]) -> str | None:
    """The top-level command ``argv`` names, or ``None`` when that is not plain to see.

    Only a command line whose options before the command are all known (as argparse
    reads them, abbreviations included) names one; anything else gets ``None``.
    """
    skip = False
    for arg in argv:
        if skip:
            skip = False
            continue
        if arg in {"--", "-"}:
            return None
        if arg.startswith("--"):
            option, has_value, _ = arg.partition("=")
            values = [o for o in _VALUE_OPTIONS if o.startswith(option)]
            flags = [o for o in _FLAG_OPTIONS if o.startswith(option)]
            if len(values) + len(flags) != 1 or len(option) < 3:
                return None
            skip = bool(values) and not has_value
            continue
        if arg.startswith("-"):
            if arg == "-h":
                continue
            return None
        return arg if arg in _TOP_LEVEL else None
    return None


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The ``patchd`` argument parser.

    With ``command`` (a top-level command, see :func:`command_in`), only that command's
    grammar is built: what it accepts, its help and its errors are the same, and the
    others' grammars, which running it does not need, cost nothing.
    """
    parser = argparse.ArgumentParser(
        prog="patchd",
        description=DESCRIPTION,
        epilog=EXIT_CODE_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"patchd {__version__}")
    _global_options(parser, suppress=False)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, add in _TOP_LEVEL.items():
        if command is None or command not in _TOP_LEVEL or name == command:
            add(commands)
    return parser
