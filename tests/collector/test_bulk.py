"""A batch stored in bulk ends exactly as storing its reports one by one would, on both databases.

Two twin fleets are enrolled in one database; the same sequence of reports (new, a
second from the same endpoint in the same batch, a duplicate, a fork, a replay, an
unknown endpoint, a repeated update id) goes to one twin as a single batch and to the
other one by one (the bulk path made to fail, so the per-report path runs). The
verdicts and every row they leave must match.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import select

from patchd.collector import bulk
from patchd.collector.ingest import KeyCache, VerifiedReport, verify_report
from patchd.collector.schema import (
    LATEST,
    endpoint_daily,
    endpoint_updates,
    endpoints,
    flags,
    reports,
)
from patchd.collector.store import CollectorStore, Verdict
from tests.collector.conftest import new_database
from tests.support.collector import SimEndpoint, sections


def _update(update_id: str, reason: str = "in the next window") -> dict[str, Any]:
    return {"id": update_id, "backend": "apt", "name": update_id.split(":")[1], "available_version": "2.0",
            "classification": "security", "severity": "important", "cves": ["CVE-2025-0001"],
            "first_seen": "2026-12-01T00:00:00Z", "deadline": "2026-12-08T00:00:00Z", "overdue": False,
            "decision": "install-later", "reason": reason}  # fmt: skip


A, B, C = "apt:liba:amd64=2.0", "apt:libb:amd64=2.0", "apt:libc:amd64=2.0"


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[CollectorStore]:
    found = CollectorStore(new_database(request.param, request, tmp_path))
    yield found
    found.close()


def _twin_fleets(store: CollectorStore) -> tuple[dict[str, SimEndpoint], dict[str, SimEndpoint]]:
    token = store.create_token(ttl=timedelta(hours=1), uses=10)
    fleets: tuple[dict[str, SimEndpoint], dict[str, SimEndpoint]] = ({}, {})
    for twin, fleet in zip(("bulk", "single"), fleets, strict=True):
        for role in ("one", "two"):
            endpoint = SimEndpoint(f"{role}-{twin}.example", Ed25519PrivateKey.generate())
            endpoint.endpoint_id = store.enrol(
                token.secret, endpoint.public_key, endpoint.hostname
            ).endpoint_id
            fleet[role] = endpoint
        fleet["stranger"] = SimEndpoint(
            f"stranger-{twin}.example", endpoint_id=f"ep_stranger_{twin}"
        )
    return fleets


def _reports(fleet: dict[str, SimEndpoint], store: CollectorStore) -> list[VerifiedReport]:
    one, two, stranger = fleet["one"], fleet["two"], fleet["stranger"]

    def signed(endpoint: SimEndpoint, seq: int, **extra: Any) -> bytes:
        payload = endpoint.payload(seq, **extra)
        payload["created_at"] = (
            "2026-12-04T10:00:00Z"  # the twins' payloads differ only by who they are
        )
        return endpoint.envelope(payload)

    first = signed(one, 1, **sections(pending=2, updates=[_update(A), _update(B)]))
    bodies = [
        first,
        signed(two, 4, **sections(overdue=1, pending=1, updates=[_update(C)])),
        signed(
            one,
            2,
            **sections(pending=2, updates=[_update(B), _update(C, "first"), _update(C, "last")]),
        ),
        first,  # the same bytes again: a duplicate
        signed(one, 1, note="a clone"),  # seq 1 with other bytes: a fork
        signed(two, 3),  # below seq 4: a replay
        signed(stranger, 1),  # never enrolled
    ]
    keys = {e.endpoint_id: e.public_key for e in fleet.values()}
    cache = KeyCache(lambda endpoint_id: keys.get(endpoint_id) or store.public_key(endpoint_id))
    return [verify_report(body, cache) for body in bodies]


def _rows(store: CollectorStore, fleet: dict[str, SimEndpoint]) -> dict[str, Any]:
    """Everything the reports left, with the twin's endpoint ids replaced by their roles."""
    roles = {e.endpoint_id: role for role, e in fleet.items()}
    ids = list(roles)
    with store.reading() as conn:
        found = {
            "endpoints": conn.execute(select(endpoints).where(endpoints.c.id.in_(ids))).all(),
            "reports": conn.execute(select(reports.c.endpoint_id, reports.c.seq, reports.c.sha256)
                                    .where(reports.c.endpoint_id.in_(ids))).all(),
            "updates": conn.execute(select(endpoint_updates).where(endpoint_updates.c.endpoint_id.in_(ids))).all(),
            "daily": conn.execute(select(endpoint_daily).where(endpoint_daily.c.endpoint_id.in_(ids))).all(),
            "flags": conn.execute(select(flags.c.endpoint_id, flags.c.kind, flags.c.detail)
                                  .where(flags.c.endpoint_id.in_(ids))).all(),
        }  # fmt: skip
    skip = {"hostname", "public_key", "enrolled_at", "token_id", "last_report_at", "sha256"}
    result: dict[str, Any] = {}
    for table, rows in found.items():
        normal = []
        for row in rows:
            item = {k: roles.get(v, v) if k in ("id", "endpoint_id") else v
                    for k, v in row._mapping.items() if k not in skip}  # fmt: skip
            normal.append(item)
        result[table] = sorted(normal, key=repr)
    return result


