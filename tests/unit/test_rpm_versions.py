"""RPM version ordering, checked against the real rpm's own comparator (``rpm.vercmp``)."""

from __future__ import annotations

import subprocess

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from patchd.backends import compare_versions
from patchd.backends.rpm.versions import compare, evr
from tests.conftest import require

_SEGMENT = st.text(alphabet="0123456789abcXYZ.~^+_", min_size=1, max_size=8).filter(
    lambda s: s[0].isalnum()
)
_VERSION = st.builds(
    evr,
    st.one_of(st.none(), st.integers(0, 3)),
    _SEGMENT,
    _SEGMENT,
)


def _rpm_vercmp(pairs: list[tuple[str, str]]) -> list[int]:
    """rpm's own answers, one rpm run for the whole batch (Lua long strings need no quoting)."""
    table = ",".join(f"{{[[{a}]],[[{b}]]}}" for a, b in pairs)
    script = (
        f"%{{lua: for _, p in ipairs({{{table}}}) do print(rpm.vercmp(p[1], p[2]) .. ' ') end}}"
    )
    out = subprocess.run(
        ["rpm", "--eval", script], capture_output=True, text=True, check=True, timeout=60
    ).stdout
    return [int(x) for x in out.split()]


@settings(max_examples=25, deadline=None)
@given(st.lists(st.tuples(_VERSION, _VERSION), min_size=1, max_size=60))
def test_ordering_agrees_with_rpm(pairs: list[tuple[str, str]]) -> None:
    require("rpm")
    ours = [(compare(a, b) > 0) - (compare(a, b) < 0) for a, b in pairs]
    assert ours == _rpm_vercmp(pairs), pairs


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        ("1.0-1", "1.0-1", 0),
        ("1.0-1", "1.1-1", -1),
        ("1:1.0-1", "2.0-1", 1),  # the epoch wins
        ("0:1.0-1", "1.0-1", 0),  # a zero epoch is no epoch
        ("1.0~rc1-1", "1.0-1", -1),  # tilde: a pre-release
        ("1.0^git1-1", "1.0-1", 1),  # caret: a snapshot after the release
        ("1.10-1", "1.9-1", 1),  # numeric, not lexical
        ("1.0-1.el9_3", "1.0-1.el9", 1),
    ],
    ids=["equal", "newer", "epoch", "zero-epoch", "tilde", "caret", "numeric", "dist-tag"],
)
def test_known_orderings(a: str, b: str, expected: int) -> None:
    result = compare(a, b)
    assert (result > 0) - (result < 0) == expected
    for backend in ("dnf", "yum", "zypper"):  # the registry routes all three here
        assert compare_versions(backend, a, b) == result


@pytest.mark.parametrize("bad", ["", "1.0 -1", "x:1.0-1", "1:", "1.0\n", "9" * 600])
def test_invalid_versions_are_refused(bad: str) -> None:
    with pytest.raises(ValueError, match="invalid rpm version"):
        compare(bad, "1.0-1")


@pytest.mark.parametrize(
    ("epoch", "version", "release", "expected"),
    [("(none)", "1.0", "1", "1.0-1"), ("0", "1.0", "1", "1.0-1"), ("2", "1.0", "1", "2:1.0-1"),
     (None, "1.0", "", "1.0")],
)  # fmt: skip
def test_evr_leaves_out_a_missing_or_zero_epoch(
    epoch: str | None, version: str, release: str, expected: str
) -> None:
    assert evr(epoch, version, release) == expected
