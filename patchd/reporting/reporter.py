"""One endpoint's reporting: make a report, queue it signed, flush the outbox.

The command line (``patchd report``) and the agent both go through :class:`Reporter`, so
a report made by hand and one made by the service are the same document.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any

from patchd.errors import ConfigError, ReportingError, TemporaryFailure
from patchd.policy.evaluate import Plan
from patchd.reporting import collect
from patchd.reporting.backoff import Draw, uniform_draw
from patchd.reporting.enrolment import Enrolment, load_enrolment
from patchd.reporting.envelope import sign_report
from patchd.reporting.identity import ensure_endpoint_key, public_key_text
from patchd.reporting.outbox import ReportOutbox
from patchd.reporting.payload import build_document, serialise
from patchd.scan import ScanReport
from patchd.session import Session
from patchd.signing.keys import PrivateKey

if TYPE_CHECKING:
    from patchd.reporting.sender import FlushResult

log = logging.getLogger(__name__)


def fresh_scan(session: Session) -> tuple[ScanReport, Plan]:
    """A scan (without refreshing repository metadata) and its plan: what a report describes."""
    from patchd.policy.planner import plan_for
    from patchd.scan import scan

    report = scan(session)
    return report, plan_for(session, report)


class Reporter:
    """Reports of the endpoint ``session`` manages."""

    def __init__(self, session: Session) -> None:
        self.session = session
        settings = session.config.reporting
        self.outbox = ReportOutbox(
            session.store,
            max_reports=settings.max_queued_reports,
            max_bytes=settings.max_queued_bytes,
        )

    # -- enrolment ---------------------------------------------------------------------

    def enrolment(self) -> Enrolment | None:
        return load_enrolment(self.session.store)

    def require_enrolment(self) -> Enrolment:
        """The enrolment; :class:`ConfigError` (78) if this endpoint never enrolled."""
        enrolment = self.enrolment()
        if enrolment is None:
            raise ConfigError(
                "this endpoint is not enrolled with a collector",
                hint="run `patchd enroll --collector URL --token TOKEN`",
            )
        return enrolment

    def signing_key(self, enrolment: Enrolment) -> PrivateKey:
        """The endpoint key, which must be the one the collector pinned at enrolment."""
        key = ensure_endpoint_key(self.session.state_dir)
        if public_key_text(key) != enrolment.public_key:
            raise ReportingError(
                "the endpoint key is not the key this endpoint enrolled with "
                "(it was replaced or made anew)",
                hint="enrol again (`patchd enroll`); the collector's administrator approves the new key",
            )
        return key

    # -- reports -----------------------------------------------------------------------

    def sections(
        self, scan_report: ScanReport, plan: Plan, since: datetime | None
    ) -> dict[str, Any]:
        """Every section but ``outbox`` (which is filled in when the report is numbered)."""
        store = self.session.store
        pending = collect.still_pending(store, plan)
        inventory = scan_report.inventory
        return {
            "inventory": collect.inventory_section(inventory),
            "updates": collect.updates_section(plan, pending, scan_report.first_seen),
            "runs": collect.runs_section(store),
            "policy": collect.policy_section(self.session.policy_gate, plan),
            "reboot": collect.reboot_section(inventory),
            "journal": collect.journal_section(store),
            "compliance": collect.compliance_section(
                plan, pending, scan_report.first_seen, store, since
            ),
        }

    def preview(self, scan_report: ScanReport, plan: Plan) -> dict[str, Any]:
        """The payload the next report would carry (unsigned; ``seq`` not reserved)."""
        enrolment = self.enrolment()
        sections = self.sections(scan_report, plan, self.outbox.last_report_at())
        sections["outbox"] = self.outbox.section()
        return build_document(
            endpoint_id=enrolment.endpoint_id if enrolment else None,
            seq=self.outbox.peek_seq(),
            created_at=self.session.clock(),
            hostname=scan_report.inventory.hostname,
            sections=sections,
        )

    def queue(self, scan_report: ScanReport, plan: Plan) -> int:
        """Make, sign and store a report; its ``seq``. Nothing is sent here.

        Raises :class:`ConfigError` if not enrolled, :class:`ReportingError` if the key
        is not the enrolled one.
        """
        enrolment = self.require_enrolment()
        key = self.signing_key(enrolment)
        now = self.session.clock()
        sections = self.sections(scan_report, plan, self.outbox.last_report_at())

        def make_envelope(seq: int, outbox_section: dict[str, Any]) -> bytes:
            document = build_document(
                endpoint_id=enrolment.endpoint_id,
                seq=seq,
                created_at=now,
                hostname=scan_report.inventory.hostname,
                sections={**sections, "outbox": outbox_section},
            )
            return sign_report(serialise(document), key, enrolment.endpoint_id).to_json()

        seq = self.outbox.enqueue(enrolment.endpoint_id, make_envelope, now)
        log.info("report %d queued", seq)
        return seq

    # -- sending -----------------------------------------------------------------------

    def flush(
        self, *, should_stop: Callable[[], bool] = lambda: False, draw: Draw = uniform_draw
    ) -> FlushResult:
        """Send the outbox now (whatever the backoff says); a :class:`FlushResult`.

        Raises :class:`TemporaryFailure` if another process is sending it right now.
        """
        from patchd.reporting.sender import Flusher, OutboxLock
        from patchd.reporting.transport import CollectorClient

        enrolment = self.require_enrolment()
        settings = self.session.config.reporting
        with OutboxLock(self.session.state_dir) as lock:
            if not lock.acquire():
                raise TemporaryFailure(
                    "another patchd process is sending this endpoint's reports right now",
                    hint="the reports stay queued; it sends them, or try again shortly",
                )
            with CollectorClient(
                enrolment.collector_url, ca_file=settings.ca_file, timeout_s=settings.timeout_s
            ) as client:
                flusher = Flusher(
                    self.outbox,
                    client,
                    enrolment.endpoint_id,
                    clock=self.session.clock,
                    draw=draw,
                    should_stop=should_stop,
                )
                return flusher.flush()
