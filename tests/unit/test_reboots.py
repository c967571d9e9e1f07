"""Tests for patchd.reboots: the pure reboot decision, and the argv of the reboot action.

The action runs its commands through an injected runner that only records them: these
tests never warn anyone nor reboot this machine.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from patchd.discovery.reboot import RebootState, RestartNeeds
from patchd.errors import CommandError, PatchdError, ToolNotFoundError
from patchd.policy.model import RebootSettings
from patchd.reboots import (
    RebootAction,
    RebootDecision,
    logged_in_users,
    plan_reboot,
    warn_and_reboot,
)
from patchd.target import Target

NEEDED = RebootState(True, ("/run/reboot-required exists", "running kernel 6.1.0-9 is older"))
NOT_NEEDED = RebootState(False, ())
RESTARTS_ONLY = RebootState(False, (), RestartNeeds(units=("cron.service", "nginx.service")))
MESSAGE = "patchd: rebooting to finish installing updates"


class Recorder:
    """A runner that records each argv; ``fail`` names commands that raise instead."""

    def __init__(self, fail: dict[str, PatchdError] | None = None) -> None:
        self.argvs: list[list[str]] = []
        self._fail = fail or {}

    def __call__(self, argv: list[str]) -> None:
        self.argvs.append(argv)
        if argv[0] in self._fail:
            raise self._fail[argv[0]]


def nobody() -> list[str]:
    return []


def alice_and_bob() -> list[str]:
    return ["alice", "bob"]


# --- plan_reboot ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("settings", "in_window", "state", "decision"),
    [
        (RebootSettings(), True, NOT_NEEDED, RebootDecision(RebootAction.NOT_NEEDED, "no reboot needed")),
        (RebootSettings(), False, RESTARTS_ONLY,
         RebootDecision(RebootAction.NOT_NEEDED, "no reboot needed; restart cron.service, nginx.service")),
        (RebootSettings(allowed=False), True, NEEDED,
         RebootDecision(RebootAction.NOT_ALLOWED, "a reboot is needed (/run/reboot-required exists and 1 more) but the policy does not allow patchd to reboot")),
        (RebootSettings(), False, NEEDED,
         RebootDecision(RebootAction.WAIT_FOR_WINDOW, "a reboot is needed (/run/reboot-required exists and 1 more); waiting for a maintenance window")),
        (RebootSettings(), True, NEEDED,
         RebootDecision(RebootAction.REBOOT_NOW, "a reboot is needed (/run/reboot-required exists and 1 more); rebooting in 10 min", warn_minutes=10)),
        (RebootSettings(only_in_window=False, warn_users_minutes=0), False, NEEDED,
         RebootDecision(RebootAction.REBOOT_NOW, "a reboot is needed (/run/reboot-required exists and 1 more); rebooting now")),
        (RebootSettings(allowed=False), False, NOT_NEEDED, RebootDecision(RebootAction.NOT_NEEDED, "no reboot needed")),
    ],
    ids=[
        "not-needed",
        "restarts-are-not-a-reboot",
        "not-allowed",
        "outside-the-window",
        "in-the-window",
        "any-time-no-warning",
        "not-needed-beats-not-allowed",
    ],
)  # fmt: skip
def test_plan_reboot(
    settings: RebootSettings, in_window: bool, state: RebootState, decision: RebootDecision
) -> None:
    assert plan_reboot(settings, in_window=in_window, reboot_state=state) == decision


def test_a_decision_as_dict() -> None:
    decision = plan_reboot(RebootSettings(), in_window=True, reboot_state=NEEDED)
    assert decision.reboot_now
    assert decision.as_dict() == {
        "action": "reboot-now",
        "reason": decision.reason,
        "warn_minutes": 10,
    }


def test_many_restart_units_stay_on_one_line() -> None:
    units = tuple(f"app{i}.service" for i in range(8))
    state = RebootState(False, (), RestartNeeds(units=units))
    reason = plan_reboot(RebootSettings(), in_window=True, reboot_state=state).reason
    assert reason == (
        "no reboot needed; restart app0.service, app1.service, app2.service, app3.service,"
        " app4.service and 3 more"
    )


# --- warn_and_reboot ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("warn_minutes", "users", "argvs"),
    [
        (10, alice_and_bob, [["wall", MESSAGE], ["shutdown", "-r", "+10", MESSAGE]]),
        (0, alice_and_bob, [["wall", MESSAGE], ["systemctl", "reboot"]]),
        (10, nobody, [["shutdown", "-r", "+10", MESSAGE]]),
        (0, nobody, [["systemctl", "reboot"]]),
        (1440, nobody, [["shutdown", "-r", "+1440", MESSAGE]]),
    ],
    ids=["warned", "at-once-warned", "nobody-logged-in", "at-once", "longest-warning"],
)
def test_warn_and_reboot_argv(
    warn_minutes: int,
    users: Callable[[], list[str]],
    argvs: list[list[str]],
) -> None:
    run = Recorder()
    warned = warn_and_reboot(Target(), warn_minutes, MESSAGE, run=run, users=users)
    assert run.argvs == argvs
    assert warned == users()


def test_an_alternate_root_is_never_rebooted() -> None:
    run = Recorder()
    with pytest.raises(PatchdError, match="alternate root"):
        warn_and_reboot(Target.at("/srv/images/web"), 10, MESSAGE, run=run, users=alice_and_bob)
    assert run.argvs == []


def test_a_failed_warning_does_not_stop_the_reboot() -> None:
    run = Recorder(fail={"wall": ToolNotFoundError("wall")})
    warned = warn_and_reboot(Target(), 5, MESSAGE, run=run, users=alice_and_bob)
    assert warned == []
    assert run.argvs == [["wall", MESSAGE], ["shutdown", "-r", "+5", MESSAGE]]


def test_a_failed_shutdown_is_raised() -> None:
    failure = CommandError(["shutdown", "-r", "+5", MESSAGE], 1, "Failed to connect to bus")
    run = Recorder(fail={"shutdown": failure})
    with pytest.raises(CommandError) as raised:
        warn_and_reboot(Target(), 5, MESSAGE, run=run, users=nobody)
    assert raised.value is failure


@pytest.mark.parametrize(
    ("message", "problem"),
    [
        ("", "empty"),
        ("   ", "empty"),
        ("-r now", "must not start with - or /"),
        ("/etc/shadow", "must not start with - or /"),
        ("two\nlines", "one line of printable text"),
        ("bell\a", "one line of printable text"),
        ("x" * 201, "longer than 200 characters"),
    ],
    ids=["empty", "blank", "option", "path", "newline", "control", "too-long"],
)
def test_unsafe_messages_are_refused(message: str, problem: str) -> None:
    run = Recorder()
    with pytest.raises(ValueError, match=problem):
        warn_and_reboot(Target(), 10, message, run=run, users=alice_and_bob)
    assert run.argvs == []


@pytest.mark.parametrize("minutes", [-1, 1441], ids=["negative", "over-a-day"])
def test_warning_time_is_bounded(minutes: int) -> None:
    run = Recorder()
    with pytest.raises(ValueError, match="warn_minutes"):
        warn_and_reboot(Target(), minutes, MESSAGE, run=run, users=nobody)
    assert run.argvs == []


def test_logged_in_users_are_sorted_names() -> None:
    users = logged_in_users()  # whoever is logged in here, possibly nobody
    assert users == sorted(set(users))
    assert all(isinstance(name, str) and name for name in users)
