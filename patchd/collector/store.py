"""The collector's storage: enrolment, the ingest of verified reports, and what is read back.

Writes that must be atomic across collectors sharing one PostgreSQL database rely on the
database, not on the process: a report's sequence number is accepted by a conditional
``UPDATE ... WHERE last_seq < :seq`` (one row, so concurrent collectors serialise on it),
a token use by ``UPDATE ... WHERE uses_left > 0``. Reports are stored by a batched
writer (:class:`BatchWriter`): one transaction for many reports, written in bulk; should
that fail, again report by report with a savepoint for each, so a refused report never
takes its neighbours down with it.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import json
import logging
import os
import queue
import secrets
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Future
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import IO, Any

from sqlalchemy import Connection, Engine, bindparam, create_engine, event, func, select, update
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, SQLAlchemyError

from patchd.collector import bulk, extract
from patchd.collector.ingest import VerifiedReport
from patchd.collector.schema import (
    endpoint_daily,
    endpoint_runs,
    endpoint_updates,
    endpoints,
    enrolment_tokens,
    flags,
    migrate,
    policies,
    reports,
)
from patchd.errors import ConfigError, TemporaryFailure, UsageError
from patchd.timeutil import stamp, utcnow

log = logging.getLogger(__name__)

MAX_BATCH = 256  # reports per write transaction
MAX_QUEUE = 8192  # reports waiting for the writer before new ones get 429
MAX_WRITTEN_HINTS = 200_000  # endpoints whose last written updates digest is remembered
TOKEN_PREFIX = "pdt_"  # noqa: S105 - a marker, not a secret
MAX_TOKEN_USES = 1_000_000
MAX_TOKEN_TTL = timedelta(days=365)
SQLITE_BUSY_MS = 30_000
READ_ONLY = "patchd_read_only"  # execution option: a read transaction (SQLite: plain BEGIN)
_PUBLIC_KEY = select(endpoints.c.public_key).where(endpoints.c.id == bindparam("id"))


class Verdict:
    """The HTTP answer to a stored (or refused) report."""

    STORED = 202
    DUPLICATE = 200
    CONFLICT = 409
    UNKNOWN = 401


def database_url(text: str) -> str:
    """A SQLAlchemy URL from what admins type: a file path, ``sqlite:///...`` or ``postgresql://``."""
    if "://" not in text:
        return f"sqlite:///{Path(text).expanduser().resolve()}"
    try:
        url = make_url(text)
    except ArgumentError:
        raise UsageError(
            f"not a database URL: {text!r}", hint="give a file path or postgresql://USER@HOST/DB"
        ) from None
    if url.drivername in ("postgresql", "postgres"):
        url = url.set(drivername="postgresql+psycopg")
    if url.get_backend_name() not in ("sqlite", "postgresql"):
        raise UsageError(
            f"unsupported database {url.get_backend_name()!r}",
            hint="use a file path (SQLite) or postgresql://",
        )
    return url.render_as_string(hide_password=False)


def open_engine(url: str) -> Engine:
    """An engine for ``url`` with the settings patchd relies on (WAL and FULL sync on SQLite)."""
    resolved = database_url(url)
    # A server connection can die under the pool; a SQLite file's cannot (no ping needed).
    engine = create_engine(resolved, pool_pre_ping=not resolved.startswith("sqlite"))
    if engine.dialect.name == "sqlite":

        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_connection: Any, _record: Any) -> None:
            # Autocommit at the driver: SQLAlchemy emits BEGIN itself (see below).
            dbapi_connection.isolation_level = None
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=FULL")  # a 202 means on disk
            cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_MS}")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.close()

        @event.listens_for(engine, "begin")
        def _begin(conn: Connection) -> None:
            # Writers take the write lock up front (no upgrade deadlocks); readers never
            # wait for it: in WAL mode they see the last commit while the writer works.
            reader = conn.get_execution_options().get(READ_ONLY, False)
            conn.exec_driver_sql("BEGIN" if reader else "BEGIN IMMEDIATE")

    return engine


def _insert(conn: Connection, table: Any) -> Any:
    """The dialect's INSERT, which knows ON CONFLICT (both dialects spell it alike)."""
    if conn.dialect.name == "postgresql":
        from sqlalchemy.dialects import postgresql

        return postgresql.insert(table)
    from sqlalchemy.dialects import sqlite

    return sqlite.insert(table)


