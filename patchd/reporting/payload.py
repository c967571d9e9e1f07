"""The report payload: one JSON document, deterministic to the byte and bounded in size.

The exact bytes are signed, so they are produced one way only: sorted keys, no spaces,
ASCII (:func:`patchd.signing.dsse.canonical_json`). A report is never refused for being
large: every list is capped when it is gathered (see :mod:`.collect`), and if the whole
document is still over :data:`MAX_PAYLOAD_BYTES`, the largest lists are halved, then whole
sections omitted, each marked ``"truncated": true`` — down to the five fields every
report has. A pure function of its inputs: no clock, no files.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from patchd.signing.dsse import canonical_json
from patchd.timeutil import format_time

SCHEMA_VERSION = 1
# The envelope carries the payload base64-encoded (4/3 larger) and must stay within the
# 1 MiB DSSE cap (patchd.signing.dsse.MAX_ENVELOPE_BYTES) that collectors apply too.
MAX_PAYLOAD_BYTES = 640 * 1024
MAX_HALVINGS = 64  # each halves one list: enough to empty any list patchd gathers
SECTIONS = (
    "inventory",
    "updates",
    "runs",
    "policy",
    "reboot",
    "journal",
    "compliance",
    "outbox",
)
# Omitted first when a report must shrink: the least needed for compliance goes first.
OMIT_ORDER = ("inventory", "runs", "updates", "journal", "policy", "reboot", "compliance")


def header(
    *, endpoint_id: str | None, seq: int, created_at: datetime, hostname: str
) -> dict[str, Any]:
    """The five fields every report carries; alone, they make a valid report."""
    return {
        "schema_version": SCHEMA_VERSION,
        "endpoint_id": endpoint_id,
        "seq": seq,
        "created_at": format_time(created_at.replace(microsecond=0)),
        "hostname": hostname,
    }


def build_document(
    *,
    endpoint_id: str | None,
    seq: int,
    created_at: datetime,
    hostname: str,
    sections: Mapping[str, Any],
    max_bytes: int = MAX_PAYLOAD_BYTES,
) -> dict[str, Any]:
    """The report as a document that serialises to at most ``max_bytes``.

    ``sections`` maps names in :data:`SECTIONS` to JSON-ready values (others are ignored,
    ``None`` values left out). A section that holds its list under ``"items"`` is shrunk
    by halving that list; sections are then omitted in :data:`OMIT_ORDER`. The top-level
    ``truncated`` says whether anything was cut; ``omitted`` names whole sections left out.
    """
    document = header(endpoint_id=endpoint_id, seq=seq, created_at=created_at, hostname=hostname)
    body = {
        name: copy.deepcopy(sections[name]) for name in SECTIONS if sections.get(name) is not None
    }
    document.update(body)
    document["truncated"] = any(_flagged(value) for value in body.values())
    if _size(document) <= max_bytes:
        return document
    document["truncated"] = True
    for _ in range(MAX_HALVINGS):
        if not _halve_largest_list(document):
            break
        if _size(document) <= max_bytes:
            return document
    omitted: list[str] = []
    for name in OMIT_ORDER:
        if name in document:
            del document[name]
            omitted.append(name)
            document["omitted"] = omitted
            if _size(document) <= max_bytes:
                return document
    return document  # the header and the outbox section: a few hundred bytes


def serialise(document: Mapping[str, Any]) -> bytes:
    """The exact bytes that are signed and sent."""
    return canonical_json(document)


def _size(document: Mapping[str, Any]) -> int:
    return len(canonical_json(document))


def _flagged(section: Any) -> bool:
    return isinstance(section, dict) and section.get("truncated") is True


def _halve_largest_list(document: dict[str, Any]) -> bool:
    """Halve the ``items`` list that serialises largest; False when none is left."""
    candidates = [
        (len(canonical_json(section["items"])), name)
        for name, section in document.items()
        if isinstance(section, dict) and isinstance(section.get("items"), list) and section["items"]
    ]
    if not candidates:
        return False
    _, name = max(candidates)
    section = document[name]
    section["items"] = section["items"][: len(section["items"]) // 2]
    section["truncated"] = True
    return True
