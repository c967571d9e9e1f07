"""The collector's HTTP service (FastAPI): enrolment, reports, the admin API, policy, metrics.

Endpoints are trusted for nothing but what they sign: a report is verified against the
key pinned at enrolment before its payload is read (:mod:`patchd.collector.ingest`).
Admin routes — the read API, the dashboard and the exports — need the admin token, as
``Authorization: Bearer TOKEN`` or the dashboard's session cookie, compared in constant
time. ``/v1/enroll``, ``/v1/reports`` and ``/v1/policy`` are for agents; ``/healthz``,
``/metrics`` and ``/openapi.json`` carry no endpoint's data.
"""

from __future__ import annotations

import asyncio
import base64
import gc
import hashlib
import hmac
import json
import logging
import os
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from sqlalchemy import select

from patchd import __version__
from patchd.collector import compliance as metrics
from patchd.collector import retention
from patchd.collector.ingest import MAX_CACHED_KEYS, MAX_REPORT_BYTES, KeyCache, Rejected
from patchd.collector.report_route import REPORTS_PATH, CollectorApp, answer, busy
from patchd.collector.schema import endpoint_runs, endpoint_updates, endpoints, flags, reports
from patchd.collector.store import BatchWriter, CollectorStore, loads
from patchd.errors import ConfigError, PatchdError, UsageError
from patchd.signing.dsse import POLICY_PAYLOAD_TYPE
from patchd.timeutil import utcnow

log = logging.getLogger(__name__)

MAX_ENROL_BYTES = 4096
SESSION_COOKIE = "patchd_session"
SESSION_SECONDS = 12 * 3600  # a dashboard login lasts this long
MAX_LIST = 10_000
# Allocations between collections of the youngest generation (Python's default is 700). A
# report's parsed payload alone is hundreds of objects, freed by reference counting; at the
# default, a busy collector spent a tenth of its time in collections that found nothing.
GC_YOUNG_ALLOCATIONS = 50_000
DEFAULT_KEEP_S = retention.DEFAULT_KEEP.total_seconds()


@dataclass
class Settings:
    """How one collector process is configured (``patchd collector serve``)."""

    db: str
    admin_token: str
    stale_after: timedelta = metrics.DEFAULT_STALE_AFTER
    keep: timedelta = retention.DEFAULT_KEEP  # what is older goes, once a day
    clock: Callable[[], datetime] = utcnow
    max_queue: int = 8192
    options: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_environment(cls) -> Settings:
        """For worker processes: what ``serve`` put in the environment."""
        token_file = Path(os.environ["PATCHD_COLLECTOR_ADMIN_TOKEN_FILE"])
        return cls(
            db=os.environ["PATCHD_COLLECTOR_DB"],
            admin_token=read_admin_token(token_file),
            stale_after=timedelta(seconds=float(os.environ.get("PATCHD_COLLECTOR_STALE_AFTER_S", "10800"))),
            keep=timedelta(seconds=float(os.environ.get("PATCHD_COLLECTOR_KEEP_S", str(DEFAULT_KEEP_S)))),
        )  # fmt: skip


def read_admin_token(path: Path) -> str:
    """The admin token from its file: at least 16 characters, readable by nobody else.

    Raises :class:`ConfigError` (exit status 78) for a missing, short or exposed file.
    """
    from patchd.signing.keys import read_bounded_file

    hint = "write a long random token (e.g. `openssl rand -hex 32`) to the file, mode 0600"
    try:
        data = read_bounded_file(path, 4096, "admin token", hint=hint)
    except PatchdError as e:
        raise ConfigError(e.message, hint=e.hint) from None
    token = data.decode("utf-8", "replace").strip()
    if len(token) < 16:
        raise ConfigError(f"{path}: the admin token must be at least 16 characters", hint=hint)
    if os.name == "posix" and path.stat().st_mode & 0o077:
        raise ConfigError(f"{path}: the admin token file is readable by other users", hint=hint)
    return token


