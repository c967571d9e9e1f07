"""A recording stand-in for the process gateway, for package managers that cannot run here.

``CannedCommands`` replaces :func:`patchd.process.run` (and, with ``start=True``,
:func:`patchd.process.start`, answering when the command starts): it records every argv
(with its environment and timeout) and answers from captured output. ``answers`` maps an argv
prefix to an answer; the longest matching prefix wins. An answer is the standard output
(``str``), a :class:`Reply` (exit status, standard output and error), an exception to
raise, a callable given the argv (to change a fake package database, as the real tool
would), or a list of answers used one per call. An unexpected command fails the test.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from patchd import process
from patchd.errors import CommandError

DATA = Path(__file__).resolve().parent.parent / "data"


def captured(relative: str) -> str:
    """A file under tests/data (see the PROVENANCE.md beside it)."""
    return (DATA / relative).read_text(encoding="utf-8")


@dataclass(frozen=True)
class Reply:
    """A full answer: exit status and both streams."""

    returncode: int = 0
    stdout: str = ""
    stderr: str = ""


Answer = str | Reply | Exception | Callable[[tuple[str, ...]], "str | Reply"] | list["Answer"]


@dataclass(frozen=True)
class Call:
    """One command the code under test ran."""

    argv: tuple[str, ...]
    env: Mapping[str, str] | None
    timeout_s: float


@dataclass
class StartedCommand:
    """A canned command started in the background: ``wait()`` gives its answer."""

    result: process.CommandResult | None
    error: CommandError | None
    stopped: bool = False
    started_at: float = field(default_factory=time.monotonic)  # as RunningCommand's

    def wait(self) -> process.CommandResult:
        if self.error is not None:
            raise self.error
        assert self.result is not None
        return self.result

    def stop(self) -> None:
        self.stopped = True


@dataclass
class CannedCommands:
    """Answers commands from captures and records what was asked (see the module doc)."""

    answers: dict[tuple[str, ...], Answer]
    calls: list[Call] = field(default_factory=list)

    @property
    def argvs(self) -> list[tuple[str, ...]]:
        return [c.argv for c in self.calls]

    def install(self, monkeypatch: pytest.MonkeyPatch, *, start: bool = False) -> CannedCommands:
        monkeypatch.setattr(process, "run", self)
        if start:
            monkeypatch.setattr(process, "start", self.start)
        return self

    def start(self, argv: Sequence[str], **kwargs: object) -> StartedCommand:
        """:func:`patchd.process.start`'s stand-in: the answer, given when the command starts."""
        try:
            return StartedCommand(self(argv, **kwargs), None)  # type: ignore[arg-type]
        except CommandError as e:
            return StartedCommand(None, e)

    def __call__(
        self,
        argv: Sequence[str],
        *,
        timeout_s: float,
        env: Mapping[str, str] | None = None,
        ok_codes: Sequence[int] = (0,),
        **_: object,
    ) -> process.CommandResult:
        call = tuple(argv)
        assert timeout_s > 0, f"no timeout for {call}"
        self.calls.append(Call(call, dict(env) if env else None, timeout_s))
        matches = [p for p in self.answers if call[: len(p)] == p]
        assert matches, f"unexpected command: {call}"
        key = max(matches, key=len)
        answer = self.answers[key]
        if isinstance(answer, list):
            answer = answer.pop(0) if len(answer) > 1 else answer[0]
        if isinstance(answer, Exception):
            raise answer
        if callable(answer):
            answer = answer(call)
        reply = answer if isinstance(answer, Reply) else Reply(0, str(answer))
        result = process.CommandResult(call, reply.returncode, reply.stdout, reply.stderr, 0.0)
        if reply.returncode not in ok_codes:
            raise CommandError(call, reply.returncode, result.output)
        return result
