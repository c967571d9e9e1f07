"""The collector's bounded retention, on SQLite and on a real PostgreSQL.

Reports are stored through the real ingest path at times a test clock gives; the other
tables' rows are written directly, a few seconds either side of the cutoff. Each rule is
checked for what goes *and* what must stay: each endpoint's newest report (exports verify
against it), a replay of a pruned report still refused, a dry run that changes nothing.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import inspect, select, update
from sqlalchemy.exc import OperationalError

from patchd.collector import bulk, retention
from patchd.collector.app import Settings, State
from patchd.collector.ingest import KeyCache, verify_report
from patchd.collector.metrics import render
from patchd.collector.schema import (
    LATEST,
    endpoint_daily,
    endpoint_runs,
    endpoint_updates,
    endpoints,
    enrolment_tokens,
    flags,
    housekeeping,
    reports,
)
from patchd.collector.store import CollectorStore, Verdict
from patchd.timeutil import stamp
from tests.collector.conftest import new_database
from tests.support.collector import SimEndpoint, patchd_cli, sections

T0 = datetime(2025, 1, 1, tzinfo=UTC)
KEEP = timedelta(days=400)
NOW = T0 + timedelta(days=450)  # the prune's time
CUTOFF = T0 + timedelta(days=50)  # NOW - KEEP
BEFORE = "2025-02-19T23:59:59Z"  # a second before the cutoff
AT = "2025-02-20T00:00:00Z"  # the cutoff itself: kept (only what is older goes)
AFTER = "2025-02-20T00:00:01Z"
ALL_TABLES = (reports, endpoint_runs, endpoint_updates, endpoint_daily, flags, enrolment_tokens,
              endpoints, housekeeping)  # fmt: skip


class Clock:
    """The store's clock, moved by the test."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[CollectorStore]:
    found = CollectorStore(new_database(request.param, request, tmp_path), clock=Clock(T0))
    yield found
    found.close()


def _at(store: CollectorStore, moment: datetime) -> None:
    store.clock.now = moment


def _enrolled(store: CollectorStore, *hostnames: str) -> list[SimEndpoint]:
    token = store.create_token(ttl=timedelta(days=365), uses=len(hostnames))
    found = []
    for hostname in hostnames:
        endpoint = SimEndpoint(hostname, Ed25519PrivateKey.generate())
        endpoint.endpoint_id = store.enrol(token.secret, endpoint.public_key, hostname).endpoint_id
        found.append(endpoint)
    return found


def _send(store: CollectorStore, endpoint: SimEndpoint, envelope: bytes) -> int:
    return store.store_batch([verify_report(envelope, KeyCache(store.public_key))])[0]


def _report_at(store: CollectorStore, endpoint: SimEndpoint, moment: datetime) -> bytes:
    """A report from ``endpoint``, received at ``moment``: its envelope."""
    _at(store, moment)
    envelope = endpoint.envelope(endpoint.payload(**sections()))
    assert _send(store, endpoint, envelope) == Verdict.STORED
    return envelope


def _reports_left(store: CollectorStore) -> list[tuple[str, int]]:
    with store.reading() as conn:
        rows = conn.execute(select(endpoints.c.hostname, reports.c.seq).join(
            endpoints, endpoints.c.id == reports.c.endpoint_id)).all()  # fmt: skip
    return sorted((r.hostname, r.seq) for r in rows)