class State:
    """What the routes share within one process."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.store = CollectorStore(settings.db, clock=settings.clock)
        self.writer = BatchWriter(self.store, max_queue=settings.max_queue)
        self.keys = KeyCache(self.store.public_key)
        self.keys.preload(self.store.public_keys(MAX_CACHED_KEYS))
        self.pruner = retention.DailyPrune(self.store, settings.keep)
        self.counters: dict[str, int] = {}

    @property
    def session_value(self) -> str:
        """A new dashboard session: when it was issued, and a MAC of that by the admin token.

        Sessions expire after :data:`SESSION_SECONDS` whatever the browser keeps; replacing
        the admin token ends every session at once (every collector checks the MAC).
        """
        issued = str(int(self.settings.clock().timestamp()))
        return f"{issued}.{self._session_mac(issued)}"

    def _session_mac(self, issued: str) -> str:
        message = b"patchd dashboard session " + issued.encode()
        return hmac.new(self.settings.admin_token.encode(), message, hashlib.sha256).hexdigest()

    def valid_session(self, cookie: str) -> bool:
        issued, _, mac = cookie.partition(".")
        if not issued.isdigit() or len(issued) > 12 or not mac:
            return False
        if not hmac.compare_digest(mac.encode(), self._session_mac(issued).encode()):
            return False
        age = self.settings.clock().timestamp() - int(issued)
        return -300 <= age <= SESSION_SECONDS

    def count(self, name: str) -> None:
        self.counters[name] = self.counters.get(name, 0) + 1


def _state(request: Request) -> State:
    state: State = request.app.state.patchd
    return state


def is_admin(request: Request) -> bool:
    state = _state(request)
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() == "bearer" and hmac.compare_digest(
        token.strip().encode(), state.settings.admin_token.encode()
    ):
        return True
    cookie = request.cookies.get(SESSION_COOKIE, "")
    return bool(cookie) and len(cookie) < 256 and state.valid_session(cookie)


def require_admin(request: Request) -> None:
    if not is_admin(request):
        raise HTTPException(
            401, "the admin token is required", headers={"WWW-Authenticate": "Bearer"}
        )


def _problem(status: int, reason: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": reason}, status_code=status, headers=headers)


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, reading no more than ``limit`` bytes: 413 beyond it."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise Rejected(413, f"the body is larger than {limit} bytes")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise Rejected(413, f"the body is larger than {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def create_app(settings: Settings) -> FastAPI:
    """The collector's application for ``settings`` (one per process)."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        state = State(settings)
        app.state.patchd = state
        state.writer.start()
        state.pruner.start()
        try:
            yield
        finally:
            await asyncio.to_thread(state.pruner.stop)
            await asyncio.to_thread(state.writer.stop)
            state.store.close()

    app = CollectorApp(title="patchd collector", version=__version__, lifespan=lifespan,
                  docs_url=None, redoc_url=None)  # fmt: skip
    app.add_exception_handler(Rejected, rejected_handler)  # type: ignore[arg-type]
    app.include_router(router)
    from patchd.collector.dashboard import add_dashboard

    add_dashboard(app)
    return app


router = APIRouter()
ADMIN = [Depends(require_admin)]


async def rejected_handler(request: Request, e: Rejected) -> JSONResponse:
    _state(request).count(f"rejected_{e.status}")
    return _problem(e.status, e.reason)


@router.post("/v1/enroll", status_code=201, tags=["agents"])
async def enroll(request: Request) -> JSONResponse:
    """Enrol an endpoint with a token: pins its Ed25519 key, returns its id."""
    state = _state(request)
    body = await read_body(request, MAX_ENROL_BYTES)
    try:
        document = json.loads(body)
    except ValueError:
        return _problem(400, "the body is not a JSON document")
    if not isinstance(document, dict):
        return _problem(422, "expected a JSON object with token, public_key and hostname")
    try:
        done = await asyncio.to_thread(state.store.enrol, document.get("token"),
                                       document.get("public_key"), document.get("hostname"))  # fmt: skip
    except PermissionError as e:
        state.count("enrol_refused")
        return _problem(401, str(e))
    except UsageError as e:
        return _problem(422, e.message)
    state.count("enrolled")
    status = {"enrolled": 201, "already-enrolled": 200, "pending-approval": 202}[done.status]
    return JSONResponse(
        {"endpoint_id": done.endpoint_id, "status": done.status}, status_code=status
    )


