"""How a session selects its backends and starts their listings (patchd/session.py)."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, ClassVar

import pytest

from patchd import backends as registry
from patchd import process
from patchd.backends.base import Backend, Probe, ProbeStatus, ScanResult
from patchd.config import AgentConfig
from patchd.errors import BackendError, BackendUnavailable
from patchd.models import Advisory, Classification, InstalledPackage, Severity, Update
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


class Vanishing(Recording):
    """Usable until the test takes its tool away: then absent, and its listing cannot start."""

    name = "vanishing"
    status = ProbeStatus.PRESENT

    def _start_listing(self) -> None:
        if type(self).status is not ProbeStatus.PRESENT:
            EVENTS.append(f"cannot start {self.name}")
            raise FileNotFoundError("no such tool")
        super()._start_listing()


class Lister(Recording):
    """Lists with a real command (``argv``), started through patchd's process gateway."""

    name = "lister"
    status = ProbeStatus.PRESENT
    argv: tuple[str, ...] = ("sh", "-c", "echo listed; exec sleep 300")
    listing: process.RunningCommand | None = None

    def _start_listing(self) -> None:
        if self.listing is None:  # as the real backends: one listing per scan
            EVENTS.append(f"start {self.name}")
            self.listing = process.start(self.argv, timeout_s=600)

    def _stop_listing(self) -> None:
        process.stop_all(self.listing)

    def _list_updates(self) -> ScanResult:
        assert self.listing is not None
        process.stop_all(self.listing)  # what it printed is what a listing would give
        return ScanResult(updates=())


class Quiet(Recording):
    """Lists one update; its listing carries all it knows (no advisory look-up)."""

    name = "quiet"
    status = ProbeStatus.PRESENT

    def _list_updates(self) -> ScanResult:
        self.started = False
        return ScanResult(updates=(dataclasses.replace(ONE_UPDATE, backend=self.name),))

    def _advisories(self, updates: Sequence[Update]) -> dict[str, Advisory]:
        raise AssertionError("a backend without looks_up_advisories is never asked")


class Adviser(Quiet):
    """Lists one update, and looks advisories up as apt does (``looks_up_advisories``)."""

    name = "adviser"
    looks_up_advisories = True

    def _advisories(self, updates: Sequence[Update]) -> dict[str, Advisory]:
        EVENTS.append(f"advisories {self.name}: {len(updates)}")
        return {u.id: Advisory(("CVE-2026-0001",), Severity.IMPORTANT, "test") for u in updates}


ONE_UPDATE = Update(
    backend="",
    name="openssl",
    arch="x86_64",
    installed_version="3.0.1",
    available_version="3.0.2",
    classification=Classification.OTHER,
)

FAKES = (
    First, Absent, Second, Broken, Exploding, HalfStarting, Unstoppable, FailingList, Vanishing,
    Adviser, Quiet, Lister,
)  # fmt: skip


@pytest.fixture(autouse=True)
def fakes(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setattr(Vanishing, "status", ProbeStatus.PRESENT)
    for cls in FAKES:
        monkeypatch.setitem(registry.BACKENDS, cls.name, f"{__name__}:{cls.__name__}")
    EVENTS.clear()
    yield
    EVENTS.clear()


@pytest.fixture
def spawned(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[tuple[str, ...]]]:
    """Every process patchd's gateway spawns in the test (argv); all are stopped after it."""
    made: list[tuple[str, ...]] = []
    procs: list[Any] = []
    popen = process._popen

    def counting(argv: Sequence[str], *args: Any) -> Any:
        made.append(tuple(argv))
        procs.append(popen(argv, *args))
        return procs[-1]

    monkeypatch.setattr(process, "_popen", counting)
    yield made
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


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


def lister_of(s: Session) -> Lister:
    lister = s.backend("lister")
    assert isinstance(lister, Lister)
    return lister


def listing_runs(lister: Lister) -> bool:
    assert lister.listing is not None
    return lister.listing.running()


def renewed(earlier: Session) -> Session:
    """``earlier.renewed()``, with the same profile (the test's root has no os-release)."""
    made = earlier.renewed()
    made.__dict__["profile"] = earlier.profile
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


def test_a_renewed_session_starts_listings_before_probing_and_its_backends_take_them(
    tmp_path: Path, spawned: list[tuple[str, ...]]
) -> None:
    service = session(tmp_path, profiled=("lister", "absent", "broken", "first"))
    found = service.backends  # the agent's service probes once, before its first cycle
    EVENTS.clear()

    worker = renewed(service)
    worker.start_scans()

    assert EVENTS == [
        "start lister",  # through the service's backends, before anything is read or probed
        "start first",
        "probe lister",  # then every backend is probed afresh, as in any new session
        "start lister",
        "probe absent",
        "probe broken",
        "probe first",
        "start first",  # a fake without a process: started again, nothing to take
    ]
    assert spawned == [Lister.argv]  # one process: the worker's lister took it as it ran
    assert [b.name for b in worker.backends] == ["lister", "first"]
    assert all(w is not s for w, s in zip(worker.backends, found, strict=True))  # new objects
    lister = lister_of(worker)
    assert lister.listing is lister_of(service).listing
    assert worker.backend_problems == ["broken: broken: test"]
    assert lister.scan().updates == ()  # collected by the worker's backend
    assert not listing_runs(lister)


def service_and_worker(tmp_path: Path, **kwargs: Any) -> tuple[Lister, Session]:
    """The service's lister (probed), and a worker's session renewed from the service's."""
    service = session(tmp_path, **kwargs)
    ahead = lister_of(service)
    ahead.argv = Lister.argv  # the service's copy: its command as it was then
    EVENTS.clear()
    return ahead, renewed(service)


def test_a_listing_started_ahead_whose_command_changed_is_stopped_for_the_new_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, spawned: list[tuple[str, ...]]
) -> None:
    ahead, worker = service_and_worker(tmp_path, profiled=("lister", "first"))
    # The lister's command changed since the service probed (its configuration, say).
    monkeypatch.setattr(Lister, "argv", ("sh", "-c", "echo changed; exec sleep 300"))

    worker.start_scans()

    assert spawned == [("sh", "-c", "echo listed; exec sleep 300"), Lister.argv]
    assert not listing_runs(ahead)  # stopped
    taken = lister_of(worker)
    assert taken.listing is not ahead.listing
    assert listing_runs(taken)  # its own
    worker.stop_scans()
    assert not listing_runs(taken)


