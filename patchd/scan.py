"""A scan: discover the endpoint, list its updates from every backend, record what was seen."""

from __future__ import annotations

import contextlib
import logging
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from patchd.errors import StateError
from patchd.models import Classification, InstalledPackage, Update
from patchd.session import Session
from patchd.timeutil import format_time
from patchd.transcript import Transcript

if TYPE_CHECKING:
    from patchd.discovery.inventory import Inventory

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1


def update_order(update: Update) -> tuple[int, int, str, str]:
    """Security first, then by severity, then by name."""
    return (
        0 if update.classification is Classification.SECURITY else 1,
        -update.severity.rank,
        update.name,
        update.arch,
    )


@dataclass(frozen=True)
class ScanReport:
    """The inventory and the classified updates of one scan."""

    inventory: Inventory
    updates: tuple[Update, ...]
    first_seen: Mapping[str, datetime]
    warnings: tuple[str, ...]
    incomplete: bool = False  # a package manager is broken, or none was found

    def summary(self) -> dict[str, Any]:
        states = Counter(u.state.value for u in self.updates)
        return {
            "total": len(self.updates),
            "security": sum(u.classification is Classification.SECURITY for u in self.updates),
            "by_classification": dict(Counter(u.classification.value for u in self.updates)),
            "by_severity": dict(Counter(u.severity.value for u in self.updates)),
            "by_state": dict(states),
            "reboot_required": self.inventory.reboot.required,
        }

    def as_dict(self) -> dict[str, Any]:
        updates = []
        for u in self.updates:
            doc = u.as_dict()
            seen = self.first_seen.get(u.id)
            doc["first_seen"] = format_time(seen) if seen else None
            updates.append(doc)
        return {
            "schema_version": SCHEMA_VERSION,
            "inventory": self.inventory.as_dict(),
            "updates": updates,
            "summary": self.summary(),
            "warnings": list(self.warnings),
            "complete": not self.incomplete,
        }


def _with_advisories(session: Session, updates: Sequence[Update]) -> list[Update]:
    """``updates`` with what the backends that look advisories up know (cached)."""
    sources = [b for b in session.backends if b.looks_up_advisories]
    if not sources:
        return list(updates)
    store = session.store
    names = {b.name for b in sources}
    known = store.cached_advisories(u for u in updates if u.backend in names)
    for backend in sources:
        missing = [u for u in updates if u.backend == backend.name and u.id not in known]
        if missing:
            fresh = backend.advisories(missing)
            store.save_advisories(missing, fresh, session.clock())
            known.update(fresh)
    return [u.with_advisory(known[u.id]) if u.id in known else u for u in updates]


def scan(session: Session, *, refresh: bool = False, record: bool = True) -> ScanReport:
    """Discover the target and list its updates; with ``record``, keep the sightings."""
    now = session.clock()
    updates: list[Update] = []
    packages: list[InstalledPackage] = []
    if not refresh:
        session.start_scans()  # the package managers list while patchd discovers
    try:
        warnings = [f"backend {p}" for p in session.backend_problems]
        # Imported only now: discovery's modules load while the listings run.
        from patchd.discovery.inventory import discover

        for backend in session.backends:
            packages.extend(backend.installed_packages())
        inventory = discover(
            target=session.target,
            os_info=session.os_info,
            profile=session.profile,
            packages=packages,
            backends=session.backend_statuses(),
            tags=session.config.tags,
            now=now,
            reboot_reasons=session.manager_reboot_reasons(),
        )
        document = None
        if record:
            with contextlib.suppress(StateError):  # said below, where recording fails
                _ = session.store  # opened while the listings run, not after them
            from patchd.state.store import InventoryDocument

            document = InventoryDocument.of(inventory.as_dict())  # serialised while they run
        for backend in session.backends:
            result = backend.scan(refresh=refresh, transcript=Transcript())
            updates.extend(result.updates)
            warnings.extend(result.warnings)
    finally:
        session.stop_scans()  # what a failure left running; nothing when all went well
    if not session.backends:
        warnings.append(f"no supported package manager found for {session.os_info.pretty_name}")
    first_seen: dict[str, datetime] = {}
    if record:
        try:
            updates = _with_advisories(session, updates)
            installed = {(p.backend, p.name, p.arch): p.version for p in packages}
            first_seen = session.store.record_scan(updates, installed, now, inventory=document)
        except StateError as e:
            warnings.append(f"scan not recorded: {e}")
    return ScanReport(
        inventory=inventory,
        updates=tuple(sorted(updates, key=update_order)),
        first_seen=first_seen,
        warnings=tuple(warnings),
        incomplete=bool(session.backend_problems) or not session.backends,
    )
