"""``patchd enroll``: register this endpoint's key with a collector, using an admin's token."""

from __future__ import annotations

from patchd.cli.main import Invocation
from patchd.cli.output import write_json

SCHEMA_VERSION = 1


def run(invocation: Invocation) -> int:
    from patchd.policy.planner import facts_now
    from patchd.reporting.enrolment import check_token, enroll, read_token_file
    from patchd.reporting.identity import ensure_endpoint_key

    args = invocation.args
    token = check_token(args.token if args.token is not None else read_token_file(args.token_file))
    # ... all before anything is made or sent
    with invocation.session() as session:
        key = ensure_endpoint_key(session.state_dir)
        enrolment = enroll(
            session.store,
            session.config.reporting,
            collector_url=args.collector,
            token=token,
            key=key,
            hostname=facts_now(session).hostname,
            now=session.clock(),
        )
    document = enrolment.as_dict()
    if args.json:
        write_json({"schema_version": SCHEMA_VERSION, **document})
    else:
        print(f"Enrolled with {document['collector']} as endpoint {enrolment.endpoint_id}")
    return 0