def _contents(store: CollectorStore) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table the prune looks at (and those it must never touch)."""
    with store.reading() as conn:
        return {t.name: sorted((tuple(r) for r in conn.execute(select(t)).all()), key=repr)
                for t in ALL_TABLES}  # fmt: skip


def _fleet(store: CollectorStore) -> dict[str, list[bytes]]:
    """``busy`` reports before and after the cutoff, ``quiet`` only before it."""
    busy, quiet = _enrolled(store, "busy.example", "quiet.example")
    sent = {"busy": [_report_at(store, busy, T0 + timedelta(days=d)) for d in (0, 10, 100)],
            "quiet": [_report_at(store, quiet, T0 + timedelta(days=d)) for d in (0, 1)]}  # fmt: skip
    assert _reports_left(store) == [("busy.example", 1), ("busy.example", 2), ("busy.example", 3),
                                    ("quiet.example", 1), ("quiet.example", 2)]  # fmt: skip
    return sent


def _pruned_daily_until(store: CollectorStore, moment: datetime) -> None:
    """As if the collectors had pruned every day up to the day before ``moment``."""
    with store.writing() as conn:
        conn.execute(update(housekeeping).values(pruned_through=stamp(moment - timedelta(days=1))))


# -- reports -------------------------------------------------------------------------------------


def test_old_reports_go_but_each_endpoints_newest_stays(store: CollectorStore) -> None:
    _fleet(store)
    with mock.patch.object(store, "writing", wraps=store.writing) as turns:
        done = retention.prune(store, KEEP, NOW, batch_rows=1)
    assert done.cutoff == "2025-02-20T00:00:00Z"
    assert done.removed["reports"] == 3
    assert done.complete
    # busy 3 is newer than the cutoff; quiet 2 is older but its endpoint's newest.
    assert _reports_left(store) == [("busy.example", 3), ("quiet.example", 2)]
    # One transaction (and writer's turn) per row here, plus the last, empty one per table.
    # ... and one to note the time the prune counted from.
    assert turns.call_count == sum(done.removed.values()) + len(retention.TABLES) + 1


def test_a_pruned_report_sent_again_is_still_refused(store: CollectorStore) -> None:
    sent = _fleet(store)
    retention.prune(store, KEEP, NOW)
    _at(store, NOW)
    before = _contents(store)
    busy = _enrolled_as(store, "busy.example")
    assert _send(store, busy, sent["busy"][0]) == Verdict.CONFLICT  # seq 1, pruned
    with mock.patch.object(bulk, "store_reports", side_effect=bulk.BulkMismatch("injected")):
        assert _send(store, busy, sent["busy"][1]) == Verdict.CONFLICT  # seq 2, one by one
    assert _send(store, busy, sent["busy"][2]) == Verdict.DUPLICATE  # seq 3, still stored
    after = _contents(store)
    for table in ("reports", "endpoint_runs", "endpoint_updates", "endpoint_daily", "housekeeping"):
        assert after[table] == before[table], table
    new_flags = [f for f in after["flags"] if f not in before["flags"]]
    assert [(f[3], f[4][:10]) for f in new_flags] == [
        ("replay", "seq 1 is n"),
        ("replay", "seq 2 is n"),
    ]
    with store.reading() as conn:
        row = conn.execute(select(endpoints.c.last_seq, endpoints.c.last_report_at)
                           .where(endpoints.c.hostname == "busy.example")).one()  # fmt: skip
    assert (row.last_seq, row.last_report_at) == (3, "2025-04-11T00:00:00Z")


def _enrolled_as(store: CollectorStore, hostname: str) -> SimEndpoint:
    """A stand-in for an endpoint already enrolled (its id and key from the database)."""
    with store.reading() as conn:
        endpoint_id = conn.execute(
            select(endpoints.c.id).where(endpoints.c.hostname == hostname)
        ).scalar_one()
    return SimEndpoint(hostname, endpoint_id=endpoint_id)


def test_an_export_still_verifies_after_a_prune(store: CollectorStore, tmp_path: Path) -> None:
    _fleet(store)
    assert retention.prune(store, KEEP, NOW).removed["reports"] == 3
    out = tmp_path / "fleet.json"
    made = patchd_cli(
        "collector", "report", "--db", store.url, "--format", "json", "--out", str(out)
    )
    assert made.returncode == 0, made.stderr
    rows = json.loads(out.read_text())["rows"]
    assert sorted((r["hostname"], r["report_seq"]) for r in rows) == [
        ("busy.example", 3), ("quiet.example", 2)
    ]  # fmt: skip
    checked = patchd_cli("collector", "verify-export", str(out))
    assert checked.returncode == 0, checked.stderr
    assert "all 2 row(s) match" in checked.stdout


def test_reports_of_a_replaced_key_go_but_the_new_keys_newest_stays(store: CollectorStore) -> None:
    (old,) = _enrolled(store, "rekeyed.example")
    _report_at(store, old, T0)
    _report_at(store, old, T0 + timedelta(days=1))  # seq 2 at key epoch 0
    token = store.create_token(ttl=timedelta(days=1))
    new = SimEndpoint("rekeyed.example", Ed25519PrivateKey.generate())
    new.endpoint_id = store.enrol(token.secret, new.public_key, new.hostname).endpoint_id
    store.approve_key(new.endpoint_id)
    _report_at(store, new, T0 + timedelta(days=2))  # seq 1 at key epoch 1
    retention.prune(store, KEEP, NOW)
    with store.reading() as conn:
        left = conn.execute(select(reports.c.key_epoch, reports.c.seq)).all()
    assert [tuple(r) for r in left] == [(1, 1)]


def test_a_new_key_approved_but_silent_leaves_the_old_keys_newest(store: CollectorStore) -> None:
    (old,) = _enrolled(store, "rekeyed.example")
    _report_at(store, old, T0)
    _report_at(store, old, T0 + timedelta(days=1))  # seq 2 at key epoch 0: the newest stored
    token = store.create_token(ttl=timedelta(days=1))
    new = SimEndpoint("rekeyed.example", Ed25519PrivateKey.generate())
    new.endpoint_id = store.enrol(token.secret, new.public_key, new.hostname).endpoint_id
    store.approve_key(new.endpoint_id)  # its first report is yet to come
    assert retention.prune(store, KEEP, NOW).removed["reports"] == 1
    with store.reading() as conn:
        left = conn.execute(select(reports.c.key_epoch, reports.c.seq)).all()
    assert [tuple(r) for r in left] == [(0, 2)]


def test_a_run_goes_once_no_report_since_the_cutoff_lists_it(store: CollectorStore) -> None:
    """The agent lists its last runs in every report: one still listed would come back."""
    (endpoint,) = _enrolled(store, "runs.example")
    finished = "2025-01-01T00:05:00Z"
    runs = [{"id": "20250101T000000Z-aaaaaa", "kind": "apply", "status": "succeeded",
             "dry_run": False, "started_at": "2025-01-01T00:00:00Z", "finished_at": finished,
             "items": []}]  # fmt: skip
    for moment in (T0, NOW - timedelta(days=1)):  # listed by an old report, and a recent one
        _at(store, moment)
        envelope = endpoint.envelope(endpoint.payload(**sections(runs=runs)))
        assert _send(store, endpoint, envelope) == Verdict.STORED
    assert retention.prune(store, KEEP, NOW).removed["endpoint_runs"] == 0
    _at(store, NOW)  # a report that no longer lists it (the agent's last runs moved on)
    envelope = endpoint.envelope(endpoint.payload(**sections(runs=[])))
    assert _send(store, endpoint, envelope) == Verdict.STORED
    later = NOW + KEEP  # the recent report that listed it is now older than the cutoff too
    _pruned_daily_until(store, later)
    assert retention.prune(store, KEEP, later).removed["endpoint_runs"] == 1


# -- the other tables -----------------------------------------------------------------------------


def _run(run_id: str, finished_at: str | None, endpoint_id: str = "ep_rules") -> dict[str, Any]:
    return {"endpoint_id": endpoint_id, "run_id": run_id, "kind": "apply", "status": "succeeded",
            "dry_run": False, "started_at": None, "finished_at": finished_at, "done": 0, "failed": 0,
            "notes": "[]", "seq": 1}  # fmt: skip


def _update(
    update_id: str,
    pending: bool,
    installed_at: str | None,
    first_seen: str | None,
    endpoint_id: str = "ep_rules",
) -> dict[str, Any]:
    return {"endpoint_id": endpoint_id, "update_id": update_id, "backend": "apt", "name": update_id,
            "available_version": "2.0", "classification": "security", "severity": "important",
            "cves": "[]", "first_seen": first_seen, "deadline": None, "overdue": False, "decision": "",
            "reason": "", "not_before": None, "pending": pending, "installed_at": installed_at, "seq": 1}  # fmt: skip


def _token(token_id: str, expires_at: str) -> dict[str, Any]:
    return {"id": token_id, "token_sha256": hashlib.sha256(token_id.encode()).hexdigest(), "created_at": "2024-01-01T00:00:00Z",
            "expires_at": expires_at, "max_uses": 1, "uses_left": 1, "note": ""}  # fmt: skip


# (table, row, key, goes): what goes is older than the cutoff; what must stay is the rest.
RULE_CASES = [
    (endpoint_runs, _run("finished-before", BEFORE), "finished-before", True),
    (endpoint_runs, _run("finished-at", AT), "finished-at", False),
    (endpoint_runs, _run("finished-after", AFTER), "finished-after", False),
    # A run still going on another endpoint: its settled, never-installed updates stay (the
    # run may yet say it installed them).
    (endpoint_runs, _run("never-finished", None, "ep_going"), "never-finished", False),
    (endpoint_updates, _update("gone-while-going", False, None, BEFORE, "ep_going"), "gone-while-going", False),
    (endpoint_updates, _update("installed-before", False, BEFORE, BEFORE), "installed-before", True),
    (endpoint_updates, _update("installed-after", False, AFTER, BEFORE), "installed-after", False),
    (endpoint_updates, _update("pending-old", True, None, BEFORE), "pending-old", False),
    (endpoint_updates, _update("pending-installed", True, BEFORE, BEFORE), "pending-installed", False),
    (endpoint_updates, _update("gone-old", False, None, BEFORE), "gone-old", True),
    (endpoint_updates, _update("gone-recent", False, None, AFTER), "gone-recent", False),
    (endpoint_updates, _update("gone-unknown", False, None, None), "gone-unknown", False),
    (endpoint_daily, {"endpoint_id": "ep_rules", "day": "2025-02-19", "compliant": True, "overdue": 0},
     "2025-02-19", True),
    (endpoint_daily, {"endpoint_id": "ep_rules", "day": "2025-02-20", "compliant": True, "overdue": 0},
     "2025-02-20", False),
    (flags, {"id": 901, "endpoint_id": "ep_rules", "at": BEFORE, "kind": "replay", "detail": "old"}, 901, True),
    (flags, {"id": 902, "endpoint_id": "ep_rules", "at": AT, "kind": "replay", "detail": "new"}, 902, False),
    (enrolment_tokens, _token("expired-before", BEFORE), "expired-before", True),
    (enrolment_tokens, _token("expired-after", AFTER), "expired-after", False),
]  # fmt: skip


def _write_rule_rows(store: CollectorStore) -> None:
    with store.engine.begin() as conn:
        for table, row, _, _ in RULE_CASES:
            conn.execute(table.insert().values(**row))


def _keys_left(store: CollectorStore) -> set[tuple[str, Any]]:
    key_columns = {"endpoint_runs": "run_id", "endpoint_updates": "update_id", "endpoint_daily": "day",
                   "flags": "id", "enrolment_tokens": "id"}  # fmt: skip
    with store.reading() as conn:
        return {(t.name, key) for t in {c[0] for c in RULE_CASES}
                for key in conn.execute(select(t.c[key_columns[t.name]])).scalars()}  # fmt: skip


def test_each_table_keeps_what_is_not_older_than_the_cutoff(store: CollectorStore) -> None:
    _write_rule_rows(store)
    done = retention.prune(store, KEEP, NOW)
    gone = {(t.name, key) for t, _, key, goes in RULE_CASES if goes}
    kept = {(t.name, key) for t, _, key, goes in RULE_CASES if not goes}
    assert kept <= _keys_left(store)
    assert not gone & _keys_left(store)
    assert done.removed == {"reports": 0, "endpoint_runs": 1, "endpoint_updates": 2,
                            "endpoint_daily": 1, "flags": 1, "enrolment_tokens": 1}  # fmt: skip


def test_a_dry_run_changes_nothing_and_predicts_the_prune(store: CollectorStore) -> None:
    _fleet(store)
    _write_rule_rows(store)
    before = _contents(store)
    predicted = retention.prune(store, KEEP, NOW, dry_run=True)
    assert _contents(store) == before
    assert predicted.dry_run
    done = retention.prune(store, KEEP, NOW)
    assert done.removed == predicted.removed
    # The fleet's reports wrote a daily row each: four of them are of days before the cutoff.
    assert done.removed == {"reports": 3, "endpoint_runs": 1, "endpoint_updates": 2,
                            "endpoint_daily": 4 + 1, "flags": 1, "enrolment_tokens": 1}  # fmt: skip
    assert _contents(store) != before


def test_a_version_3_database_gains_the_housekeeping_row_and_the_index(
    store: CollectorStore,
) -> None:
    _fleet(store)
    with store.engine.begin() as conn:
        conn.exec_driver_sql("DROP TABLE housekeeping")
        conn.exec_driver_sql("DROP INDEX reports_received_at")
        conn.exec_driver_sql("UPDATE schema_version SET version = 3")
    store.engine.dispose()
    again = CollectorStore(store.url, clock=Clock(NOW))
    try:
        with again.reading() as conn:
            assert (
                conn.exec_driver_sql("SELECT version FROM schema_version").scalar() == LATEST == 4
            )
            assert [tuple(r) for r in conn.execute(select(housekeeping)).all()] == [(1, None, None)]
            # Not built by the migration, which holds every collector's start meanwhile.
            assert "reports_received_at" not in _indexes(conn)
        assert retention.prune_if_due(again, KEEP) is not None  # builds it first
        assert _reports_left(again) == [("busy.example", 3), ("quiet.example", 2)]
        with again.reading() as conn:
            assert "reports_received_at" in _indexes(conn)
    finally:
        again.close()


def _indexes(conn: Any) -> set[str]:
    return {i["name"] for i in inspect(conn).get_indexes("reports")}


def test_an_index_left_invalid_by_an_interrupted_build_is_built_again(
    store: CollectorStore,
) -> None:
    if store.dialect != "postgresql":
        assert store.dialect == "sqlite"  # SQLite builds it in one transaction: never half
        return
    valid = "SELECT indisvalid FROM pg_index WHERE indexrelid = 'reports_received_at'::regclass"
    with store.engine.begin() as conn:  # as CREATE INDEX CONCURRENTLY leaves it when stopped
        conn.exec_driver_sql(valid.replace("SELECT indisvalid FROM", "UPDATE").replace(
            "WHERE", "SET indisvalid = false WHERE"))  # fmt: skip
        assert conn.exec_driver_sql(valid).scalar() is False
    retention.ensure_index(store)
    with store.reading() as conn:
        assert conn.exec_driver_sql(valid).scalar() is True


# -- the daily claim, and the thread that makes it -------------------------------------------------


def test_one_collector_prunes_a_day(store: CollectorStore) -> None:
    other = CollectorStore(store.url, clock=Clock(NOW))  # a second collector on the database
    try:
        _fleet(store)
        _at(store, NOW)
        first = retention.prune_if_due(store, KEEP)
        assert first is not None
        assert first.removed["reports"] == 3
        assert retention.prune_if_due(other, KEEP) is None  # the same moment, elsewhere
        assert not retention.claim(store, NOW + timedelta(hours=23, minutes=59))
        assert not retention.claim(other, NOW + timedelta(hours=23, minutes=59))
        other.clock.now = NOW + timedelta(days=1)
        again = retention.prune_if_due(other, KEEP)  # due again: the next day
        assert again is not None
        assert again.removed["reports"] == 0
        with store.reading() as conn:
            assert retention.last_pruned(conn) == NOW + timedelta(days=1)
            assert conn.exec_driver_sql("SELECT version FROM schema_version").scalar() == LATEST
    finally:
        other.close()


def test_a_clock_set_years_ahead_moves_the_cutoff_two_days_a_prune(store: CollectorStore) -> None:
    (endpoint,) = _enrolled(store, "clock.example")
    _report_at(store, endpoint, NOW - timedelta(days=300))
    _report_at(store, endpoint, NOW - timedelta(days=1))
    assert retention.prune(store, KEEP, NOW).removed["reports"] == 0
    done = retention.prune(store, KEEP, NOW + timedelta(days=5 * 365))
    assert done.cutoff == stamp(NOW + retention.MAX_ADVANCE - KEEP)
    assert done.removed["reports"] == 0
    assert _reports_left(store) == [("clock.example", 1), ("clock.example", 2)]


def test_a_clock_set_back_makes_the_daily_prune_due(store: CollectorStore) -> None:
    assert retention.claim(store, NOW)
    # Another host's clock a little behind: not due (the day's prune is done).
    assert not retention.claim(store, NOW - timedelta(minutes=59))
    # Set back by hours: due, or none would come until NOW had passed.
    assert retention.claim(store, NOW - timedelta(hours=3))
    assert not retention.claim(store, NOW - timedelta(hours=2))
    with store.reading() as conn:
        assert retention.last_pruned(conn) == NOW - timedelta(hours=3)


def test_the_daily_prune_runs_in_a_thread_and_stops_at_once(store: CollectorStore) -> None:
    _fleet(store)
    _at(store, NOW)
    pruner = retention.DailyPrune(store, KEEP, first_check_s=0, check_every_s=3600)
    pruner.start()
    try:
        assert pruner.checked.wait(60)
    finally:
        pruner.stop()  # wakes it from its hour's wait
    assert not pruner.running
    assert pruner.removed["reports"] == 3
    assert _reports_left(store) == [("busy.example", 3), ("quiet.example", 2)]


def test_a_failing_prune_is_logged_and_the_thread_goes_on(
    store: CollectorStore, caplog: pytest.LogCaptureFixture
) -> None:
    fault = OperationalError("DELETE", {}, Exception("database is locked\nmore"))
    pruner = retention.DailyPrune(store, KEEP, first_check_s=0, check_every_s=3600)
    with mock.patch.object(retention, "prune_if_due", side_effect=fault), \
         caplog.at_level(logging.WARNING, logger="patchd.collector.retention"):  # fmt: skip
        pruner.start()
        try:
            assert pruner.checked.wait(60)
            went_on = pruner.running  # after the failure
        finally:
            pruner.stop()
    assert went_on
    assert not pruner.running
    [record] = caplog.records
    assert record.levelno == logging.WARNING
    assert "the daily prune failed: OperationalError" in record.getMessage()
    assert "\n" not in record.getMessage()


def _samples(state: State) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = render(state).decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}  # fmt: skip


def test_metrics_show_the_last_prune(store: CollectorStore) -> None:
    state = State(Settings(db=store.url, admin_token="x" * 20, clock=Clock(NOW)))
    try:
        assert _samples(state)[("patchd_collector_last_prune_timestamp_seconds", ())] == 0
        assert retention.claim(state.store, NOW)
        state.pruner.removed["reports"] = 7
        found = _samples(state)
    finally:
        state.store.close()
    assert found[("patchd_collector_last_prune_timestamp_seconds", ())] == NOW.timestamp()
    assert found[("patchd_collector_pruned_rows", (("table", "reports"),))] == 7
    assert found[("patchd_collector_pruned_rows", (("table", "flags"),))] == 0


# -- the command -----------------------------------------------------------------------------------


def test_the_prune_command_reports_what_it_removes(store: CollectorStore) -> None:
    # Stored long before the wall clock's cutoff (any time after 2021): all but the newest go.
    _at(store, datetime(2020, 1, 1, tzinfo=UTC))
    (endpoint,) = _enrolled(store, "cli.example")
    for day in (1, 2, 3):
        _report_at(store, endpoint, datetime(2020, 1, day, tzinfo=UTC))
    before = _contents(store)
    predicted = patchd_cli("collector", "prune", "--db", store.url, "--dry-run", "--json")
    assert predicted.returncode == 0, predicted.stderr
    assert _contents(store) == before
    document = json.loads(predicted.stdout)
    assert document["schema_version"] == 1
    assert (document["keep"], document["dry_run"], document["complete"]) == ("400d", True, True)
    assert document["removed"]["reports"] == 2
    assert document["removed"]["enrolment_tokens"] == 1  # it expired in 2021
    done = patchd_cli("collector", "prune", "--db", store.url, "--json", "--keep", "30d")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["removed"] == document["removed"]
    assert _reports_left(store) == [("cli.example", 3)]
    with store.reading() as conn:
        assert retention.last_pruned(conn) is not None
    text = patchd_cli("collector", "prune", "--db", store.url, "--dry-run")
    assert text.returncode == 0, text.stderr
    assert text.stdout.startswith("Kept 400d (since ")
    assert "would remove 0 reports, 0 endpoint_runs" in text.stdout


@pytest.mark.parametrize("keep", ["10d", "3654d", "1y", ""])
def test_a_bad_keep_is_refused_in_one_line_and_changes_nothing(
    store: CollectorStore, keep: str
) -> None:
    _fleet(store)
    before = _contents(store)
    result = patchd_cli("collector", "prune", "--db", store.url, "--keep", keep)
    assert result.returncode == 2
    assert result.stderr.startswith("patchd: error: --keep: ")
    assert len(result.stderr.strip().splitlines()) == 1
    assert _contents(store) == before


def test_serve_refuses_a_bad_keep(tmp_path: Path) -> None:
    db = tmp_path / "never.db"
    result = patchd_cli("collector", "serve", "--db", str(db), "--admin-token-file",
                        str(tmp_path / "token"), "--keep", "29d")  # fmt: skip
    assert result.returncode == 2
    assert "--keep: 29d is too short: at least 30d" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not db.exists()


def test_worker_processes_get_keep_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    token = tmp_path / "admin.token"
    token.write_text("t" * 32)
    token.chmod(0o600)
    monkeypatch.setenv("PATCHD_COLLECTOR_DB", str(tmp_path / "c.db"))
    monkeypatch.setenv("PATCHD_COLLECTOR_ADMIN_TOKEN_FILE", str(token))
    monkeypatch.delenv("PATCHD_COLLECTOR_KEEP_S", raising=False)
    assert Settings.from_environment().keep == retention.DEFAULT_KEEP == timedelta(days=400)
    monkeypatch.setenv("PATCHD_COLLECTOR_KEEP_S", str(timedelta(days=45).total_seconds()))
    assert Settings.from_environment().keep == timedelta(days=45)