def test_a_batch_ends_as_storing_its_reports_one_by_one(store: CollectorStore) -> None:
    batched, single = _twin_fleets(store)
    in_bulk = store.store_batch(_reports(batched, store))
    with mock.patch.object(bulk, "store_reports", side_effect=bulk.BulkMismatch("injected")):
        one_by_one = [store.store_batch([r])[0] for r in _reports(single, store)]
    expected = [Verdict.STORED, Verdict.STORED, Verdict.STORED, Verdict.DUPLICATE,
                Verdict.CONFLICT, Verdict.CONFLICT, Verdict.UNKNOWN]  # fmt: skip
    assert in_bulk == expected
    assert one_by_one == expected
    assert _rows(store, batched) == _rows(store, single)
    rows = _rows(store, batched)
    assert {
        (u["endpoint_id"], u["update_id"], u["pending"], u["reason"]) for u in rows["updates"]
    } == {
        ("one", A, False, "in the next window"),  # no longer listed by seq 2
        ("one", B, True, "in the next window"),
        ("one", C, True, "last"),  # listed twice: the later entry wins
        ("two", C, True, "in the next window"),
    }
    assert sorted((f["endpoint_id"], f["kind"]) for f in rows["flags"]) == [
        ("one", "fork"),
        ("two", "replay"),
    ]
    assert [(r["endpoint_id"], r["seq"]) for r in rows["reports"]] == [
        ("one", 1),
        ("one", 2),
        ("two", 4),
    ]


def test_a_failed_bulk_write_leaves_nothing_behind(store: CollectorStore) -> None:
    """The fallback starts from a clean slate: the failed attempt's writes are rolled back."""
    batched, _ = _twin_fleets(store)
    batch = _reports(batched, store)[:3]
    real = bulk.store_reports

    def fails_late(*args: Any) -> list[int]:
        real(*args)  # everything written ...
        raise bulk.BulkMismatch("injected after the writes")  # ... then refused

    with mock.patch.object(bulk, "store_reports", side_effect=fails_late):
        assert store.store_batch(batch) == [Verdict.STORED] * 3
    assert [(r["endpoint_id"], r["seq"]) for r in _rows(store, batched)["reports"]] == [
        ("one", 1), ("one", 2), ("two", 4)
    ]  # fmt: skip


def test_clearing_pending_updates_searches_by_endpoint(tmp_path: Path) -> None:
    """Not by the pending index, which would read every pending row of the fleet per report."""
    store = CollectorStore(str(tmp_path / "plan.db"))
    try:
        statement = bulk._statements("sqlite").clear_pending.replace(":b_id", "'ep_x'")
        with store.reading() as conn:
            plan = " ".join(
                str(row[-1]) for row in conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {statement}")
            )
    finally:
        store.close()
    assert "endpoint_updates_pending" not in plan
    assert "(endpoint_id=?)" in plan


def _installed(update_id: str) -> dict[str, Any]:
    return {"id": "run-1", "kind": "apply", "status": "succeeded", "dry_run": False,
            "started_at": "2026-12-04T09:00:00Z", "finished_at": "2026-12-04T09:05:00Z",
            "items": [{"update_id": update_id, "outcome": "done"}]}  # fmt: skip


def _store_in_turn(store: CollectorStore, fleet: dict[str, SimEndpoint], reports: list[dict[str, Any]],
                   one_by_one: bool) -> list[int]:  # fmt: skip
    """Store each report in a batch of its own (the rows of one are the state of the next)."""
    endpoint = fleet["one"]
    cache = KeyCache(store.public_key)
    verdicts = []
    for seq, extra in enumerate(reports, start=1):
        payload = endpoint.payload(seq, **extra)
        payload["created_at"] = "2026-12-04T10:00:00Z"
        report = verify_report(endpoint.envelope(payload), cache)
        if one_by_one:
            with mock.patch.object(
                bulk, "store_reports", side_effect=bulk.BulkMismatch("injected")
            ):
                verdicts += store.store_batch([report])
        else:
            verdicts += store.store_batch([report])
    return verdicts


