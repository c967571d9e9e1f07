"""``make bench``: the collector's ingest of signed reports from a simulated fleet.

The fleet (``bench_fleet.py``): endpoints with their own Ed25519 keys, enrolled with one
multi-use token, each signing real ~4 KiB reports; everything is signed before timing.
The collector is the real ``patchd collector serve`` on 127.0.0.1 with a SQLite file
(FULL sync: a 202 means on disk). The load generator (``bench_loadgen.py``) sends the
pre-built requests from separate processes over raw sockets.

For one worker and then two (``--workers 2``), on a fresh copy of the enrolled database:

- **sustained**: the steady fleet's reports, staggered over many persistent connections
  (each endpoint's reports in order), as fast as the collector answers: reports/s, p50/p99;
- **burst**: 10,000 further endpoints each open their own connection and send one report,
  all at once: p50/p99 from the connect to the answer.

Afterwards the database is read: **lost** = sent - stored, **rejected** = answers other than
202 plus requests never answered; both must be 0. The raw Ed25519 verify rate of the same
signed messages is measured on the core the one-worker collector is pinned to, just before
and just after its run, and the ingest rate is given as a ratio of it.

Then, unless ``--no-postgres``, both configurations again on a throwaway PostgreSQL cluster
(durable commits; the enrolled fleet copied in): on SQLite the workers' writers take turns
on one file, on PostgreSQL they write in parallel, so this is the fairer two-worker figure.

Cores (the machine has two): one worker runs on CPU 0 and the generator on CPU 1; two
workers share both CPUs with the generator, whose CPU time is reported alongside. Targets:
one worker at least 0.5 x the verify rate; two workers at least 1.8 x one; under the burst p99 at most 10 x p50;
nothing lost or rejected.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import json
import multiprocessing
import os
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import psutil
from bench_fleet import FleetEndpoint, enrol, new_fleet, sign_reports
from bench_loadgen import DEADLINE_S, PhaseResult, burst, sustained

from patchd.collector.store import database_url
from patchd.signing.dsse import pae
from tests.support.collector import (
    Postgres,
    free_port,
    have_postgres,
    postgres_cluster,
    wait_until_up,
)

STEADY_ENDPOINTS = 2000
REPORTS_EACH = 8  # per steady endpoint, seq 1..N
BURST_ENDPOINTS = 10_000
CONNECTIONS = 128  # persistent connections in the sustained phase, over all generators
GENERATORS = 2  # load generator processes
VERIFY_SECONDS = 2.0
STOP_TIMEOUT_S = 60.0
STARTUP_TIMEOUT_S = 120.0
ONE_WORKER_TARGET = 0.5  # x the verify rate
TWO_WORKER_TARGET = 1.8  # x one worker
TAIL_TARGET = 10.0  # p99 / p50 under the burst
WORKER_CPU = 0
GENERATOR_CPU = 1
SCRIPTS = Path(__file__).resolve().parent
CEILINGS = {
    "http": "HTTP only (read, answer 202)",
    "check": "check only (verify_report, no storing)",
}

_fork = multiprocessing.get_context("fork")


@dataclass
class Row:
    """One printed line: a figure, the limit it is compared with, and the verdict."""

    what: str
    measured: str
    limit: str
    ratio: float | None
    target: str
    passed: bool | None  # None: information only


@dataclass
class Phase:
    """A phase's merged results over every generator process."""

    sent: int
    result: PhaseResult
    collector_cpu_s: float

    @property
    def wall_s(self) -> float:
        return self.result.finished - self.result.started

    @property
    def rate(self) -> float:
        return len(self.result.latencies) / self.wall_s

    def percentile(self, p: float) -> float:
        ordered = sorted(self.result.latencies)
        return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]

    @property
    def rejected(self) -> int:
        return (
            sum(n for status, n in self.result.statuses.items() if status != 202)
            + self.result.errors
        )


@dataclass
class Run:
    """One collector configuration: its phases and what its database holds afterwards."""

    workers: int
    steady: Phase
    burst: Phase
    stored: int
    verify_rates: tuple[VerifyRate, VerifyRate]  # just before and just after, on the worker's core
    database: str = "SQLite"


# -- the raw verify rate ------------------------------------------------------------------


@dataclass(frozen=True)
class VerifyRate:
    """Verifies per second of wall time, and per second of the verifying process's CPU."""

    wall: float
    cpu: float