def _upsert(
    conn: Connection,
    table: Any,
    values: Mapping[str, Any],
    keys: Sequence[str],
    keep: Sequence[str] = (),
) -> None:
    """Insert ``values``, or update the row with the same ``keys`` (all but ``keep`` columns)."""
    statement = _insert(conn, table).values(**values)
    changed = {k: statement.excluded[k] for k in values if k not in keys and k not in keep}
    conn.execute(
        statement.on_conflict_do_update(index_elements=list(keys), set_=changed)
        if changed
        else statement.on_conflict_do_nothing(index_elements=list(keys))
    )


@dataclass(frozen=True)
class Token:
    id: str
    secret: str
    expires_at: datetime
    max_uses: int


@dataclass(frozen=True)
class Enrolment:
    endpoint_id: str
    status: str  # "enrolled", "already-enrolled", "pending-approval"


def _public_key(value: object) -> str:
    if not isinstance(value, str):
        raise UsageError("public_key must be base64 of the raw 32-byte Ed25519 key")
    try:
        raw = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise UsageError("public_key is not valid base64") from None
    if len(raw) != 32:
        raise UsageError("public_key must be the raw 32-byte Ed25519 key")
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    try:
        Ed25519PublicKey.from_public_bytes(raw)
    except ValueError:
        raise UsageError("public_key is not an Ed25519 public key") from None
    return base64.b64encode(raw).decode()