def _without_update_seq(rows: dict[str, Any]) -> dict[str, Any]:
    return {**rows, "updates": sorted(({k: v for k, v in u.items() if k != "seq"} for u in rows["updates"]),
                                      key=repr)}  # fmt: skip


def test_rows_a_report_leaves_unchanged_are_not_written(store: CollectorStore) -> None:
    """Same rows as rewriting everything every time, but unchanged update rows keep their seq."""
    listed = sections(pending=2, updates=[_update(A), _update(B)])
    truncated = sections(pending=1, updates=[_update(B, "now")])
    truncated["updates"]["truncated"] = True
    minimal: dict[str, Any] = {}
    reports = [
        listed,  # 1: A and B written
        listed,  # 2: the same: not written again
        {**listed, "runs": {"items": [_installed(A)]}},  # 3: A installed after the (unwritten) rows
        {**listed, "runs": {"items": [_installed(A)]}},  # 4: rows unknown after an install: written
        minimal,  # 5: no updates section: rows kept
        truncated,  # 6: B changed, A kept (a truncated list clears nothing)
        truncated,  # 7: the same: not written again
    ]
    batched, single = _twin_fleets(store)
    assert _store_in_turn(store, batched, reports, one_by_one=False) == [Verdict.STORED] * 7
    assert _store_in_turn(store, single, reports, one_by_one=True) == [Verdict.STORED] * 7
    rows = _rows(store, batched)
    assert _without_update_seq(rows) == _without_update_seq(_rows(store, single))
    assert {(u["update_id"], u["seq"], u["pending"], u["reason"], u["installed_at"]) for u in rows["updates"]} == {
        (A, 4, True, "in the next window", "2026-12-04T09:05:00Z"),
        (B, 6, True, "now", None),
    }  # fmt: skip
    assert [(d["compliant"], d["overdue"]) for d in rows["daily"]] == [(True, 0)]


def test_a_repeated_report_after_a_change_elsewhere_is_written(store: CollectorStore) -> None:
    """The digest is per endpoint and read under the lock: a stale hint never skips a write."""
    listed = sections(pending=2, updates=[_update(A), _update(B)])
    batched, _ = _twin_fleets(store)
    _store_in_turn(store, batched, [listed], one_by_one=False)
    with store.engine.begin() as conn:  # as an older collector without digests would leave it
        conn.execute(endpoint_updates.update().values(reason="changed"))
        conn.execute(endpoints.update().values(updates_digest=None))
    endpoint = batched["one"]
    payload = endpoint.payload(2, **listed)
    assert store.store_batch(
        [verify_report(endpoint.envelope(payload), KeyCache(store.public_key))]
    ) == [202]
    with store.reading() as conn:
        assert set(conn.execute(select(endpoint_updates.c.reason, endpoint_updates.c.seq).where(
            endpoint_updates.c.endpoint_id == endpoint.endpoint_id)).all()) == {("in the next window", 2)}  # fmt: skip


def test_the_day_row_is_written_when_the_day_or_the_count_changes(store: CollectorStore) -> None:
    batched, single = _twin_fleets(store)
    days = iter(
        [
            "2026-12-04T10:00:00Z",
            "2026-12-04T11:00:00Z",
            "2026-12-04T12:00:00Z",
            "2026-12-05T00:00:01Z",
        ]
        * 2
    )
    store.clock = lambda: datetime.fromisoformat(next(days))
    reports = [sections(overdue=0), sections(overdue=0), sections(overdue=2), sections(overdue=2)]
    _store_in_turn(store, batched, reports, one_by_one=False)
    _store_in_turn(store, single, reports, one_by_one=True)
    rows = _rows(store, batched)
    assert rows == _rows(store, single)
    assert [(d["day"], d["compliant"], d["overdue"]) for d in rows["daily"]] == [
        ("2026-12-04", False, 2), ("2026-12-05", False, 2)
    ]  # fmt: skip


def test_a_version_1_database_gains_the_digest_column(store: CollectorStore) -> None:
    with store.engine.begin() as conn:
        conn.exec_driver_sql("ALTER TABLE endpoints DROP COLUMN updates_digest")
        conn.exec_driver_sql("UPDATE schema_version SET version = 1")
    store.engine.dispose()
    again = CollectorStore(store.url)
    try:
        batched, _ = _twin_fleets(again)
        _store_in_turn(
            again, batched, [sections(pending=1, updates=[_update(A)])], one_by_one=False
        )
        with again.reading() as conn:
            assert conn.execute(select(endpoints.c.updates_digest).where(
                endpoints.c.id == batched["one"].endpoint_id)).scalar() == bulk.updates_digest(
                    {"updates": sections(pending=1, updates=[_update(A)])["updates"]})  # fmt: skip
            assert conn.exec_driver_sql("SELECT version FROM schema_version").scalar() == LATEST
    finally:
        again.close()


