"""Tests for patchd.state.store: a real SQLite database in a temporary state directory.

Time is passed in (``T0`` and later), never read from the wall clock. Negative tests check
the error and that the database file on disk did not change.
"""

from __future__ import annotations

import hashlib
import os
import random
import re
import sqlite3
import stat
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from patchd.backends.base import ChangeResult, Outcome, RollbackSource
from patchd.errors import StateError, UnknownRunError
from patchd.models import Advisory, Classification, PackageChange, Severity, Update
from patchd.state import store as store_module
from patchd.state.schema import MIGRATIONS
from patchd.state.store import DB_NAME, InventoryDocument, RunItem, RunRecord, StateStore
from patchd.timeutil import format_time
from patchd.transcript import TranscriptEntry

T0 = datetime(2026, 12, 4, 19, 57, 13, tzinfo=UTC)
T1 = T0 + timedelta(hours=1)
T2 = T0 + timedelta(hours=2)
T3 = T0 + timedelta(days=1)


def update(
    name: str = "openssl",
    version: str = "3.0.15-1",
    classification: Classification = Classification.SECURITY,
    severity: Severity = Severity.IMPORTANT,
    cves: tuple[str, ...] = ("CVE-2024-5535",),
) -> Update:
    return Update(
        backend="apt",
        name=name,
        arch="amd64",
        installed_version="3.0.14-1",
        available_version=version,
        classification=classification,
        severity=severity,
        cves=cves,
    )


SECURITY = update()
BUGFIX = update("tzdata", "2026a-1", Classification.BUGFIX, Severity.UNKNOWN, ())


@pytest.fixture
def permissive_umask() -> Iterator[None]:
    """A umask that would leave files world-readable if the code did not say otherwise."""
    previous = os.umask(0)
    try:
        yield
    finally:
        os.umask(previous)


@pytest.fixture
def state_dir(tmp_path: Path) -> Path:
    return tmp_path / "state"


@pytest.fixture
def store(state_dir: Path) -> Iterator[StateStore]:
    opened = StateStore.open(state_dir)
    try:
        yield opened
    finally:
        opened.close()


def installed_at(store: StateStore, name: str, version: str) -> str | None:
    sighting = store.sighting("apt", name, "amd64", version)
    assert sighting is not None, f"{name} {version} was never sighted"
    return sighting["installed_at"]  # type: ignore[no-any-return]


