"""The one error tree of patchd, and the exit codes the command line maps it to.

Every error patchd raises on purpose derives from :class:`PatchdError` and carries its
exit code. Nothing below the command line exits the process: ``patchd.cli`` turns an
error into a one-line message and the code. This module imports nothing else of patchd
so that any module may import it.
"""

from __future__ import annotations

from collections.abc import Sequence
from enum import IntEnum


class ExitCode(IntEnum):
    """Documented exit statuses of the ``patchd`` command (sysexits.h where one fits)."""

    OK = 0
    FAILURE = 1
    USAGE = 2
    TEMPORARY = 75  # EX_TEMPFAIL: a package-manager lock is held, a timeout; try again later
    NOPERM = 77  # EX_NOPERM: a collector refused this endpoint's enrolment token or identity
    CONFIG = 78  # EX_CONFIG: bad configuration or policy


EXIT_CODE_HELP = """\
exit status:
  0   success
  1   failure (an update failed, a command failed, a verification failed)
  2   usage error (bad command line)
  75  temporary failure: the package manager's lock is held or a step timed out;
      nothing was changed that the run did not record, try again later
  77  a collector refused this endpoint's enrolment token or identity
  78  bad configuration or policy; the last known good state stays in force"""


class PatchdError(Exception):
    """Root of every error patchd raises on purpose.

    ``message`` says what went wrong and where; ``hint`` says what to do about it. Both
    end up on one line of standard error.
    """

    exit_code: ExitCode = ExitCode.FAILURE

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        if self.hint:
            return f"{self.message}; {self.hint}"
        return self.message


class UsageError(PatchdError):
    """The command line asks for something that cannot be done as asked."""

    exit_code = ExitCode.USAGE


class ConfigError(PatchdError):
    """A configuration file is missing, unreadable or invalid."""

    exit_code = ExitCode.CONFIG


class TemporaryFailure(PatchdError):
    """Something that should work if tried again later (a lock, a timeout, a network)."""

    exit_code = ExitCode.TEMPORARY


class LockHeldError(TemporaryFailure):
    """Another process holds a lock patchd needs, for longer than patchd may wait.

    ``holder_pid`` and ``holder_name`` name the process when the kernel tells who it is.
    """

    def __init__(
        self,
        lock_path: str,
        *,
        holder_pid: int | None,
        holder_name: str | None,
        waited_s: float,
    ) -> None:
        holder = "another process"
        if holder_pid is not None:
            holder = f"process {holder_pid}" + (f" ({holder_name})" if holder_name else "")
        super().__init__(
            f"{lock_path} is held by {holder}; waited {waited_s:.0f} s",
            hint="let that process finish, then try again",
        )
        self.lock_path = lock_path
        self.holder_pid = holder_pid
        self.holder_name = holder_name


OUTPUT_TAIL_CHARS = 2000  # how much of a failed command's output an error message carries


class CommandError(PatchdError):
    """A command patchd ran failed: it exited with an unexpected status.

    Carries the argv, the exit status and the (bounded) output; ``str()`` shows the last
    line of it. Secrets listed in ``redact`` never appear in ``str()``.
    """

    def __init__(
        self,
        argv: Sequence[str],
        returncode: int | None,
        output: str,
        *,
        message: str | None = None,
        hint: str | None = None,
        redact: Sequence[str] = (),
    ) -> None:
        self.argv = tuple(argv)
        self.returncode = returncode
        self.output = output
        self.output_tail = output[-OUTPUT_TAIL_CHARS:]
        self._redact = tuple(s for s in redact if s)
        shown = self._scrub(" ".join(self.argv))
        if message is None:
            message = f"command failed with exit status {returncode}: {{argv}}"
        message = message.replace("{argv}", shown)
        last_line = self._scrub(_last_line(self.output_tail))
        if last_line:
            message = f"{message}: {last_line}"
        super().__init__(message, hint=hint)

    @property
    def summary(self) -> str:
        """The last line of the command's output (what it said last), secrets scrubbed."""
        return self._scrub(_last_line(self.output_tail))

    def _scrub(self, text: str) -> str:
        for secret in self._redact:
            text = text.replace(secret, "****")
        return text


class CommandTimeout(CommandError):
    """A command ran longer than its timeout and was stopped."""

    exit_code = ExitCode.TEMPORARY

    def __init__(
        self, argv: Sequence[str], timeout_s: float, output: str, redact: Sequence[str] = ()
    ) -> None:
        super().__init__(
            argv,
            None,
            output,
            message=f"command timed out after {timeout_s:g} s: {{argv}}",
            hint="it was stopped; try again, or raise the timeout in the agent configuration",
            redact=redact,
        )
        self.timeout_s = timeout_s


class ToolNotFoundError(PatchdError):
    """A program patchd needs is not installed."""

    def __init__(self, tool: str) -> None:
        super().__init__(f"{tool} is not installed", hint=f"install {tool} or disable its backend")
        self.tool = tool


class BackendError(PatchdError):
    """A package-manager backend could not do what was asked."""


class BackendUnavailable(BackendError):
    """The backend's tools are present but broken, or absent when asked for by name."""


class TrustError(PatchdError):
    """A key, signature or trust root is missing, malformed or not trusted."""

    exit_code = ExitCode.CONFIG


class PolicyError(PatchdError):
    """A policy is invalid, or this endpoint refused it (the last known good stays in force)."""

    exit_code = ExitCode.CONFIG


class ReportingError(PatchdError):
    """Enrolling with a collector, or sending it this endpoint's reports, failed."""


class EnrolmentRefused(ReportingError):
    """The collector refused the enrolment token or this endpoint's identity (401, 403)."""

    exit_code = ExitCode.NOPERM


class StateError(PatchdError):
    """patchd's own local state is unusable (corrupt database, unknown run)."""


class UnknownRunError(StateError):
    """No run with that id is recorded in the local state."""

    def __init__(self, run_id: str) -> None:
        super().__init__(f"no run {run_id!r} is recorded", hint="see `patchd status` for run ids")
        self.run_id = run_id


def _last_line(text: str) -> str:
    for line in reversed(text.splitlines()):
        if line.strip():
            return line.strip()
    return ""