def _verify_child(samples: list[tuple[bytes, bytes, bytes]], cpu: int, out: Connection) -> None:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    os.sched_setaffinity(0, {cpu})
    keys = [(Ed25519PublicKey.from_public_bytes(k), s, m) for k, s, m in samples]
    count, started, cpu0 = 0, time.perf_counter(), time.process_time()
    while time.perf_counter() - started < VERIFY_SECONDS:
        for key, sig, message in keys:
            key.verify(sig, message)
        count += len(keys)
    out.send(
        VerifyRate(count / (time.perf_counter() - started), count / (time.process_time() - cpu0))
    )


def verify_rate(samples: list[tuple[bytes, bytes, bytes]], cpu: int) -> VerifyRate:
    """Ed25519 verifies of the fleet's own signed messages on ``cpu``, alone in a process."""
    receiver, sender = _fork.Pipe(duplex=False)
    child = _fork.Process(target=_verify_child, args=(samples, cpu, sender))
    child.start()
    rate: VerifyRate = receiver.recv()
    child.join()
    return rate


def verify_samples(
    fleet: Sequence[FleetEndpoint], count: int = 64
) -> list[tuple[bytes, bytes, bytes]]:
    """(raw public key, signature, DSSE PAE message) of real reports from the fleet."""
    samples = []
    for endpoint in fleet[:count]:
        envelope = json.loads(endpoint.requests[0].split(b"\r\n\r\n", 1)[1])
        payload = base64.b64decode(envelope["payload"])
        sig = base64.b64decode(envelope["signatures"][0]["sig"])
        raw_key = base64.b64decode(endpoint.sim.public_key)
        samples.append((raw_key, sig, pae(envelope["payloadType"], payload)))
    return samples


# -- the fleet ------------------------------------------------------------------------------


def _sign_child(
    fleet: Sequence[FleetEndpoint], chunk: range, reports_each: int, out: Connection
) -> None:
    part = [fleet[i] for i in chunk]
    sign_reports(part, reports_each, seed=chunk.start)
    out.send([e.requests for e in part])


def sign_in_parallel(fleet: Sequence[FleetEndpoint], reports_each: int) -> None:
    """Sign every endpoint's reports, spread over the cores (setup, not measured)."""
    step = -(-len(fleet) // (os.cpu_count() or 1))
    children = []
    for start in range(0, len(fleet), step):
        receiver, sender = _fork.Pipe(duplex=False)
        chunk = range(start, min(start + step, len(fleet)))
        child = _fork.Process(target=_sign_child, args=(fleet, chunk, reports_each, sender))
        child.start()
        children.append((child, receiver, chunk))
    for child, receiver, chunk in children:
        for i, requests in zip(chunk, receiver.recv(), strict=True):
            fleet[i].requests = requests
        child.join()


# -- the collector ----------------------------------------------------------------------------


def start_collector(
    python: str, work: Path, db: str, workers: int, cpus: set[int]
) -> tuple[subprocess.Popen[bytes], int]:
    """``patchd collector serve`` on loopback, pinned to ``cpus``; returns it and its port."""
    token_file = work / "admin.token"
    if not token_file.exists():
        token_file.write_text(os.urandom(24).hex() + "\n")
        token_file.chmod(0o600)
    port = free_port()
    log = work / f"collector-{workers}.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [python, "-m", "patchd", "collector", "serve", "--db", db, "--listen", f"127.0.0.1:{port}",
             "--workers", str(workers), "--admin-token-file", str(token_file)],
            stdout=out, stderr=subprocess.STDOUT, cwd=work,
        )  # fmt: skip
    os.sched_setaffinity(process.pid, cpus)  # before it starts its workers: they inherit it
    try:
        wait_until_up(f"http://127.0.0.1:{port}", process, log)
        wait_for_workers(process, log, workers)
    except BaseException:
        stop_collector(process)
        raise
    return process, port


