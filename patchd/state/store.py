"""patchd's local state: one SQLite database in the state directory.

WAL mode with full synchronisation: a committed transaction survives a crash or power
cut, and readers (``patchd status``) never block a running apply. It keeps the
inventory history, when each update was first seen (time to patch starts there), and
every run with its per-package results and full package-manager transcripts.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import sqlite3
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from patchd.backends.base import ChangeResult, RollbackSource
from patchd.errors import StateError, UnknownRunError
from patchd.models import Advisory, PackageChange, Severity, Update
from patchd.state.schema import MIGRATIONS
from patchd.timeutil import format_time, parse_time
from patchd.transcript import TranscriptEntry

DB_NAME = "state.db"
BUSY_TIMEOUT_MS = 30_000
MAX_INVENTORY_ROWS = 500  # inventory history kept per endpoint
LOOKUP_CHUNK = 200  # rows per batched look-up: 4 variables each, under SQLite's old limit of 999
MAX_RUNS_LISTED = 1000
MAX_TRANSCRIPT_OUTPUT_CHARS = 4 * 1024 * 1024  # per command


@dataclass(frozen=True)
class RunItem:
    """One package change of a run, with its verdict once known."""

    seq: int
    change: PackageChange
    update_id: str | None
    classification: str | None
    severity: str | None
    cves: tuple[str, ...]
    outcome: str
    found_version: str | None
    detail: str
    rollback_available: bool
    rollback_file: str | None
    rollback_detail: str

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.change.name,
            "arch": self.change.arch,
            "backend": self.change.backend,
            "from_version": self.change.from_version,
            "to_version": self.change.to_version,
            "update_id": self.update_id,
            "classification": self.classification,
            "severity": self.severity,
            "cves": list(self.cves),
            "outcome": self.outcome,
            "found_version": self.found_version,
            "detail": self.detail,
            "rollback": {
                "available": self.rollback_available,
                "file": self.rollback_file,
                "detail": self.rollback_detail,
            },
        }


@dataclass(frozen=True)
class RunRecord:
    """A recorded apply or rollback run."""

    id: str
    kind: str
    status: str
    dry_run: bool
    parent_run: str | None
    started_at: datetime
    finished_at: datetime | None
    notes: tuple[str, ...]
    items: tuple[RunItem, ...]

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "kind": self.kind,
            "status": self.status,
            "dry_run": self.dry_run,
            "parent_run": self.parent_run,
            "started_at": format_time(self.started_at),
            "finished_at": format_time(self.finished_at) if self.finished_at else None,
            "notes": list(self.notes),
            "items": [item.as_dict() for item in self.items],
        }


def new_run_id(now: datetime) -> str:
    """A sortable, unique run id: ``20261204T195713Z-3fa9c1``."""
    return f"{now.strftime('%Y%m%dT%H%M%SZ')}-{secrets.token_hex(3)}"


@dataclass(frozen=True)
class InventoryDocument:
    """An inventory as the history keeps it: canonical JSON text, and that text's SHA-256.

    The package list is kept apart, once per distinct list: ``text`` holds the rest of
    the inventory and ``packages_sha256``, the digest of ``packages`` (the list's own
    canonical JSON), so the digest of ``text`` still covers the whole inventory. A scan
    serialises it while the package managers list (a thousand packages take a few
    milliseconds) and records it after they end.
    """

    text: str
    sha256: str
    packages: str | None = None
    packages_sha256: str | None = None

    @classmethod
    def of(cls, document: Mapping[str, Any]) -> InventoryDocument:
        rest = dict(document)
        listed = rest.pop("packages", None)
        packages = packages_sha256 = None
        if listed is not None:
            packages = _canonical(listed)
            packages_sha256 = hashlib.sha256(packages.encode()).hexdigest()
            rest["packages_sha256"] = packages_sha256
        text = _canonical(rest)
        return cls(text, hashlib.sha256(text.encode()).hexdigest(), packages, packages_sha256)


def _canonical(value: object) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


class StateStore:
    """The local state database. Open with :meth:`open`; close when done."""

    def __init__(self, connection: sqlite3.Connection, path: Path) -> None:
        self._db = connection
        self.path = path

    @classmethod
    def open(cls, state_dir: Path) -> StateStore:
        """Open (creating and migrating as needed) the database in ``state_dir``."""
        path = state_dir / DB_NAME
        try:
            state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
            if not path.exists():
                fd = os.open(path, os.O_CREAT | os.O_WRONLY, 0o600)
                os.close(fd)
            db = sqlite3.connect(path, isolation_level=None, timeout=BUSY_TIMEOUT_MS / 1000)
        except (OSError, sqlite3.Error) as e:
            raise StateError(
                f"cannot open the state database {path}: {e}",
                hint="check --state-dir and its permissions",
            ) from None
        store = cls(db, path)
        try:
            db.execute("PRAGMA synchronous=FULL")
            db.execute("PRAGMA foreign_keys=ON")
            store._migrate()  # first: a database it refuses must stay as it was
            db.execute("PRAGMA journal_mode=WAL")
        except sqlite3.DatabaseError as e:
            db.close()
            raise StateError(
                f"the state database {path} is unusable: {e}",
                hint="move it aside; patchd then starts a new one (history is lost)",
            ) from None
        return store

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> StateStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One immediate (write-locking) transaction; committed on success, else rolled back."""
        with self._transaction() as db:
            yield db

    def query(self, sql: str, params: tuple[object, ...] = ()) -> list[tuple[Any, ...]]:
        """Rows of a read-only query."""
        return list(self._db.execute(sql, params).fetchall())

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield self._db
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    def _migrate(self) -> None:
        (version,) = self._db.execute("PRAGMA user_version").fetchone()
        if version > len(MIGRATIONS):
            raise sqlite3.DatabaseError(
                f"schema version {version} is newer than this patchd understands ({len(MIGRATIONS)}); "
                "upgrade patchd"
            )
        for number in range(version, len(MIGRATIONS)):
            with self._transaction() as db:
                for statement in _statements(MIGRATIONS[number]):
                    db.execute(statement)
                db.execute(f"PRAGMA user_version = {number + 1}")

    # -- inventory and sightings -------------------------------------------------------

    @staticmethod
    def _keep_inventory(db: sqlite3.Connection, inventory: InventoryDocument, stamp: str) -> None:
        """Keep one inventory in the history (the oldest beyond the bound are dropped).

        Its package list is stored unless an earlier inventory's was the same; a list
        no inventory in the history points at any more goes with the last one that did.
        """
        if inventory.packages is not None:
            db.execute(
                "INSERT OR IGNORE INTO package_lists (sha256, document) VALUES (?, ?)",
                (inventory.packages_sha256, inventory.packages),
            )
        db.execute(
            """INSERT INTO inventory (taken_at, sha256, document, packages_sha256)
               VALUES (?, ?, ?, ?)""",
            (stamp, inventory.sha256, inventory.text, inventory.packages_sha256),
        )
        dropped = db.execute(
            "DELETE FROM inventory WHERE id <= (SELECT MAX(id) FROM inventory) - ?",
            (MAX_INVENTORY_ROWS,),
        ).rowcount
        if dropped:
            db.execute(
                """DELETE FROM package_lists WHERE sha256 NOT IN
                   (SELECT packages_sha256 FROM inventory WHERE packages_sha256 IS NOT NULL)"""
            )

    def inventory_packages(self, inventory_id: int) -> list[dict[str, Any]] | None:
        """The package list of one inventory in the history; ``None`` for an unknown id."""
        row = self._db.execute(
            """SELECT inventory.document, package_lists.document FROM inventory
               LEFT JOIN package_lists ON package_lists.sha256 = inventory.packages_sha256
               WHERE inventory.id = ?""",
            (inventory_id,),
        ).fetchone()
        if row is None:
            return None
        document, packages = row
        if packages is not None:
            listed: list[dict[str, Any]] = json.loads(packages)
            return listed
        inline: list[dict[str, Any]] = json.loads(document).get("packages", [])  # before v5
        return inline

    def last_scan(self) -> dict[str, Any] | None:
        """When the last recorded scan ran, what it found pending, and its reboot state."""
        row = self._db.execute(
            "SELECT taken_at, document FROM inventory ORDER BY id DESC LIMIT 1"
        ).fetchone()
        if row is None:
            return None
        taken_at, document = row
        counts = self._db.execute(
            """SELECT COUNT(*), COALESCE(SUM(classification = 'security'), 0)
               FROM update_sightings WHERE last_seen = ? AND installed_at IS NULL""",
            (taken_at,),
        ).fetchone()
        inventory = json.loads(document)
        return {
            "at": taken_at,
            "pending": int(counts[0]),
            "security": int(counts[1]),
            "hostname": inventory.get("hostname"),
            "reboot": inventory.get("reboot"),
            "end_of_life": inventory.get("end_of_life"),
        }

    def inventory_count(self) -> int:
        (count,) = self._db.execute("SELECT COUNT(*) FROM inventory").fetchone()
        return int(count)

    def record_scan(
        self,
        updates: Sequence[Update],
        installed: Mapping[tuple[str, str, str], str],
        now: datetime,
        inventory: InventoryDocument | None = None,
    ) -> dict[str, datetime]:
        """Record that ``updates`` were seen now; return each one's first sighting.

        Earlier sightings whose version is now installed (by patchd or by anyone else)
        are marked installed, which closes their time to patch; the other pending ones
        this scan no longer lists are marked unlisted (pending again if listed again).
        Their cached advisories go. The scan's ``inventory`` goes into the history in
        the same transaction (one commit, one fsync, a scan).
        """
        stamp = format_time(now)
        with self._transaction() as db:
            if inventory is not None:
                self._keep_inventory(db, inventory, stamp)
            db.executemany(
                """INSERT INTO update_sightings (backend, name, arch, version, classification,
                       severity, first_seen, last_seen) VALUES (?, ?, ?, ?, ?, ?, ?, ?)
                   ON CONFLICT (backend, name, arch, version) DO UPDATE SET
                       last_seen = excluded.last_seen, classification = excluded.classification,
                       severity = excluded.severity, unlisted_at = NULL""",
                [
                    (
                        u.backend,
                        u.name,
                        u.arch,
                        u.available_version,
                        u.classification.value,
                        u.severity.value,
                        stamp,
                        stamp,
                    )
                    for u in updates
                ],
            )
            pending = db.execute(
                """SELECT backend, name, arch, version, first_seen FROM update_sightings
                   WHERE installed_at IS NULL AND unlisted_at IS NULL"""
            ).fetchall()
            listed = {(u.backend, u.name, u.arch, u.available_version) for u in updates}
            first_seen = {}
            closed: dict[str, list[tuple[str, str, str, str]]] = {"installed": [], "unlisted": []}
            for backend, name, arch, version, seen in pending:
                key = (backend, name, arch, version)
                if installed.get((backend, name, arch)) == version:
                    closed["installed"].append(key)
                elif key not in listed:
                    closed["unlisted"].append(key)
                else:
                    first_seen[key] = seen
            for column, keys in closed.items():
                db.executemany(
                    f"""UPDATE update_sightings SET {column}_at = ? WHERE backend = ?
                        AND name = ? AND arch = ? AND version = ?""",  # noqa: S608 - fixed names
                    [(stamp, *key) for key in keys],
                )
                _forget_advisories(db, keys)
            first: dict[str, datetime] = {}
            for u in updates:
                key = (u.backend, u.name, u.arch, u.available_version)
                seen = first_seen.get(key)
                if seen is None:  # installed once before (then removed), or listed again
                    (seen,) = db.execute(
                        """SELECT first_seen FROM update_sightings WHERE backend = ? AND name = ?
                           AND arch = ? AND version = ?""",
                        key,
                    ).fetchone()
                first[u.id] = parse_time(seen)
        return first

    def installed_among(
        self, keys: Iterable[tuple[str, str, str, str]]
    ) -> set[tuple[str, str, str, str]]:
        """Which of these update versions (backend, name, arch, version) are installed."""
        rows = self._rows_by_key("update_sightings", dict.fromkeys(keys))
        return {(b, n, a, v) for b, n, a, v, done in rows if done is not None}

    def sighting(self, backend: str, name: str, arch: str, version: str) -> dict[str, Any] | None:
        """The recorded sighting of one update version, or ``None``."""
        row = self._db.execute(
            """SELECT first_seen, last_seen, installed_at FROM update_sightings
               WHERE backend = ? AND name = ? AND arch = ? AND version = ?""",
            (backend, name, arch, version),
        ).fetchone()
        if row is None:
            return None
        return {"first_seen": row[0], "last_seen": row[1], "installed_at": row[2]}

    # -- advisories --------------------------------------------------------------------

    def cached_advisories(self, updates: Iterable[Update]) -> dict[str, Advisory]:
        """Advisories recorded earlier for these update versions, by update id."""
        wanted = {(u.backend, u.name, u.arch, u.available_version): u.id for u in updates}
        return {
            wanted[backend, name, arch, version]: Advisory(
                tuple(json.loads(cves)), Severity(severity), origin
            )
            for backend, name, arch, version, cves, severity, origin in self._rows_by_key(
                "advisories", wanted
            )
        }

    def _rows_by_key(
        self, table: str, keys: Iterable[tuple[str, str, str, str]]
    ) -> list[tuple[Any, ...]]:
        """The rows of ``table`` for these update versions, looked up by key in chunks."""
        wanted = list(keys)
        rows: list[tuple[Any, ...]] = []
        for start in range(0, len(wanted), LOOKUP_CHUNK):
            chunk = wanted[start : start + LOOKUP_CHUNK]
            fields = [field for key in chunk for field in key]
            rows += self._db.execute(_keyed(table, len(chunk)), fields).fetchall()
        return rows

    def save_advisories(
        self, updates: Iterable[Update], advisories: Mapping[str, Advisory], now: datetime
    ) -> None:
        if not advisories:
            return  # nothing to keep: no transaction
        with self._transaction() as db:
            for u in updates:
                a = advisories.get(u.id)
                if a is None:
                    continue
                db.execute(
                    """INSERT OR REPLACE INTO advisories (backend, name, arch, version, cves,
                           severity, origin, recorded_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)""",
                    (
                        u.backend,
                        u.name,
                        u.arch,
                        u.available_version,
                        json.dumps(list(a.cves)),
                        a.severity.value,
                        a.origin,
                        format_time(now),
                    ),
                )

    # -- runs --------------------------------------------------------------------------

    def create_run(
        self,
        kind: str,
        changes: Sequence[tuple[PackageChange, Update | None]],
        now: datetime,
        *,
        dry_run: bool = False,
        parent_run: str | None = None,
    ) -> str:
        """Record a new run and its planned changes, before anything is changed."""
        run_id = new_run_id(now)
        with self._transaction() as db:
            try:
                db.execute(
                    """INSERT INTO runs (id, kind, status, dry_run, parent_run, started_at)
                       VALUES (?, ?, 'running', ?, ?, ?)""",
                    (run_id, kind, int(dry_run), parent_run, format_time(now)),
                )
            except sqlite3.IntegrityError:
                if parent_run is None:
                    raise
                raise UnknownRunError(parent_run) from None  # pruned since it was read
            for seq, (c, u) in enumerate(changes):
                db.execute(
                    """INSERT INTO run_items (run_id, seq, backend, name, arch, from_version,
                           to_version, update_id, classification, severity, cves)
                       VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)""",
                    (
                        run_id,
                        seq,
                        c.backend,
                        c.name,
                        c.arch,
                        c.from_version,
                        c.to_version,
                        u.id if u else None,
                        u.classification.value if u else None,
                        u.severity.value if u else None,
                        json.dumps(list(u.cves) if u else []),
                    ),
                )
        return run_id

    def record_rollback_sources(self, run_id: str, sources: Sequence[RollbackSource]) -> None:
        with self._transaction() as db:
            for s in sources:
                db.execute(
                    """UPDATE run_items SET rollback_available = ?, rollback_file = ?,
                           rollback_detail = ?
                       WHERE run_id = ? AND backend = ? AND name = ? AND arch = ?""",
                    (
                        int(s.available),
                        str(s.kept_file) if s.kept_file else None,
                        s.detail,
                        run_id,
                        s.change.backend,
                        s.change.name,
                        s.change.arch,
                    ),
                )

    def append_transcript(self, run_id: str, entry: TranscriptEntry) -> None:
        output = entry.output
        if len(output) > MAX_TRANSCRIPT_OUTPUT_CHARS:
            output = "[... earlier output elided ...]\n" + output[-MAX_TRANSCRIPT_OUTPUT_CHARS:]
        with self._transaction() as db:
            (seq,) = db.execute(
                "SELECT COALESCE(MAX(seq) + 1, 0) FROM run_transcript WHERE run_id = ?", (run_id,)
            ).fetchone()
            db.execute(
                """INSERT INTO run_transcript (run_id, seq, at, argv, returncode, duration_s, output)
                   VALUES (?, ?, ?, ?, ?, ?, ?)""",
                (
                    run_id,
                    seq,
                    format_time(entry.at),
                    json.dumps(list(entry.argv)),
                    entry.returncode,
                    entry.duration_s,
                    output,
                ),
            )

    def record_results(self, run_id: str, results: Sequence[ChangeResult], now: datetime) -> None:
        """Record each change's verdict; installed upgrades close their sightings."""
        stamp = format_time(now)
        with self._transaction() as db:
            for r in results:
                c = r.change
                db.execute(
                    """UPDATE run_items SET outcome = ?, found_version = ?, detail = ?
                       WHERE run_id = ? AND backend = ? AND name = ? AND arch = ?""",
                    (r.outcome.value, r.found_version, r.detail, run_id, c.backend, c.name, c.arch),
                )
                if r.outcome.value == "done":
                    key = (c.backend, c.name, c.arch, c.to_version)
                    db.execute(
                        """UPDATE update_sightings SET installed_at = COALESCE(installed_at, ?)
                           WHERE backend = ? AND name = ? AND arch = ? AND version = ?""",
                        (stamp, *key),
                    )
                    _forget_advisories(db, [key])

    def finish_run(self, run_id: str, status: str, notes: Sequence[str], now: datetime) -> None:
        with self._transaction() as db:
            db.execute(
                "UPDATE runs SET status = ?, finished_at = ?, notes = ? WHERE id = ?",
                (status, format_time(now), json.dumps(list(notes)), run_id),
            )

    def set_run_status(self, run_id: str, status: str) -> None:
        with self._transaction() as db:
            db.execute("UPDATE runs SET status = ? WHERE id = ?", (status, run_id))

    def get_run(self, run_id: str) -> RunRecord:
        """The run ``run_id`` with its items; :class:`UnknownRunError` if there is none."""
        row = self._db.execute(
            """SELECT id, kind, status, dry_run, parent_run, started_at, finished_at, notes
               FROM runs WHERE id = ?""",
            (run_id,),
        ).fetchone()
        if row is None:
            raise UnknownRunError(run_id)
        items = self._db.execute(
            """SELECT seq, backend, name, arch, from_version, to_version, update_id,
                      classification, severity, cves, outcome, found_version, detail,
                      rollback_available, rollback_file, rollback_detail
               FROM run_items WHERE run_id = ? ORDER BY seq""",
            (run_id,),
        ).fetchall()
        return RunRecord(
            id=row[0],
            kind=row[1],
            status=row[2],
            dry_run=bool(row[3]),
            parent_run=row[4],
            started_at=parse_time(row[5]),
            finished_at=parse_time(row[6]) if row[6] else None,
            notes=tuple(json.loads(row[7])),
            items=tuple(
                RunItem(
                    seq=i[0],
                    change=PackageChange(i[1], i[2], i[3], i[4], i[5]),
                    update_id=i[6],
                    classification=i[7],
                    severity=i[8],
                    cves=tuple(json.loads(i[9])),
                    outcome=i[10],
                    found_version=i[11],
                    detail=i[12],
                    rollback_available=bool(i[13]),
                    rollback_file=i[14],
                    rollback_detail=i[15],
                )
                for i in items
            ),
        )

    def list_runs(self, limit: int = 20) -> list[RunRecord]:
        """The most recent runs, newest first."""
        ids = self._db.execute(
            "SELECT id FROM runs ORDER BY rowid DESC LIMIT ?",
            (min(limit, MAX_RUNS_LISTED),),
        ).fetchall()
        return [self.get_run(run_id) for (run_id,) in ids]

    def transcript(self, run_id: str) -> list[TranscriptEntry]:
        rows = self._db.execute(
            """SELECT at, argv, returncode, duration_s, output FROM run_transcript
               WHERE run_id = ? ORDER BY seq""",
            (run_id,),
        ).fetchall()
        return [
            TranscriptEntry(parse_time(r[0]), tuple(json.loads(r[1])), r[2], r[4], r[3])
            for r in rows
        ]


def _forget_advisories(db: sqlite3.Connection, keys: Sequence[tuple[str, str, str, str]]) -> None:
    """Drop the cached advisories of update versions no longer pending."""
    db.executemany(
        "DELETE FROM advisories WHERE backend = ? AND name = ? AND arch = ? AND version = ?",
        keys,
    )


def _keyed(table: str, count: int) -> str:
    """Rows of ``table`` (advisories, update_sightings) for ``count`` update versions,
    each found by the table's key; the columns a caller reads follow the key.

    (A row-value ``IN (VALUES ...)`` would scan the whole table instead.)
    """
    columns = {"advisories": "t.cves, t.severity, t.origin", "update_sightings": "t.installed_at"}
    keys = ", ".join(["(?, ?, ?, ?)"] * count)
    return f"""WITH wanted (backend, name, arch, version) AS (VALUES {keys})
        SELECT t.backend, t.name, t.arch, t.version, {columns[table]}
        FROM wanted JOIN {table} AS t ON t.backend = wanted.backend
            AND t.name = wanted.name AND t.arch = wanted.arch AND t.version = wanted.version"""  # noqa: S608 - fixed names, placeholders


def _statements(script: str) -> list[str]:
    return [s.strip() for s in script.split(";") if s.strip()]
