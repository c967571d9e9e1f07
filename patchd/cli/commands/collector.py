"""``patchd collector ...``: serve the collector, and the admin tools around its database."""

from __future__ import annotations

import json
import os
import sys
from datetime import timedelta
from pathlib import Path

from patchd.cli.main import Invocation
from patchd.cli.output import write_json
from patchd.errors import UsageError
from patchd.timeutil import format_time, utcnow

SCHEMA_VERSION = 1
MAX_CONNECTIONS = 16_384  # per worker process: open connections plus requests in progress
LISTEN_BACKLOG = 4096  # connections the kernel queues before accept (capped by somaxconn)


def _duration(
    text: str,
    option: str,
    *,
    minimum: timedelta = timedelta(minutes=1),
    maximum: timedelta | None = None,
) -> timedelta:
    from patchd.policy.durations import parse_duration

    try:
        return parse_duration(text, minimum=minimum, maximum=maximum)
    except ValueError as e:
        raise UsageError(f"{option}: {e}") from None


def _keep(text: str) -> timedelta:
    """``--keep``: how long the collector keeps reports and history (30 days to 10 years)."""
    from patchd.collector.retention import MAX_KEEP, MIN_KEEP

    return _duration(text, "--keep", minimum=MIN_KEEP, maximum=MAX_KEEP)


