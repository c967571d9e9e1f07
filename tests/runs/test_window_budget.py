"""A run that would outlast its maintenance window stops at a safe step (between transactions)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import timedelta
from pathlib import Path

import pytest

from patchd.backends.apt.backend import AptBackend
from patchd.backends.base import Outcome, TransactionResult
from patchd.config import AgentConfig
from patchd.models import Classification, PackageChange, Severity, Update
from patchd.policy.model import HealthCheck
from patchd.runs import budget
from patchd.runs.budget import WindowBudget, budget_for, health_reserve
from patchd.runs.journal import RunJournal, Step
from patchd.runs.patchrun import PatchRun
from patchd.scan import scan
from patchd.session import Session
from patchd.target import Target
from patchd.transcript import Transcript
from tests.policy.simulator import FrozenClock
from tests.support.aptroot import AptRoot

WINDOW_BOUND = ("epochal", "hello", "world")  # apt updates that install cleanly
SECONDS_PER_PACKAGE = 100  # how long each package "takes" on the simulated clock


def _update(name: str, severity: Severity = Severity.UNKNOWN) -> Update:
    return Update("apt", name, "all", "1.0", "1.1", Classification.SECURITY, severity)


# -- the budget on its own -------------------------------------------------------------


def test_updates_not_bound_by_a_window_go_first_and_together() -> None:
    clock = FrozenClock()
    free = [_update("urgent"), _update("also-urgent")]
    bound = _update("routine")
    plan = WindowBudget({bound.id: clock.now()}, {}, timedelta(0))  # its window already closed
    batch = plan.next_batch("apt", [bound, *free], clock.now())
    assert batch.updates == free
    assert batch.left_over == [bound]


def test_a_batch_takes_what_fits_before_the_window_closes() -> None:
    clock = FrozenClock()
    updates = [_update(f"p{i}") for i in range(5)]
    closes = clock.now() + timedelta(seconds=120 + 3 * 60 + 30)
    plan = WindowBudget({u.id: closes for u in updates}, {"apt": 60.0}, timedelta(seconds=120))
    batch = plan.next_batch("apt", updates, clock.now())
    assert [u.name for u in batch.updates] == ["p0", "p1", "p2"]
    assert [u.name for u in batch.left_over] == ["p3", "p4"]
    assert batch.reason == ""


def test_when_nothing_fits_the_reason_says_when_the_window_closes_and_what_waits() -> None:
    clock = FrozenClock()
    updates = [_update("late")]
    closes = clock.now() + timedelta(seconds=100)
    plan = WindowBudget({updates[0].id: closes}, {"apt": 60.0}, timedelta(seconds=120))
    batch = plan.next_batch("apt", updates, clock.now())
    assert batch.updates == []
    assert batch.left_over == updates
    assert "the window closes at" in batch.reason
    assert "1 apt update(s)" in batch.reason


def test_more_urgent_updates_are_taken_first() -> None:
    clock = FrozenClock()
    low, critical = _update("a-low", Severity.LOW), _update("z-critical", Severity.CRITICAL)
    closes = clock.now() + timedelta(seconds=190)
    plan = WindowBudget(
        {low.id: closes, critical.id: closes}, {"apt": 60.0}, timedelta(seconds=120)
    )
    batch = plan.next_batch("apt", [low, critical], clock.now())
    assert batch.updates == [critical]


def test_batches_are_bounded_even_in_a_long_window() -> None:
    clock = FrozenClock()
    updates = [_update(f"p{i:03}") for i in range(budget.MAX_BATCH + 5)]
    closes = clock.now() + timedelta(days=1)
    plan = WindowBudget({u.id: closes for u in updates}, {"apt": 1.0}, timedelta(0))
    assert len(plan.next_batch("apt", updates, clock.now()).updates) == budget.MAX_BATCH


def test_the_health_check_reserve_counts_every_attempt() -> None:
    check = HealthCheck.model_validate(
        {"name": "web", "tcp": "127.0.0.1:80", "retries": 2, "interval": "1m", "timeout": "2m"}
    )
    assert health_reserve([check, check]) == timedelta(minutes=2 * 3 * 3)
    slow = HealthCheck.model_validate(
        {"name": "slow", "tcp": "127.0.0.1:80", "retries": 20, "timeout": "90m"}
    )
    assert health_reserve([slow]) == budget.MAX_HEALTH_RESERVE


# -- for real, on an isolated apt root ---------------------------------------------------


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock()


@pytest.fixture
def session(apt_root: AptRoot, tmp_path: Path, clock: FrozenClock) -> Iterator[Session]:
    with Session(AgentConfig(), Target.at(apt_root.path), tmp_path / "state", clock=clock.now) as s:
        yield s


@pytest.fixture
def slow_transactions(clock: FrozenClock, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each real apt transaction also moves the simulated clock, as a slow install would."""
    real_apply = AptBackend.apply

    def apply(
        self: AptBackend, changes: Sequence[PackageChange], transcript: Transcript
    ) -> TransactionResult:
        result = real_apply(self, changes, transcript)
        clock.advance(timedelta(seconds=SECONDS_PER_PACKAGE * len(changes)))
        return result

    monkeypatch.setattr(AptBackend, "apply", apply)


