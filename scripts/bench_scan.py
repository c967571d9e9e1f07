"""The agent's scan, timed as the agent runs it, against the package manager's listing.

The issue's target — a scan costs at most 1.25 times the tool's own listing — is judged on
the agent's scan, because that is the scan an endpoint runs every cycle. The agent's
service (``patchd/agent/service.py``) has patchd imported once and its backends probed
(``_preload``); each cycle it forks a worker (``fork_worker``), which opens a new session
(``Session.renewed``: new backends, probed afresh, but the listings start first, through
the service's, and are taken over) and scans. So does this harness, in a child process
run with the bench venv's Python (patchd installed as an administrator would have it):
for each run it forks a worker that opens that session and calls ``scan(session)``, and
times it from the fork to the scan's end, its sightings committed. (The agent's worker
plans after the scan, then closes its session and exits: once a cycle, whatever the scan
cost. The time to the worker's exit is printed too, for information.) The listing
command runs alternately, in the same environment. For information it also times
``scan(session)`` in one ``Session`` kept across runs, in the child itself (what
``patchd agent --once`` and platforms without ``fork`` do); that session's database
connection stays open meanwhile, as the agent's service keeps its own.

``patchd scan`` from the command line pays Python's start-up and its imports on top
(~65 ms and ~300 ms here, more than ``pacman -Qu`` takes in all): the benches print that
row too, as information.

Used by scripts/bench.py (apt), scripts/bench_rpm.py (dnf, zypper) and
scripts/bench_pacman.py: ``measure_agent_scan(...)`` starts the child (this file, run
with ``--child``) and returns its figures.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from patchd.session import Session

WARM_RUNS = 3
MAX_WARM_RUNS = 30  # apt: until a scan adds no advisory (changelogs, read for a bounded time)
RUNS = 11
CHILD_TIMEOUT_S = 1800.0


@dataclass(frozen=True)
class AgentScan:
    """Seconds per run: the forked worker's scan, the same Session's, and the listing."""

    worker_s: list[float]
    exit_s: list[float]  # the same runs, to the worker's exit
    session_s: list[float]
    listing_s: list[float]
    updates: int

    def rows(self, listing: str) -> list[Row]:
        """The verdict row (the forked worker's scan), and for information the same to the
        worker's exit, and the scan in one kept session."""
        return [
            Row(f"agent scan vs {listing}", self.worker_s, self.listing_s, verdict=True),
            Row(f"agent, to the worker's exit, vs {listing}", self.exit_s, self.listing_s),
            Row(f"agent, one session, vs {listing}", self.session_s, self.listing_s),
        ]


@dataclass(frozen=True)
class Row:
    """One line of a scan bench's table: patchd's runs against the tool's."""

    what: str
    patchd_s: list[float]
    tool_s: list[float]
    verdict: bool = False  # False: printed for information

    @property
    def ratio(self) -> float:
        return statistics.median(self.patchd_s) / statistics.median(self.tool_s)

    def runs(self) -> str:
        return f"{self.what}: patchd runs {_runs(self.patchd_s)}; tool runs {_runs(self.tool_s)}"


def print_rows(rows: Sequence[Row], target: float, *, width: int = 44) -> bool:
    """Print the table (medians, the ratio, the verdict); True if every verdict passed."""
    all_ok = True
    print(f"{'benchmark':<{width}}{'patchd':>10}{'limit':>10}{'ratio':>8}{'target':>9}  verdict")
    for row in rows:
        if row.verdict:
            ok = row.ratio <= target
            all_ok = all_ok and ok
            limit, verdict = f"<= {target}", "PASS" if ok else "FAIL"
        else:
            limit, verdict = "(info)", ""
        print(
            f"{row.what:<{width}}{statistics.median(row.patchd_s):>9.3f}s"
            f"{statistics.median(row.tool_s):>9.3f}s{row.ratio:>8.2f}{limit:>9}  {verdict}"
        )
    return all_ok


def _runs(seconds: Sequence[float]) -> str:
    return ", ".join(f"{s:.3f}" for s in seconds)


def measure_agent_scan(
    python: Path,
    *,
    root: Path,
    config: Path,
    state_dir: Path,
    listing: Sequence[str],
    env: Mapping[str, str],
    listing_ok: Sequence[int] = (0,),
    expect: int | None = None,
) -> AgentScan:
    """Run the child with ``python`` and return its figures; exit if it fails.

    ``expect``: the number of updates the scan must find before anything is timed.
    """
    request = {
        "root": str(root),
        "config": str(config),
        "state_dir": str(state_dir),
        "listing": list(listing),
        "listing_ok": list(listing_ok),
        "expect": expect,
    }
    proc = subprocess.run(
        [str(python), __file__, "--child", json.dumps(request)],
        env=dict(env),
        capture_output=True,
        text=True,
        check=False,
        timeout=CHILD_TIMEOUT_S,
    )
    if proc.returncode != 0:
        raise SystemExit(f"bench: the agent scan's child failed: {proc.stderr.strip()[-2000:]}")
    found = json.loads(proc.stdout.strip().splitlines()[-1])
    return AgentScan(
        found["worker_s"], found["exit_s"], found["session_s"], found["listing_s"], found["updates"]
    )


# -- the child ----------------------------------------------------------------------------


class _Child:
    """The measuring process: patchd imported as the agent's service has it."""

    def __init__(self, request: dict[str, Any]) -> None:
        from patchd.config import load_config
        from patchd.target import Target

        self.config = load_config(Path(request["config"]))
        self.target = Target.at(request["root"])
        self.state_dir = Path(request["state_dir"])
        self.listing = [str(a) for a in request["listing"]]
        self.listing_ok = tuple(int(c) for c in request["listing_ok"])
        self.service = self.session()  # the service's own session, as the agent keeps it

    def session(self) -> Session:
        from patchd.session import Session

        return Session(self.config, self.target, self.state_dir)

    def worker_scan(self) -> tuple[float, float, int]:
        """A cycle's worker: ``fork_worker``, ``Session.renewed``, one scan.

        Seconds to the scan's end and to the worker's exit, and the updates found.

        Timed from the fork to ``scan`` returning, its sightings committed: the agent's
        worker goes on to plan (and closes its session, and exits) after the scan, once
        a cycle, whatever the scan found. ``time.perf_counter`` is the system's
        monotonic clock, the same in both processes.
        """
        from patchd.agent.service import fork_worker
        from patchd.scan import scan

        read_end, write_end = os.pipe()
        started = time.perf_counter()
        pid = fork_worker()
        if pid == 0:
            code = 1
            try:
                os.close(read_end)
                with self.service.renewed() as session:  # as the agent's worker opens it
                    found = len(scan(session).updates)
                    scanned = time.perf_counter()
                os.write(write_end, json.dumps([scanned, found]).encode())
                code = 0
            finally:
                os._exit(code)
        os.close(write_end)
        with os.fdopen(read_end, "rb") as pipe:
            answer = pipe.read(256)
        _, status = os.waitpid(pid, 0)
        exited = time.perf_counter()
        if status != 0 or not answer:
            raise SystemExit("bench: the scan's worker failed (run `patchd scan` to see why)")
        scanned, found = json.loads(answer)
        return scanned - started, exited - started, int(found)

    def run_listing(self) -> float:
        started = time.perf_counter()
        proc = subprocess.run(self.listing, capture_output=True, check=False, timeout=600)
        if proc.returncode not in self.listing_ok:
            raise SystemExit(
                f"bench: {self.listing[0]} failed ({proc.returncode}): {proc.stderr[-500:]!r}"
            )
        return time.perf_counter() - started

    def advisories_recorded(self) -> int:
        import sqlite3

        db = sqlite3.connect(f"file:{self.state_dir / 'state.db'}?mode=ro", uri=True)
        try:
            return int(db.execute("SELECT COUNT(*) FROM advisories").fetchone()[0])
        finally:
            db.close()

    def warm(self) -> None:
        """Until a scan adds no advisory to patchd's cache, as an agent's later cycles."""
        recorded = -1
        for warm in range(MAX_WARM_RUNS):
            self.worker_scan()
            self.run_listing()
            now = self.advisories_recorded()
            if warm + 1 >= WARM_RUNS and now == recorded:
                return
            recorded = now

    def measure(self) -> dict[str, list[float]]:
        from patchd.scan import scan

        worker_s, exit_s, session_s, listing_s = [], [], [], []
        with self.session() as session:
            scan(session)  # this Session's first scan probes and opens what it keeps
            for _ in range(RUNS):
                scanned, exited, _ = self.worker_scan()
                worker_s.append(scanned)
                exit_s.append(exited)
                listing_s.append(self.run_listing())
                started = time.perf_counter()
                scan(session)
                session_s.append(time.perf_counter() - started)
        return {
            "worker_s": worker_s,
            "exit_s": exit_s,
            "session_s": session_s,
            "listing_s": listing_s,
        }


def _child(request: dict[str, Any]) -> int:
    from patchd.agent.service import _preload

    child = _Child(request)
    _preload(child.service)  # as the agent's service does before its first cycle
    _, _, updates = child.worker_scan()
    if request["expect"] is not None and updates != request["expect"]:
        raise SystemExit(
            f"bench: the agent's scan found {updates} updates, expected {request['expect']}"
        )
    child.warm()
    print(json.dumps({**child.measure(), "updates": updates}))
    return 0


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--child":
        raise SystemExit(_child(json.loads(sys.argv[2])))
    raise SystemExit("usage: bench_scan.py --child REQUEST (started by the benches)")
