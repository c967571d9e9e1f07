"""The report route's answers are the JSON documents Starlette would render."""

from __future__ import annotations

import json
from typing import Any

import pytest

from patchd.collector.report_route import _STATUS_TEXT, encode

DOCUMENTS = [
    *({"status": text, "seq": seq} for text in _STATUS_TEXT.values() for seq in (0, 7, 2**63 - 1)),
    {"error": "the body is not a JSON document"},
    {"error": 'façade ✓ "quoted"'},
    {"status": "stored", "seq": True},  # not an int: the general path
]


@pytest.mark.parametrize("document", DOCUMENTS, ids=repr)
def test_answers_are_rendered_as_starlette_renders_them(document: dict[str, Any]) -> None:
    expected = json.dumps(
        document, ensure_ascii=False, allow_nan=False, indent=None, separators=(",", ":")
    )
    assert encode(document) == expected.encode("utf-8")
