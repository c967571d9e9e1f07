"""The payload: its header, determinism to the byte, and its bound."""

from __future__ import annotations

import json
from typing import Any

import pytest

from patchd.reporting.payload import MAX_PAYLOAD_BYTES, SCHEMA_VERSION, build_document, serialise
from tests.reporting.conftest import START

HEADER = {"schema_version", "endpoint_id", "seq", "created_at", "hostname"}


def _document(sections: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
    return build_document(
        endpoint_id="ep-1", seq=7, created_at=START, hostname="web-1", sections=sections, **kwargs
    )


def _update(i: int) -> dict[str, Any]:
    return {"name": f"pkg{i:05d}", "reason": "deferred until 2026-12-11 02:00 by ring broad " * 3}


def test_minimal_report_is_the_header() -> None:
    document = _document({})
    assert set(document) == HEADER | {"truncated"}
    assert document["schema_version"] == SCHEMA_VERSION == 1
    assert document["created_at"] == "2026-12-04T12:00:00Z"
    assert document["truncated"] is False


def test_sections_kept_unknown_ones_ignored_none_left_out() -> None:
    document = _document({"reboot": {"required": True, "reasons": ["kernel"]}, "policy": None,
                          "surprise": {"x": 1}})  # fmt: skip
    assert document["reboot"] == {"required": True, "reasons": ["kernel"]}
    assert "policy" not in document
    assert "surprise" not in document


def test_deterministic_bytes() -> None:
    sections = {"updates": {"items": [_update(2), _update(1)], "truncated": False},
                "compliance": {"pending": 2, "b": {"z": 1, "a": 2}}}  # fmt: skip
    first = serialise(_document(sections))
    reordered = {
        "compliance": {"b": {"a": 2, "z": 1}, "pending": 2},
        "updates": sections["updates"],
    }
    assert serialise(_document(reordered)) == first
    decoded = json.loads(first.decode("ascii"))  # ASCII only
    # Sorted keys, no spaces between tokens: the one spelling of this document.
    assert first == json.dumps(decoded, sort_keys=True, separators=(",", ":")).encode()
    assert b'{"compliance":{"b":{"a":2,"z":1},"pending":2},"created_at":' in first


def test_non_ascii_is_escaped() -> None:
    data = serialise(_document({"inventory": {"hostname": "bücher-ß"}}))
    assert data.isascii()
    assert json.loads(data)["inventory"]["hostname"] == "bücher-ß"


def test_lists_halved_until_it_fits() -> None:
    items = [_update(i) for i in range(20_000)]  # about 3 MiB
    document = _document({"updates": {"items": items, "total": len(items), "truncated": False},
                          "reboot": {"required": False, "reasons": []}})  # fmt: skip
    size = len(serialise(document))
    assert size <= MAX_PAYLOAD_BYTES
    assert document["truncated"] is True
    assert document["updates"]["truncated"] is True
    assert document["updates"]["total"] == 20_000
    kept = document["updates"]["items"]
    assert 0 < len(kept) < 20_000
    assert kept == items[: len(kept)]  # the first (most important) items stay, in order
    assert document["reboot"] == {"required": False, "reasons": []}


def test_sections_omitted_when_halving_is_not_enough() -> None:
    huge = {"blob": "x" * (MAX_PAYLOAD_BYTES + 10)}  # no list to halve
    document = _document(
        {"inventory": huge, "outbox": {"dropped": 3}, "compliance": {"pending": 1}}
    )
    assert len(serialise(document)) <= MAX_PAYLOAD_BYTES
    assert document["omitted"] == ["inventory"]
    assert document["compliance"] == {"pending": 1}
    assert document["outbox"] == {"dropped": 3}  # never omitted: it carries the losses


def test_the_input_is_not_changed() -> None:
    items = [_update(i) for i in range(100)]
    sections: dict[str, Any] = {"updates": {"items": items, "truncated": False}}
    _document(sections, max_bytes=2000)
    assert len(sections["updates"]["items"]) == 100


@pytest.mark.parametrize("max_bytes", [200, 1000, 5000, 50_000])
def test_always_within_any_bound_above_the_header(max_bytes: int) -> None:
    sections: dict[str, Any] = {
        name: {"items": [_update(i) for i in range(300)]} for name in ("updates", "runs")
    }
    sections["inventory"] = {"os": {"pretty_name": "Debian GNU/Linux 12 (bookworm)" * 50}}
    document = _document(sections, max_bytes=max_bytes)
    assert len(serialise(document)) <= max_bytes
    assert set(document) >= HEADER
