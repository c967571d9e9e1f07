"""The ceilings ``bench_collector.py`` reads the collector's ingest rate against.

Two ASGI apps, served by uvicorn on the same core, under the same load and with the same
options as ``patchd collector serve`` (uvloop, httptools, no access log):

- ``http``: read the body, answer 202 as the collector does. What the HTTP server
  itself costs per request, before any work of patchd's.
- ``check``: the collector's own check of a report (:func:`patchd.collector.ingest.verify_report`:
  envelope, base64, the Ed25519 signature over the PAE, the payload), then the same 202.
  Everything a collector must do before storing, and nothing after it.

No collector that also stores a report durably can ingest faster than ``check`` does;
the difference between the two is what storing costs.

Configured from the environment: ``PATCHD_BENCH_APP`` (``http`` or ``check``) and
``PATCHD_BENCH_KEYS`` (a JSON file of ``[endpoint id, base64 public key]`` pairs).
"""

from __future__ import annotations

import json
import os
from collections.abc import Awaitable, Callable, MutableMapping
from pathlib import Path
from typing import Any

from patchd.collector.app import tune_garbage_collector
from patchd.collector.ingest import KeyCache, Rejected, verify_report
from patchd.collector.report_route import encode

Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
App = Callable[[MutableMapping[str, Any], Receive, Send], Awaitable[None]]


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


async def _body(receive: Receive) -> bytes:
    chunks = []
    while True:
        message = await receive()
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)


async def _answer(send: Send, status: int, document: dict[str, Any]) -> None:
    content = encode(document)
    await send({"type": "http.response.start", "status": status, "headers": [
        (b"content-type", b"application/json"), (b"content-length", str(len(content)).encode()),
    ]})  # fmt: skip
    await send({"type": "http.response.body", "body": content})


def create() -> App:
    """The app ``PATCHD_BENCH_APP`` names (``uvicorn --factory bench_ceiling_app:create``)."""
    mode = os.environ["PATCHD_BENCH_APP"]
    if mode not in ("http", "check"):
        raise SystemExit(f"PATCHD_BENCH_APP must be http or check, not {mode!r}")
    keys = KeyCache(lambda _endpoint_id: None)
    keys.preload(
        tuple(pair) for pair in json.loads(Path(os.environ["PATCHD_BENCH_KEYS"]).read_text())
    )

    async def app(scope: MutableMapping[str, Any], receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        if scope["method"] == "GET":  # /healthz, for the bench's wait until up
            await _answer(send, 200, {"status": "ok"})
            return
        body = await _body(receive)
        if mode == "http":
            await _answer(send, 202, {"status": "stored", "seq": 1})
            return
        try:
            report = verify_report(body, keys)
        except Rejected as e:
            await _answer(send, e.status, {"error": e.reason})
            return
        await _answer(send, 202, {"status": "stored", "seq": report.seq})

    tune_garbage_collector()  # as the collector's workers do
    return app
