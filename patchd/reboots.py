"""Rebooting the endpoint: whether to now (a pure decision), and how (warn, then reboot).

:func:`plan_reboot` weighs the policy's :class:`~patchd.policy.model.RebootSettings`, the
maintenance window and the :class:`~patchd.discovery.reboot.RebootState`; it does no I/O.
:func:`warn_and_reboot` acts: it tells logged-in users with ``wall``, then schedules the
reboot with ``shutdown -r +MIN`` (``systemctl reboot`` when there is no warning time).
Only the running host can be rebooted; patchd never reboots an alternate root.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from patchd.discovery.reboot import RebootState
from patchd.errors import PatchdError
from patchd.policy.model import RebootSettings
from patchd.target import Target

log = logging.getLogger(__name__)

COMMAND_TIMEOUT_S = 60.0  # wall, shutdown and systemctl return once the reboot is scheduled
MAX_WARN_MINUTES = 1440  # the policy's bound on warn_users_minutes
MAX_MESSAGE_CHARS = 200  # one line on a terminal, in wall and in shutdown's own broadcasts
MAX_USERS = 256  # distinct user names returned by logged_in_users
MAX_UNITS_SHOWN = 5  # in a one-line reason


class RebootAction(StrEnum):
    """What the agent should do about rebooting, now."""

    REBOOT_NOW = "reboot-now"
    WAIT_FOR_WINDOW = "wait-for-window"
    NOT_ALLOWED = "not-allowed"
    NOT_NEEDED = "not-needed"


@dataclass(frozen=True)
class RebootDecision:
    """A :class:`RebootAction`, a one-line reason, and the warning time for a reboot now."""

    action: RebootAction
    reason: str
    warn_minutes: int = 0

    @property
    def reboot_now(self) -> bool:
        return self.action is RebootAction.REBOOT_NOW

    def as_dict(self) -> dict[str, Any]:
        return {
            "action": self.action.value,
            "reason": self.reason,
            "warn_minutes": self.warn_minutes,
        }


def plan_reboot(
    settings: RebootSettings, *, in_window: bool, reboot_state: RebootState
) -> RebootDecision:
    """Whether to reboot now, wait for a maintenance window, or not reboot, and why.

    Not needed when ``reboot_state`` requires none (units needing only a restart are
    named in the reason); not allowed when the policy forbids reboots; waiting when the
    policy allows them only in a window and ``in_window`` is false; else now, with the
    policy's warning time.
    """
    if not reboot_state.required:
        units = reboot_state.restart.units
        if units:
            return RebootDecision(
                RebootAction.NOT_NEEDED, f"no reboot needed; restart {_shown(units)}"
            )
        return RebootDecision(RebootAction.NOT_NEEDED, "no reboot needed")
    needed = f"a reboot is needed ({_shown(reboot_state.reasons, limit=1)})"
    if not settings.allowed:
        return RebootDecision(
            RebootAction.NOT_ALLOWED, f"{needed} but the policy does not allow patchd to reboot"
        )
    if settings.only_in_window and not in_window:
        return RebootDecision(
            RebootAction.WAIT_FOR_WINDOW, f"{needed}; waiting for a maintenance window"
        )
    minutes = settings.warn_users_minutes
    when = f"rebooting in {minutes} min" if minutes else "rebooting now"
    return RebootDecision(RebootAction.REBOOT_NOW, f"{needed}; {when}", warn_minutes=minutes)


def _shown(items: Sequence[str], *, limit: int = MAX_UNITS_SHOWN) -> str:
    shown = ", ".join(items[:limit])
    more = len(items) - limit
    return f"{shown} and {more} more" if more > 0 else shown


def logged_in_users() -> list[str]:
    """The names of the users logged in (utmp, through psutil), sorted, each once."""
    import psutil

    return sorted({user.name for user in psutil.users() if user.name})[:MAX_USERS]


def _run_command(argv: list[str]) -> None:
    from patchd import process

    process.run(argv, timeout_s=COMMAND_TIMEOUT_S, cwd="/")


def warn_and_reboot(
    target: Target,
    warn_minutes: int,
    message: str,
    *,
    run: Callable[[list[str]], None] = _run_command,
    users: Callable[[], list[str]] = logged_in_users,
) -> list[str]:
    """Warn logged-in users with ``message``, then reboot in ``warn_minutes`` (0: at once).

    Runs ``wall MESSAGE`` when anyone is logged in, then ``shutdown -r +MIN MESSAGE``, or
    ``systemctl reboot`` when ``warn_minutes`` is 0. Returns the users warned: none when
    nobody was logged in, or when ``wall`` failed (logged; the reboot goes ahead, and
    ``shutdown`` broadcasts its own warnings). Raises :class:`PatchdError` for an
    alternate root (nothing is run), and what ``run`` raises for ``shutdown`` or
    ``systemctl`` (:class:`~patchd.errors.CommandError`, ...). ``message`` is one line
    of printable text that starts with neither ``-`` (an option) nor ``/`` (``wall``
    would read a file of that name); ValueError otherwise, or for ``warn_minutes``
    outside 0 to :data:`MAX_WARN_MINUTES`.
    """
    if not target.is_host:
        raise PatchdError(
            f"cannot reboot {target}: it is an alternate root, not the running system",
            hint="reboot the system that runs it yourself",
        )
    if not 0 <= warn_minutes <= MAX_WARN_MINUTES:
        raise ValueError(f"warn_minutes must be 0 to {MAX_WARN_MINUTES}, not {warn_minutes}")
    problem = _message_problem(message)
    if problem:
        raise ValueError(f"reboot message {message[:MAX_MESSAGE_CHARS]!r}: {problem}")
    warned = users()
    if warned:
        try:
            run(["wall", message])
        except PatchdError as e:
            log.warning("could not warn logged-in users (%s); rebooting anyway", e)
            warned = []
    if warn_minutes:
        log.warning("rebooting in %d minutes: %s", warn_minutes, message)
        run(["shutdown", "-r", f"+{warn_minutes}", message])
    else:
        log.warning("rebooting now: %s", message)
        run(["systemctl", "reboot"])
    return warned


def _message_problem(message: str) -> str | None:
    if not message.strip():
        return "it is empty"
    if len(message) > MAX_MESSAGE_CHARS:
        return f"it is longer than {MAX_MESSAGE_CHARS} characters"
    if not message.isprintable():
        return "it must be one line of printable text"
    if message.startswith(("-", "/")):
        return "it must not start with - or /"
    return None
