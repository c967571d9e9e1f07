"""``POST /v1/reports``: the one route every endpoint calls, kept lean.

A fleet's reports are nearly all of the collector's traffic, and the signature check is
the only work in them that cannot be avoided. So the route is served as a bare ASGI
handler (:class:`CollectorApp` sends it there before FastAPI's routing, middleware and
request objects), the body is read straight from the ASGI messages up to its limit, and
the answer is written as two ASGI messages. The FastAPI route of the same path stays for
the OpenAPI document and calls the same :func:`answer`, so both give the same status
codes and JSON documents.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI

from patchd.collector.ingest import MAX_REPORT_BYTES, Rejected, verify_report
from patchd.collector.store import Overloaded, Verdict
from patchd.errors import TemporaryFailure

if TYPE_CHECKING:
    from patchd.collector.app import State

RETRY_AFTER_S = 5  # what an overloaded collector asks agents to wait
REPORTS_PATH = "/v1/reports"

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
Answer = tuple[int, dict[str, Any], dict[str, str]]  # status, JSON document, extra headers

_STATUS_TEXT = {
    Verdict.STORED: "stored",
    Verdict.DUPLICATE: "duplicate",
    Verdict.CONFLICT: "refused: sequence number not above the last stored",
    Verdict.UNKNOWN: "unknown endpoint",
}

_VERDICT_TEXTS = frozenset(_STATUS_TEXT.values())  # plain ASCII: no JSON escaping needed


def busy(state: State) -> Answer | None:
    """429 when the writer's queue is full (checked before the body is read)."""
    if state.writer.depth >= state.settings.max_queue:
        state.count("overloaded")
        return 429, {"error": "the collector is busy"}, {"Retry-After": str(RETRY_AFTER_S)}
    return None


async def answer(state: State, body: bytes) -> Answer:
    """Verify, store and answer one report body (a DSSE envelope)."""
    try:
        verified = verify_report(body, state.keys)
    except Rejected as e:
        return refused(state, e)
    try:
        verdict = await state.writer.submit_async(verified)
    except Overloaded:
        state.count("overloaded")
        return 429, {"error": "the collector is busy"}, {"Retry-After": str(RETRY_AFTER_S)}
    except TemporaryFailure:
        return (503, {"error": "the collector could not store the report"},
                {"Retry-After": str(RETRY_AFTER_S)})  # fmt: skip
    state.count(f"reports_{verdict}")
    if verdict == Verdict.UNKNOWN:
        state.keys.forget(verified.endpoint_id)
    return verdict, {"status": _STATUS_TEXT[verdict], "seq": verified.seq}, {}


def refused(state: State, e: Rejected) -> Answer:
    state.count(f"rejected_{e.status}")
    return e.status, {"error": e.reason}, {}


def encode(document: dict[str, Any]) -> bytes:
    """JSON exactly as Starlette's ``JSONResponse`` renders it."""
    status, seq = document.get("status"), document.get("seq")
    if len(document) == 2 and status in _VERDICT_TEXTS and type(seq) is int:  # nearly every answer
        return b'{"status":"%s","seq":%d}' % (status.encode(), seq)
    return json.dumps(document, ensure_ascii=False, allow_nan=False, indent=None,
                      separators=(",", ":")).encode("utf-8")  # fmt: skip


async def _read(receive: Receive, scope: Scope) -> bytes | None:
    """The body, up to :data:`MAX_REPORT_BYTES` (:class:`Rejected` 413 beyond it);
    ``None`` if the client went away."""
    for name, value in scope["headers"]:
        if name == b"content-length" and value.isdigit() and int(value) > MAX_REPORT_BYTES:
            raise Rejected(413, f"the body is larger than {MAX_REPORT_BYTES} bytes")
    chunks, size = [], 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > MAX_REPORT_BYTES:
            raise Rejected(413, f"the body is larger than {MAX_REPORT_BYTES} bytes")
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


async def serve_report(state: State, scope: Scope, receive: Receive, send: Send) -> None:
    """The whole exchange for one ``POST /v1/reports``."""
    found = busy(state)
    if found is None:
        try:
            body = await _read(receive, scope)
        except Rejected as e:
            found = refused(state, e)
        else:
            if body is None:
                return
            found = await answer(state, body)
    status, document, headers = found
    content = encode(document)
    await send({"type": "http.response.start", "status": status, "headers": [
        (b"content-type", b"application/json"), (b"content-length", str(len(content)).encode()),
        *((k.lower().encode(), v.encode()) for k, v in headers.items()),
    ]})  # fmt: skip
    await send({"type": "http.response.body", "body": content})


class CollectorApp(FastAPI):
    """The collector's FastAPI application, with reports served before its routing."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST" and scope["path"] == REPORTS_PATH:
            await serve_report(self.state.patchd, scope, receive, send)
            return
        await super().__call__(scope, receive, send)
