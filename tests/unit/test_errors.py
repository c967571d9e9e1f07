"""Tests for patchd.errors: exit codes, messages, hints and redaction."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable

import pytest

from patchd import errors, process
from patchd.errors import (
    OUTPUT_TAIL_CHARS,
    BackendError,
    BackendUnavailable,
    CommandError,
    CommandTimeout,
    ConfigError,
    EnrolmentRefused,
    ExitCode,
    LockHeldError,
    PatchdError,
    ReportingError,
    StateError,
    TemporaryFailure,
    ToolNotFoundError,
    UnknownRunError,
    UsageError,
)

EXIT_CODES: dict[str, tuple[Callable[[], PatchdError], int]] = {
    "patchd-error": (lambda: PatchdError("x"), 1),
    "usage": (lambda: UsageError("x"), 2),
    "config": (lambda: ConfigError("x"), 78),
    "temporary": (lambda: TemporaryFailure("x"), 75),
    "lock-held": (
        lambda: LockHeldError("/l", holder_pid=None, holder_name=None, waited_s=1),
        75,
    ),
    "command": (lambda: CommandError(["false"], 1, ""), 1),
    "timeout": (lambda: CommandTimeout(["sleep", "9"], 5, ""), 75),
    "tool-not-found": (lambda: ToolNotFoundError("apt"), 1),
    "backend": (lambda: BackendError("x"), 1),
    "backend-unavailable": (lambda: BackendUnavailable("x"), 1),
    "state": (lambda: StateError("x"), 1),
    "unknown-run": (lambda: UnknownRunError("r1"), 1),
    "reporting": (lambda: ReportingError("x"), 1),
    "enrolment-refused": (lambda: EnrolmentRefused("x"), 77),
}


@pytest.mark.parametrize(("make", "code"), EXIT_CODES.values(), ids=EXIT_CODES.keys())
def test_each_error_carries_its_exit_code(make: Callable[[], PatchdError], code: int) -> None:
    error = make()

    assert isinstance(error, PatchdError)
    assert int(error.exit_code) == code


def test_exit_codes_follow_sysexits() -> None:
    assert [(c.name, int(c)) for c in ExitCode] == [
        ("OK", 0),
        ("FAILURE", 1),
        ("USAGE", 2),
        ("TEMPORARY", 75),
        ("NOPERM", 77),
        ("CONFIG", 78),
    ]
    for code in ExitCode:
        assert f"  {int(code)} " in errors.EXIT_CODE_HELP


@pytest.mark.parametrize(
    ("hint", "shown"),
    [("do this", "it broke; do this"), (None, "it broke"), ("", "it broke")],
    ids=["with-hint", "no-hint", "empty-hint"],
)
def test_hint_follows_the_message(hint: str | None, shown: str) -> None:
    error = PatchdError("it broke", hint=hint)

    assert str(error) == shown
    assert error.message == "it broke"
    assert error.hint == hint


@pytest.mark.parametrize(
    ("pid", "name", "holder"),
    [
        (812, "unattended-upgr", "process 812 (unattended-upgr)"),
        (812, None, "process 812"),
        (812, "", "process 812"),
        (None, None, "another process"),
    ],
    ids=["pid-and-name", "pid-only", "empty-name", "unknown"],
)
def test_lock_held_message_names_what_is_known(
    pid: int | None, name: str | None, holder: str
) -> None:
    error = LockHeldError("/var/lib/dpkg/lock", holder_pid=pid, holder_name=name, waited_s=299.6)

    assert error.message == f"/var/lib/dpkg/lock is held by {holder}; waited 300 s"
    assert str(error) == f"{error.message}; let that process finish, then try again"
    assert (error.lock_path, error.holder_pid, error.holder_name) == (
        "/var/lib/dpkg/lock",
        pid,
        name,
    )


@pytest.mark.parametrize(
    ("output", "last"),
    [
        ("first\nsecond\nE: the real reason\n", "E: the real reason"),
        ("E: reason\n\n   \n", "E: reason"),
        ("  padded  \n", "padded"),
        ("no newline", "no newline"),
    ],
    ids=["last-line", "trailing-blank-lines", "stripped", "no-newline"],
)
def test_command_error_shows_the_last_line_of_output(output: str, last: str) -> None:
    error = CommandError(["apt-get", "install", "x"], 100, output)

    assert error.message == f"command failed with exit status 100: apt-get install x: {last}"
    assert error.summary == last
    assert error.output == output


@pytest.mark.parametrize("output", ["", "\n\n", "   \n"], ids=["empty", "newlines", "blank"])
def test_command_error_without_output_ends_at_the_argv(output: str) -> None:
    error = CommandError(["false"], 1, output)

    assert str(error) == "command failed with exit status 1: false"
    assert error.summary == ""


def test_command_error_keeps_a_bounded_tail() -> None:
    output = "early line\n" + "x" * (3 * OUTPUT_TAIL_CHARS) + "\nlast line\n"

    error = CommandError(["cmd"], 1, output)

    assert error.output == output
    assert len(error.output_tail) == OUTPUT_TAIL_CHARS
    assert output.endswith(error.output_tail)
    assert str(error).endswith(": last line")
    assert len(str(error)) < 200


def test_redaction_hides_every_secret_in_argv_and_output() -> None:
    error = CommandError(
        ["curl", "-u", "admin:pa55", "https://x/?token=t0k3n"],
        22,
        "fetching with t0k3n\nauth failed for admin:pa55 (token t0k3n)\n",
        redact=["pa55", "t0k3n", ""],
    )

    shown = str(error)
    assert "pa55" not in shown
    assert "t0k3n" not in shown
    assert shown == (
        "command failed with exit status 22: curl -u admin:**** https://x/?token=****: "
        "auth failed for admin:**** (token ****)"
    )
    assert error.summary == "auth failed for admin:**** (token ****)"
    assert error.argv == ("curl", "-u", "admin:pa55", "https://x/?token=t0k3n")  # raw fields


def test_a_custom_message_gets_the_argv_and_hint() -> None:
    error = CommandError(
        ["dpkg", "--configure", "-a"],
        2,
        "dpkg: error\n",
        message="dpkg is interrupted ({argv})",
        hint="run it by hand",
    )

    assert str(error) == "dpkg is interrupted (dpkg --configure -a): dpkg: error; run it by hand"


def test_command_timeout_message() -> None:
    error = CommandTimeout(["apt-get", "update"], 600, "Get:1 http://deb\n", redact=["deb"])

    assert error.returncode is None
    assert error.timeout_s == 600
    assert error.message == "command timed out after 600 s: apt-get update: Get:1 http://****"
    assert "raise the timeout" in (error.hint or "")
    assert isinstance(error, CommandError)


def test_tool_not_found_names_the_tool() -> None:
    error = ToolNotFoundError("zypper")

    assert error.tool == "zypper"
    assert str(error) == "zypper is not installed; install zypper or disable its backend"


def test_unknown_run_error_names_the_run() -> None:
    error = UnknownRunError("20261204T195713Z-3fa9c1")

    assert isinstance(error, StateError)
    assert error.run_id == "20261204T195713Z-3fa9c1"
    assert error.message == "no run '20261204T195713Z-3fa9c1' is recorded"
    assert "patchd status" in str(error)


def test_the_error_module_imports_nothing_else_of_patchd() -> None:
    script = (
        "import json, sys; import patchd.errors; "
        "print(json.dumps(sorted(m for m in sys.modules if m.startswith('patchd'))))"
    )

    result = process.run([sys.executable, "-c", script], timeout_s=60)

    assert json.loads(result.stdout) == ["patchd", "patchd.errors"]
