"""The collector's database: tables (SQLAlchemy Core) and their migrations.

One schema serves SQLite (the default: a single file, one batched writer) and PostgreSQL
(large fleets, several collector processes or hosts sharing one database). Times are
stored as RFC 3339 UTC strings (``2026-12-04T23:00:00Z``), which sort and compare the
same way in both. Every migration runs once, in order, inside a transaction, and the
version it reached is recorded in ``schema_version``; several collectors starting at once
against PostgreSQL serialise on a lock so only one migrates.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Connection,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    inspect,
    select,
    text,
)
from sqlalchemy.exc import DBAPIError

log = logging.getLogger(__name__)

metadata = MetaData()

TIME = String(32)  # RFC 3339 UTC, second precision

schema_version = Table(
    "schema_version",
    metadata,
    Column("version", Integer, nullable=False),
)

enrolment_tokens = Table(
    "enrolment_tokens",
    metadata,
    Column("id", String(32), primary_key=True),  # shown to admins; the secret is never stored
    Column("token_sha256", String(64), nullable=False, unique=True),
    Column("created_at", TIME, nullable=False),
    Column("expires_at", TIME, nullable=False),
    Column("max_uses", Integer, nullable=False),
    Column("uses_left", Integer, nullable=False),
    Column("note", String(256), nullable=False, default=""),
)

endpoints = Table(
    "endpoints",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("public_key", String(64), nullable=False),  # base64 of the raw 32-byte Ed25519 key
    Column("hostname", String(255), nullable=False),
    Column("enrolled_at", TIME, nullable=False),
    Column("token_id", String(32), nullable=True),
    Column("last_seq", BigInteger, nullable=False, default=-1),
    # Bumped when an admin approves a new key: the reinstalled agent's sequence restarts.
    Column("key_epoch", Integer, nullable=False, default=0),
    Column("last_report_at", TIME, nullable=True),  # when the collector received it
    Column("last_created_at", TIME, nullable=True),  # when the endpoint made it
    Column("pending_public_key", String(64), nullable=True),  # a new key awaiting approval
    Column("pending_since", TIME, nullable=True),
    Column("flagged", Boolean, nullable=False, default=False),
    Column("flag_reason", Text, nullable=True),
    # From the latest report (nullable: a minimal report carries none of it).
    Column("os_family", String(64), nullable=True),
    Column("os_name", String(255), nullable=True),
    Column("os_version", String(64), nullable=True),
    Column("eol_past", Boolean, nullable=True),
    Column("eol_date", String(16), nullable=True),
    Column("segments", Text, nullable=False, default="[]"),  # JSON list
    Column("ring", String(128), nullable=True),
    Column("policy_name", String(255), nullable=True),
    Column("policy_version", BigInteger, nullable=True),
    Column("policy_state", String(32), nullable=True),
    Column("reboot_required", Boolean, nullable=True),
    Column("pending", Integer, nullable=True),
    Column("pending_security", Integer, nullable=True),
    Column("overdue", Integer, nullable=True),
    Column("summary", Text, nullable=False, default="{}"),  # the compliance section, JSON
    # What the endpoint's update rows were last written from (see bulk.updates_digest);
    # NULL: unknown, so the next report with an updates section writes them all again.
    Column("updates_digest", String(64), nullable=True),
)

reports = Table(
    "reports",
    metadata,
    Column("endpoint_id", String(64), primary_key=True),
    Column("key_epoch", Integer, primary_key=True),
    Column("seq", BigInteger, primary_key=True),
    Column("received_at", TIME, nullable=False),
    Column("created_at", TIME, nullable=False),
    Column("sha256", String(64), nullable=False),  # of the payload bytes
    Column("envelope", LargeBinary, nullable=False),  # exactly as received: evidence
)
# The daily prune finds old reports by it (patchd.collector.retention); appended to at the
# right edge only, as received_at grows.
reports_received = Index("reports_received_at", reports.c.received_at)

endpoint_updates = Table(
    "endpoint_updates",
    metadata,
    Column("endpoint_id", String(64), primary_key=True),
    Column("update_id", String(512), primary_key=True),
    Column("backend", String(64), nullable=False),
    Column("name", String(255), nullable=False),
    Column("available_version", String(255), nullable=False, default=""),
    Column("classification", String(32), nullable=False),
    Column("severity", String(32), nullable=False),
    Column("cves", Text, nullable=False, default="[]"),
    Column("first_seen", TIME, nullable=True),
    Column("deadline", TIME, nullable=True),
    Column("overdue", Boolean, nullable=False, default=False),
    Column("decision", String(64), nullable=False, default=""),
    Column("reason", Text, nullable=False, default=""),
    Column("not_before", TIME, nullable=True),
    Column("pending", Boolean, nullable=False, default=True),  # in the latest report
    Column("installed_at", TIME, nullable=True),  # from a run that installed it
    # The report it was last written from: later reports describing it identically
    # leave the row alone (only changed rows are written).
    Column("seq", BigInteger, nullable=False),
)
Index("endpoint_updates_pending", endpoint_updates.c.pending, endpoint_updates.c.severity)

endpoint_runs = Table(
    "endpoint_runs",
    metadata,
    Column("endpoint_id", String(64), primary_key=True),
    Column("run_id", String(64), primary_key=True),
    Column("kind", String(32), nullable=False),
    Column("status", String(32), nullable=False),
    Column("dry_run", Boolean, nullable=False, default=False),
    Column("started_at", TIME, nullable=True),
    Column("finished_at", TIME, nullable=True),
    Column("done", Integer, nullable=False, default=0),
    Column("failed", Integer, nullable=False, default=0),
    Column("notes", Text, nullable=False, default="[]"),
    Column("seq", BigInteger, nullable=False),
)
Index("endpoint_runs_finished", endpoint_runs.c.finished_at)

endpoint_daily = Table(
    "endpoint_daily",
    metadata,
    Column("endpoint_id", String(64), primary_key=True),
    Column("day", String(10), primary_key=True),  # YYYY-MM-DD (UTC)
    Column("compliant", Boolean, nullable=False),
    Column("overdue", Integer, nullable=False),
)
Index("endpoint_daily_day", endpoint_daily.c.day)

flags = Table(
    "flags",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("endpoint_id", String(64), nullable=False),
    Column("at", TIME, nullable=False),
    Column("kind", String(32), nullable=False),  # replay, fork, key-change, identity
    Column("detail", Text, nullable=False),
)

policies = Table(
    "policies",
    metadata,
    Column("version", BigInteger, primary_key=True),
    Column("name", String(255), nullable=False),
    Column("sha256", String(64), nullable=False),
    Column("document", LargeBinary, nullable=False),
    Column("signatures", LargeBinary, nullable=False),  # the detached .sig document
    Column("published_at", TIME, nullable=False),
)


# One row (id 1): the collectors sharing this database claim the daily prune on it.
housekeeping = Table(
    "housekeeping",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("last_pruned_at", TIME, nullable=True),
    # The time the last prune counted its cutoff from: the next one counts from at most two
    # days later, so a clock set years ahead cannot wipe the history at once.
    Column("pruned_through", TIME, nullable=True),
)


def _create_v1(conn: Connection) -> None:
    metadata.create_all(conn, checkfirst=True)


def _add_updates_digest_v2(conn: Connection) -> None:
    # A database created at version 1 by this code already has the column (create_all).
    if "updates_digest" not in {c["name"] for c in inspect(conn).get_columns("endpoints")}:
        conn.execute(text("ALTER TABLE endpoints ADD COLUMN updates_digest VARCHAR(64)"))


def _envelopes_lz4_v3(conn: Connection) -> None:
    """PostgreSQL: compress new envelopes with lz4, not pglz (its TOAST default).

    An envelope (~5.6 KB of JSON and base64) is compressed as it is stored; with pglz that
    was a third of the server's CPU per report, lz4 takes about a third less for the same
    size (docs/collector-performance.md). Only new rows change, and no table is rewritten.
    A server built without lz4 keeps pglz.
    """
    if conn.dialect.name != "postgresql" or (conn.dialect.server_version_info or (0,)) < (14,):
        return
    try:
        with conn.begin_nested():
            conn.execute(text("ALTER TABLE reports ALTER COLUMN envelope SET COMPRESSION lz4"))
    except DBAPIError as e:
        log.warning("report envelopes stay compressed with pglz: %s", str(e.orig).splitlines()[0])


def _retention_v4(conn: Connection) -> None:
    """The ``housekeeping`` row the daily prune is claimed on.

    A database created at version 1 by this code already has it (create_all), and the
    index of reports by ``received_at``. An older database gets the index from its first
    prune (``patchd.collector.retention.ensure_index``), not here: on a large database
    building it takes a while, and a migration holds every collector's start meanwhile.
    """
    housekeeping.create(conn, checkfirst=True)
    if conn.execute(select(housekeeping.c.id).where(housekeeping.c.id == 1)).first() is None:
        conn.execute(housekeeping.insert().values(id=1, last_pruned_at=None))


MIGRATIONS: list[Callable[[Connection], None]] = [
    _create_v1,
    _add_updates_digest_v2,
    _envelopes_lz4_v3,
    _retention_v4,
]
LATEST = len(MIGRATIONS)


def migrate(conn: Connection) -> int:
    """Bring the schema to :data:`LATEST` (in the caller's transaction); return the version."""
    if conn.dialect.name == "postgresql":
        # Several collectors may start together: one migrates, the others wait, then see it.
        conn.execute(text("SELECT pg_advisory_xact_lock(7213001)"))
    schema_version.create(conn, checkfirst=True)
    current = conn.execute(select(schema_version.c.version)).scalar()
    if current is None:
        conn.execute(schema_version.insert().values(version=0))
        current = 0
    if current > LATEST:
        from patchd.errors import ConfigError

        raise ConfigError(
            f"the collector database is at schema version {current}, newer than this "
            f"patchd knows ({LATEST})",
            hint="upgrade patchd on this collector to the version the others run",
        )
    for version in range(current, LATEST):
        MIGRATIONS[version](conn)
        conn.execute(schema_version.update().values(version=version + 1))
    return LATEST
