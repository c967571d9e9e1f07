"""Enrolment: presenting this endpoint's public key to a collector with an admin's token.

``POST URL/v1/enroll`` with ``{"token", "public_key", "hostname"}``; the collector pins
the key and answers ``201 {"endpoint_id"}``. Only then is anything recorded: the
collector's URL, the endpoint id and the key it pinned, in one transaction with the
outbox (reports signed for an earlier endpoint id can never be delivered and are dropped
and counted). The token is sent once and never stored or logged.
"""

from __future__ import annotations

import json
import logging
import sys
from dataclasses import dataclass
from datetime import datetime
from http import HTTPStatus
from typing import Any

from patchd.config import ReportingSettings, redact_url
from patchd.errors import EnrolmentRefused, ReportingError, TemporaryFailure, TrustError, UsageError
from patchd.signing.dsse import MAX_KEYID_CHARS, parse_json
from patchd.signing.keys import PrivateKey
from patchd.state.store import StateStore
from patchd.timeutil import format_time, parse_time

log = logging.getLogger(__name__)

ENROLL_PATH = "/v1/enroll"
MAX_TOKEN_CHARS = 4096
MAX_HOSTNAME_CHARS = 256
_HINT_TOKEN = "ask an administrator for a new token (`patchd collector token create`)"  # noqa: S105


@dataclass(frozen=True)
class Enrolment:
    """This endpoint's registration with one collector."""

    collector_url: str
    endpoint_id: str
    public_key: str  # base64 of the raw key the collector pinned
    enrolled_at: datetime

    def as_dict(self) -> dict[str, Any]:
        return {
            "collector": redact_url(self.collector_url),
            "endpoint_id": self.endpoint_id,
            "public_key": self.public_key,
            "enrolled_at": format_time(self.enrolled_at),
        }


def load_enrolment(store: StateStore) -> Enrolment | None:
    """The recorded enrolment, or ``None`` if this endpoint never enrolled."""
    rows = store.query(
        "SELECT collector_url, endpoint_id, public_key, enrolled_at FROM reporting_enrolment"
    )
    if not rows:
        return None
    url, endpoint_id, public_key, enrolled_at = rows[0]
    return Enrolment(url, endpoint_id, public_key, parse_time(enrolled_at))


def check_token(token: str) -> str:
    """``token`` if it can be sent as is; :class:`UsageError` (not quoting it) otherwise."""
    if not token or len(token) > MAX_TOKEN_CHARS or not (token.isascii() and token.isprintable()):
        raise UsageError(
            f"--token: must be 1 to {MAX_TOKEN_CHARS} printable ASCII characters",
            hint="paste the token exactly as `patchd collector token create` printed it",
        )
    return token


def read_token_file(path: str) -> str:
    """The token in ``path`` ('-' for standard input), without its line end; bounded."""
    try:
        if path == "-":
            text = sys.stdin.read(MAX_TOKEN_CHARS + 2)
        else:
            with open(path, encoding="ascii", errors="replace") as f:
                text = f.read(MAX_TOKEN_CHARS + 2)
    except OSError as e:
        raise UsageError(
            f"--token-file {path}: cannot read it: {e.strerror}",
            hint="give the file the administrator's token was saved in, or '-' to read standard input",
        ) from None
    return text.strip()


def request_body(token: str, key: PrivateKey, hostname: str) -> bytes:
    """The JSON body of ``POST /v1/enroll``."""
    from patchd.reporting.identity import public_key_text

    return json.dumps(
        {
            "token": token,
            "public_key": public_key_text(key),
            "hostname": hostname[:MAX_HOSTNAME_CHARS],
        },
        sort_keys=True,
    ).encode("utf-8")


def endpoint_id_from(body: bytes, shown: str) -> str:
    """The ``endpoint_id`` of an enrolment answer; :class:`ReportingError` if there is none."""
    try:
        document = parse_json(body, f"{shown}: enrolment answer", max_bytes=len(body) + 1)
    except TrustError as e:
        raise ReportingError(e.message) from None
    endpoint_id = document.get("endpoint_id") if isinstance(document, dict) else None
    if (
        not isinstance(endpoint_id, str)
        or not 0 < len(endpoint_id) <= MAX_KEYID_CHARS
        or not (endpoint_id.isascii() and endpoint_id.isprintable())
    ):
        raise ReportingError(
            f"{shown}: the enrolment answer has no valid endpoint_id",
            hint="is this URL a patchd collector?",
        )
    return endpoint_id


