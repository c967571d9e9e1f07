"""Storing a batch of verified reports with a few statements for the whole batch.

Stored one by one, a report costs about ten SQL statements, each built, compiled and sent
separately; at thousands of reports a second that, not the signature check, was the
collector's limit. Here each report's rows are made first (:func:`prepare`, before any
lock, as they depend on nothing stored); then the batch's endpoint rows are read once and locked (SQLite: the
writer's ``BEGIN IMMEDIATE``; PostgreSQL: ``FOR UPDATE``, in id order so collectors
sharing a database never deadlock on each other), every verdict is decided from that
locked state exactly as :meth:`CollectorStore._store_one` decides it, and each kind of
write is then one ``executemany``. Statements are built once per dialect.

A report that one endpoint sends twice in a batch (seq 5 and 6) is written in a second
round, after the first, so its rows change in the order the reports were made. Anything
unexpected raises: the caller rolls this back and stores the batch report by report.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from typing import Any

from sqlalchemy import Connection, bindparam, false, select, update

from patchd.collector import extract
from patchd.collector.ingest import VerifiedReport
from patchd.collector.schema import (
    endpoint_daily,
    endpoint_runs,
    endpoint_updates,
    endpoints,
    reports,
)
from patchd.timeutil import stamp

STORED, DUPLICATE, CONFLICT, UNKNOWN = 202, 200, 409, 401  # as store.Verdict

FlagWriter = Callable[[Connection, str, str, str], None]  # (conn, endpoint id, kind, detail)


_SUMMARY_KEYS = tuple(extract.summary({}).values)  # the endpoint columns a report sets


class BulkMismatch(Exception):
    """The database did not change as the locked state said it would: store one by one."""


@dataclass
class _Pinned:
    public_key: str
    key_epoch: int
    last_seq: int


@dataclass(frozen=True)
class _Statements:
    """The batch's statements for one dialect, built once.

    The writes run once per row of the batch, so they are compiled here to the driver's
    SQL text with named parameters and run with the driver's ``executemany``: nothing
    is built, compiled or converted per report. (Booleans, strings, integers, bytes and
    None are all the drivers are given, and both adapt those natively.)
    """

    pinned: Any
    known: Any
    advance: str
    insert_report: str
    clear_pending: str
    upsert_update: str
    upsert_run: str
    upsert_daily: str
    summary_keys: tuple[str, ...]


@cache
def _statements(dialect_name: str) -> _Statements:
    from sqlalchemy.dialects import postgresql, sqlite

    if dialect_name == "postgresql":
        insert: Any = postgresql.insert
        dialect: Any = postgresql.psycopg.dialect()  # type: ignore[no-untyped-call]  # %(name)s
    else:
        insert = sqlite.insert
        dialect = sqlite.pysqlite.dialect(paramstyle="named")  # :name

    def text(statement: Any, columns: Iterable[str] | None = None) -> str:
        keys = list(columns) if columns is not None else None
        return str(statement.compile(dialect=dialect, column_keys=keys))

    pinned = (
        select(endpoints.c.id, endpoints.c.public_key, endpoints.c.key_epoch, endpoints.c.last_seq)
        .where(endpoints.c.id.in_(bindparam("ids", expanding=True)))
        .order_by(endpoints.c.id)
        .with_for_update()  # SQLite renders nothing: BEGIN IMMEDIATE already holds the lock
    )
    known = select(reports.c.endpoint_id, reports.c.key_epoch, reports.c.seq, reports.c.sha256).where(
        reports.c.endpoint_id.in_(bindparam("ids", expanding=True)),
        reports.c.seq.in_(bindparam("seqs", expanding=True)),
    )  # fmt: skip
    summary_keys = _SUMMARY_KEYS
    advance = (
        update(endpoints)
        .where(endpoints.c.id == bindparam("b_id"), endpoints.c.key_epoch == bindparam("b_epoch"),
               endpoints.c.last_seq < bindparam("b_seq"))
        .values(last_seq=bindparam("b_seq"), last_report_at=bindparam("b_received"),
                last_created_at=bindparam("b_created"), **{k: bindparam(f"v_{k}") for k in summary_keys})
    )  # fmt: skip
    clear_pending = (  # IS NOT false, not IS true: SQLite then searches by endpoint, not by
        update(endpoint_updates)  # the pending index (every pending row of the fleet)
        .where(endpoint_updates.c.endpoint_id == bindparam("b_id"), endpoint_updates.c.pending.is_not(False))
        .values(pending=false())
    )  # fmt: skip
    update_columns = _row_columns(
        extract.update_rows({"updates": {"items": [{"id": "x"}]}}), "endpoint_id", "pending", "seq"
    )
    run_columns = [
        c
        for c in _row_columns(
            extract.run_rows({"runs": {"items": [{"id": "x"}]}}), "endpoint_id", "seq"
        )
        if c != "installed"
    ]
    daily_columns = ("endpoint_id", "day", "compliant", "overdue")
    return _Statements(
        pinned=pinned,
        known=known,
        advance=text(advance),
        insert_report=text(reports.insert(), [c.name for c in reports.columns]),
        clear_pending=text(clear_pending),
        upsert_update=text(_upsert(insert, endpoint_updates, update_columns, ("endpoint_id", "update_id"),
                                   keep=("first_seen",)), update_columns),
        upsert_run=text(_upsert(insert, endpoint_runs, run_columns, ("endpoint_id", "run_id")), run_columns),
        upsert_daily=text(_upsert(insert, endpoint_daily, daily_columns, ("endpoint_id", "day")), daily_columns),
        summary_keys=summary_keys,
    )  # fmt: skip


def _upsert(insert: Any, table: Any, columns: Iterable[str], keys: tuple[str, ...],
            keep: tuple[str, ...] = ()) -> Any:  # fmt: skip
    """INSERT ... ON CONFLICT (keys) DO UPDATE of ``columns`` but ``keep`` (as store._upsert)."""
    statement = insert(table)
    changed = {c: statement.excluded[c] for c in columns if c not in keys and c not in keep}
    return statement.on_conflict_do_update(index_elements=list(keys), set_=changed)


def _row_columns(rows: list[dict[str, Any]] | None, *extra: str) -> tuple[str, ...]:
    """The columns extract's rows carry (from a one-item sample), with ``extra``."""
    assert rows
    return (*rows[0], *extra)