@router.post(REPORTS_PATH, status_code=202, tags=["agents"])
async def report(request: Request) -> JSONResponse:
    """Store a signed report (a DSSE envelope).

    :class:`CollectorApp` serves this path itself, before FastAPI's routing
    (:mod:`patchd.collector.report_route`); this route documents it, with the same code.
    """
    state = _state(request)
    found = busy(state)
    if found is None:
        found = await answer(state, await read_body(request, MAX_REPORT_BYTES))
    status, document, headers = found
    return JSONResponse(document, status_code=status, headers=headers or None)


@router.get("/v1/policy", tags=["agents"])
def policy(request: Request) -> Response:
    """The newest signed policy, as a DSSE envelope."""
    newest = _state(request).store.newest_policy()
    if newest is None:
        return _problem(404, "no policy has been published")
    signatures = json.loads(bytes(newest["signatures"]))["signatures"]
    envelope = {"payload": base64.b64encode(bytes(newest["document"])).decode(),
                "payloadType": POLICY_PAYLOAD_TYPE, "signatures": signatures}  # fmt: skip
    return Response(json.dumps(envelope, sort_keys=True).encode(), media_type="application/json",
                    headers={"ETag": f'"{newest["sha256"]}"'})  # fmt: skip


@router.get("/v1/endpoints", dependencies=ADMIN, tags=["admin"])
def list_endpoints(request: Request) -> JSONResponse:
    """Every enrolled endpoint with its compliance status."""
    state = _state(request)
    return JSONResponse({"endpoints": endpoint_list(state.store, state.settings)})


@router.get("/v1/endpoints/{endpoint_id}", dependencies=ADMIN, tags=["admin"])
def get_endpoint(request: Request, endpoint_id: str) -> JSONResponse:
    """One endpoint: its latest facts, pending updates with reasons, runs, flags."""
    state = _state(request)
    found = endpoint_detail(state.store, state.settings, endpoint_id)
    if found is None:
        return _problem(404, f"no endpoint {endpoint_id}")
    return JSONResponse(found)


@router.get("/v1/compliance", dependencies=ADMIN, tags=["admin"])
def get_compliance(request: Request) -> JSONResponse:
    """Fleet compliance (definitions: docs/compliance.md)."""
    state = _state(request)
    options = metrics.Options(stale_after=state.settings.stale_after)
    with state.store.reading() as conn:
        return JSONResponse(metrics.compliance(conn, state.settings.clock(), options))


@router.get("/v1/export", dependencies=ADMIN, tags=["admin"])
def export(request: Request, format: str = "json") -> Response:
    """Every endpoint's compliance row, as CSV or JSON (with the signed evidence)."""
    from patchd.collector import export as exports

    state = _state(request)
    if format not in ("csv", "json"):
        return _problem(400, "format must be csv or json")
    document = exports.build(state.store, state.settings.clock(), state.settings.stale_after)
    if format == "csv":
        return Response(exports.to_csv(document), media_type="text/csv",
                        headers={"Content-Disposition": 'attachment; filename="patchd-compliance.csv"'})  # fmt: skip
    return Response(exports.to_json(document), media_type="application/json")


@router.get("/healthz", tags=["service"])
def healthz(request: Request) -> JSONResponse:
    state = _state(request)
    try:
        with state.store.reading() as conn:
            conn.execute(select(1)).scalar()
    except Exception:
        return _problem(503, "the database is unreachable")
    return JSONResponse({"status": "ok", "version": __version__, "queue": state.writer.depth})