def start_ceiling(python: str, work: Path, app: str, keys: Path, cpus: set[int]
                  ) -> tuple[subprocess.Popen[bytes], int]:  # fmt: skip
    """``bench_ceiling_app`` (``app``: http or check) under uvicorn, configured as the
    collector's server is, on loopback, pinned to ``cpus``."""
    from patchd.cli.commands.collector import LISTEN_BACKLOG, MAX_CONNECTIONS

    port = free_port()
    log = work / f"ceiling-{app}.log"
    env = {**os.environ, "PATCHD_BENCH_APP": app, "PATCHD_BENCH_KEYS": str(keys),
           "PYTHONPATH": os.pathsep.join(filter(None, [str(SCRIPTS), os.environ.get("PYTHONPATH")]))}  # fmt: skip
    with log.open("wb") as out:
        process = subprocess.Popen(
            [python, "-m", "uvicorn", "--factory", "bench_ceiling_app:create", "--host", "127.0.0.1",
             "--port", str(port), "--no-access-log", "--no-server-header", "--timeout-keep-alive", "30",
             "--limit-concurrency", str(MAX_CONNECTIONS), "--backlog", str(LISTEN_BACKLOG)],
            stdout=out, stderr=subprocess.STDOUT, cwd=work, env=env,
        )  # fmt: skip
    os.sched_setaffinity(process.pid, cpus)
    try:
        wait_until_up(f"http://127.0.0.1:{port}", process, log)
    except BaseException:
        stop_collector(process)
        raise
    return process, port


def wait_for_workers(process: subprocess.Popen[bytes], log: Path, workers: int) -> None:
    """Until every worker has started: the first one up would otherwise accept every
    connection the sustained phase opens, and the others would sit idle."""
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while log.read_text(errors="replace").count("Application startup complete") < workers:
        if process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"the collector's {workers} worker(s) did not all start; see {log}")
        time.sleep(0.1)


def stop_collector(process: subprocess.Popen[bytes]) -> None:
    """Stop the collector this bench started (its workers follow their parent)."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def collector_cpu(process: subprocess.Popen[bytes]) -> float:
    """CPU seconds used so far by the collector and its worker processes."""
    root = psutil.Process(process.pid)
    total = 0.0
    for p in [root, *root.children(recursive=True)]:
        try:
            times = p.cpu_times()
        except psutil.NoSuchProcess:
            continue
        total += times.user + times.system
    return total


# -- phases ---------------------------------------------------------------------------------


def run_phase(process: subprocess.Popen[bytes], port: int, kind: str,
              work: Sequence[Any], cpus: set[int]) -> Phase:  # fmt: skip
    """Run ``work`` split over :data:`GENERATORS` processes started together."""
    go = _fork.Event()
    children = []
    for part in range(GENERATORS):
        receiver, sender = _fork.Pipe(duplex=False)
        target = sustained if kind == "sustained" else burst
        child = _fork.Process(target=target, args=(port, work[part::GENERATORS], cpus, go, sender))
        child.start()
        children.append((child, receiver))
    merged = PhaseResult(statuses=Counter(), started=float("inf"))
    try:
        time.sleep(1.0)  # the sustained generators open their connections first
        cpu_before = collector_cpu(process)
        go.set()
        for _, receiver in children:
            if not receiver.poll(DEADLINE_S + 30):
                raise RuntimeError(f"a {kind} load generator did not finish")
            _merge(merged, receiver.recv())
    finally:
        for child, _ in children:  # only the generators this phase started
            child.join(timeout=STOP_TIMEOUT_S)
            if child.is_alive():
                child.terminate()
                child.join()
    sent = sum(len(q) for q in work) if kind == "sustained" else len(work)
    return Phase(sent, merged, collector_cpu(process) - cpu_before)


def _merge(merged: PhaseResult, part: PhaseResult) -> None:
    merged.latencies += part.latencies
    merged.statuses.update(part.statuses)
    merged.errors += part.errors
    merged.started = min(merged.started, part.started)
    merged.finished = max(merged.finished, part.finished)
    merged.cpu_s += part.cpu_s


def stored_reports(db: str) -> int:
    if "://" not in db:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
            return int(conn.execute("SELECT count(*) FROM reports").fetchone()[0])
    from sqlalchemy import create_engine, text

    from patchd.collector.store import database_url

    engine = create_engine(database_url(db))
    try:
        with engine.connect() as conn:
            return int(conn.execute(text("SELECT count(*) FROM reports")).scalar_one())
    finally:
        engine.dispose()


class Databases:
    """A fresh copy of the enrolled fleet's database for each configuration."""

    def __init__(self, work: Path, enrolled: Path, cluster: Postgres | None = None) -> None:
        self.work, self.enrolled, self.cluster = work, enrolled, cluster
        if cluster is not None:
            _copy_enrolment(enrolled, cluster.create_database("enrolled"))

    @property
    def name(self) -> str:
        return "SQLite" if self.cluster is None else "PostgreSQL"

    def fresh(self, workers: int) -> str:
        if self.cluster is None:
            db = self.work / f"collector-{workers}w.db"
            shutil.copyfile(self.enrolled, db)
            return str(db)
        return self.cluster.create_database(f"collector_{workers}w", template="enrolled")