@dataclass(frozen=True)
class Prepared:
    """A report's rows, made before the database is locked (they depend on nothing in it).

    Only the key epoch is filled in under the lock, once the report's verdict is known.
    """

    report: VerifiedReport
    advance: dict[str, Any]
    row: dict[str, Any]
    clear_pending: bool
    updates: list[dict[str, Any]]
    runs: list[dict[str, Any]]
    installs: list[tuple[str, list[str], str]]  # (endpoint id, update ids, finished at)
    daily: dict[str, Any] | None


def prepare(batch: Sequence[VerifiedReport], received: datetime) -> list[Prepared]:
    """Every report's rows, as :func:`store_reports` writes them for a stored report."""
    received_at = stamp(received)
    return [_prepared(report, received_at) for report in batch]


def _prepared(report: VerifiedReport, received_at: str) -> Prepared:
    found = extract.summary(report.payload)
    advance = {"b_id": report.endpoint_id, "b_seq": report.seq, "b_received": received_at,
               "b_created": report.created_at, **{f"v_{k}": found.values[k] for k in _SUMMARY_KEYS}}  # fmt: skip
    row = {"endpoint_id": report.endpoint_id, "seq": report.seq, "received_at": received_at,
           "created_at": report.created_at, "sha256": report.sha256, "envelope": report.envelope}  # fmt: skip
    listed = extract.update_rows(report.payload)
    runs, installs = [], []
    for run in extract.run_rows(report.payload):
        installed = run.pop("installed")
        runs.append({**run, "endpoint_id": report.endpoint_id, "seq": report.seq})
        if installed and run["finished_at"] and run["kind"] == "apply" and not run["dry_run"]:
            installs.append((report.endpoint_id, installed, run["finished_at"]))
    daily = None
    if found.compliant is not None:
        daily = {"endpoint_id": report.endpoint_id, "day": received_at[:10],
                 "compliant": found.compliant, "overdue": found.overdue}  # fmt: skip
    return Prepared(
        report=report,
        advance=advance,
        row=row,
        clear_pending=listed is not None and not extract.updates_truncated(report.payload),
        updates=_unique_updates(report, listed) if listed is not None else [],
        runs=runs,
        installs=installs,
        daily=daily,
    )


