"""A run's transcript: every command a backend ran, with its full (bounded) output.

Entries reach the sink as they happen, so a transcript survives a run that fails or
is interrupted half-way.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from patchd.errors import CommandError
from patchd.process import CommandResult


@dataclass(frozen=True)
class TranscriptEntry:
    """One command, or one note, in a run's transcript."""

    at: datetime
    argv: tuple[str, ...]
    returncode: int | None
    output: str
    duration_s: float = 0.0


TranscriptSink = Callable[[TranscriptEntry], None]


@dataclass
class Transcript:
    """Collects what a run did and passes each entry on to ``sink``."""

    sink: TranscriptSink | None = None
    entries: list[TranscriptEntry] = field(default_factory=list)

    def _add(self, entry: TranscriptEntry) -> None:
        self.entries.append(entry)
        if self.sink is not None:
            self.sink(entry)

    def command(self, result: CommandResult) -> None:
        """Record a command that finished (whatever its exit status)."""
        self._add(
            TranscriptEntry(
                at=datetime.now(UTC),
                argv=result.argv,
                returncode=result.returncode,
                output=result.output,
                duration_s=result.duration_s,
            )
        )

    def failure(self, error: CommandError) -> None:
        """Record a command that failed or timed out."""
        self._add(
            TranscriptEntry(
                at=datetime.now(UTC),
                argv=error.argv,
                returncode=error.returncode,
                output=error.output,
            )
        )

    def note(self, text: str) -> None:
        """Record something patchd decided or observed between commands."""
        self._add(TranscriptEntry(at=datetime.now(UTC), argv=(), returncode=None, output=text))