def test_a_listing_started_ahead_for_a_backend_now_gone_is_stopped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, spawned: list[tuple[str, ...]]
) -> None:
    ahead, worker = service_and_worker(tmp_path, profiled=("lister", "first"))
    monkeypatch.setattr(Lister, "status", ProbeStatus.ABSENT)  # removed since the service probed

    worker.start_scans()

    assert spawned == [Lister.argv]
    assert not listing_runs(ahead)  # stopped
    assert [b.name for b in worker.backends] == ["first"]
    assert worker.backend_problems == []  # absent: skipped quietly, as ever


def test_listings_started_ahead_are_stopped_when_the_selection_fails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, spawned: list[tuple[str, ...]]
) -> None:
    ahead, worker = service_and_worker(tmp_path, configured=("lister", "first"))
    monkeypatch.setattr(First, "status", ProbeStatus.BROKEN)

    with pytest.raises(BackendUnavailable, match="first: broken: test"):
        worker.start_scans()

    assert spawned == [Lister.argv]
    assert not listing_runs(ahead)  # stopped


def test_a_backend_whose_start_ahead_fails_is_judged_by_its_own_probe(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    service = session(tmp_path, profiled=("vanishing", "first"))
    assert [b.name for b in service.backends] == ["vanishing", "first"]
    EVENTS.clear()
    worker = renewed(service)
    monkeypatch.setattr(Vanishing, "status", ProbeStatus.BROKEN)  # its database broke

    worker.start_scans()  # no error from the start ahead: the probe says what is wrong

    assert EVENTS[:3] == ["cannot start vanishing", "start first", "probe vanishing"]
    assert [b.name for b in worker.backends] == ["first"]
    assert worker.backend_problems == ["vanishing: broken: test"]


def test_only_backends_that_look_advisories_up_are_asked_and_cached(tmp_path: Path) -> None:
    from patchd.scan import scan

    s = session(tmp_path, profiled=("adviser", "quiet"))
    first = scan(s)
    again = scan(s)  # the adviser's answer is cached: it is not asked again

    assert [e for e in EVENTS if e.startswith("advisories")] == ["advisories adviser: 1"]
    for report in (first, again):
        by_backend = {u.backend: u for u in report.updates}
        assert by_backend["adviser"].cves == ("CVE-2026-0001",)
        assert by_backend["adviser"].severity is Severity.IMPORTANT
        assert by_backend["quiet"].cves == ()
    cached = s.store.cached_advisories(report.updates)
    assert list(cached) == [by_backend["adviser"].id]  # nothing stored for the other


def test_listings_started_ahead_are_stopped_when_starting_them_is_interrupted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, spawned: list[tuple[str, ...]]
) -> None:
    ahead, worker = service_and_worker(tmp_path, profiled=("lister", "first"))

    def interrupted(self: Recording) -> None:
        raise KeyboardInterrupt  # the agent told to stop while the lister's is running

    monkeypatch.setattr(First, "_start_listing", interrupted)
    with pytest.raises(KeyboardInterrupt):
        worker.start_scans()

    assert spawned == [Lister.argv]
    assert not listing_runs(ahead)
