"""pacman's version ordering, checked against the ``vercmp`` program pacman ships.

The table holds the cases pacman's own documentation and test suite are built around
(epochs, releases, letters against numbers, separators); the property test then draws
versions from the characters that matter and compares every answer with ``vercmp``.
"""

from __future__ import annotations

import subprocess

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from patchd.backends import compare_versions
from patchd.backends.pacman.versions import compare
from tests.conftest import require

CASES = [
    ("1.0", "1.0", 0),
    ("1.0", "1.1", -1),
    ("1.0", "1.0.1", -1),
    ("1.0.1", "1.0.2", -1),
    ("1.0a", "1.0", -1),  # a trailing letter marks a pre-release
    ("1.0alpha", "1.0beta", -1),
    ("1.0", "1.0.a", -1),
    ("1.0.a", "1.0.0", -1),
    ("1.0", "1.0-5", 0),  # the release counts only when both have one
    ("1.0-1", "1.0-2", -1),
    ("1.0-10", "1.0-9", 1),  # numerically, not as text
    ("1.0-1", "1.0.1-1", -1),
    ("1:1.0", "2.0", 1),  # the epoch decides first
    ("0:1.0", "1.0", 0),
    (":1.0", "1.0", 0),  # an empty epoch is 0
    ("1.0", "1..0", -1),  # pacman's own rule: a longer separator sorts later
    ("1.001", "1.1", 0),  # leading zeros do not count
    ("2.6.0-1", "2.6.1-1", -1),
    ("6.1.1-1", "6.1.2-1", -1),
    ("1.0.0", "1.0", 1),
    ("1.0+1", "1.0", 1),
]


@pytest.mark.parametrize(("a", "b", "expected"), CASES, ids=[f"{a} vs {b}" for a, b, _ in CASES])
def test_ordering_of_known_cases(a: str, b: str, expected: int) -> None:
    assert compare(a, b) == expected
    assert compare(b, a) == -expected
    assert compare_versions("pacman", a, b) == expected


def _vercmp(a: str, b: str) -> int:
    out = subprocess.run(["vercmp", a, b], capture_output=True, text=True, check=True, timeout=10)
    return int(out.stdout)


def _sign(n: int) -> int:
    return (n > 0) - (n < 0)


@pytest.mark.parametrize(("a", "b", "expected"), CASES, ids=[f"{a} vs {b}" for a, b, _ in CASES])
def test_known_cases_agree_with_vercmp(a: str, b: str, expected: int) -> None:
    require("vercmp")
    assert _sign(_vercmp(a, b)) == expected


versions = st.text(alphabet="0123456789.ab-:_+", min_size=1, max_size=10)


@settings(max_examples=300, deadline=None)
@given(versions, versions)
def test_every_answer_agrees_with_pacman_vercmp(a: str, b: str) -> None:
    require("vercmp")
    assert _sign(compare(a, b)) == _sign(_vercmp(a, b))


@pytest.mark.parametrize(
    "bad", ["", "1.0\n", "1.0é", "x" * 300], ids=["empty", "newline", "non-ascii", "long"]
)
def test_what_cannot_be_a_pacman_version_is_refused(bad: str) -> None:
    with pytest.raises(ValueError, match="not a pacman version"):
        compare(bad, "1.0")
