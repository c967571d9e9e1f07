"""Prometheus metrics: the collector's own work, and fleet figures from the database.

Fleet figures (endpoints by status, compliance rate, pending and overdue by severity)
come from the database at scrape time, cached briefly, so every collector sharing a
database answers the same. Request counters are this process's own.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Gauge, generate_latest

from patchd.collector import compliance as figures
from patchd.collector.retention import last_pruned

if TYPE_CHECKING:
    from patchd.collector.app import State

CACHE_SECONDS = 15.0
_cache: dict[int, tuple[float, dict[str, Any]]] = {}


def _fleet(state: State) -> dict[str, Any]:
    now = time.monotonic()
    cached = _cache.get(id(state))
    if cached is not None and now - cached[0] < CACHE_SECONDS:
        return cached[1]
    with state.store.reading() as conn:
        found = figures.compliance(conn, state.settings.clock(),
                                   figures.Options(stale_after=state.settings.stale_after))  # fmt: skip
    _cache[id(state)] = (now, found)
    return found


def render(state: State) -> bytes:
    registry = CollectorRegistry()
    fleet = _fleet(state)
    endpoints = Gauge(
        "patchd_endpoints", "Enrolled endpoints by status", ["status"], registry=registry
    )
    for status, count in fleet["endpoints"].items():
        endpoints.labels(status).set(count)
    rate = fleet["compliance_rate"]
    Gauge("patchd_compliance_rate", "Reporting endpoints with no overdue update, as a share",
          registry=registry).set(rate if rate is not None else float("nan"))  # fmt: skip
    pending = Gauge(
        "patchd_updates_pending",
        "Pending updates on reporting endpoints",
        ["severity"],
        registry=registry,
    )
    overdue = Gauge(
        "patchd_updates_overdue",
        "Overdue updates on reporting endpoints",
        ["severity"],
        registry=registry,
    )
    for severity in figures.SEVERITIES:
        pending.labels(severity).set(fleet["pending_by_severity"][severity])
        overdue.labels(severity).set(fleet["overdue_by_severity"][severity])
    failure = fleet["failure_rate"]
    Gauge("patchd_patch_failure_rate", "Failed package changes / attempted, over the period",
          registry=registry).set(failure if failure is not None else float("nan"))  # fmt: skip
    requests = Gauge(
        "patchd_collector_events",
        "Requests and verdicts handled by this process",
        ["event"],
        registry=registry,
    )
    for name, count in sorted(state.counters.items()):
        requests.labels(name).set(count)
    Gauge("patchd_collector_queue", "Reports waiting for the writer", registry=registry).set(
        state.writer.depth
    )
    Gauge("patchd_collector_stored", "Reports stored by this process", registry=registry).set(
        state.writer.stored
    )
    Gauge("patchd_collector_write_batches", "Write transactions of reports by this process",
          registry=registry).set(state.writer.batches)  # fmt: skip
    with state.store.reading() as conn:
        pruned_at = last_pruned(conn)
    Gauge("patchd_collector_last_prune_timestamp_seconds",
          "When a collector sharing this database last pruned it (0: never)",
          registry=registry).set(pruned_at.timestamp() if pruned_at is not None else 0)  # fmt: skip
    pruned = Gauge("patchd_collector_pruned_rows", "Rows the daily prune removed in this process, by table",
                   ["table"], registry=registry)  # fmt: skip
    for table, count in state.pruner.removed.items():
        pruned.labels(table).set(count)
    return generate_latest(registry)
