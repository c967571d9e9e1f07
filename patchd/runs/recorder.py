"""Bookkeeping shared by every run: transcript, verdicts, and a final status whatever happens."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

from patchd.backends.base import ChangeResult, Outcome, TransactionResult
from patchd.errors import PatchdError
from patchd.paths import run_dir
from patchd.session import Session
from patchd.timeutil import format_time
from patchd.transcript import Transcript, TranscriptEntry


def run_status(results: Sequence[ChangeResult]) -> str:
    """``succeeded`` when every change landed, ``failed`` when none did, else ``partial``."""
    done = sum(r.outcome is Outcome.DONE for r in results)
    failed = sum(r.outcome is Outcome.FAILED for r in results)
    if failed == 0:
        return "succeeded"
    return "failed" if done == 0 else "partial"


@dataclass
class RunRecorder:
    """Records one run as it goes: every command, every verdict, every note."""

    session: Session
    run_id: str
    results: list[ChangeResult] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    stopped: bool = False
    final_status: str | None = None  # set by a run that decides its own (rolled-back, aborted)

    def __post_init__(self) -> None:
        self.transcript = Transcript(sink=self._keep)
        self._log = run_dir(self.session.state_dir, self.run_id) / "transcript.log"

    def _keep(self, entry: TranscriptEntry) -> None:
        """Every entry goes to the state database and to the run's plain-text transcript."""
        self.session.store.append_transcript(self.run_id, entry)
        self._log.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        with self._log.open("a", encoding="utf-8") as f:
            command = " ".join(entry.argv) if entry.argv else "(note)"
            status = "" if entry.returncode is None else f" -> exit {entry.returncode}"
            f.write(f"=== {format_time(entry.at)} {command}{status} ({entry.duration_s:.1f} s)\n")
            f.write(entry.output.rstrip("\n") + "\n")

    def stop(self, note: str) -> None:
        """Mark the run as deliberately stopped before its end."""
        self.stopped = True
        self.notes.append(note)

    def record(self, outcome: TransactionResult) -> None:
        """Keep a transaction's verdicts and notes."""
        self.session.store.record_results(self.run_id, outcome.results, self.session.clock())
        self.results.extend(outcome.results)
        self.notes.extend(outcome.notes)

    @contextmanager
    def finishing(self) -> Iterator[None]:
        """Give the run its final status on the way out: judged, failed or interrupted.

        An error stops the run (recorded as ``failed`` with the reason) and propagates;
        anything else that stops it (a signal, a bug) leaves it ``interrupted``.
        """
        store = self.session.store
        try:
            yield
        except PatchdError as e:
            self.notes.append(f"stopped: {e}")
            store.finish_run(
                self.run_id, self.final_status or "failed", self.notes, self.session.clock()
            )
            raise
        except BaseException:
            store.finish_run(self.run_id, "interrupted", self.notes, self.session.clock())
            raise
        status = self.final_status or ("interrupted" if self.stopped else run_status(self.results))
        store.finish_run(self.run_id, status, self.notes, self.session.clock())