class CollectorStore:
    """One collector database."""

    def __init__(self, url: str, *, clock: Any = utcnow) -> None:
        self.url = url
        self.clock = clock
        try:
            self.engine = open_engine(url)
            with self.engine.begin() as conn:
                migrate(conn)
        except SQLAlchemyError as e:
            raise ConfigError(f"cannot open the collector database: {type(e).__name__}: {str(e).splitlines()[0]}",
                              hint="check --db (a writable file path, or a reachable postgresql:// URL)") from None  # fmt: skip
        self._turn_file = _turn_file(self.engine)
        # flock is held per open file, not per thread: this process's writers (the report
        # writer, the daily prune) take turns on this lock first.
        self._turn_lock = threading.Lock()
        self._written: dict[str, str] = {}  # endpoint id -> updates digest this process wrote

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    def close(self) -> None:
        self.engine.dispose()
        if self._turn_file is not None:
            self._turn_file.close()
            self._turn_file = None

    @contextmanager
    def _writer_turn(self) -> Iterator[None]:
        """On a SQLite file, wait for the other collector processes' writers by a lock file.

        SQLite makes a writer that finds the database locked sleep and poll (1, 2, 5 ...
        up to 100 ms); a blocking ``flock`` wakes the next writer the moment the last one
        commits, so several worker processes hand the database on without idle gaps.
        """
        if self._turn_file is None:
            yield
            return
        import fcntl

        with self._turn_lock:
            fcntl.flock(self._turn_file.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(self._turn_file.fileno(), fcntl.LOCK_UN)

    @contextmanager
    def writing(self) -> Iterator[Connection]:
        """A write transaction, begun once this process has the writer's turn (SQLite)."""
        with self._writer_turn(), self.engine.begin() as conn:
            yield conn

    @contextmanager
    def reading(self) -> Iterator[Connection]:
        """A connection for reads only, which never waits for the report writer."""
        with self.engine.connect().execution_options(**{READ_ONLY: True}) as conn:
            yield conn

    # -- enrolment tokens --------------------------------------------------------------

    def create_token(self, *, ttl: timedelta, uses: int = 1, note: str = "") -> Token:
        if not timedelta(minutes=1) <= ttl <= MAX_TOKEN_TTL:
            raise UsageError("--ttl must be between 1 minute and 365 days")
        if not 1 <= uses <= MAX_TOKEN_USES:
            raise UsageError(f"--uses must be between 1 and {MAX_TOKEN_USES}")
        secret = TOKEN_PREFIX + secrets.token_urlsafe(32)
        token_id = secrets.token_hex(6)
        now = self.clock()
        with self.engine.begin() as conn:
            conn.execute(enrolment_tokens.insert().values(
                id=token_id, token_sha256=_sha256(secret), created_at=stamp(now),
                expires_at=stamp(now + ttl), max_uses=uses, uses_left=uses, note=note[:256],
            ))  # fmt: skip
        return Token(token_id, secret, now + ttl, uses)

    def enrol(self, token: object, public_key: object, hostname: object) -> Enrolment:
        """Spend one use of ``token`` and pin ``public_key`` for a new (or known) endpoint.

        A known endpoint (same hostname) presenting its pinned key is answered with its
        id again; presenting another key, the key waits for an admin's approval.
        Raises :class:`PermissionError` for a bad, used-up or expired token.
        """
        if not isinstance(token, str) or not token.startswith(TOKEN_PREFIX) or len(token) > 128:
            raise PermissionError("not an enrolment token")
        key = _public_key(public_key)
        if not isinstance(hostname, str) or not 0 < len(hostname) <= 255:
            raise UsageError("hostname must be a non-empty string of at most 255 characters")
        now = stamp(self.clock())
        with self.engine.begin() as conn:
            row = conn.execute(select(enrolment_tokens.c.id).where(
                enrolment_tokens.c.token_sha256 == _sha256(token), enrolment_tokens.c.expires_at > now
            )).first()  # fmt: skip
            if row is None:
                raise PermissionError("unknown or expired enrolment token")
            spent = conn.execute(update(enrolment_tokens).where(
                enrolment_tokens.c.id == row.id, enrolment_tokens.c.uses_left > 0
            ).values(uses_left=enrolment_tokens.c.uses_left - 1)).rowcount  # fmt: skip
            if spent != 1:
                raise PermissionError("this enrolment token has been used up")
            known = conn.execute(select(endpoints.c.id, endpoints.c.public_key).where(endpoints.c.hostname == hostname).order_by(endpoints.c.enrolled_at)).first()  # fmt: skip
            if known is not None:
                if known.public_key == key:
                    return Enrolment(known.id, "already-enrolled")
                conn.execute(
                    update(endpoints)
                    .where(endpoints.c.id == known.id)
                    .values(pending_public_key=key, pending_since=now)
                )
                self._flag(
                    conn,
                    known.id,
                    "key-change",
                    f"enrolment with a new key from {hostname}: awaiting approval",
                )
                return Enrolment(known.id, "pending-approval")
            endpoint_id = "ep_" + secrets.token_hex(10)
            conn.execute(endpoints.insert().values(
                id=endpoint_id, public_key=key, hostname=hostname, enrolled_at=now, token_id=row.id,
                last_seq=-1, key_epoch=0, segments="[]", summary="{}", flagged=False,
            ))  # fmt: skip
        log.info("enrolled endpoint %s (%s)", endpoint_id, hostname)
        return Enrolment(endpoint_id, "enrolled")

    def approve_key(self, endpoint_id: str) -> str:
        """Pin the endpoint's pending key; its sequence restarts (a reinstalled agent)."""
        with self.engine.begin() as conn:
            row = conn.execute(
                select(endpoints.c.pending_public_key).where(endpoints.c.id == endpoint_id)
            ).first()
            if row is None:
                raise UsageError(
                    f"no endpoint {endpoint_id}", hint="see `patchd collector endpoints`"
                )
            if row.pending_public_key is None:
                raise UsageError(f"endpoint {endpoint_id} has no key awaiting approval")
            conn.execute(update(endpoints).where(endpoints.c.id == endpoint_id).values(
                public_key=row.pending_public_key, pending_public_key=None, pending_since=None, last_seq=-1,
                key_epoch=endpoints.c.key_epoch + 1,
            ))  # fmt: skip
            self._flag(conn, endpoint_id, "key-change", "an administrator approved a new key")
        return str(row.pending_public_key)

    def public_key(self, endpoint_id: str) -> str | None:
        with self.reading() as conn:
            value = conn.execute(_PUBLIC_KEY, {"id": endpoint_id}).scalar()
        return str(value) if value is not None else None

    def public_keys(self, limit: int) -> list[tuple[str, str]]:
        """Up to ``limit`` pinned keys as ``(endpoint id, base64 key)``, to warm a key cache."""
        with self.reading() as conn:
            rows = conn.execute(select(endpoints.c.id, endpoints.c.public_key).limit(limit)).all()
        return [(str(r.id), str(r.public_key)) for r in rows]

    # -- reports -----------------------------------------------------------------------

    def store_batch(
        self,
        batch: Sequence[VerifiedReport],
        more: Callable[[], Sequence[VerifiedReport]] | None = None,
    ) -> list[int]:
        """Store ``batch`` in one transaction; the verdict for each, in order.

        The whole batch is written with a few statements (:mod:`patchd.collector.bulk`);
        if that fails it is rolled back and the reports are stored one by one in a new
        transaction, each in a savepoint, so a report the database refuses never takes
        its neighbours down. ``more``, called once this writer's turn has come, gives
        reports that arrived meanwhile: they are stored in the same transaction (after
        ``batch``, their verdicts after its verdicts).
        """
        received = self.clock()
        # Rows are made before the lock, so other writers need not wait for that.
        prepared = bulk.prepare(batch, received, self._written)
        written: dict[str, str | None] = {}
        with self._writer_turn():
            if more is not None:
                # While this writer waited for its turn (other collector processes
                # writing to the same SQLite file), reports queued up: one commit serves
                # them too, where a transaction of their own would wait a turn again.
                extra = more()
                if extra:
                    batch = [*batch, *extra]
                    prepared += bulk.prepare(extra, received, self._written)
            try:
                with self.engine.begin() as conn:
                    verdicts = bulk.store_reports(conn, prepared, self._flag, written)
            except (SQLAlchemyError, bulk.BulkMismatch) as e:
                # Rolled back whole; the next transaction starts from a clean slate.
                log.warning("storing %d report(s) one by one: %s: %s", len(batch),
                            type(e).__name__, str(e).splitlines()[0] if str(e) else "")  # fmt: skip
                written = {}
                with self.engine.begin() as conn:
                    verdicts = []
                    for report in batch:
                        with conn.begin_nested():
                            verdicts.append(self._store_one(conn, report, received))
        self._remember_written(written, batch)
        return verdicts

    def _remember_written(
        self, written: Mapping[str, str | None], batch: Sequence[VerifiedReport]
    ) -> None:
        """Keep the hint :func:`bulk.prepare` uses (committed digests; a guess, never trusted)."""
        if len(self._written) > MAX_WRITTEN_HINTS:
            self._written.clear()
        for report in batch:
            self._written.pop(report.endpoint_id, None)
        for endpoint_id, digest in written.items():
            if digest is not None:
                self._written[endpoint_id] = digest

    def _store_one(self, conn: Connection, report: VerifiedReport, received: datetime) -> int:
        pinned = conn.execute(select(endpoints.c.public_key, endpoints.c.key_epoch)
                              .where(endpoints.c.id == report.endpoint_id)).first()  # fmt: skip
        if pinned is None or pinned.public_key != report.public_key:
            return Verdict.UNKNOWN  # unenrolled, or its key was replaced since it was cached
        epoch = pinned.key_epoch
        seen = self._seen(conn, report, epoch)
        if seen is not None:
            return seen
        found = extract.summary(report.payload)
        received_at = stamp(received)
        values = dict(found.values)
        if isinstance(report.payload.get("updates"), dict):  # its update rows are all written below
            values["updates_digest"] = bulk.updates_digest(report.payload)
        if bulk.installs_updates(report):
            values["updates_digest"] = None  # the runs change them afterwards
        moved = conn.execute(update(endpoints).where(
            endpoints.c.id == report.endpoint_id, endpoints.c.key_epoch == epoch, endpoints.c.last_seq < report.seq
        ).values(last_seq=report.seq, last_report_at=received_at, last_created_at=report.created_at, **values)).rowcount  # fmt: skip
        if moved != 1:
            # Another collector may have stored this very report meanwhile (we waited on its
            # row lock): in READ COMMITTED this statement sees what it committed.
            return self._seen(conn, report, epoch) or self._replayed(conn, report)
        conn.execute(reports.insert().values(
            endpoint_id=report.endpoint_id, key_epoch=epoch, seq=report.seq, received_at=received_at,
            created_at=report.created_at, sha256=report.sha256, envelope=report.envelope,
        ))  # fmt: skip
        self._store_updates(conn, report)
        self._store_runs(conn, report)
        if found.compliant is not None:
            _upsert(conn, endpoint_daily, {"endpoint_id": report.endpoint_id, "day": received_at[:10],
                                            "compliant": found.compliant, "overdue": found.overdue},
                    ("endpoint_id", "day"))  # fmt: skip
        return Verdict.STORED

    def _seen(self, conn: Connection, report: VerifiedReport, epoch: int) -> int | None:
        """The verdict on a report whose seq is already stored (the same or other bytes)."""
        existing = conn.execute(select(reports.c.sha256).where(
            reports.c.endpoint_id == report.endpoint_id, reports.c.key_epoch == epoch, reports.c.seq == report.seq
        )).scalar()  # fmt: skip
        if existing is None:
            return None
        if existing == report.sha256:
            return Verdict.DUPLICATE
        self._flag(conn, report.endpoint_id, "fork",
                   f"seq {report.seq} arrived again with other contents (cloned endpoint or forged state)")  # fmt: skip
        return Verdict.CONFLICT

    def _replayed(self, conn: Connection, report: VerifiedReport) -> int:
        last = conn.execute(
            select(endpoints.c.last_seq).where(endpoints.c.id == report.endpoint_id)
        ).scalar()
        if last is None:
            return Verdict.UNKNOWN
        self._flag(conn, report.endpoint_id, "replay",
                   f"seq {report.seq} is not above {last}, the last stored (replay, restored backup or cloned endpoint)")  # fmt: skip
        return Verdict.CONFLICT

    def _store_updates(self, conn: Connection, report: VerifiedReport) -> None:
        rows = extract.update_rows(report.payload)
        if rows is None:
            return
        if not extract.updates_truncated(report.payload):
            conn.execute(update(endpoint_updates).where(
                endpoint_updates.c.endpoint_id == report.endpoint_id, endpoint_updates.c.pending.is_not(False)
            ).values(pending=False))  # fmt: skip
        for row in rows:
            _upsert(conn, endpoint_updates, {**row, "endpoint_id": report.endpoint_id, "pending": True, "seq": report.seq},
                    ("endpoint_id", "update_id"), keep=("first_seen",))  # fmt: skip

    def _store_runs(self, conn: Connection, report: VerifiedReport) -> None:
        for row in extract.run_rows(report.payload):
            installed = row.pop("installed")
            _upsert(conn, endpoint_runs, {**row, "endpoint_id": report.endpoint_id, "seq": report.seq},
                    ("endpoint_id", "run_id"))  # fmt: skip
            if installed and row["finished_at"] and row["kind"] == "apply" and not row["dry_run"]:
                conn.execute(update(endpoint_updates).where(
                    endpoint_updates.c.endpoint_id == report.endpoint_id,
                    endpoint_updates.c.update_id.in_(installed),
                    endpoint_updates.c.installed_at.is_(None),
                ).values(installed_at=row["finished_at"], pending=False))  # fmt: skip

    def _flag(self, conn: Connection, endpoint_id: str, kind: str, detail: str) -> None:
        log.warning("endpoint %s flagged (%s): %s", endpoint_id, kind, detail)
        conn.execute(
            flags.insert().values(
                endpoint_id=endpoint_id, at=stamp(self.clock()), kind=kind, detail=detail
            )
        )
        if kind in ("fork", "replay"):
            conn.execute(
                update(endpoints)
                .where(endpoints.c.id == endpoint_id)
                .values(flagged=True, flag_reason=detail)
            )

    # -- policies ------------------------------------------------------------------------

    def publish_policy(
        self, *, version: int, name: str, document: bytes, signatures: bytes
    ) -> None:
        with self.engine.begin() as conn:
            newest = conn.execute(select(func.max(policies.c.version))).scalar()
            if newest is not None and version <= newest:
                raise UsageError(f"policy version {version} is not newer than version {newest}, already published",
                                 hint="raise `version` in the policy, sign it again, and publish that")  # fmt: skip
            conn.execute(policies.insert().values(
                version=version, name=name, sha256=hashlib.sha256(document).hexdigest(),
                document=document, signatures=signatures, published_at=stamp(self.clock()),
            ))  # fmt: skip

    def newest_policy(self) -> Mapping[str, Any] | None:
        with self.reading() as conn:
            row = conn.execute(
                select(policies).order_by(policies.c.version.desc()).limit(1)
            ).first()
        return dict(row._mapping) if row is not None else None


def _turn_file(engine: Engine) -> IO[bytes] | None:
    """The lock file report writers of one SQLite database take turns on (POSIX only)."""
    database = engine.url.database
    if (
        engine.dialect.name != "sqlite"
        or os.name != "posix"
        or not database
        or database == ":memory:"
    ):
        return None
    return open(f"{database}-writer.lock", "ab")  # held open for the store's life


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


class Overloaded(TemporaryFailure):
    """The writer's queue is full: answer 429 and let the agent come back later."""


_Item = tuple[VerifiedReport, "Future[int] | asyncio.Future[int]"]  # a report and who waits


class BatchWriter:
    """One thread that stores reports in batches.

    :meth:`submit` gives a thread future; :meth:`submit_async` an asyncio future, and the
    futures of one batch are settled with a single wake-up of their event loop (one
    cross-thread call per batch, not one per report).
    """

    def __init__(
        self, store: CollectorStore, *, max_batch: int = MAX_BATCH, max_queue: int = MAX_QUEUE
    ) -> None:
        self.store = store
        self.max_batch = max_batch
        self._queue: queue.Queue[_Item | None] = queue.Queue(max_queue)
        self._thread = threading.Thread(target=self._run, name="patchd-writer", daemon=True)
        self.batches = 0
        self.stored = 0
        self._stopping = False

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Store what is queued, then end the thread."""
        self._queue.put(None)
        self._thread.join()

    @property
    def depth(self) -> int:
        return self._queue.qsize()

    def submit(self, report: VerifiedReport) -> Future[int]:
        future: Future[int] = Future()
        self._put(report, future)
        return future

    def submit_async(self, report: VerifiedReport) -> asyncio.Future[int]:
        """Queue ``report``; its verdict arrives in the calling event loop."""
        future: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._put(report, future)
        return future

    def _put(self, report: VerifiedReport, future: Future[int] | asyncio.Future[int]) -> None:
        try:
            self._queue.put_nowait((report, future))
        except queue.Full:
            raise Overloaded(
                "the collector is busy storing reports", hint="retry after a few seconds"
            ) from None

    def _run(self) -> None:
        self._stopping = False
        while not self._stopping:
            first = self._queue.get()
            if first is None:
                break
            batch = [first]
            self._take(batch)
            self._write(batch)

    def _take(self, batch: list[_Item]) -> list[_Item]:
        """Move queued reports into ``batch`` (up to :attr:`max_batch`); those moved."""
        taken: list[_Item] = []
        while not self._stopping and len(batch) < self.max_batch:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if item is None:
                self._stopping = True
                break
            batch.append(item)
            taken.append(item)
        return taken

    def _write(self, batch: list[_Item]) -> None:
        outcomes: list[int | BaseException]
        try:
            verdicts = self.store.store_batch(
                [r for r, _ in batch], lambda: [r for r, _ in self._take(batch)]
            )
        except Exception as e:  # the database is down or locked: its agents retry every report
            log.error("could not store %d report(s): %s: %s", len(batch), type(e).__name__,
                      str(e).splitlines()[0] if str(e) else "")  # fmt: skip
            outcomes = [TemporaryFailure("the collector could not store the report") for _ in batch]
        else:
            self.batches += 1
            self.stored += sum(v == Verdict.STORED for v in verdicts)
            outcomes = list(verdicts)
        waiting: dict[
            asyncio.AbstractEventLoop, list[tuple[asyncio.Future[int], int | BaseException]]
        ] = {}
        for (_, future), outcome in zip(batch, outcomes, strict=True):
            if isinstance(future, asyncio.Future):
                waiting.setdefault(future.get_loop(), []).append((future, outcome))
            else:
                _settle(future, outcome)
        for loop, futures in waiting.items():
            with suppress(RuntimeError):  # the loop has closed: nobody waits any more
                loop.call_soon_threadsafe(_settle_all, futures)


def _settle(future: Future[int] | asyncio.Future[int], outcome: int | BaseException) -> None:
    if future.done():  # an asyncio future whose request went away
        return
    if isinstance(outcome, BaseException):
        future.set_exception(outcome)
    else:
        future.set_result(outcome)


def _settle_all(futures: list[tuple[asyncio.Future[int], int | BaseException]]) -> None:
    for future, outcome in futures:
        _settle(future, outcome)


def token_summary(conn: Connection) -> list[dict[str, Any]]:
    rows = conn.execute(select(enrolment_tokens.c.id, enrolment_tokens.c.created_at, enrolment_tokens.c.expires_at,
                               enrolment_tokens.c.max_uses, enrolment_tokens.c.uses_left, enrolment_tokens.c.note)
                        .order_by(enrolment_tokens.c.created_at)).all()  # fmt: skip
    return [dict(r._mapping) for r in rows]


def loads(text: str | None, default: Any) -> Any:
    try:
        return json.loads(text) if text else default
    except ValueError:
        return default
