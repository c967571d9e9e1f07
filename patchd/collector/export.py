"""Compliance exports an auditor can check offline against the endpoints' own signatures.

An export has one row per endpoint, built from that endpoint's latest stored report, and
— in its evidence — that report's envelope exactly as the endpoint signed and sent it,
plus the endpoint's pinned public key. ``patchd collector verify-export`` checks, for
every row, that the envelope's signature verifies with the key, that the payload is the
row's report (endpoint, sequence number, SHA-256) and that each value in the row is what
the payload says. JSON exports carry their evidence inline; a CSV export is accompanied
by ``FILE.evidence.json``. CSV cells are defused against formula injection.
"""

from __future__ import annotations

import base64
import csv
import io
import json
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import and_, select

from patchd import __version__
from patchd.collector import compliance as metrics
from patchd.collector.extract import summary
from patchd.collector.ingest import KeyCache, Rejected, verify_report
from patchd.collector.schema import endpoints, reports
from patchd.collector.store import CollectorStore, loads
from patchd.errors import PatchdError
from patchd.timeutil import stamp

EXPORT_SCHEMA = 1
MAX_EXPORT_BYTES = 2 * 1024 * 1024 * 1024
COLUMNS = (
    "endpoint_id", "hostname", "status", "os_family", "os_name", "os_version", "eol_past",
    "segments", "ring", "policy_name", "policy_version", "pending", "pending_security", "overdue",
    "reboot_required", "last_report_at", "report_seq", "report_created_at", "report_sha256",
)  # fmt: skip
# Row values that come from the signed payload, checked by verify_export.
SIGNED = ("hostname", "os_family", "os_name", "os_version", "eol_past", "segments", "ring",
          "policy_name", "policy_version", "pending", "pending_security", "overdue", "reboot_required")  # fmt: skip
_DANGEROUS = ("=", "+", "-", "@", "\t", "\r", "\n")


class ExportInvalid(PatchdError):
    """An export whose rows do not match the signed reports it carries."""


def build(store: CollectorStore, now: datetime, stale_after: timedelta) -> dict[str, Any]:
    """The export document: summary, one row per endpoint, and the signed evidence."""
    rows: list[dict[str, Any]] = []
    evidence_keys: dict[str, str] = {}
    evidence_reports: dict[str, str] = {}
    with store.reading() as conn:
        result = conn.execute(
            select(endpoints, reports.c.envelope, reports.c.created_at.label("report_created_at"),
                   reports.c.sha256.label("report_sha256"))
            .select_from(endpoints.outerjoin(reports, and_(reports.c.endpoint_id == endpoints.c.id,
                                                           reports.c.seq == endpoints.c.last_seq,
                                                           reports.c.key_epoch == endpoints.c.key_epoch)))
            .order_by(endpoints.c.hostname, endpoints.c.id)
        )  # fmt: skip
        for record in result:
            item = dict(record._mapping)
            row = {c: item.get(c) for c in COLUMNS if c in item}
            row["endpoint_id"] = item["id"]
            row["segments"] = loads(item["segments"], [])
            row["status"] = metrics.endpoint_status(item, now, stale_after)
            row["report_seq"] = item["last_seq"] if item["envelope"] is not None else None
            row["report_created_at"] = item["report_created_at"]
            row["report_sha256"] = item["report_sha256"]
            rows.append({c: row.get(c) for c in COLUMNS})
            evidence_keys[item["id"]] = item["public_key"]
            if item["envelope"] is not None:
                evidence_reports[item["id"]] = base64.b64encode(bytes(item["envelope"])).decode()
        figures = metrics.compliance(conn, now, metrics.Options(stale_after=stale_after))
    return {
        "schema_version": EXPORT_SCHEMA,
        "generated_at": stamp(now),
        "collector_version": __version__,
        "stale_after_hours": stale_after.total_seconds() / 3600,
        "summary": figures,
        "rows": rows,
        "evidence": {"public_keys": evidence_keys, "reports": evidence_reports},
    }


def to_json(document: Mapping[str, Any]) -> bytes:
    return json.dumps(document, indent=1, sort_keys=True).encode() + b"\n"


