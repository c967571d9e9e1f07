"""Tests for patchd.safeyaml: hostile documents are refused with a location, and only
:class:`YamlError` ever comes out of :func:`load`, whatever the bytes."""

from __future__ import annotations

import threading
import tracemalloc
from dataclasses import dataclass

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from patchd import safeyaml
from patchd.safeyaml import LoadedYaml, YamlError, load

HANG_BOUND_S = 30.0


def refused(document: str | bytes) -> YamlError:
    data = document.encode() if isinstance(document, str) else document
    with pytest.raises(YamlError) as caught:
        load(data)
    assert type(caught.value) is YamlError
    return caught.value


# --- what is accepted ------------------------------------------------------------------


def test_plain_document_loads_with_yaml_types() -> None:
    loaded = load(
        b"name: web\n"
        b"count: 3\n"
        b"ratio: 0.5\n"
        b"hex: 0x1f\n"
        b"on: yes\n"
        b"nothing: ~\n"
        b"list: [a, 'b', 2]\n"
        b"nested: {x: {y: [1, {z: true}]}}\n"
    )

    assert loaded.data == {
        "name": "web",
        "count": 3,
        "ratio": 0.5,
        "hex": 31,
        True: True,  # YAML 1.1: a plain "on" is a boolean
        "nothing": None,
        "list": ["a", "b", 2],
        "nested": {"x": {"y": [1, {"z": True}]}},
    }


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("d: 2024-01-02", "2024-01-02"),
        ("d: 2001-12-14t21:59:43.10-05:00", "2001-12-14t21:59:43.10-05:00"),
        ("d: 2001-12-14 21:59:43.10 -5", "2001-12-14 21:59:43.10 -5"),
    ],
    ids=["date", "iso-timestamp", "spaced-timestamp"],
)
def test_dates_stay_strings(text: str, expected: str) -> None:
    assert load(text.encode()).data == {"d": expected}


@pytest.mark.parametrize(
    "text", ["", "# only a comment\n", "---\n"], ids=["empty", "comment", "marker"]
)
def test_an_empty_document_is_none(text: str) -> None:
    assert load(text.encode()).data is None


def test_a_document_exactly_at_the_byte_cap_loads() -> None:
    data = b"a: " + b"x" * 7  # 10 bytes

    assert load(data, max_bytes=10).data == {"a": "xxxxxxx"}


# --- what is refused -------------------------------------------------------------------


def test_input_over_the_byte_cap_is_refused_before_parsing() -> None:
    with pytest.raises(YamlError, match="larger than 10 bytes"):
        load(b"a: " + b"x" * 8, max_bytes=10)


def test_the_default_cap_is_one_mebibyte() -> None:
    with pytest.raises(YamlError, match="larger than"):
        load(b"#" * (safeyaml.MAX_BYTES + 1))


@pytest.mark.parametrize(
    ("data", "byte"),
    [(b"a: \xff\n", 3), (b"\xc3\x28", 0), (b"ok: \xe2\x82", 4), (b"\xfe\xff\x00a", 0)],
    ids=["stray-ff", "bad-continuation", "truncated", "utf16-bom"],
)
def test_non_utf8_is_refused(data: bytes, byte: int) -> None:
    assert refused(data).message == f"not UTF-8 (byte {byte})"


@dataclass(frozen=True)
class Refusal:
    document: str
    message: str  # a part of the message
    line: int
    column: int