def _copy_enrolment(enrolled: Path, url: str) -> None:
    """The enrolled SQLite database's tokens and endpoints, into a new PostgreSQL database
    (the reports are signed with the endpoint ids the SQLite enrolment gave)."""
    from sqlalchemy import create_engine, select

    from patchd.collector.schema import endpoints, enrolment_tokens
    from patchd.collector.store import CollectorStore

    CollectorStore(url).close()  # the schema
    source, target = create_engine(f"sqlite:///{enrolled}"), create_engine(database_url(url))
    try:
        with source.connect() as read, target.begin() as write:
            for table in (enrolment_tokens, endpoints):
                rows = [dict(r._mapping) for r in read.execute(select(table))]
                write.execute(table.insert(), rows)
    finally:
        source.dispose()
        target.dispose()


def run_configuration(python: str, work: Path, databases: Databases, workers: int, *,
                      steady: Sequence[FleetEndpoint], bursting: Sequence[FleetEndpoint],
                      samples: list[tuple[bytes, bytes, bytes]]) -> Run:  # fmt: skip
    db = databases.fresh(workers)
    if workers == 1:
        server_cpus, generator_cpus = {WORKER_CPU}, {GENERATOR_CPU}
    else:
        server_cpus = generator_cpus = {WORKER_CPU, GENERATOR_CPU}
    before = verify_rate(samples, WORKER_CPU)
    process, port = start_collector(python, work, db, workers, server_cpus)
    try:
        queues = _interleave(steady, CONNECTIONS)
        steady_phase = run_phase(process, port, "sustained", queues, generator_cpus)
        burst_phase = run_phase(
            process, port, "burst", [e.requests[0] for e in bursting], generator_cpus
        )
    finally:
        stop_collector(process)
    after = verify_rate(samples, WORKER_CPU)
    return Run(
        workers, steady_phase, burst_phase, stored_reports(db), (before, after), databases.name
    )


@dataclass
class Ceiling:
    """One ceiling app's sustained phase (see ``bench_ceiling_app.py``)."""

    app: str
    steady: Phase
    verify_rates: tuple[VerifyRate, VerifyRate]

    @property
    def ratio(self) -> float:
        """Reports per CPU-second of the server, as a fraction of verifies per CPU-second."""
        verify_cpu = statistics.mean(r.cpu for r in self.verify_rates)
        return self.steady.sent / self.steady.collector_cpu_s / verify_cpu


def run_ceiling(python: str, work: Path, app: str, keys: Path, *,
                steady: Sequence[FleetEndpoint], samples: list[tuple[bytes, bytes, bytes]]) -> Ceiling:  # fmt: skip
    """The steady fleet's reports against a ceiling app, as the one-worker collector gets them."""
    before = verify_rate(samples, WORKER_CPU)
    process, port = start_ceiling(python, work, app, keys, {WORKER_CPU})
    try:
        phase = run_phase(
            process, port, "sustained", _interleave(steady, CONNECTIONS), {GENERATOR_CPU}
        )
    finally:
        stop_collector(process)
    if phase.rejected:
        raise RuntimeError(f"the {app} ceiling app refused {phase.rejected} reports; see {work}")
    return Ceiling(app, phase, (before, verify_rate(samples, WORKER_CPU)))


def ceiling_rows(ceilings: Sequence[Ceiling], one: Run) -> list[Row]:
    """Information: what the server alone, and the check alone, reach per CPU-second."""
    verify_cpu = statistics.mean(r.cpu for r in one.verify_rates)
    patchd = one.steady.sent / one.steady.collector_cpu_s / verify_cpu
    result = []
    for ceiling in ceilings:
        per_cpu = ceiling.steady.sent / ceiling.steady.collector_cpu_s
        verify = statistics.mean(r.cpu for r in ceiling.verify_rates)
        result.append(Row(f"ceiling, {CEILINGS[ceiling.app]}", f"{per_cpu:.0f}", f"{verify:.0f}",
                          ceiling.ratio, "(info)", None))  # fmt: skip
    check = next(c for c in ceilings if c.app == "check")
    result.append(Row("1 worker vs the check-only ceiling", f"{patchd:.2f}", f"{check.ratio:.2f}",
                      patchd / check.ratio, "(info)", None))  # fmt: skip
    return result


