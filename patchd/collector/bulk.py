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

Only rows that change are written. An endpoint's pending updates rarely change from one
report to the next, yet rewriting them was most of a report's cost: the endpoint row keeps
a digest of the updates section its update rows were last written from
(:func:`updates_digest`), and a report whose section has the same digest leaves them as
they are. Likewise the day's compliance row is left alone when the endpoint's last report
arrived the same day with the same overdue count (it wrote that very row).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import cache, lru_cache
from typing import Any

from sqlalchemy import Connection, bindparam, false, select, update

from patchd.collector import extract
from patchd.collector.ingest import VerifiedReport, dump_json
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


# Part of every updates digest: change it when extract.update_rows makes other rows from
# the same section, so a new collector rewrites rows an older one wrote.
UPDATE_ROWS_VERSION = b"patchd update rows 1\n"


def updates_digest(payload: Mapping[str, Any]) -> str | None:
    """A digest of the report's updates section, or None (no section, or not digestible).

    Equal digests mean equal sections, hence equal rows from :func:`extract.update_rows`.
    (orjson writes NaN and infinities as null, and extract treats them all alike: as
    neither text, integer, boolean nor list.)
    """
    section = payload.get("updates")
    if not isinstance(section, dict):
        return None
    encoded = dump_json(section)
    if encoded is None:
        return None
    return hashlib.sha256(UPDATE_ROWS_VERSION + encoded).hexdigest()


class BulkMismatch(Exception):
    """The database did not change as the locked state said it would: store one by one."""


@dataclass
class _Pinned:
    """An endpoint's row as locked, kept current through the batch's verdicts."""

    public_key: str
    key_epoch: int
    last_seq: int
    updates_digest: str | None
    last_report_at: str | None
    overdue: int | None


@dataclass(frozen=True)
class _Statements:
    """The batch's statements for one dialect, built once.

    The writes run once per row of the batch, so they are compiled here to the driver's
    SQL text with named parameters and run with the driver's ``executemany``: nothing
    is built, compiled or converted per report. (Booleans, strings, integers, bytes and
    None are all the drivers are given, and both adapt those natively.)
    """

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
                updates_digest=bindparam("b_digest"),
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

    ``updates`` is None when the report has no updates section, or when the caller said
    the endpoint's rows were last written from the same section (they are then made
    under the lock, should the database say otherwise).
    """

    report: VerifiedReport
    advance: dict[str, Any]
    row: dict[str, Any]
    has_updates: bool
    digest: str | None  # of the updates section (updates_digest)
    clear_pending: bool
    updates: list[dict[str, Any]] | None
    runs: list[dict[str, Any]]
    installs: list[tuple[str, list[str], str]]  # (endpoint id, update ids, finished at)
    daily: dict[str, Any] | None

    def update_rows(self) -> list[dict[str, Any]]:
        if self.updates is not None:
            return self.updates
        listed = extract.update_rows(self.report.payload)
        return _unique_updates(self.report, listed) if listed is not None else []


def prepare(batch: Sequence[VerifiedReport], received: datetime,
            written: Mapping[str, str] | None = None) -> list[Prepared]:  # fmt: skip
    """Every report's rows, as :func:`store_reports` writes them for a stored report.

    ``written`` (endpoint id -> updates digest, as this process last wrote them) is a
    hint: update rows are not made for a report whose section has the digest given.
    """
    received_at = stamp(received)
    return [_prepared(report, received_at, written or {}) for report in batch]


def _prepared(report: VerifiedReport, received_at: str, written: Mapping[str, str]) -> Prepared:
    found = extract.summary(report.payload)
    advance = {"b_id": report.endpoint_id, "b_seq": report.seq, "b_received": received_at,
               "b_created": report.created_at, **{f"v_{k}": found.values[k] for k in _SUMMARY_KEYS}}  # fmt: skip
    row = {"endpoint_id": report.endpoint_id, "seq": report.seq, "received_at": received_at,
           "created_at": report.created_at, "sha256": report.sha256, "envelope": report.envelope}  # fmt: skip
    has_updates = isinstance(report.payload.get("updates"), dict)
    digest = updates_digest(report.payload)
    updates = None
    if has_updates and (digest is None or written.get(report.endpoint_id) != digest):
        listed = extract.update_rows(report.payload)
        updates = _unique_updates(report, listed) if listed is not None else []
    runs, installs = _runs(report)
    daily = None
    if found.compliant is not None:
        daily = {"endpoint_id": report.endpoint_id, "day": received_at[:10],
                 "compliant": found.compliant, "overdue": found.overdue}  # fmt: skip
    return Prepared(
        report=report,
        advance=advance,
        row=row,
        has_updates=has_updates,
        digest=digest,
        clear_pending=has_updates and not extract.updates_truncated(report.payload),
        updates=updates,
        runs=runs,
        installs=installs,
        daily=daily,
    )


def _runs(report: VerifiedReport) -> tuple[list[dict[str, Any]], list[tuple[str, list[str], str]]]:
    """The report's run rows, and the updates its applying runs installed."""
    runs, installs = [], []
    for run in extract.run_rows(report.payload):
        installed = run.pop("installed")
        runs.append({**run, "endpoint_id": report.endpoint_id, "seq": report.seq})
        if installed and run["finished_at"] and run["kind"] == "apply" and not run["dry_run"]:
            installs.append((report.endpoint_id, installed, run["finished_at"]))
    return runs, installs


def installs_updates(report: VerifiedReport) -> bool:
    """Whether the report's runs mark update rows installed (after its updates are written)."""
    return bool(_runs(report)[1])