REFUSALS = {
    "python-object": Refusal("a: !!python/object:os.system ls\n", "python/object", 1, 4),
    "python-apply": Refusal("a: !!python/object/apply:os.system [ls]\n", "python/object", 1, 4),
    "binary": Refusal("a:\n  b: !!binary aGVsbG8=\n", "binary", 2, 6),
    "set": Refusal("a: !!set {x, y}\n", "set", 1, 4),
    "omap": Refusal("a: !!omap [x: 1]\n", "omap", 1, 4),
    "timestamp": Refusal("a: !!timestamp 2001-01-01\n", "timestamp", 1, 4),
    "local-tag": Refusal("a: !foo bar\n", "!foo", 1, 4),
    "tag-in-list": Refusal("- ok\n- !foo bar\n", "!foo", 2, 3),
    "tagged-key": Refusal("? !!binary aGVsbG8=\n: 1\n", "binary", 1, 3),
    "timestamp-key": Refusal("!!timestamp 2001-01-01: x\n", "timestamp", 1, 1),
    "duplicate-key": Refusal("a: 1\nb: 2\na: 3\n", "duplicate key 'a'", 3, 1),
    "nested-duplicate": Refusal("top:\n  x: 1\n  x: 2\n", "duplicate key 'x'", 3, 3),
    "duplicate-in-list-item": Refusal("- {k: 1, k: 2}\n", "duplicate key 'k'", 1, 10),
    "typed-duplicate-int": Refusal("{1: a, 0x1: b}\n", "duplicate key", 1, 8),
    "typed-duplicate-null": Refusal("{null: a, ~: b}\n", "duplicate key", 1, 11),
    "typed-duplicate-bool": Refusal("{yes: a, on: b}\n", "duplicate key", 1, 10),
    "merge-key": Refusal("base: &b {x: 1}\nother:\n  <<: *b\n", "merge keys", 3, 3),
    "sequence-key": Refusal("? [a, b]\n: 1\n", "keys must be plain", 1, 3),
    "mapping-key": Refusal("{{a: 1}: 2}\n", "keys must be plain", 1, 2),
    "bad-hex-int": Refusal("a: 0x_\n", "not a valid int", 1, 4),
    "bad-binary-int": Refusal("a:\n  - 0b_\n", "not a valid int", 2, 5),
    "empty-int": Refusal("a: !!int ''\n", "not a valid int", 1, 4),
    "bad-bool": Refusal("a: !!bool maybe\n", "not a valid bool", 1, 4),
    "bad-float": Refusal("a: !!float x\n", "not a valid float", 1, 4),
    "str-tag-on-list": Refusal("a: !!str [x]\n", "expected a scalar", 1, 4),
    "syntax": Refusal("a: [1, 2\nb: 3\n", "expected ','", 2, 2),
    "tab-indent": Refusal("a:\n\tb: 1\n", "cannot start any token", 2, 1),
    "two-documents": Refusal("a: 1\n---\nb: 2\n", "found another document", 2, 1),
    "undefined-alias": Refusal("a: *nope\n", "undefined alias", 1, 4),
    "control-character": Refusal("a: \x07\n", "character #x0007 is not allowed", 1, 4),
    "nul-on-a-later-line": Refusal("a: 1\nbb: x\x00\n", "character #x0000", 2, 6),
}


@pytest.mark.parametrize("case", REFUSALS.values(), ids=REFUSALS.keys())
def test_hostile_documents_are_refused_with_their_location(case: Refusal) -> None:
    error = refused(case.document)

    assert case.message in error.message
    assert (error.line, error.column) == (case.line, case.column)


def test_a_refusal_carries_the_path_of_the_offending_value() -> None:
    error = refused("servers:\n  - name: a\n    port: !!binary AA==\n")

    assert error.path == ("servers", 0, "port")


