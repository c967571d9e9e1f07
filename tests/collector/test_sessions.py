"""Dashboard sessions: signed by the admin token, and expiring whatever the browser keeps."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from patchd.collector.app import SESSION_SECONDS, Settings, State

TOKEN = "a-long-admin-token-for-tests"


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 12, 5, 9, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


def _state(tmp_path: Path, clock: Clock, token: str = TOKEN) -> State:
    return State(Settings(db=str(tmp_path / "c.db"), admin_token=token, clock=clock))


def test_a_session_is_valid_until_it_expires(tmp_path: Path) -> None:
    clock = Clock()
    state = _state(tmp_path, clock)
    session = state.session_value
    assert state.valid_session(session)
    clock.now += timedelta(seconds=SESSION_SECONDS)
    assert state.valid_session(session)
    clock.now += timedelta(seconds=1)
    assert not state.valid_session(session)
    assert state.valid_session(state.session_value)  # a new login works


def test_a_session_from_another_token_or_tampered_is_refused(tmp_path: Path) -> None:
    clock = Clock()
    state = _state(tmp_path, clock)
    other = _state(tmp_path, clock, token="another-admin-token-entirely").session_value
    assert not state.valid_session(other)
    issued, _, mac = state.session_value.partition(".")
    later = str(int(issued) + 3600)
    assert not state.valid_session(f"{later}.{mac}")  # extending it breaks the MAC
    for junk in ("", ".", "abc.def", f"{issued}.", "9" * 40 + "." + mac):
        assert not state.valid_session(junk)