def listing(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


def pragma(path: Path, name: str) -> object:
    db = sqlite3.connect(path)
    try:
        return db.execute(f"PRAGMA {name}").fetchone()[0]
    finally:
        db.close()


# --- opening ----------------------------------------------------------------------------


@pytest.mark.usefixtures("permissive_umask")
def test_open_creates_a_private_directory_and_database(tmp_path: Path) -> None:
    state_dir = tmp_path / "deep" / "state"

    with StateStore.open(state_dir) as opened:
        assert opened.path == state_dir / DB_NAME
        assert stat.S_IMODE(state_dir.stat().st_mode) == 0o700
        for name in listing(state_dir):  # the database and its WAL files
            assert stat.S_IMODE((state_dir / name).stat().st_mode) == 0o600, name

    assert pragma(state_dir / DB_NAME, "journal_mode") == "wal"
    assert pragma(state_dir / DB_NAME, "user_version") == len(MIGRATIONS)


def test_reopening_keeps_the_data_and_runs_no_migration_twice(state_dir: Path) -> None:
    with StateStore.open(state_dir) as first:
        first.record_scan([SECURITY], {}, T0)
        run_id = first.create_run("apply", [(SECURITY.change(), SECURITY)], T0)
    schema = pragma(state_dir / DB_NAME, "schema_version")

    with StateStore.open(state_dir) as second:
        assert second.get_run(run_id).items[0].change == SECURITY.change()
        assert second.sighting("apt", "openssl", "amd64", "3.0.15-1") is not None

    assert pragma(state_dir / DB_NAME, "schema_version") == schema  # no DDL ran again
    assert pragma(state_dir / DB_NAME, "user_version") == len(MIGRATIONS)


@pytest.mark.parametrize("journal_mode", ["delete", "wal"], ids=["rollback-journal", "wal"])
def test_a_newer_schema_is_refused_and_left_alone(state_dir: Path, journal_mode: str) -> None:
    state_dir.mkdir()
    path = state_dir / DB_NAME
    db = sqlite3.connect(path)
    db.execute(f"PRAGMA journal_mode={journal_mode}")
    db.execute("CREATE TABLE from_the_future (x)")
    db.execute(f"PRAGMA user_version = {len(MIGRATIONS) + 1}")
    db.commit()
    db.close()
    before = path.read_bytes()

    with pytest.raises(StateError, match="newer than this patchd understands"):
        StateStore.open(state_dir)

    assert path.read_bytes() == before
    assert listing(state_dir) == [DB_NAME]


def test_a_corrupt_database_is_refused_with_a_hint_and_left_alone(state_dir: Path) -> None:
    state_dir.mkdir()
    path = state_dir / DB_NAME
    path.write_bytes(random.Random(7).randbytes(16384))
    before = path.read_bytes()

    with pytest.raises(StateError) as caught:
        StateStore.open(state_dir)

    assert f"the state database {path} is unusable" in caught.value.message
    assert "move it aside" in (caught.value.hint or "")
    assert path.read_bytes() == before
    assert listing(state_dir) == [DB_NAME]


def test_a_state_directory_that_is_a_file_is_refused(tmp_path: Path) -> None:
    not_a_dir = tmp_path / "state"
    not_a_dir.write_text("mine")

    with pytest.raises(StateError, match="cannot open the state database"):
        StateStore.open(not_a_dir)

    assert not_a_dir.read_text() == "mine"


# --- sightings and scans --------------------------------------------------------------------


def test_first_seen_stays_the_first_sighting(store: StateStore) -> None:
    first = store.record_scan([SECURITY], {}, T0)
    later = store.record_scan([SECURITY, BUGFIX], {}, T1)
    latest = store.record_scan([BUGFIX, SECURITY], {}, T3)

    assert first == {SECURITY.id: T0}
    assert later == {SECURITY.id: T0, BUGFIX.id: T1}
    assert latest == {SECURITY.id: T0, BUGFIX.id: T1}
    assert store.sighting("apt", "openssl", "amd64", "3.0.15-1") == {
        "first_seen": format_time(T0),
        "last_seen": format_time(T3),
        "installed_at": None,
    }


def test_a_newer_version_is_a_new_sighting(store: StateStore) -> None:
    store.record_scan([SECURITY], {}, T0)
    newer = update(version="3.0.16-1")

    assert store.record_scan([newer], {}, T1) == {newer.id: T1}


def test_a_version_seen_installed_closes_its_sighting(store: StateStore) -> None:
    store.record_scan([SECURITY, BUGFIX], {}, T0)
    installed = {
        ("apt", "openssl", "amd64"): "3.0.15-1",  # the sighted version: closed
        ("apt", "tzdata", "amd64"): "2025b-1",  # another version: still open
    }

    store.record_scan([], installed, T1)
    store.record_scan([], installed, T2)

    assert store.sighting("apt", "openssl", "amd64", "3.0.15-1") == {
        "first_seen": format_time(T0),
        "last_seen": format_time(T0),
        "installed_at": format_time(T1),  # the first scan that saw it, not a later one
    }
    assert installed_at(store, "tzdata", "2026a-1") is None
    assert store.sighting("apt", "openssl", "amd64", "9.9") is None


def test_a_version_seen_again_after_its_install_keeps_its_first_sighting(
    store: StateStore,
) -> None:
    store.record_scan([SECURITY], {}, T0)
    store.record_scan([], {("apt", "openssl", "amd64"): "3.0.15-1"}, T1)  # installed
    # Rolled back (or removed and installed older): the version is an update again.
    again = store.record_scan([BUGFIX, SECURITY], {("apt", "openssl", "amd64"): "3.0.13-1"}, T2)

    assert again == {SECURITY.id: T0, BUGFIX.id: T2}
    assert installed_at(store, "openssl", "3.0.15-1") == format_time(T1)


def unlisted_at(store: StateStore, name: str, version: str) -> str | None:
    (row,) = store.query(
        "SELECT unlisted_at FROM update_sightings WHERE name = ? AND version = ?", (name, version)
    )
    return row[0]  # type: ignore[no-any-return]


def test_a_version_no_scan_lists_any_more_is_unlisted_and_pending_again_if_listed(
    store: StateStore,
) -> None:
    older = update(version="3.0.14-1")
    store.record_scan([older, BUGFIX], {}, T0)
    store.record_scan([SECURITY, BUGFIX], {}, T1)  # 3.0.15 came before 3.0.14 was installed

    assert unlisted_at(store, "openssl", "3.0.14-1") == format_time(T1)
    assert installed_at(store, "openssl", "3.0.14-1") is None  # not installed: unlisted
    assert unlisted_at(store, "openssl", "3.0.15-1") is None
    assert unlisted_at(store, "tzdata", "2026a-1") is None

    # The repository offers 3.0.14 again (3.0.15 withdrawn): pending, as first seen.
    again = store.record_scan([older, BUGFIX], {}, T2)
    assert again[older.id] == T0
    assert unlisted_at(store, "openssl", "3.0.14-1") is None
    assert unlisted_at(store, "openssl", "3.0.15-1") == format_time(T2)


def test_a_scan_reads_only_the_pending_sightings(
    store: StateStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    for n in range(30):  # thirty versions, each superseded by the next before installing
        store.record_scan([update(version=f"3.0.{n}-1")], {}, T0 + timedelta(hours=n))
    (pending,) = store.query(
        "SELECT COUNT(*) FROM update_sightings WHERE installed_at IS NULL AND unlisted_at IS NULL"
    )
    assert pending == (1,)
    plan = store.query(
        """EXPLAIN QUERY PLAN SELECT backend FROM update_sightings
           WHERE installed_at IS NULL AND unlisted_at IS NULL"""
    )
    assert any("sightings_pending" in row[-1] for row in plan), plan


def test_cached_advisories_go_when_their_version_is_no_longer_pending(store: StateStore) -> None:
    advisory = Advisory(("CVE-2024-5535",), Severity.CRITICAL, "changelog")
    older = update(version="3.0.14-1")
    store.record_scan([older, SECURITY, BUGFIX], {}, T0)
    store.save_advisories(
        [older, SECURITY, BUGFIX], {u.id: advisory for u in (older, SECURITY, BUGFIX)}, T0
    )

    # 3.0.14 is no longer listed, tzdata's update was installed.
    store.record_scan([SECURITY], {("apt", "tzdata", "amd64"): "2026a-1"}, T1)

    assert store.cached_advisories([older, SECURITY, BUGFIX]) == {SECURITY.id: advisory}

    run_id = store.create_run("apply", [(SECURITY.change(), SECURITY)], T1)
    store.record_results(run_id, [ChangeResult(SECURITY.change(), Outcome.DONE, "3.0.15-1")], T2)
    assert store.cached_advisories([SECURITY]) == {}


def test_installed_among_answers_for_the_versions_asked(
    store: StateStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(store_module, "LOOKUP_CHUNK", 2)
    versions = [update(f"lib{n}", "1.1-1") for n in range(5)]
    store.record_scan(versions, {}, T0)
    installed = {("apt", f"lib{n}", "amd64"): "1.1-1" for n in (0, 3, 4)}
    store.record_scan([], installed, T1)

    def key(u: Update) -> tuple[str, str, str, str]:
        return (u.backend, u.name, u.arch, u.available_version)

    asked = [key(u) for u in versions] + [("apt", "lib9", "amd64", "1.1-1")]
    assert store.installed_among(asked) == {key(versions[n]) for n in (0, 3, 4)}
    assert store.installed_among([]) == set()


def test_last_scan_counts_what_the_latest_scan_found_pending(store: StateStore) -> None:
    assert store.last_scan() is None

    store.record_scan(
        [SECURITY, BUGFIX],
        {},
        T0,
        inventory=InventoryDocument.of({"hostname": "h1", "reboot": {"required": True}}),
    )
    assert store.last_scan() == {
        "at": format_time(T0),
        "pending": 2,
        "security": 1,
        "hostname": "h1",
        "reboot": {"required": True},
        "end_of_life": None,
    }

    store.record_scan(
        [BUGFIX],
        {("apt", "openssl", "amd64"): "3.0.15-1"},
        T1,
        inventory=InventoryDocument.of({"hostname": "h1", "end_of_life": {"eol": False}}),
    )
    assert store.last_scan() == {
        "at": format_time(T1),
        "pending": 1,
        "security": 0,
        "hostname": "h1",
        "reboot": None,
        "end_of_life": {"eol": False},
    }


def test_inventory_history_is_bounded(
    store: StateStore, state_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(store_module, "MAX_INVENTORY_ROWS", 3)

    for n in range(5):
        store.record_scan(
            [], {}, T0 + timedelta(minutes=n), inventory=InventoryDocument.of({"hostname": f"h{n}"})
        )

    assert store.inventory_count() == 3
    db = sqlite3.connect(state_dir / DB_NAME)
    kept = [row[0] for row in db.execute("SELECT document FROM inventory ORDER BY id")]
    db.close()
    assert kept == ['{"hostname":"h2"}', '{"hostname":"h3"}', '{"hostname":"h4"}']
    assert (store.last_scan() or {})["hostname"] == "h4"


def test_advisories_are_cached_per_update_version(store: StateStore) -> None:
    advisory = Advisory(("CVE-2024-5535", "CVE-2024-6119"), Severity.CRITICAL, "changelog")
    store.save_advisories([SECURITY, BUGFIX], {SECURITY.id: advisory}, T0)

    assert store.cached_advisories([SECURITY, BUGFIX, update(version="4.0")]) == {
        SECURITY.id: advisory
    }

    revised = Advisory(("CVE-2024-5535",), Severity.LOW, "tracker")
    store.save_advisories([SECURITY], {SECURITY.id: revised}, T1)
    assert store.cached_advisories([SECURITY]) == {SECURITY.id: revised}


def test_advisories_are_looked_up_in_chunks(
    store: StateStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(store_module, "LOOKUP_CHUNK", 2)
    updates = [update(f"lib{n}", f"1.{n}-1") for n in range(5)]
    advisories = {
        u.id: Advisory((f"CVE-2026-{1000 + n}",), Severity.IMPORTANT, "changelog")
        for n, u in enumerate(updates)
        if n != 3
    }
    store.save_advisories(updates, advisories, T0)

    assert store.cached_advisories(updates) == advisories
    assert store.cached_advisories([updates[3], update("lib9", "1.4-1")]) == {}


@pytest.mark.parametrize("table", ["advisories", "update_sightings"])
def test_update_versions_are_looked_up_by_the_tables_key(store: StateStore, table: str) -> None:
    """A look-up of a scan's updates must not read the whole table."""
    plan = store.query(f"EXPLAIN QUERY PLAN {store_module._keyed(table, 3)}", ("x",) * 12)
    steps = [row[-1] for row in plan]
    named = rf"(TABLE {table} AS )?t\b"  # SQLite before 3.36 names the table too
    assert any(re.match(f"SEARCH {named}", step) for step in steps), steps
    assert not any(re.match(f"SCAN {named}", step) for step in steps), steps


# --- runs ------------------------------------------------------------------------------------

LIBFOO = PackageChange("apt", "libfoo", "amd64", "1.0-1", "1.1-1")


def test_a_run_round_trips(store: StateStore) -> None:
    store.record_scan([SECURITY], {}, T0)
    run_id = store.create_run("apply", [(SECURITY.change(), SECURITY), (LIBFOO, None)], T0)
    store.record_results(
        run_id,
        [
            ChangeResult(SECURITY.change(), Outcome.DONE, "3.0.15-1", "upgraded"),
            ChangeResult(LIBFOO, Outcome.FAILED, "1.0-1", "held back"),
        ],
        T1,
    )
    store.finish_run(run_id, "failed", ["libfoo was not upgraded"], T2)

    assert re.fullmatch(r"20261204T195713Z-[0-9a-f]{6}", run_id)
    assert store.get_run(run_id) == RunRecord(
        id=run_id,
        kind="apply",
        status="failed",
        dry_run=False,
        parent_run=None,
        started_at=T0,
        finished_at=T2,
        notes=("libfoo was not upgraded",),
        items=(
            RunItem(
                seq=0,
                change=SECURITY.change(),
                update_id="apt:openssl:amd64=3.0.15-1",
                classification="security",
                severity="important",
                cves=("CVE-2024-5535",),
                outcome="done",
                found_version="3.0.15-1",
                detail="upgraded",
                rollback_available=False,
                rollback_file=None,
                rollback_detail="",
            ),
            RunItem(
                seq=1,
                change=LIBFOO,
                update_id=None,
                classification=None,
                severity=None,
                cves=(),
                outcome="failed",
                found_version="1.0-1",
                detail="held back",
                rollback_available=False,
                rollback_file=None,
                rollback_detail="",
            ),
        ),
    )


def test_a_new_run_is_running_with_pending_items(store: StateStore) -> None:
    run_id = store.create_run("apply", [(LIBFOO, None)], T0, dry_run=True)

    run = store.get_run(run_id)

    assert (run.status, run.dry_run, run.finished_at, run.notes) == ("running", True, None, ())
    assert [item.outcome for item in run.items] == ["pending"]
    assert run.as_dict()["items"][0]["to_version"] == "1.1-1"


def test_a_done_change_closes_its_sighting_and_a_failed_one_does_not(store: StateStore) -> None:
    store.record_scan([SECURITY, BUGFIX], {}, T0)
    run_id = store.create_run(
        "apply", [(SECURITY.change(), SECURITY), (BUGFIX.change(), BUGFIX)], T0
    )

    store.record_results(
        run_id,
        [
            ChangeResult(SECURITY.change(), Outcome.DONE, "3.0.15-1"),
            ChangeResult(BUGFIX.change(), Outcome.FAILED, "3.0.14-1"),
        ],
        T1,
    )

    assert installed_at(store, "openssl", "3.0.15-1") == format_time(T1)
    assert installed_at(store, "tzdata", "2026a-1") is None


def test_a_rollback_run_points_at_its_parent(store: StateStore) -> None:
    parent = store.create_run("apply", [(LIBFOO, None)], T0)
    store.record_rollback_sources(
        parent, [RollbackSource(LIBFOO, True, Path("/var/lib/patchd/kept/libfoo.deb"), "kept")]
    )
    child = store.create_run("rollback", [(LIBFOO.reversed(), None)], T1, parent_run=parent)

    parent_item = store.get_run(parent).items[0]
    assert (parent_item.rollback_available, parent_item.rollback_file) == (
        True,
        "/var/lib/patchd/kept/libfoo.deb",
    )
    assert parent_item.rollback_detail == "kept"
    rollback = store.get_run(child)
    assert rollback.parent_run == parent
    assert rollback.items[0].change == PackageChange("apt", "libfoo", "amd64", "1.1-1", "1.0-1")


def test_list_runs_is_newest_first_and_limited(store: StateStore) -> None:
    ids = [store.create_run("apply", [], T0 + timedelta(minutes=n)) for n in range(4)]

    assert [run.id for run in store.list_runs()] == ids[::-1]
    assert [run.id for run in store.list_runs(limit=2)] == ids[:1:-1]


def test_an_unknown_run_is_an_error(store: StateStore) -> None:
    store.create_run("apply", [], T0)

    with pytest.raises(UnknownRunError) as caught:
        store.get_run("20261204T000000Z-000000")

    assert caught.value.run_id == "20261204T000000Z-000000"
    assert len(store.list_runs()) == 1


def test_a_failed_write_rolls_back_entirely(store: StateStore) -> None:
    with pytest.raises(sqlite3.IntegrityError):
        store.create_run("upgrade-everything", [(LIBFOO, None)], T0)  # kind is checked

    assert store.list_runs() == []
    run_id = store.create_run("apply", [(LIBFOO, None)], T0)  # no transaction left open
    assert len(store.get_run(run_id).items) == 1


# --- transcripts ----------------------------------------------------------------------------


def test_transcript_entries_round_trip_in_order(store: StateStore) -> None:
    run_id = store.create_run("apply", [], T0)
    entries = [
        TranscriptEntry(T0, ("apt-get", "update"), 0, "Hit:1 file:/repo\n", 1.5),
        TranscriptEntry(T1, (), None, "a note"),
        TranscriptEntry(T2, ("apt-get", "install", "x"), 100, "E: failed\n", 0.25),
    ]

    for entry in entries:
        store.append_transcript(run_id, entry)

    assert store.transcript(run_id) == entries
    assert store.transcript("no-such-run") == []


@pytest.mark.parametrize(
    ("output", "stored"),
    [
        ("0123456789", "0123456789"),
        ("0123456789abcdef", "[... earlier output elided ...]\n6789abcdef"),
    ],
    ids=["at-the-bound", "over-the-bound"],
)
def test_transcript_output_is_bounded(
    output: str, stored: str, store: StateStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(store_module, "MAX_TRANSCRIPT_OUTPUT_CHARS", 10)
    run_id = store.create_run("apply", [], T0)

    store.append_transcript(run_id, TranscriptEntry(T0, ("cmd",), 0, output))

    assert [entry.output for entry in store.transcript(run_id)] == [stored]


def test_an_inventory_is_kept_as_canonical_json_with_its_digest(tmp_path: Path) -> None:
    document = InventoryDocument.of({"hostname": "h1", "arch": "x86_64"})
    with StateStore.open(tmp_path) as store:
        store.record_scan([], {}, T0, inventory=document)
        rows = store.query("SELECT sha256, document FROM inventory")

    assert document.text == '{"arch":"x86_64","hostname":"h1"}'
    assert rows == [(hashlib.sha256(document.text.encode()).hexdigest(), document.text)]


PACKAGES = [{"backend": "apt", "name": "openssl", "version": "3.0.13-1"}]
NEWER = [{"backend": "apt", "name": "openssl", "version": "3.0.15-1"}]


def inventory(hostname: str, packages: list[dict[str, str]]) -> InventoryDocument:
    return InventoryDocument.of({"hostname": hostname, "packages": packages})


def test_an_inventory_keeps_its_package_list_apart_under_its_digest() -> None:
    document = inventory("h1", PACKAGES)

    assert document.packages == ('[{"backend":"apt","name":"openssl","version":"3.0.13-1"}]')
    assert document.packages_sha256 == hashlib.sha256(document.packages.encode()).hexdigest()
    assert document.text == f'{{"hostname":"h1","packages_sha256":"{document.packages_sha256}"}}'
    # The inventory's digest covers its packages: another list, another digest.
    assert inventory("h1", NEWER).sha256 != document.sha256


def test_each_package_list_is_kept_once_however_many_scans_find_it(store: StateStore) -> None:
    for n, packages in enumerate([PACKAGES, PACKAGES, NEWER, PACKAGES]):
        store.record_scan([], {}, T0 + timedelta(hours=n), inventory=inventory("h1", packages))

    ids = [row[0] for row in store.query("SELECT id FROM inventory ORDER BY id")]
    assert [store.inventory_packages(i) for i in ids] == [PACKAGES, PACKAGES, NEWER, PACKAGES]
    assert store.query("SELECT COUNT(*) FROM package_lists") == [(2,)]
    assert store.inventory_packages(max(ids) + 1) is None


def test_a_package_list_goes_with_the_last_inventory_that_had_it(
    store: StateStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(store_module, "MAX_INVENTORY_ROWS", 2)
    for n, packages in enumerate([PACKAGES, NEWER, NEWER]):
        store.record_scan([], {}, T0 + timedelta(hours=n), inventory=inventory("h1", packages))

    assert store.inventory_count() == 2
    assert store.query("SELECT document FROM package_lists") == [(inventory("h1", NEWER).packages,)]


def database_at(state_dir: Path, version: int) -> sqlite3.Connection:
    """A state database as a patchd of schema ``version`` left it (commit, then close)."""
    state_dir.mkdir()
    db = sqlite3.connect(state_dir / DB_NAME)
    for number in range(version):
        for statement in store_module._statements(MIGRATIONS[number]):
            db.execute(statement)
    db.execute(f"PRAGMA user_version = {version}")
    return db


def test_inventories_kept_before_the_lists_were_apart_are_still_read(state_dir: Path) -> None:
    """A database of schema 4 keeps its inventories; they are read as they were."""
    db = database_at(state_dir, 4)
    old = '{"hostname":"h0","packages":[{"name":"openssl"}]}'
    db.execute(
        "INSERT INTO inventory (taken_at, sha256, document) VALUES (?, ?, ?)",
        (format_time(T0), hashlib.sha256(old.encode()).hexdigest(), old),
    )
    db.commit()
    db.close()

    with StateStore.open(state_dir) as store:
        store.record_scan([], {}, T1, inventory=inventory("h1", PACKAGES))
        assert store.inventory_packages(1) == [{"name": "openssl"}]
        assert store.inventory_packages(2) == PACKAGES
        assert (store.last_scan() or {})["hostname"] == "h1"
    assert pragma(state_dir / DB_NAME, "user_version") == len(MIGRATIONS)


class _Unreadable(dict[tuple[str, str, str], str]):
    """An installed set whose look-up fails half-way through recording a scan."""

    def get(self, key: object, default: object = None) -> str | None:  # type: ignore[override]
        raise RuntimeError("the installed set cannot be read")


def test_a_scan_and_its_inventory_are_one_transaction(tmp_path: Path) -> None:
    """Both or neither: a scan that fails while recording keeps no inventory either."""
    with StateStore.open(tmp_path) as store:
        document = InventoryDocument.of({"hostname": "h1"})
        with pytest.raises(RuntimeError, match="cannot be read"):
            store.record_scan([SECURITY], _Unreadable(), T0, inventory=document)
        assert store.inventory_count() == 0
        assert store.last_scan() is None
        assert (
            store.sighting("apt", SECURITY.name, SECURITY.arch, SECURITY.available_version) is None
        )
        store.record_scan([SECURITY], {}, T0, inventory=document)
        assert store.inventory_count() == 1
        assert (store.last_scan() or {})["pending"] == 1


def test_an_older_database_keeps_only_the_advisories_of_pending_versions(state_dir: Path) -> None:
    """Schema 6 drops the cached advisories of versions installed before it."""
    db = database_at(state_dir, 5)
    for name, installed in (("openssl", None), ("tzdata", format_time(T1))):
        db.execute(
            """INSERT INTO update_sightings (backend, name, arch, version, classification,
                   severity, first_seen, last_seen, installed_at)
               VALUES ('apt', ?, 'amd64', '1.1-1', 'security', 'low', ?, ?, ?)""",
            (name, format_time(T0), format_time(T0), installed),
        )
        db.execute(
            """INSERT INTO advisories (backend, name, arch, version, cves, severity, origin,
                   recorded_at) VALUES ('apt', ?, 'amd64', '1.1-1', '[]', 'low', 'changelog', ?)""",
            (name, format_time(T0)),
        )
    db.commit()
    db.close()

    with StateStore.open(state_dir) as store:
        assert store.query("SELECT name FROM advisories") == [("openssl",)]
        assert store.query("SELECT name, unlisted_at FROM update_sightings ORDER BY name") == [
            ("openssl", None),
            ("tzdata", None),
        ]
