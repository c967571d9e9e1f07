"""The ``patchd collector ...`` commands' grammar (the collector's own handlers load on dispatch)."""

from __future__ import annotations

import argparse
from typing import Any

COLLECTOR_COMMANDS: dict[str, str] = {
    "collector serve": "patchd.cli.commands.collector:serve",
    "collector token create": "patchd.cli.commands.collector:token_create",
    "collector token list": "patchd.cli.commands.collector:token_list",
    "collector endpoints": "patchd.cli.commands.collector:endpoints",
    "collector approve-key": "patchd.cli.commands.collector:approve_key",
    "collector policy publish": "patchd.cli.commands.collector:policy_publish",
    "collector report": "patchd.cli.commands.collector:report",
    "collector verify-export": "patchd.cli.commands.collector:verify_export",
    "collector prune": "patchd.cli.commands.collector:prune",
}
DEFAULT_DB = "/var/lib/patchd-collector/collector.db"
DEFAULT_LISTEN = "127.0.0.1:8470"
DEFAULT_KEEP = "400d"  # as patchd.collector.retention.DEFAULT_KEEP


def _keep(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--keep",
        default=DEFAULT_KEEP,
        metavar="DURATION",
        help=f"keep reports and history this long, 30d to 3653d (default {DEFAULT_KEEP}); "
        "each endpoint's newest report always stays",
    )


def _db(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--db",
        default=DEFAULT_DB,
        metavar="URL",
        help=f"a SQLite file path or a postgresql:// URL (default {DEFAULT_DB})",
    )


def add_collector_commands(commands: Any, subcommand: Any, json_option: Any) -> None:
    """Add ``collector`` and its subcommands; ``subcommand(subs, name, help)`` makes each."""
    what = "the collector service and its admin tools"
    parser = commands.add_parser("collector", help=what, description=what)
    subs = parser.add_subparsers(dest="subcommand", metavar="SUBCOMMAND", required=True)

    serve = subcommand(subs, "serve", "serve the collector: enrolment, reports, API, dashboard")
    _db(serve)
    serve.add_argument("--listen", default=DEFAULT_LISTEN, metavar="HOST:PORT")
    serve.add_argument("--workers", type=int, default=1, metavar="N", help="worker processes")
    serve.add_argument("--tls-cert", metavar="FILE", help="serve HTTPS with this certificate")
    serve.add_argument("--tls-key", metavar="FILE", help="... and this private key")
    serve.add_argument(
        "--admin-token-file",
        required=True,
        metavar="FILE",
        help="the admin token (mode 0600) the read API and dashboard require",
    )
    serve.add_argument(
        "--stale-after",
        default="3h",
        metavar="DURATION",
        help="an endpoint with no report for this long is stale (default 3h)",
    )
    _keep(serve)

    token_parser = subcommand(subs, "token", "enrolment tokens")
    tokens = token_parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    create = subcommand(tokens, "create", "make an enrolment token and print it")
    _db(create)
    json_option(create)
    create.add_argument("--ttl", default="24h", metavar="DURATION", help="valid for (default 24h)")
    create.add_argument("--uses", type=int, default=1, metavar="N", help="enrolments allowed")
    create.add_argument("--note", default="", metavar="TEXT", help="what it is for")
    listing = subcommand(tokens, "list", "list enrolment tokens (never their secrets)")
    _db(listing)
    json_option(listing)

    endpoints = subcommand(subs, "endpoints", "list enrolled endpoints and their status")
    _db(endpoints)
    json_option(endpoints)
    endpoints.add_argument("--stale-after", default="3h", metavar="DURATION")

    approve = subcommand(subs, "approve-key", "pin the new key a known endpoint presented")
    _db(approve)
    approve.add_argument("endpoint_id", metavar="ENDPOINT_ID")

    policy_parser = subcommand(subs, "policy", "policies the collector serves to agents")
    policy = policy_parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    publish = subcommand(policy, "publish", "serve a signed policy (FILE and FILE.sig) to agents")
    _db(publish)
    publish.add_argument("file", metavar="FILE")
    publish.add_argument(
        "--trust", metavar="ROOT", help="check the signatures against this trust root first"
    )

    report = subcommand(subs, "report", "the fleet's compliance as CSV, JSON or HTML")
    _db(report)
    report.add_argument("--format", choices=("csv", "json", "html"), default="json")
    report.add_argument("--out", metavar="FILE", help="write here (CSV: also FILE.evidence.json)")
    report.add_argument("--stale-after", default="3h", metavar="DURATION")

    verify = subcommand(
        subs, "verify-export", "check every row of an export against the signed reports"
    )
    verify.add_argument("file", metavar="FILE")
    verify.add_argument("--evidence", metavar="FILE", help="a CSV export's evidence file")

    prune = subcommand(subs, "prune", "remove reports and history older than --keep, now")
    _db(prune)
    _keep(prune)
    prune.add_argument("--dry-run", action="store_true", help="only count what would go")
    json_option(prune)