def _interleave(steady: Sequence[FleetEndpoint], connections: int) -> list[list[bytes]]:
    """One queue per connection, in rounds: its endpoints' seq 1, then their seq 2, ...

    An endpoint's reports stay on one connection, in order; consecutive requests come
    from different endpoints, as a staggered fleet's do.
    """
    per_connection: list[list[list[bytes]]] = [[] for _ in range(connections)]
    for i, endpoint in enumerate(steady):
        per_connection[i % connections].append(endpoint.requests)
    result = []
    for endpoints in per_connection:
        rounds = max((len(r) for r in endpoints), default=0)
        result.append([r[n] for n in range(rounds) for r in endpoints if n < len(r)])
    return result


# -- report ---------------------------------------------------------------------------------


def rows(one: Run, two: Run) -> list[Row]:
    """The figures, each against the limit measured in the same run."""
    verify = statistics.mean(r.wall for r in one.verify_rates)
    verify_cpu = statistics.mean(r.cpu for r in one.verify_rates)
    ratio_one = one.steady.rate / verify
    per_cpu = one.steady.sent / one.steady.collector_cpu_s
    ratio_cpu = per_cpu / verify_cpu
    scaling = two.steady.rate / one.steady.rate
    on = "" if one.database == "SQLite" else f"{one.database}, "
    result = [
        Row(f"{on}1 worker: reports/s vs verify/s", f"{one.steady.rate:.0f}/s", f"{verify:.0f}/s",
            ratio_one, f">= {ONE_WORKER_TARGET}", ratio_one >= ONE_WORKER_TARGET),
        Row(f"{on}1 worker, per CPU-second: reports vs verifies", f"{per_cpu:.0f}", f"{verify_cpu:.0f}",
            ratio_cpu, f">= {ONE_WORKER_TARGET}", ratio_cpu >= ONE_WORKER_TARGET),
        Row(f"{on}2 workers vs 1 worker: reports/s", f"{two.steady.rate:.0f}/s", f"{one.steady.rate:.0f}/s",
            scaling, f">= {TWO_WORKER_TARGET}", scaling >= TWO_WORKER_TARGET),
    ]  # fmt: skip
    for run in (one, two):
        p50, p99 = run.burst.percentile(50), run.burst.percentile(99)
        tail = p99 / p50
        result.append(Row(f"{on}burst of {run.burst.sent:,}, {run.workers} worker(s): p99 vs p50", f"{p99 * 1000:.0f}ms",
                          f"{p50 * 1000:.0f}ms", tail, f"<= {TAIL_TARGET:g}", tail <= TAIL_TARGET))  # fmt: skip
    for run in (one, two):
        sent = run.steady.sent + run.burst.sent
        lost = sent - run.stored
        rejected = run.steady.rejected + run.burst.rejected
        result.append(Row(f"{on}{run.workers} worker(s): lost (sent - stored)", str(lost), f"{sent} sent", None,
                          "== 0", lost == 0))  # fmt: skip
        result.append(Row(f"{on}{run.workers} worker(s): rejected (non-202)", str(rejected), f"{sent} sent", None,
                          "== 0", rejected == 0))  # fmt: skip
    return result


def notes(one: Run, two: Run) -> list[str]:
    """What a reader needs to judge the figures: latencies, CPU used, contention."""
    lines = []
    for run in (one, two):
        for name, phase in (("sustained", run.steady), ("burst", run.burst)):
            lines.append(
                f"{run.database} {run.workers}w {name}: {phase.sent} reports in {phase.wall_s:.2f}s = {phase.rate:.0f}/s, "
                f"p50 {phase.percentile(50) * 1000:.1f}ms p99 {phase.percentile(99) * 1000:.1f}ms; "
                f"collector CPU {phase.collector_cpu_s / phase.wall_s:.2f} cores, "
                f"generator CPU {phase.result.cpu_s / phase.wall_s:.2f} cores; "
                f"statuses {dict(sorted(phase.result.statuses.items()))}, no answer {phase.result.errors}"
            )
        before, after = run.verify_rates
        lines.append(f"{run.database} {run.workers}w: verify/s on CPU {WORKER_CPU} before {before.wall:.0f} "
                     f"({before.cpu:.0f} per CPU-second), after {after.wall:.0f} ({after.cpu:.0f}); "
                     f"{run.stored} reports stored")  # fmt: skip
    load = os.getloadavg()
    lines.append(f"load average at the end: {load[0]:.2f} on {os.cpu_count()} CPUs; wall-clock rates "
                 "fall with other work on the machine, per-CPU-second ones much less")  # fmt: skip
    return lines