def defuse(value: object) -> str:
    """A CSV cell a spreadsheet shows as text, never runs as a formula."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        value = ";".join(str(v) for v in value)
    text = str(value)
    return "'" + text if text.startswith(_DANGEROUS) else text


def to_csv(document: Mapping[str, Any]) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(COLUMNS)
    for row in document["rows"]:
        writer.writerow([defuse(row[c]) for c in COLUMNS])
    return out.getvalue().encode("utf-8")


def evidence_document(document: Mapping[str, Any]) -> bytes:
    """What accompanies a CSV export: everything but its rows' own text."""
    return to_json({k: v for k, v in document.items() if k != "summary"})


def _undefuse(text: str) -> str:
    return text[1:] if text.startswith("'") and text[1:].startswith(_DANGEROUS) else text


def read_export(
    path: Path, evidence: Path | None
) -> tuple[list[dict[str, Any]], Mapping[str, Any]]:
    """Rows and evidence from a JSON export, or a CSV export and its evidence file."""
    from patchd.signing.keys import read_bounded_file

    data = read_bounded_file(path, MAX_EXPORT_BYTES, "export")
    if path.suffix.lower() == ".csv":
        evidence_path = evidence or path.with_name(path.name + ".evidence.json")
        bundle = json.loads(read_bounded_file(evidence_path, MAX_EXPORT_BYTES, "export evidence"))
        reader = csv.DictReader(io.StringIO(data.decode("utf-8")))
        if tuple(reader.fieldnames or ()) != COLUMNS:
            raise ExportInvalid(f"{path}: not a patchd compliance export (unexpected columns)")
        return [{k: _undefuse(v) for k, v in r.items()} for r in reader], bundle["evidence"]
    try:
        document = json.loads(data)
        return list(document["rows"]), document["evidence"]
    except (ValueError, KeyError, TypeError):
        raise ExportInvalid(
            f"{path}: not a patchd JSON export", hint="export with --format json or csv"
        ) from None


def _cell(value: object) -> str:
    """A value as its CSV cell reads back: how rows from either format are compared."""
    return _undefuse(defuse(value))


def verify_export(rows: Sequence[Mapping[str, Any]], evidence: Mapping[str, Any]) -> int:
    """Check every row against its signed report; return how many rows were checked.

    Raises :class:`ExportInvalid` naming the first row that does not match.
    """
    keys: Mapping[str, str] = evidence.get("public_keys", {})
    envelopes: Mapping[str, str] = evidence.get("reports", {})
    cache = KeyCache(keys.get)
    checked = 0
    for index, row in enumerate(rows, start=1):
        endpoint_id = str(row["endpoint_id"])
        where = f"row {index} ({endpoint_id})"
        if not row.get("report_seq") and row.get("report_seq") != 0:
            if row.get("status") not in ("never-reported",):
                raise ExportInvalid(
                    f"{where}: has no report but its status is {row.get('status')!r}"
                )
            continue
        if endpoint_id not in keys or endpoint_id not in envelopes:
            raise ExportInvalid(f"{where}: its signed report is missing from the evidence")
        try:
            report = verify_report(base64.b64decode(envelopes[endpoint_id]), cache)
        except Rejected as e:
            raise ExportInvalid(f"{where}: the report does not verify: {e.reason}") from None
        if str(report.seq) != str(row["report_seq"]) or report.sha256 != row["report_sha256"]:
            raise ExportInvalid(f"{where}: the evidence is another report (seq or SHA-256 differ)")
        if report.created_at != row["report_created_at"]:
            raise ExportInvalid(f"{where}: report_created_at differs from the signed report")
        facts = dict(summary(report.payload).values)
        facts["segments"] = json.loads(facts["segments"])
        for column in SIGNED:
            if _cell(row[column]) != _cell(facts[column]):
                raise ExportInvalid(
                    f"{where}: {column} is {row[column]!r} but the signed report says {facts[column]!r}"
                )
        overdue = facts["overdue"]
        status = row["status"]
        if (status == "compliant" and overdue != 0) or (status == "overdue" and not overdue):
            raise ExportInvalid(
                f"{where}: status {status!r} contradicts the signed report (overdue {overdue!r})"
            )
        checked += 1
    return checked