def _listen(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise UsageError(f"--listen {text!r}: expected HOST:PORT, e.g. 127.0.0.1:8470")
    return host.strip("[]"), int(port)


def _allow_open_files(wanted: int) -> None:
    """Raise the soft limit on open files towards ``wanted`` (never above the hard limit)."""
    if os.name != "posix":
        return
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    ceiling = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft != resource.RLIM_INFINITY and soft < ceiling:
        resource.setrlimit(resource.RLIMIT_NOFILE, (ceiling, hard))


def serve(invocation: Invocation) -> int:
    import uvicorn

    from patchd.collector.app import Settings, create_app, read_admin_token, tune_garbage_collector
    from patchd.collector.store import CollectorStore

    args = invocation.args
    host, port = _listen(args.listen)
    stale_after = _duration(args.stale_after, "--stale-after")
    keep = _keep(args.keep)
    token_file = Path(args.admin_token_file).resolve()
    read_admin_token(token_file)  # refuse a bad token file before listening
    if not 1 <= args.workers <= 64:
        raise UsageError("--workers must be between 1 and 64")
    if bool(args.tls_cert) != bool(args.tls_key):
        raise UsageError("give both --tls-cert and --tls-key, or neither")
    CollectorStore(args.db).close()  # migrate once, before any worker starts
    _allow_open_files(MAX_CONNECTIONS + 256)
    options = {
        "host": host,
        "port": port,
        "ssl_certfile": args.tls_cert,
        "ssl_keyfile": args.tls_key,
        "log_level": "debug" if invocation.debug else "info",
        "access_log": invocation.debug,
        "server_header": False,
        "timeout_keep_alive": 30,
        # A fleet waking at once (10,000 endpoints after an outage) must be queued, not
        # refused with 503: uvicorn counts open connections against this.
        "limit_concurrency": MAX_CONNECTIONS,
        "backlog": LISTEN_BACKLOG,
        "timeout_graceful_shutdown": 30,
    }
    if args.workers == 1:
        settings = Settings(
            db=args.db, admin_token=read_admin_token(token_file), stale_after=stale_after, keep=keep
        )
        app = create_app(settings)
        tune_garbage_collector()
        uvicorn.run(app, **options)
        return 0
    os.environ["PATCHD_COLLECTOR_DB"] = args.db
    os.environ["PATCHD_COLLECTOR_ADMIN_TOKEN_FILE"] = str(token_file)
    os.environ["PATCHD_COLLECTOR_STALE_AFTER_S"] = str(stale_after.total_seconds())
    os.environ["PATCHD_COLLECTOR_KEEP_S"] = str(keep.total_seconds())
    uvicorn.run(
        "patchd.collector.app:app_from_environment", factory=True, workers=args.workers, **options
    )
    return 0


def prune(invocation: Invocation) -> int:
    """Remove now what ``--keep`` no longer keeps (as the collectors do daily); print what went."""
    from patchd.collector import retention
    from patchd.collector.store import CollectorStore

    args = invocation.args
    keep = _keep(args.keep)  # before the database is opened: a bad value changes nothing
    now = utcnow()
    store = CollectorStore(args.db)
    try:
        result = retention.prune(store, keep, now, dry_run=args.dry_run)
        if not args.dry_run:
            retention.record_prune(store, now)
    finally:
        store.close()
    if args.json:
        write_json({"schema_version": SCHEMA_VERSION, **result.as_dict()})
    else:
        said = result.describe()
        print(said[0].upper() + said[1:] + ".")
    return 0


def token_create(invocation: Invocation) -> int:
    from patchd.collector.store import CollectorStore

    args = invocation.args
    store = CollectorStore(args.db)
    try:
        token = store.create_token(ttl=_duration(args.ttl, "--ttl"), uses=args.uses, note=args.note)
    finally:
        store.close()
    if args.json:
        write_json({"schema_version": SCHEMA_VERSION, "token": token.secret, "id": token.id,
                    "expires_at": format_time(token.expires_at), "uses": token.max_uses})  # fmt: skip
    else:
        print(token.secret)
        print(f"token {token.id}: {token.max_uses} enrolment(s) until {format_time(token.expires_at)}",
              file=sys.stderr)  # fmt: skip
    return 0


def token_list(invocation: Invocation) -> int:
    from patchd.collector.store import CollectorStore, token_summary

    store = CollectorStore(invocation.args.db)
    try:
        with store.reading() as conn:
            tokens = token_summary(conn)
    finally:
        store.close()
    if invocation.args.json:
        write_json({"schema_version": SCHEMA_VERSION, "tokens": tokens})
        return 0
    for t in tokens:
        print(
            f"{t['id']}  {t['uses_left']}/{t['max_uses']} left  expires {t['expires_at']}  {t['note']}"
        )
    return 0


def endpoints(invocation: Invocation) -> int:
    from patchd.collector.app import Settings, endpoint_list
    from patchd.collector.store import CollectorStore

    args = invocation.args
    store = CollectorStore(args.db)
    try:
        settings = Settings(
            db=args.db, admin_token="", stale_after=_duration(args.stale_after, "--stale-after")
        )
        found = endpoint_list(store, settings)
    finally:
        store.close()
    if args.json:
        write_json({"schema_version": SCHEMA_VERSION, "endpoints": found})
        return 0
    for e in found:
        flags = " FLAGGED" if e["flagged"] else ""
        key = " KEY-APPROVAL-PENDING" if e["key_approval_pending"] else ""
        print(
            f"{e['id']}  {e['hostname']}  {e['status']}  seq {e['last_seq']}  last {e['last_report_at'] or '-'}{flags}{key}"
        )
    return 0


def approve_key(invocation: Invocation) -> int:
    from patchd.collector.store import CollectorStore

    store = CollectorStore(invocation.args.db)
    try:
        store.approve_key(invocation.args.endpoint_id)
    finally:
        store.close()
    print(
        f"endpoint {invocation.args.endpoint_id}: the new key is pinned; its reports are accepted from now on"
    )
    return 0


def policy_publish(invocation: Invocation) -> int:
    from patchd.collector.store import CollectorStore
    from patchd.policy.loader import MAX_POLICY_BYTES, load_policy
    from patchd.signing.dsse import POLICY_PAYLOAD_TYPE, detached_signature_path, read_detached
    from patchd.signing.keys import read_bounded_file

    args = invocation.args
    path = Path(args.file)
    document = read_bounded_file(path, MAX_POLICY_BYTES, "policy")
    loaded = load_policy(document, str(path))
    sig_path = detached_signature_path(path)
    signatures = read_detached(sig_path, POLICY_PAYLOAD_TYPE)
    if args.trust:
        from patchd.cli.commands.policy import _root_file

        _root_file(Path(args.trust)).verify_policy(document, signatures, what=str(path))
    sig_document = json.dumps({"payloadType": POLICY_PAYLOAD_TYPE, "signatures": [s.as_dict() for s in signatures]},
                              sort_keys=True).encode()  # fmt: skip
    store = CollectorStore(args.db)
    try:
        store.publish_policy(version=loaded.policy.version, name=loaded.policy.name,
                             document=document, signatures=sig_document)  # fmt: skip
    finally:
        store.close()
    print(
        f"published policy {loaded.policy.name} version {loaded.policy.version} ({len(signatures)} signature(s))"
    )
    return 0


def report(invocation: Invocation) -> int:
    from patchd.collector import export
    from patchd.collector.store import CollectorStore

    args = invocation.args
    store = CollectorStore(args.db)
    try:
        document = export.build(store, utcnow(), _duration(args.stale_after, "--stale-after"))
    finally:
        store.close()
    if args.format == "json":
        data = export.to_json(document)
    elif args.format == "csv":
        data = export.to_csv(document)
    else:
        from patchd.collector.dashboard import render_report

        data = render_report(document).encode()
    if not args.out:
        sys.stdout.buffer.write(data)
        return 0
    from patchd.atomicfile import atomic_write_bytes

    out = Path(args.out)
    atomic_write_bytes(out, data)
    if args.format == "csv":
        atomic_write_bytes(
            out.with_name(out.name + ".evidence.json"), export.evidence_document(document)
        )
    print(out)
    return 0


def verify_export(invocation: Invocation) -> int:
    from patchd.collector import export

    args = invocation.args
    rows, evidence = export.read_export(
        Path(args.file), Path(args.evidence) if args.evidence else None
    )
    checked = export.verify_export(rows, evidence)
    print(
        f"{args.file}: all {len(rows)} row(s) match the endpoints' signed reports ({checked} with a report)"
    )
    return 0