@router.get("/metrics", tags=["service"])
def prometheus(request: Request) -> PlainTextResponse:
    from patchd.collector.metrics import render

    return PlainTextResponse(render(_state(request)), media_type="text/plain; version=0.0.4")


def endpoint_list(store: CollectorStore, settings: Settings) -> list[dict[str, Any]]:
    now = settings.clock()
    with store.reading() as conn:
        rows = conn.execute(select(
            endpoints.c.id, endpoints.c.hostname, endpoints.c.enrolled_at, endpoints.c.last_seq,
            endpoints.c.last_report_at, endpoints.c.os_family, endpoints.c.os_name, endpoints.c.os_version,
            endpoints.c.eol_past, endpoints.c.segments, endpoints.c.ring, endpoints.c.policy_version,
            endpoints.c.pending, endpoints.c.pending_security, endpoints.c.overdue, endpoints.c.reboot_required,
            endpoints.c.flagged, endpoints.c.pending_public_key,
        ).order_by(endpoints.c.hostname, endpoints.c.id).limit(MAX_LIST)).all()  # fmt: skip
    result = []
    for row in rows:
        item = dict(row._mapping)
        item["status"] = metrics.endpoint_status(item, now, settings.stale_after)
        item["segments"] = loads(item["segments"], [])
        item["key_approval_pending"] = item.pop("pending_public_key") is not None
        result.append(item)
    return result


def endpoint_detail(
    store: CollectorStore, settings: Settings, endpoint_id: str
) -> dict[str, Any] | None:
    with store.reading() as conn:
        row = conn.execute(select(endpoints).where(endpoints.c.id == endpoint_id)).first()
        if row is None:
            return None
        item = dict(row._mapping)
        updates = conn.execute(select(endpoint_updates).where(
            endpoint_updates.c.endpoint_id == endpoint_id).order_by(
            endpoint_updates.c.pending.desc(), endpoint_updates.c.name).limit(MAX_LIST)).all()  # fmt: skip
        runs = conn.execute(select(endpoint_runs).where(endpoint_runs.c.endpoint_id == endpoint_id)
                            .order_by(endpoint_runs.c.started_at.desc()).limit(100)).all()  # fmt: skip
        found_flags = conn.execute(select(flags).where(flags.c.endpoint_id == endpoint_id)
                                   .order_by(flags.c.id.desc()).limit(100)).all()  # fmt: skip
        recent = conn.execute(select(reports.c.key_epoch, reports.c.seq, reports.c.received_at, reports.c.created_at,
                                     reports.c.sha256).where(reports.c.endpoint_id == endpoint_id)
                              .order_by(reports.c.key_epoch.desc(), reports.c.seq.desc()).limit(20)).all()  # fmt: skip
    item["status"] = metrics.endpoint_status(item, settings.clock(), settings.stale_after)
    item["segments"] = loads(item["segments"], [])
    item["summary"] = loads(item["summary"], {})
    item["key_approval_pending"] = item.pop("pending_public_key") is not None
    item.pop("pending_since", None)
    item["updates"] = [{**dict(u._mapping), "cves": loads(u.cves, [])} for u in updates]
    item["runs"] = [{**dict(r._mapping), "notes": loads(r.notes, [])} for r in runs]
    item["flags"] = [dict(f._mapping) for f in found_flags]
    item["reports"] = [dict(r._mapping) for r in recent]
    return item


def tune_garbage_collector() -> None:
    """For a serving process, once its app is made: fewer and cheaper garbage collections.

    What start-up made (modules, the app, the key cache) is frozen, so full collections
    no longer walk it, and the youngest generation is collected less often.
    """
    gc.freeze()
    gc.set_threshold(GC_YOUNG_ALLOCATIONS, *gc.get_threshold()[1:])


def app_from_environment() -> FastAPI:
    """The app for ``uvicorn --factory`` worker processes."""
    app = create_app(Settings.from_environment())
    tune_garbage_collector()
    return app
