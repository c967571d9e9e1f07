"""Every registered backend is in a conformance suite, or named here as an exception.

A backend added to :data:`patchd.backends.BACKENDS` without a harness in
test_conformance.py (the real tool) or test_offline.py (captured output) fails here,
so "every backend passes the conformance suite" cannot quietly stop being true.
"""

from __future__ import annotations

from patchd.backends import BACKENDS
from tests.conformance import test_conformance, test_offline

# Registered backends in neither suite yet, each with the reason; shrink it, never grow
# it quietly. None today: yum (yum 3, EL7), which cannot run on this Debian build
# machine, is in the offline suite (tests/conformance/offline_yum.py).
NOT_YET_COVERED: dict[str, str] = {}


def _covered() -> set[str]:
    real = {h.name for h in test_conformance.HARNESSES}
    offline = {h.name for h in test_offline.HARNESSES}
    return real | offline


def test_every_registered_backend_is_in_a_conformance_suite() -> None:
    missing = set(BACKENDS) - _covered() - set(NOT_YET_COVERED)
    assert not missing, f"backends in no conformance suite: {sorted(missing)}"


def test_the_exceptions_are_not_stale() -> None:
    # An exception whose harness has arrived is no longer an exception.
    assert not set(NOT_YET_COVERED) & _covered(), "drop these from NOT_YET_COVERED"
    assert set(NOT_YET_COVERED) <= set(BACKENDS), "an exception for no registered backend"


def test_every_harness_names_a_registered_backend() -> None:
    assert _covered() <= set(BACKENDS)
