"""How long the collector keeps what endpoints sent: the daily prune.

Every report envelope is stored (~5.6 KB: a fleet of 1,000 endpoints reporting hourly
adds ~49 GB a year), and runs, update rows, daily compliance rows, flags and enrolment
tokens pile up beside them. What is older than ``--keep`` (:data:`DEFAULT_KEEP`) goes:

- reports received before the cutoff, except each endpoint's newest (the row at its
  ``key_epoch`` and ``last_seq``): exports carry exactly that envelope as evidence. A
  pruned report sent again is still refused: ``endpoints.last_seq`` only grows, so a seq
  at or below it is a replay whether or not its row is still stored;
- runs finished before the cutoff; update rows no longer pending that were installed
  before it, or (never installed) first seen before it; daily compliance rows of days
  before the cutoff's day; flags raised before it; enrolment tokens that expired before it.

Endpoints and policies always stay. Times are compared as the stored RFC 3339 strings.
Rows go in transactions of at most :data:`BATCH_ROWS`, each taking the writer's turn
(SQLite), so report ingestion never waits long. The collectors sharing a database prune
once a day between them: each checks hourly (:class:`DailyPrune`), and the one whose
conditional ``UPDATE`` of the ``housekeeping`` row succeeds (:func:`claim`) prunes.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, delete, exists, func, inspect, or_, select, tuple_, update

from patchd.collector.schema import (
    endpoint_daily,
    endpoint_runs,
    endpoint_updates,
    enrolment_tokens,
    flags,
    housekeeping,
    reports,
    reports_received,
)
from patchd.collector.store import CollectorStore
from patchd.policy.durations import format_duration
from patchd.timeutil import parse_time, stamp

log = logging.getLogger(__name__)

DEFAULT_KEEP = timedelta(days=400)  # a year and a bit: last year's audit can still be checked
MIN_KEEP = timedelta(days=30)  # the compliance figures look back 30 days
MAX_KEEP = timedelta(days=3653)
PRUNE_EVERY = timedelta(days=1)  # per database, whatever the number of collectors
BATCH_ROWS = 5_000  # rows deleted in one transaction: a short hold on the writer's turn
FIRST_CHECK_S = 60.0  # after a collector starts, before its first check
CHECK_EVERY_S = 3600.0  # between checks whether the day's prune is due
STOP_WAIT_S = 30.0  # at shutdown, for a prune to finish its batch
BATCH_PAUSE_S = 0.05  # between a daily prune's batches: the report writers go first
CLOCKS_DIFFER = timedelta(hours=1)  # collectors' clocks this far apart are not "set back"
MAX_ADVANCE = timedelta(days=2)  # how far the time a prune counts from moves, a prune


@dataclass(frozen=True)
class _Rule:
    """Which rows of ``table`` go, given the table (or an alias of it) and the cutoff."""

    table: Any
    keys: tuple[str, ...]
    doomed: Callable[[Any, str], Any]


def _old_report(t: Any, cutoff: str) -> Any:
    """Received before the cutoff, and not its endpoint's newest stored report.

    The newest stored, not the one at the endpoint's ``last_seq``: after an approved new
    key the endpoint has none at its new key's seq until it reports again.
    """
    newer = reports.alias("newer")
    superseded = exists().where(
        newer.c.endpoint_id == t.c.endpoint_id,
        or_(newer.c.key_epoch > t.c.key_epoch,
            (newer.c.key_epoch == t.c.key_epoch) & (newer.c.seq > t.c.seq)),
    )  # fmt: skip
    return (t.c.received_at < cutoff) & superseded


def _old_run(t: Any, cutoff: str) -> Any:
    """Finished before the cutoff, and listed by no report received since.

    An agent lists its last runs in every report (each report rewrites them, with its
    ``seq``): one still listed would come back with the next report.
    """
    listing = reports.alias("listing")
    listed_since = exists().where(listing.c.endpoint_id == t.c.endpoint_id,
                                  listing.c.seq == t.c.seq, listing.c.received_at >= cutoff)  # fmt: skip
    return (t.c.finished_at < cutoff) & ~listed_since


def _old_update(t: Any, cutoff: str) -> Any:
    """No longer pending, and installed before the cutoff or, never installed, first seen
    before it while no run of its endpoint is still going.

    A run still going may yet say it installed the update (a report made meanwhile no
    longer lists it): its row must be there to take ``installed_at``.
    """
    going = endpoint_runs.alias("going")
    run_going = exists().where(
        going.c.endpoint_id == t.c.endpoint_id, going.c.finished_at.is_(None)
    )
    never_installed = t.c.installed_at.is_(None) & (t.c.first_seen < cutoff) & ~run_going
    return (t.c.pending == False) & or_(t.c.installed_at < cutoff, never_installed)  # noqa: E712


RULES = (
    _Rule(reports, ("endpoint_id", "key_epoch", "seq"), _old_report),
    _Rule(endpoint_runs, ("endpoint_id", "run_id"), _old_run),
    _Rule(endpoint_updates, ("endpoint_id", "update_id"), _old_update),
    _Rule(endpoint_daily, ("endpoint_id", "day"), lambda t, cutoff: t.c.day < cutoff[:10]),
    _Rule(flags, ("id",), lambda t, cutoff: t.c.at < cutoff),
    _Rule(enrolment_tokens, ("id",), lambda t, cutoff: t.c.expires_at < cutoff),
)
TABLES = tuple(rule.table.name for rule in RULES)


@dataclass(frozen=True)
class PruneResult:
    """What a prune removed (or, with ``dry_run``, would remove), by table."""

    keep: timedelta
    cutoff: str
    removed: dict[str, int] = field(default_factory=dict)
    dry_run: bool = False
    complete: bool = True  # False: stopped between batches (the collector shut down)

    def as_dict(self) -> dict[str, Any]:
        return {"keep": format_duration(self.keep), "cutoff": self.cutoff, "dry_run": self.dry_run,
                "complete": self.complete, "removed": dict(self.removed)}  # fmt: skip

    def describe(self) -> str:
        counts = ", ".join(f"{n} {table}" for table, n in self.removed.items())
        verb = "would remove" if self.dry_run else "removed"
        return f"kept {format_duration(self.keep)} (since {self.cutoff}): {verb} {counts}"


def prune(
    store: CollectorStore,
    keep: timedelta,
    now: datetime,
    *,
    dry_run: bool = False,
    batch_rows: int = BATCH_ROWS,
    stopping: Callable[[], bool] = lambda: False,
) -> PruneResult:
    """Delete what is older than ``now - keep`` (see the module); what went, by table.

    ``now`` is taken as at most :data:`MAX_ADVANCE` after the time the last prune counted
    from: a clock set years ahead moves the cutoff two days a prune, not years at once.
    With ``dry_run`` nothing changes: the counts are what a prune would remove now.
    ``stopping`` is asked before each batch (it may wait a little, to let others write
    first); once it says so the prune ends early (``complete`` false) and the next day's
    carries on.
    """
    with store.reading() as conn:
        last = conn.execute(
            select(housekeeping.c.pruned_through).where(housekeeping.c.id == 1)
        ).scalar()
    if last:
        now = min(now, parse_time(last) + MAX_ADVANCE)
    cutoff = stamp(now - keep)
    if not dry_run:
        ensure_index(store)
    removed: dict[str, int] = {}
    for rule in RULES:
        doomed = rule.table.alias("doomed")
        condition = rule.doomed(doomed, cutoff)
        if dry_run:
            with store.reading() as conn:
                counted = select(func.count()).select_from(doomed).where(condition)
                removed[rule.table.name] = int(conn.execute(counted).scalar() or 0)
            continue
        chosen = select(*(doomed.c[k] for k in rule.keys)).where(condition).limit(batch_rows)
        columns = [rule.table.c[k] for k in rule.keys]
        target = tuple_(*columns) if len(columns) > 1 else columns[0]
        # The rule again on the row itself: on PostgreSQL a row changed meanwhile (pending
        # again, say) is checked anew before it goes.
        statement = delete(rule.table).where(target.in_(chosen), rule.doomed(rule.table, cutoff))
        total = 0
        while True:
            if stopping():
                removed[rule.table.name] = total
                return PruneResult(keep, cutoff, removed, complete=False)
            with store.writing() as conn:
                gone = conn.execute(statement).rowcount
            total += gone
            if gone < batch_rows:
                break
        removed[rule.table.name] = total
    if not dry_run:
        with store.writing() as conn:
            conn.execute(update(housekeeping).where(housekeeping.c.id == 1)
                         .values(pruned_through=stamp(now)))  # fmt: skip
    if any(removed.values()) and not dry_run:
        log.info("pruned what is older than %s: %s", cutoff,
                 ", ".join(f"{n} {t}" for t, n in removed.items() if n))  # fmt: skip
    return PruneResult(keep, cutoff, removed, dry_run=dry_run)


def ensure_index(store: CollectorStore) -> None:
    """Build the index of reports by ``received_at`` if the database has none (or a broken one).

    A database older than schema version 4 lacks it, and each batch of the reports rule
    would read the whole table. PostgreSQL builds it ``CONCURRENTLY``: reports go on
    being stored meanwhile (a build that was interrupted leaves an invalid index, which is
    dropped and built again). SQLite builds it in the writer's turn: reports wait.
    """
    name = reports_received.name
    with store.reading() as conn:
        present = name in {i["name"] for i in inspect(conn).get_indexes(reports.name)}
        valid = present
        if present and store.dialect == "postgresql":
            valid = bool(conn.exec_driver_sql(
                "SELECT indisvalid FROM pg_index WHERE indexrelid = %(name)s::regclass",
                {"name": name},
            ).scalar())  # fmt: skip
    if valid:
        return
    log.info("building the index %s of reports (once, after an upgrade)", name)
    if store.dialect != "postgresql":
        with store.writing() as conn:
            reports_received.create(conn, checkfirst=True)
        return
    with store.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        if present:
            conn.exec_driver_sql(f"DROP INDEX CONCURRENTLY IF EXISTS {name}")
        conn.exec_driver_sql(
            f"CREATE INDEX CONCURRENTLY IF NOT EXISTS {name} ON {reports.name} (received_at)"
        )


def claim(store: CollectorStore, now: datetime) -> bool:
    """Claim the day's prune for this process: True for the one collector that should prune.

    One conditional ``UPDATE`` of the ``housekeeping`` row: concurrent claims serialise on
    it, and only the first in a day (:data:`PRUNE_EVERY`) changes it. A last prune more
    than :data:`CLOCKS_DIFFER` in the future (a clock was set back) counts as due, or none
    would come until it passed; hosts' clocks a little apart do not.
    """
    due = or_(housekeeping.c.last_pruned_at.is_(None),
              housekeeping.c.last_pruned_at <= stamp(now - PRUNE_EVERY),
              housekeeping.c.last_pruned_at > stamp(now + CLOCKS_DIFFER))  # fmt: skip
    with store.writing() as conn:
        claimed = conn.execute(
            update(housekeeping)
            .where(housekeeping.c.id == 1, due)
            .values(last_pruned_at=stamp(now))
        ).rowcount
    return bool(claimed == 1)


def record_prune(store: CollectorStore, now: datetime) -> None:
    """Note an on-demand prune (``patchd collector prune``) as the day's."""
    with store.writing() as conn:
        conn.execute(
            update(housekeeping).where(housekeeping.c.id == 1).values(last_pruned_at=stamp(now))
        )


