"""A recording stand-in for the process gateway, for backends whose tools cannot run here.

``FakeGateway`` replaces :func:`patchd.process.run`: it records every argv (and the
environment and timeout it was given) and answers from a table of argv prefixes with
output captured from the real tool. An argv the table does not know fails the test, so
a backend cannot run a command the test did not expect.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from patchd import process
from patchd.backends.base import BackendContext
from patchd.errors import CommandError
from patchd.platforms import MACOS, WINDOWS, OsProfile
from patchd.process import CommandResult
from patchd.target import Target

DATA = Path(__file__).resolve().parent.parent / "data"


def captured(backend: str, name: str) -> str:
    """A capture from ``tests/data/BACKEND/`` (see the PROVENANCE.md there)."""
    return (DATA / backend / name).read_text(encoding="utf-8")


@dataclass(frozen=True)
class Answer:
    """What one command prints and how it exits."""

    stdout: str = ""
    stderr: str = ""
    returncode: int = 0


Reply = str | Answer


@dataclass
class FakeGateway:
    """Answers commands by the longest matching argv prefix; lists answer in turn."""

    answers: dict[tuple[str, ...], Reply | list[Reply]] = field(default_factory=dict)
    calls: list[tuple[str, ...]] = field(default_factory=list)
    envs: list[Mapping[str, str] | None] = field(default_factory=list)

    def __call__(
        self,
        argv: Sequence[str],
        *,
        timeout_s: float,
        env: Mapping[str, str] | None = None,
        ok_codes: Sequence[int] = (0,),
        **_: object,
    ) -> CommandResult:
        assert timeout_s > 0, "every command needs a timeout"
        key = tuple(argv)
        self.calls.append(key)
        self.envs.append(env)
        prefixes = [p for p in self.answers if key[: len(p)] == p]
        if not prefixes:
            raise AssertionError(f"unexpected command: {key}")
        prefix = max(prefixes, key=len)
        reply = self.answers[prefix]
        if isinstance(reply, list):
            reply = reply.pop(0) if len(reply) > 1 else reply[0]
        answer = reply if isinstance(reply, Answer) else Answer(stdout=reply)
        result = CommandResult(key, answer.returncode, answer.stdout, answer.stderr, 0.01)
        if answer.returncode not in ok_codes:
            raise CommandError(key, answer.returncode, result.output)
        return result


def install_gateway(monkeypatch: pytest.MonkeyPatch) -> FakeGateway:
    """A fake gateway, installed in place of :func:`patchd.process.run` for one test."""
    fake = FakeGateway()
    monkeypatch.setattr(process, "run", fake)
    return fake


def make_tool_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A directory on PATH where a test puts stand-ins for the programs a probe looks for."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ.get('PATH', '')}")
    return bin_dir


def install_tool(bin_dir: Path, name: str) -> Path:
    """An executable named ``name`` that exits with an error if anything does run it."""
    path = bin_dir / name
    path.write_text("#!/bin/sh\necho 'this stand-in must not run' >&2\nexit 99\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return path


def context(
    tmp_path: Path, platform: str, profile: OsProfile | None = None, root: str = "/"
) -> BackendContext:
    """A backend context on ``platform`` (as the backends' probes read it)."""
    chosen = profile or (WINDOWS if platform == "win32" else MACOS)
    return BackendContext(Target(Path(root)), chosen, tmp_path / "work", {"platform": platform})
