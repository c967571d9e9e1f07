"""How a session selects its backends and starts their listings (patchd/session.py)."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, ClassVar

import pytest

from patchd import backends as registry
from patchd.backends.base import Backend, Probe, ProbeStatus, ScanResult
from patchd.config import AgentConfig
from patchd.errors import BackendError, BackendUnavailable
from patchd.models import InstalledPackage
from patchd.platforms import OsProfile
from patchd.session import Session
from patchd.target import Target

EVENTS: list[str] = []


class Recording(Backend):
    """A backend whose probe result is its class's; it records what patchd asks of it."""

    status: ClassVar[ProbeStatus]

    def _probe(self) -> Probe:
        EVENTS.append(f"probe {self.name}")
        return Probe(self.status, "test")

    started = False

    def _start_listing(self) -> None:
        if not self.started:  # as the real backends: one listing per scan
            self.started = True
            EVENTS.append(f"start {self.name}")

    def _stop_listing(self) -> None:
        if self.started:
            self.started = False
            EVENTS.append(f"stop {self.name}")

    def _installed_packages(self) -> list[InstalledPackage]:
        return []

    def _list_updates(self) -> ScanResult:
        self.started = False  # as the real backends: collected, nothing left running
        return ScanResult(updates=())

    def _install(self, *args: Any, **kwargs: Any) -> list[str]:
        raise AssertionError("not used")


class First(Recording):
    name = "first"
    status = ProbeStatus.PRESENT


class Absent(Recording):
    name = "absent"
    status = ProbeStatus.ABSENT


class Second(Recording):
    name = "second"
    status = ProbeStatus.PRESENT


class Broken(Recording):
    name = "broken"
    status = ProbeStatus.BROKEN


class HalfStarting(Recording):
    """A start that fails after its listing began (a second process could not start)."""

    name = "halfstarting"
    status = ProbeStatus.PRESENT

    def _start_listing(self) -> None:
        super()._start_listing()
        raise OSError("too many open files")


class Unstoppable(Recording):
    name = "unstoppable"
    status = ProbeStatus.PRESENT

    def _stop_listing(self) -> None:
        EVENTS.append(f"cannot stop {self.name}")
        raise RuntimeError("it would not stop")


class FailingList(Recording):
    """A listing that fails when the scan collects it."""

    name = "failinglist"
    status = ProbeStatus.PRESENT

    def _list_updates(self) -> ScanResult:
        self.started = False  # taken, then failed
        raise BackendError("the listing failed")


class Exploding(Recording):
    """A probe that fails with an error no probe expects (an unreadable database, say)."""

    name = "exploding"
    status = ProbeStatus.PRESENT

    def _probe(self) -> Probe:
        EVENTS.append(f"probe {self.name}")
        raise PermissionError("the database cannot be read")


@pytest.fixture(autouse=True)
def fakes(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for cls in (First, Absent, Second, Broken, Exploding, HalfStarting, Unstoppable, FailingList):
        monkeypatch.setitem(registry.BACKENDS, cls.name, f"{__name__}:{cls.__name__}")
    EVENTS.clear()
    yield
    EVENTS.clear()


def session(
    tmp_path: Path,
    configured: Sequence[str] = (),
    profiled: Sequence[str] = ("first", "absent", "broken", "second"),
) -> Session:
    config = dataclasses.replace(AgentConfig(), backends=tuple(configured))
    made = Session(config, Target(tmp_path), tmp_path / "state")
    profile = OsProfile(family="test", backends=tuple(profiled))
    made.__dict__["profile"] = profile  # the profile a real os-release would select
    return made


def test_each_listing_starts_as_soon_as_its_backend_is_found(tmp_path: Path) -> None:
    s = session(tmp_path)

    s.start_scans()
    s.start_scans()  # a second call starts nothing again

    assert EVENTS == [
        "probe first",
        "start first",  # before the others are probed: it runs while they are
        "probe absent",
        "probe broken",
        "probe second",
        "start second",
    ]
    assert [b.name for b in s.backends] == ["first", "second"]
    assert s.backend_problems == ["broken: broken: test"]


def test_backends_probed_before_are_started_without_probing_again(tmp_path: Path) -> None:
    s = session(tmp_path)
    assert [b.name for b in s.backends] == ["first", "second"]
    EVENTS.clear()

    s.start_scans()

    assert EVENTS == ["start first", "start second"]


def test_configured_backends_start_only_once_all_are_usable(tmp_path: Path) -> None:
    s = session(tmp_path, configured=("first", "second"))
    s.start_scans()
    assert EVENTS == ["probe first", "probe second", "start first", "start second"]

    EVENTS.clear()
    failing = session(tmp_path, configured=("first", "broken"))
    with pytest.raises(BackendUnavailable, match="broken: broken: test"):
        failing.start_scans()
    assert EVENTS == ["probe first", "probe broken"]  # no listing left running


def test_listings_started_are_stopped_when_a_later_probe_fails(tmp_path: Path) -> None:
    s = session(tmp_path, profiled=("first", "exploding", "second"))

    with pytest.raises(PermissionError, match="cannot be read"):
        s.start_scans()

    assert EVENTS == ["probe first", "start first", "probe exploding", "stop first"]


def test_a_backend_whose_start_fails_half_way_is_stopped_with_the_others(tmp_path: Path) -> None:
    s = session(tmp_path, profiled=("first", "halfstarting", "second"))

    with pytest.raises(BackendError, match=r"could not start listing updates.*too many"):
        s.start_scans()

    assert EVENTS == [
        "probe first",
        "start first",
        "probe halfstarting",
        "start halfstarting",
        "stop first",
        "stop halfstarting",
    ]


def test_one_listing_that_cannot_be_stopped_keeps_neither_the_others_nor_the_error(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    s = session(tmp_path, profiled=("unstoppable", "first", "exploding"))

    with pytest.raises(PermissionError, match="cannot be read"):  # the error that happened
        s.start_scans()

    assert EVENTS[-2:] == ["cannot stop unstoppable", "stop first"]
    assert "unstoppable: its listing could not be stopped" in caplog.text


def test_a_scan_that_fails_stops_the_listings_it_did_not_collect(tmp_path: Path) -> None:
    from patchd.scan import scan

    s = session(tmp_path, profiled=("failinglist", "first"))

    with pytest.raises(BackendError, match="the listing failed"):
        scan(s, record=False)

    assert EVENTS[-1] == "stop first"
    assert "stop failinglist" not in EVENTS  # collected (and failed): nothing left to stop