def last_pruned(conn: Connection) -> datetime | None:
    """When this database was last pruned (by any collector), or None."""
    value = conn.execute(
        select(housekeeping.c.last_pruned_at).where(housekeeping.c.id == 1)
    ).scalar()
    return parse_time(value) if value else None


def prune_if_due(
    store: CollectorStore, keep: timedelta, *, stopping: Callable[[], bool] = lambda: False
) -> PruneResult | None:
    """Prune if no collector sharing this database has today; what went, or None."""
    now = store.clock()
    if not claim(store, now):
        return None
    return prune(store, keep, now, stopping=stopping)


class DailyPrune:
    """A daemon thread that checks hourly whether the day's prune is due, and runs it.

    :meth:`stop` wakes it at once; a prune under way ends after its current batch. An
    error is logged in one line and never stops the collector: a failed claim is tried
    again at the next check, what a failed prune left goes with the next day's.
    """

    def __init__(
        self,
        store: CollectorStore,
        keep: timedelta,
        *,
        first_check_s: float = FIRST_CHECK_S,
        check_every_s: float = CHECK_EVERY_S,
    ) -> None:
        self.store = store
        self.keep = keep
        self.first_check_s = first_check_s
        self.check_every_s = check_every_s
        self.removed: dict[str, int] = dict.fromkeys(TABLES, 0)  # by this process
        self.checked = threading.Event()  # set after each check, done or failed
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="patchd-prune", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(STOP_WAIT_S)

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def _run(self) -> None:
        wait = self.first_check_s
        while not self._stop.wait(wait):
            wait = self.check_every_s
            try:
                # A pause before each batch lets the report writers take their turn first.
                paused = lambda: self._stop.wait(BATCH_PAUSE_S)  # noqa: E731 - True: stop
                done = prune_if_due(self.store, self.keep, stopping=paused)
            except Exception as e:  # the database is down or locked: try again next hour
                log.warning("the daily prune failed: %s: %s", type(e).__name__,
                            str(e).splitlines()[0] if str(e) else "")  # fmt: skip
            else:
                for table, n in (done.removed if done is not None else {}).items():
                    self.removed[table] += n
            self.checked.set()