def enroll(
    store: StateStore,
    settings: ReportingSettings,
    *,
    collector_url: str,
    token: str,
    key: PrivateKey,
    hostname: str,
    now: datetime,
) -> Enrolment:
    """Enrol ``key`` with the collector at ``collector_url`` and record it.

    Raises :class:`EnrolmentRefused` (exit 77) for 401/403, :class:`ReportingError`
    (exit 1) for 409 and other refusals or a malformed answer, and for 202 (a known
    endpoint's new key awaits approval: then the enrolment *is* recorded), :class:`TemporaryFailure`
    (exit 75) when the collector is unreachable, busy (429) or failing (5xx), and
    :class:`ConfigError` (78) for an unusable URL or CA file. Nothing is recorded then.
    """
    from patchd.reporting.transport import CollectorClient

    with CollectorClient(
        collector_url, ca_file=settings.ca_file, timeout_s=settings.timeout_s
    ) as client:
        answer = client.post(ENROLL_PATH, request_body(check_token(token), key, hostname))
        shown = client.shown
    if answer.status not in (HTTPStatus.CREATED, HTTPStatus.OK, HTTPStatus.ACCEPTED):
        raise _refusal(answer.status, answer.phrase, shown)
    endpoint_id = endpoint_id_from(answer.body, shown)
    from patchd.reporting.identity import public_key_text

    enrolment = Enrolment(collector_url, endpoint_id, public_key_text(key), now)
    save_enrolment(store, enrolment)
    if answer.status == HTTPStatus.ACCEPTED:
        # A known endpoint with a new key (a reinstall): recorded, so that reports are
        # queued and delivered once an administrator approves the key.
        raise ReportingError(
            f"{shown}{ENROLL_PATH}: the collector knows this endpoint ({endpoint_id}) with "
            "another key; the new key awaits an administrator's approval",
            hint=f"ask them to run `patchd collector approve-key {endpoint_id}`; reports wait "
            "in the outbox until then",
        )
    log.info("enrolled with %s as endpoint %s", shown, endpoint_id)
    return enrolment


def save_enrolment(store: StateStore, enrolment: Enrolment) -> None:
    """Record ``enrolment``, dropping (and counting) reports signed for another endpoint id."""
    from patchd.reporting.outbox import DropReason, count_drops

    with store.transaction() as db:
        db.execute(
            """INSERT INTO reporting_enrolment (id, collector_url, endpoint_id, public_key,
                   enrolled_at) VALUES (1, ?, ?, ?, ?)
               ON CONFLICT (id) DO UPDATE SET collector_url = excluded.collector_url,
                   endpoint_id = excluded.endpoint_id, public_key = excluded.public_key,
                   enrolled_at = excluded.enrolled_at""",
            (
                enrolment.collector_url,
                enrolment.endpoint_id,
                enrolment.public_key,
                format_time(enrolment.enrolled_at),
            ),
        )
        removed = db.execute(
            "DELETE FROM report_outbox WHERE endpoint_id != ?", (enrolment.endpoint_id,)
        ).rowcount
        if removed:
            count_drops(db, DropReason.REENROLLED, removed)
        # A new identity starts with a clean slate: no backoff earned by the old one.
        db.execute(
            "UPDATE report_outbox_state SET failures = 0, next_attempt_at = NULL WHERE id = 1"
        )


def _refusal(status: int, phrase: str, shown: str) -> Exception:
    where = f"{shown}{ENROLL_PATH}"
    if status == HTTPStatus.UNAUTHORIZED:
        return EnrolmentRefused(
            f"{where}: the collector refused the enrolment token ({phrase}): "
            "it is wrong, expired or used up",
            hint=_HINT_TOKEN,
        )
    if status == HTTPStatus.FORBIDDEN:
        return EnrolmentRefused(
            f"{where}: the collector does not allow this endpoint to enrol ({phrase})",
            hint="ask the collector's administrator",
        )
    if status == HTTPStatus.CONFLICT:
        return ReportingError(
            f"{where}: the collector already knows this endpoint with another key ({phrase})",
            hint="an administrator must approve the new key; then run `patchd enroll` again",
        )
    if status == HTTPStatus.TOO_MANY_REQUESTS or status >= HTTPStatus.INTERNAL_SERVER_ERROR:
        return TemporaryFailure(
            f"{where}: the collector cannot enrol now ({phrase})", hint="try again later"
        )
    return ReportingError(
        f"{where}: the collector refused the enrolment ({phrase})",
        hint="check the URL points at a patchd collector of a compatible version",
    )