def test_reports_that_arrive_while_a_writer_waits_join_its_transaction(
    store: CollectorStore,
) -> None:
    batched, _ = _twin_fleets(store)
    first, second, duplicate = (r for r in _reports(batched, store)[:4] if r.seq != 4)
    asked = []

    def more() -> list[VerifiedReport]:
        asked.append(True)
        return [second, duplicate]

    assert store.store_batch([first], more) == [Verdict.STORED, Verdict.STORED, Verdict.DUPLICATE]
    assert asked == [True]
    assert [(r["endpoint_id"], r["seq"]) for r in _rows(store, batched)["reports"]] == [
        ("one", 1),
        ("one", 2),
    ]


def test_a_later_batch_finds_earlier_reports_in_the_database(store: CollectorStore) -> None:
    """Duplicates, forks and replays of reports an earlier batch stored are decided from the
    database (looked up only for seqs at or below an endpoint's last), as one by one."""
    batched, single = _twin_fleets(store)
    for fleet in (batched, single):
        assert store.store_batch(_reports(fleet, store)[:3]) == [Verdict.STORED] * 3
    one = batched["one"]
    newer = verify_report(one.envelope(one.payload(3)), KeyCache(lambda _: one.public_key))
    before = _rows(store, batched)
    # A duplicate of seq 1, a fork of seq 1, a replay below seq 4, and a new seq 3.
    assert store.store_batch([*_reports(batched, store)[3:6], newer]) == [
        Verdict.DUPLICATE, Verdict.CONFLICT, Verdict.CONFLICT, Verdict.STORED,
    ]  # fmt: skip
    after = _rows(store, batched)
    assert after["reports"] == sorted([*before["reports"], _rows_seq("one", 3, after)], key=repr)
    assert sorted((f["endpoint_id"], f["kind"]) for f in after["flags"]) == [
        ("one", "fork"),
        ("two", "replay"),
    ]
    with mock.patch.object(bulk, "store_reports", side_effect=bulk.BulkMismatch("injected")):
        assert [store.store_batch([r])[0] for r in _reports(single, store)[3:6]] == [
            Verdict.DUPLICATE, Verdict.CONFLICT, Verdict.CONFLICT,
        ]  # fmt: skip


def _rows_seq(role: str, seq: int, rows: dict[str, Any]) -> dict[str, Any]:
    found: list[dict[str, Any]] = [
        r for r in rows["reports"] if r["endpoint_id"] == role and r["seq"] == seq
    ]
    assert len(found) == 1
    return found[0]


def test_postgresql_compresses_new_envelopes_with_lz4(store: CollectorStore) -> None:
    """Schema version 3: a new database, and one at version 2, store envelopes with lz4
    (and are migrated on to the latest version)."""
    if store.dialect != "postgresql":
        with store.reading() as conn:
            assert conn.exec_driver_sql("SELECT version FROM schema_version").scalar() == LATEST
        return
    method = (
        "SELECT attcompression FROM pg_attribute"
        " WHERE attrelid = 'reports'::regclass AND attname = 'envelope'"
    )
    with store.reading() as conn:
        assert conn.exec_driver_sql(method).scalar() == "l"
    with store.engine.begin() as conn:
        conn.exec_driver_sql("ALTER TABLE reports ALTER COLUMN envelope SET COMPRESSION pglz")
        conn.exec_driver_sql("UPDATE schema_version SET version = 2")
    store.engine.dispose()
    again = CollectorStore(store.url)
    try:
        with again.reading() as conn:
            assert conn.exec_driver_sql(method).scalar() == "l"
            assert conn.exec_driver_sql("SELECT version FROM schema_version").scalar() == LATEST
        batched, _ = _twin_fleets(again)
        many = [_update(f"apt:lib{i}:amd64=2.0") for i in range(40)]  # well over 2 KB: TOASTed
        _store_in_turn(again, batched, [sections(pending=40, updates=many)], one_by_one=False)
        with again.reading() as conn:
            found = conn.exec_driver_sql(
                "SELECT pg_column_compression(envelope), octet_length(envelope) FROM reports"
            ).all()
        assert [method for method, _ in found] == ["lz4"]
        assert found[0][1] > 8192
    finally:
        again.close()