def store_reports(conn: Connection, batch: Sequence[Prepared], flag: FlagWriter) -> list[int]:
    """Store ``batch`` inside the caller's transaction; the verdict for each, in order."""
    sql = _statements(conn.dialect.name)
    ids = sorted({p.report.endpoint_id for p in batch})
    pinned = {row.id: _Pinned(row.public_key, row.key_epoch, row.last_seq)
              for row in conn.execute(sql.pinned, {"ids": ids})}  # fmt: skip
    known = {(row.endpoint_id, row.key_epoch, row.seq): row.sha256 for row in
             conn.execute(sql.known, {"ids": ids, "seqs": sorted({p.report.seq for p in batch})})}  # fmt: skip
    verdicts: list[int] = []
    rounds: list[list[tuple[Prepared, int]]] = []  # at most one report per endpoint in each
    written: dict[str, int] = {}  # endpoint id -> reports stored for it in this batch
    for prepared in batch:
        report = prepared.report
        verdict, epoch = _decide(conn, report, pinned, known, flag)
        verdicts.append(verdict)
        if verdict == STORED:
            n = written.get(report.endpoint_id, 0)
            written[report.endpoint_id] = n + 1
            if n == len(rounds):
                rounds.append([])
            rounds[n].append((prepared, epoch))
    for stored in rounds:
        _write_round(conn, sql, stored)
    return verdicts


def _decide(conn: Connection, report: VerifiedReport, pinned: dict[str, _Pinned],
            known: dict[tuple[str, int, int], str], flag: FlagWriter) -> tuple[int, int]:  # fmt: skip
    """The report's verdict and key epoch, from (and updating) the batch's locked state."""
    state = pinned.get(report.endpoint_id)
    if state is None or state.public_key != report.public_key:
        return UNKNOWN, 0  # unenrolled, or its key was replaced since it was cached
    key = (report.endpoint_id, state.key_epoch, report.seq)
    existing = known.get(key)
    if existing is not None:
        if existing == report.sha256:
            return DUPLICATE, state.key_epoch
        flag(conn, report.endpoint_id, "fork",
             f"seq {report.seq} arrived again with other contents (cloned endpoint or forged state)")  # fmt: skip
        return CONFLICT, state.key_epoch
    if report.seq <= state.last_seq:
        flag(conn, report.endpoint_id, "replay",
             f"seq {report.seq} is not above {state.last_seq}, the last stored (replay, restored backup or cloned endpoint)")  # fmt: skip
        return CONFLICT, state.key_epoch
    state.last_seq = report.seq
    known[key] = report.sha256
    return STORED, state.key_epoch


def _write_round(conn: Connection, sql: _Statements, stored: list[tuple[Prepared, int]]) -> None:
    advances = [{**p.advance, "b_epoch": epoch} for p, epoch in stored]
    moved = conn.exec_driver_sql(sql.advance, advances).rowcount
    if moved != len(advances):
        raise BulkMismatch(f"{moved} of {len(advances)} endpoints advanced")
    conn.exec_driver_sql(sql.insert_report, [{**p.row, "key_epoch": epoch} for p, epoch in stored])
    cleared = [{"b_id": p.report.endpoint_id} for p, _ in stored if p.clear_pending]
    if cleared:
        conn.exec_driver_sql(sql.clear_pending, cleared)
    updates = [row for p, _ in stored for row in p.updates]
    if updates:
        conn.exec_driver_sql(sql.upsert_update, updates)
    runs = [row for p, _ in stored for row in p.runs]
    if runs:
        conn.exec_driver_sql(sql.upsert_run, runs)
    for p, _ in stored:
        for endpoint_id, installed, finished_at in p.installs:
            conn.execute(update(endpoint_updates).where(
                endpoint_updates.c.endpoint_id == endpoint_id,
                endpoint_updates.c.update_id.in_(installed),
                endpoint_updates.c.installed_at.is_(None),
            ).values(installed_at=finished_at, pending=False))  # fmt: skip
    daily = [p.daily for p, _ in stored if p.daily is not None]
    if daily:
        conn.exec_driver_sql(sql.upsert_daily, daily)


def _unique_updates(report: VerifiedReport, listed: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The report's update rows, one per update id, as upserting them in turn would leave them.

    A later entry wins, but keeps the first entry's ``first_seen`` (an upsert keeps it);
    one statement must not touch a row twice.
    """
    by_id: dict[str, dict[str, Any]] = {}
    for row in listed:
        earlier = by_id.get(row["update_id"])
        first_seen = earlier["first_seen"] if earlier is not None else row["first_seen"]
        by_id[row["update_id"]] = {**row, "first_seen": first_seen, "endpoint_id": report.endpoint_id,
                                   "pending": True, "seq": report.seq}  # fmt: skip
    return list(by_id.values())