def print_rows(found: Sequence[Row]) -> None:
    print(
        f"{'collector benchmark':<46}{'patchd':>10}{'limit':>14}{'ratio':>8}{'target':>9}  verdict"
    )
    for row in found:
        ratio = f"{row.ratio:.2f}" if row.ratio is not None else "-"
        verdict = "" if row.passed is None else ("PASS" if row.passed else "FAIL")
        print(
            f"{row.what:<46}{row.measured:>10}{row.limit:>14}{ratio:>8}{row.target:>9}  {verdict}"
        )


def measure(python: str = sys.executable, *, steady_endpoints: int = STEADY_ENDPOINTS,
            reports_each: int = REPORTS_EACH, burst_endpoints: int = BURST_ENDPOINTS,
            postgres: bool = False) -> tuple[list[Row], list[str]]:  # fmt: skip
    """Run the whole benchmark with ``python`` (which must have patchd[collector]); rows and notes."""
    with tempfile.TemporaryDirectory(prefix="patchd-bench-collector-") as tmp:
        work = Path(tmp)
        steady = new_fleet(steady_endpoints, "steady")
        bursting = new_fleet(burst_endpoints, "burst")
        enrolled = work / "enrolled.db"
        enrol(str(enrolled), [*steady, *bursting])
        sign_in_parallel(steady, reports_each)
        sign_in_parallel(bursting, 1)
        samples = verify_samples(steady)
        found: tuple[list[Row], list[str]] = ([], [])
        keys = work / "keys.json"
        keys.write_text(json.dumps([[e.sim.endpoint_id, e.sim.public_key] for e in steady]))
        ceilings = [run_ceiling(python, work, app, keys, steady=steady, samples=samples)
                    for app in CEILINGS]  # fmt: skip
        with contextlib.ExitStack() as stack:
            every = [Databases(work, enrolled)]
            if postgres:
                every.append(
                    Databases(work, enrolled, stack.enter_context(postgres_cluster(durable=True)))
                )
            for databases in every:
                one, two = (
                    run_configuration(python, work, databases, workers, steady=steady, bursting=bursting,
                                      samples=samples)
                    for workers in (1, 2)
                )  # fmt: skip
                found[0].extend(rows(one, two))
                if databases.cluster is None:
                    found[0].extend(ceiling_rows(ceilings, one))
                found[1].extend(notes(one, two))
    return found


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument(
        "--python", default=sys.executable, help="an interpreter with patchd[collector]"
    )
    parser.add_argument("--endpoints", type=int, default=STEADY_ENDPOINTS, help="steady fleet size")
    parser.add_argument("--reports-each", type=int, default=REPORTS_EACH)
    parser.add_argument("--burst", type=int, default=BURST_ENDPOINTS, help="endpoints in the burst")
    parser.add_argument("--postgres", action=argparse.BooleanOptionalAction, default=None,
                        help="also run both configurations on a throwaway PostgreSQL cluster "
                             "(default: when root with Debian's postgresql installed; always in CI)")  # fmt: skip
    args = parser.parse_args(argv)
    if len(os.sched_getaffinity(0)) < 2:
        print(
            "bench: the collector benchmark needs two CPUs (one for the collector, one for the load)"
        )
        return 1
    postgres = args.postgres
    if postgres is None:
        postgres = os.environ.get("CI") == "true" or (os.geteuid() == 0 and have_postgres())
    if postgres and not (os.geteuid() == 0 and have_postgres()):
        print(
            "bench: the PostgreSQL run needs root, runuser and Debian's postgresql (or --no-postgres)"
        )
        return 1
    started = time.monotonic()
    found, extra = measure(args.python, steady_endpoints=args.endpoints, reports_each=args.reports_each,
                           burst_endpoints=args.burst, postgres=postgres)  # fmt: skip
    print_rows(found)
    for line in extra:
        print(f"  {line}")
    print(f"  (collector benchmark: {time.monotonic() - started:.0f}s in all)")
    return 0 if all(r.passed is not False for r in found) else 1


if __name__ == "__main__":
    raise SystemExit(main())