@dataclass(frozen=True)
class _Plan:
    """What to write for one stored report, decided under the lock."""

    prepared: Prepared
    epoch: int
    digest: str | None  # the endpoint's updates digest once this report is stored
    write_updates: bool
    write_daily: bool


def store_reports(conn: Connection, batch: Sequence[Prepared], flag: FlagWriter,
                  written: dict[str, str | None] | None = None) -> list[int]:  # fmt: skip
    """Store ``batch`` inside the caller's transaction; the verdict for each, in order.

    ``written`` receives each stored endpoint's updates digest (None: unknown).
    """
    sql = _statements(conn.dialect.name)
    ids = sorted({p.report.endpoint_id for p in batch})
    pinned = {row[0]: _Pinned(*row[1:]) for row in
              conn.exec_driver_sql(_pinned_sql(conn.dialect.name, len(ids)),
                                   {f"i{i}": v for i, v in enumerate(ids)}).all()}  # fmt: skip
    # Every report of an endpoint's key epoch has a seq at or below its last_seq (which
    # only grows, and restarts with the epoch): only a report at or below it can have
    # been stored before. A fleet's reports are nearly all above: no look-up for them.
    again = [p.report for p in batch
             if p.report.endpoint_id in pinned and p.report.seq <= pinned[p.report.endpoint_id].last_seq]  # fmt: skip
    known = {}
    if again:
        known = {(row.endpoint_id, row.key_epoch, row.seq): row.sha256 for row in conn.execute(sql.known, {
            "ids": sorted({r.endpoint_id for r in again}), "seqs": sorted({r.seq for r in again})})}  # fmt: skip
    verdicts: list[int] = []
    rounds: list[list[_Plan]] = []  # at most one report per endpoint in each
    stored_now: dict[str, int] = {}  # endpoint id -> reports stored for it in this batch
    for prepared in batch:
        report = prepared.report
        verdict, epoch = _decide(conn, report, pinned, known, flag)
        verdicts.append(verdict)
        if verdict == STORED:
            n = stored_now.get(report.endpoint_id, 0)
            stored_now[report.endpoint_id] = n + 1
            if n == len(rounds):
                rounds.append([])
            rounds[n].append(_plan(prepared, epoch, pinned[report.endpoint_id]))
            if written is not None:
                written[report.endpoint_id] = pinned[report.endpoint_id].updates_digest
    for stored in rounds:
        _write_round(conn, sql, stored)
    return verdicts


@lru_cache(maxsize=256)
def _pinned_sql(dialect_name: str, count: int) -> str:
    """The batch's endpoint rows, locked (PostgreSQL) in id order, for ``count`` ids
    given as parameters ``i0 .. i<count-1>`` (driver SQL: nothing is compiled per batch)."""
    if dialect_name == "postgresql":
        marks, lock = ", ".join(f"%(i{i})s" for i in range(count)), " FOR UPDATE"
    else:  # SQLite: the writer's BEGIN IMMEDIATE already holds the lock
        marks, lock = ", ".join(f":i{i}" for i in range(count)), ""
    columns = "id, public_key, key_epoch, last_seq, updates_digest, last_report_at, overdue"
    return f"SELECT {columns} FROM endpoints WHERE id IN ({marks}) ORDER BY id{lock}"  # noqa: S608 - placeholders only


def _plan(prepared: Prepared, epoch: int, state: _Pinned) -> _Plan:
    """Which of the report's rows change, from (and updating) the endpoint's locked state."""
    digest = state.updates_digest
    write_updates = False
    if prepared.has_updates:
        write_updates = prepared.digest is None or prepared.digest != state.updates_digest
        digest = prepared.digest
    if prepared.installs:
        digest = None  # the runs change update rows after they are written: unknown again
    daily = prepared.daily
    received_at = prepared.advance["b_received"]
    overdue = prepared.advance["v_overdue"]
    write_daily = daily is not None and not (
        state.last_report_at is not None and state.last_report_at[:10] == received_at[:10]
        and state.overdue is not None and state.overdue == overdue
    )  # the endpoint's last report wrote this very row  # fmt: skip
    state.updates_digest, state.last_report_at, state.overdue = digest, received_at, overdue
    return _Plan(prepared, epoch, digest, write_updates, write_daily)


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


def _write_round(conn: Connection, sql: _Statements, stored: list[_Plan]) -> None:
    advances = [{**p.prepared.advance, "b_epoch": p.epoch, "b_digest": p.digest} for p in stored]
    moved = conn.exec_driver_sql(sql.advance, advances).rowcount
    if moved != len(advances):
        raise BulkMismatch(f"{moved} of {len(advances)} endpoints advanced")
    conn.exec_driver_sql(
        sql.insert_report, [{**p.prepared.row, "key_epoch": p.epoch} for p in stored]
    )
    changed = [p.prepared for p in stored if p.write_updates]
    cleared = [{"b_id": p.report.endpoint_id} for p in changed if p.clear_pending]
    if cleared:
        conn.exec_driver_sql(sql.clear_pending, cleared)
    updates = [row for p in changed for row in p.update_rows()]
    if updates:
        conn.exec_driver_sql(sql.upsert_update, updates)
    runs = [row for p in stored for row in p.prepared.runs]
    if runs:
        conn.exec_driver_sql(sql.upsert_run, runs)
    for p in stored:
        for endpoint_id, installed, finished_at in p.prepared.installs:
            conn.execute(update(endpoint_updates).where(
                endpoint_updates.c.endpoint_id == endpoint_id,
                endpoint_updates.c.update_id.in_(installed),
                endpoint_updates.c.installed_at.is_(None),
            ).values(installed_at=finished_at, pending=False))  # fmt: skip
    daily = [p.prepared.daily for p in stored if p.write_daily and p.prepared.daily is not None]
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