def nested(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


def test_nesting_up_to_the_bound_loads() -> None:
    loaded = load(nested(safeyaml.MAX_DEPTH + 1))  # the innermost list sits at depth 32

    assert loaded.data is not None


@pytest.mark.parametrize(
    "document",
    [
        nested(safeyaml.MAX_DEPTH + 2),
        b"a:\n" + b"".join(b"  " * i + b"b:\n" for i in range(1, 40)),
        nested(500),
        b"- " * 100_000,  # deeper than Python's recursion limit
        b"&a [*a]",
    ],
    ids=["one-too-deep", "deep-mappings", "flow-depth-bomb", "block-depth-bomb", "self-reference"],
)
def test_deep_nesting_is_refused(document: bytes) -> None:
    assert "nested deeper" in refused(document).message


def billion_laughs(levels: int, fanout: int) -> bytes:
    lines = ['l0: &l0 "lol"']
    for level in range(1, levels + 1):
        refs = ", ".join([f"*l{level - 1}"] * fanout)
        lines.append(f"l{level}: &l{level} [{refs}]")
    return "\n".join(lines).encode()


def test_alias_expansion_bomb_fails_fast_in_bounded_memory() -> None:
    bomb = billion_laughs(levels=9, fanout=10)  # 10**9 strings once expanded
    outcome: list[BaseException] = []
    tracemalloc.start()
    try:
        worker = threading.Thread(target=lambda: outcome.append(refused(bomb)), daemon=True)
        worker.start()
        worker.join(HANG_BOUND_S)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    assert not worker.is_alive(), "the bomb is still expanding"
    assert outcome, "the bomb was not refused"
    assert "expands to more than" in str(outcome[0])
    assert peak < 20 * 1024 * 1024


def test_aliases_within_the_budget_load() -> None:
    loaded = load(billion_laughs(levels=3, fanout=10))  # about 1,100 values

    assert loaded.data["l3"][9][9][9] == "lol"


# --- locations -----------------------------------------------------------------------------

LOCATED = """\
name: web
settings:
  ports:
    - 80
    - 443
  tls: {cert: /etc/x, key: /etc/y}
  users:
    - name: alice
      groups: [admin]
"""

LOCATIONS = {
    "root": ((), (1, 1)),
    "top-key": (("name",), (1, 1)),
    "nested-key": (("settings", "ports"), (3, 3)),
    "list-item": (("settings", "ports", 1), (5, 7)),
    "flow-mapping-key": (("settings", "tls", "key"), (6, 23)),
    "key-in-list-item": (("settings", "users", 0, "groups"), (9, 7)),
    "flow-list-item": (("settings", "users", 0, "groups", 0), (9, 16)),
    "unknown-child-falls-back": (("settings", "ports", 7), (3, 3)),
    "unknown-top-falls-back": (("nope", "deeper"), (1, 1)),
}


@pytest.mark.parametrize(("path", "expected"), LOCATIONS.values(), ids=LOCATIONS.keys())
def test_where_gives_one_based_line_and_column(
    path: safeyaml.Path, expected: tuple[int, int]
) -> None:
    assert load(LOCATED.encode()).where(path) == expected


def test_locations_are_recorded_for_every_value() -> None:
    loaded = load(LOCATED.encode())

    assert loaded.locations[("settings", "users", 0, "name")] == (8, 7)
    assert ("settings", "ports", 0) in loaded.locations
    assert loaded.where(()) == (1, 1)


def test_where_on_an_empty_document_is_unknown() -> None:
    assert load(b"").where(("a",)) == (0, 0)


# --- nothing but YamlError escapes ---------------------------------------------------------

FRAGMENTS = [
    "a", "b", ":", ": ", "- ", "? ", "\n", "  ", "[", "]", "{", "}", ",", "&x ", "*x", "!!",
    "!!int ", "!!bool ", "!!float ", "!!str ", "!!map ", "!!seq ", "!foo ", "<<", "0x_", "0b_",
    "'", '"', "\\", "#", "---", "...", "|", ">", "%YAML 1.1\n", "~", "1", ".5", "yes", "\t",
    "\ufeff", "é", "\x00",
]  # fmt: skip


def loads_or_refuses(data: bytes) -> None:
    """Any exception but YamlError propagates and fails the property."""
    outcome: LoadedYaml | YamlError
    try:
        outcome = load(data)
    except YamlError as e:
        outcome = e
    if isinstance(outcome, YamlError):
        assert outcome.line >= 0
        assert outcome.column >= 0
        assert outcome.message


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=512))
def test_arbitrary_bytes_raise_nothing_but_yaml_error(data: bytes) -> None:
    loads_or_refuses(data)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=256))
def test_arbitrary_text_raises_nothing_but_yaml_error(text: str) -> None:
    loads_or_refuses(text.encode())


@settings(max_examples=500, deadline=None)
@given(st.lists(st.sampled_from(FRAGMENTS), max_size=40))
def test_yaml_like_text_raises_nothing_but_yaml_error(parts: list[str]) -> None:
    loads_or_refuses("".join(parts).encode())


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("22:00", "22:00"),
        ("1:30", "1:30"),
        ("190:20:30.15", "190:20:30.15"),
        ("12", 12),
        ("0x1F", 31),
    ],
    ids=["time-of-day", "short-time", "base-60-float", "plain-int", "hex-int"],
)
def test_base_60_numbers_are_not_numbers(text: str, value: object) -> None:
    # YAML 1.1 reads 22:00 as 1320; in a policy it is a time of day.
    assert load(f"a: {text}\n".encode()).data == {"a": value}