def _due(session: Session) -> list[Update]:
    return [u for u in scan(session).updates if u.name in WINDOW_BOUND]


@pytest.mark.usefixtures("slow_transactions")
def test_a_run_stops_between_transactions_before_its_window_closes(
    session: Session, apt_root: AptRoot, clock: FrozenClock
) -> None:
    updates = _due(session)
    # Room for two packages at the default estimate (60 s each) plus the reserve, not three.
    closes = clock.now() + budget.FIXED_RESERVE + timedelta(seconds=2 * 60 + 30)
    run = PatchRun.plan(session, updates, policy=None, limits={u.id: closes for u in updates})
    record = run.execute(updates)
    versions = apt_root.versions()
    assert (versions["epochal"], versions["hello"], versions["world"]) == ("1:1.1", "1.1", "1.0")
    assert record.status == "succeeded"
    left = [i for i in record.items if i.change.name == "world"]
    assert left[0].outcome == Outcome.SKIPPED.value
    assert "left for its next opening" in left[0].detail
    assert any("the window closes at" in n for n in record.notes)
    steps = [s for s, _ in RunJournal(session.store, run.run_id).steps()]
    assert steps.count(Step.TRANSACTION_BEGUN) == 1
    assert steps[-2:] == [Step.HEALTH_CHECKED, Step.COMMITTED]


@pytest.mark.usefixtures("slow_transactions")
def test_when_nothing_fits_the_run_changes_nothing(
    session: Session, apt_root: AptRoot, clock: FrozenClock
) -> None:
    before = apt_root.versions()
    updates = _due(session)
    closes = clock.now() + timedelta(seconds=30)
    run = PatchRun.plan(session, updates, policy=None, limits={u.id: closes for u in updates})
    record = run.execute(updates)
    assert apt_root.versions() == before
    assert {i.outcome for i in record.items} == {Outcome.SKIPPED.value}
    assert Step.TRANSACTION_BEGUN not in [
        s for s, _ in RunJournal(session.store, run.run_id).steps()
    ]


@pytest.mark.usefixtures("slow_transactions")
def test_estimates_learn_from_this_endpoints_own_transactions(
    session: Session, clock: FrozenClock
) -> None:
    updates = [u for u in _due(session) if u.name == "hello"]
    PatchRun.plan(session, updates, policy=None).execute(updates)
    learned = budget_for(session.store, {"any": clock.now()}, ())
    assert learned.seconds_per_package == {"apt": SECONDS_PER_PACKAGE * budget.SAFETY_FACTOR}
