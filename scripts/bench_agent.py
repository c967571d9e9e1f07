"""The agent's costs, for ``make bench``: idle memory, idle CPU, and CPU per cycle.

- idle RSS ÷ the RSS of a Python process that imports only the modules the agent has
  loaded that are not patchd's own (its dependencies, third-party and standard library,
  as it uses them): target ≤ 1.15;
- idle CPU over 60 s, as a share of one core: target ≤ 0.1 %;
- the agent's own CPU per cycle ÷ the CPU of the package manager it drives (the cycle's
  worker reports both; steady-state cycles, once a cycle reads no more changelogs):
  target ≤ 0.1.

The agent runs on this host with no policy (it only scans: nothing is changed) and a
state directory of its own.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import sqlite3
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import psutil

IDLE_SECONDS = 60
CYCLES = 5  # measured, after WARM_CYCLES
WARM_CYCLES = 2  # at least; then until a cycle adds no advisory (changelogs read)
MAX_WARM_CYCLES = 30
WAIT_S = 300
_CYCLE = re.compile(r"cycle done: patchd used ([\d.]+) s of CPU, the package managers ([\d.]+) s")


def advisories_recorded(state_db: Path) -> int:
    """How many update versions patchd has read advisories for (its state database).

    Each scan reads changelogs for a bounded time, so the first scans of a host with many
    updates fill this cache; after that a scan reads none, as an agent's scans do.
    """
    with contextlib.closing(sqlite3.connect(f"file:{state_db}?mode=ro", uri=True)) as db:
        (count,) = db.execute("SELECT COUNT(*) FROM advisories").fetchone()
    return int(count)


def _dependency_modules(python: str) -> list[str]:
    """Every module an agent process has loaded that is not patchd's own.

    Its dependencies, third-party and standard library alike, as it uses them: the
    baseline process imports exactly these, so the ratio measures patchd's own code and
    data.
    """
    code = (
        "import importlib, sys\n"
        "import patchd.agent.service, patchd.cli.main, patchd.backends.apt.backend\n"
        "for name in patchd.agent.service.PRELOADED:\n"
        "    importlib.import_module(name)\n"
        "print('\\n'.join(sorted(m for m in sys.modules\n"
        "                     if m.split('.')[0] != 'patchd' and m != '__main__')))\n"
    )
    out = subprocess.run([python, "-c", code], capture_output=True, text=True, check=True).stdout
    return out.split()


def _baseline_rss(python: str, modules: list[str]) -> int:
    code = (
        "import importlib, os, psutil\n"
        f"for m in {modules!r}:\n"
        "    try:\n        importlib.import_module(m)\n    except Exception:\n        pass\n"
        "print(psutil.Process(os.getpid()).memory_info().rss)\n"
    )
    return int(
        subprocess.run([python, "-c", code], capture_output=True, text=True, check=True).stdout
    )


def measure(bindir: Path) -> list[tuple[str, float, float, float, str]]:
    """Rows of (what, measured, limit, ratio, target)."""
    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "agent.yaml"
        config.write_text("agent: {scan_interval: 7d, refresh: false}\n")
        notify_path = Path(tmp) / "notify"
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        listener.bind(str(notify_path))
        listener.settimeout(WAIT_S)
        agent = subprocess.Popen(
            [
                str(bindir / "patchd"),
                "--config",
                str(config),
                "--state-dir",
                f"{tmp}/state",
                "agent",
            ],
            env={**os.environ, "NOTIFY_SOCKET": str(notify_path)},
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            own: list[float] = []
            managers: list[float] = []
            warming, warm, recorded = True, 0, -1
            assert agent.stderr is not None
            for line in agent.stderr:
                match = _CYCLE.search(line)
                if match is None:
                    continue
                if warming:  # until a cycle adds no advisory to the cache
                    warm += 1
                    now = advisories_recorded(Path(tmp) / "state" / "state.db")
                    steady = warm >= WARM_CYCLES and now == recorded
                    recorded = now
                    warming = not steady and warm < MAX_WARM_CYCLES
                else:
                    own.append(float(match[1]))
                    managers.append(float(match[2]))
                    if len(own) == CYCLES:
                        break
                agent.send_signal(signal.SIGHUP)  # reload: plan again at once
            while b"next cycle" not in listener.recv(4096):  # the loop is idle again
                pass
            process = psutil.Process(agent.pid)
            rss = process.memory_info().rss
            before = process.cpu_times()
            time.sleep(IDLE_SECONDS)
            after = process.cpu_times()
        finally:
            agent.send_signal(signal.SIGTERM)
            agent.wait(timeout=WAIT_S)
            listener.close()
    python = str(bindir / "python")
    baseline = _baseline_rss(python, _dependency_modules(python))
    idle_cpu = (after.user + after.system - before.user - before.system) / IDLE_SECONDS
    own_cycle = statistics.median(own)
    manager_cycle = statistics.median(managers)
    return [
        ("agent idle RSS vs its dependencies", rss / 2**20, baseline / 2**20, rss / baseline, "<= 1.15"),
        ("agent idle CPU share of a core (60 s)", idle_cpu * 100, 100.0, idle_cpu, "<= 0.001"),
        ("agent CPU per cycle vs package manager", own_cycle, manager_cycle, own_cycle / manager_cycle,
         "<= 0.1"),
    ]  # fmt: skip
