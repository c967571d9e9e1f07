"""``make bench``: patchd's costs as ratios against limits measured in the same run.

- scan: the agent's scan ÷ ``apt list --upgradable`` on this host, wall times, medians
  of warm runs taken alternately (target ≤ 1.25). The agent's scan is measured as the
  agent runs it, a forked worker with a new session per cycle (scripts/bench_scan.py);
  warm means until a scan adds no advisory to patchd's cache, as for an agent's later
  scans. The same scan in one kept session, and ``patchd scan`` from the command line
  (Python's start-up and imports included), are printed for information;
- start-up: ``patchd --version`` against a bare ``python -c pass`` of the same interpreter;
- the agent: idle memory, idle CPU and CPU per cycle (see ``bench_agent.py``).

patchd is measured as an administrator would run it: installed (not editable) in a
virtual environment of its own, built here from the working tree.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from bench_agent import advisories_recorded
from bench_agent import measure as measure_agent
from bench_scan import Row, measure_agent_scan, print_rows

REPO = Path(__file__).resolve().parent.parent
BENCH_VENV = REPO / ".stamps" / "bench-venv"
WARM_RUNS = 3
MAX_WARM_RUNS = 30
RUNS = 11
STARTUP_RUNS = 15
SCAN_TARGET = 1.25


def _install() -> Path:
    """A virtual environment with patchd installed from the working tree (not editable)."""
    python = BENCH_VENV / "bin" / "python"
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(BENCH_VENV)], check=True)
    subprocess.run(
        [
            str(python),
            "-m",
            "pip",
            "install",
            "--quiet",
            "--force-reinstall",
            "--no-deps",
            str(REPO),
        ],
        check=True,
        capture_output=True,
    )
    subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", str(REPO)], check=True, capture_output=True
    )
    return BENCH_VENV / "bin"


def _time(argv: Sequence[str], env: dict[str, str] | None = None) -> float:
    started = time.perf_counter()
    subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True, env=env)
    return time.perf_counter() - started


def main() -> int:
    if shutil.which("apt") is None:
        print("bench: apt is not installed; the scan benchmark needs a Debian-family host")
        return 1
    bindir = _install()
    patchd = str(bindir / "patchd")
    env = {**os.environ, "LC_ALL": "C"}
    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "agent.yaml"
        config.write_text("{}\n")
        scan = [patchd, "--config", str(config), "--state-dir", f"{tmp}/state", "scan", "--json"]
        listing = ["apt", "list", "--upgradable"]
        # Warm: apt's page cache, and patchd's advisory cache, which each scan fills for
        # at most ADVISORY_BUDGET_S (changelogs of downloaded .debs): an agent's scans
        # after the first few read none. Warm until a scan adds no advisory.
        recorded = -1
        for warm in range(MAX_WARM_RUNS):
            _time(scan, env)
            _time(listing, env)
            now = advisories_recorded(Path(tmp) / "state" / "state.db")
            if warm + 1 >= WARM_RUNS and now == recorded:
                break
            recorded = now
        scan_s, list_s = [], []
        for _ in range(RUNS):
            scan_s.append(_time(scan, env))
            list_s.append(_time(listing, env))
        agent = measure_agent_scan(
            bindir / "python", root=Path("/"), config=config, state_dir=Path(tmp) / "state",
            listing=listing, env=env,
        )  # fmt: skip
    version_s = [_time([patchd, "--version"]) for _ in range(STARTUP_RUNS)]
    bare_s = [_time([str(bindir / "python"), "-c", "pass"]) for _ in range(STARTUP_RUNS)]

    rows = [
        *agent.rows("apt list --upgradable"),
        Row("patchd scan (CLI) vs apt list --upgradable", scan_s, list_s),
        Row("patchd --version vs python -c pass", version_s, bare_s),
    ]
    ok = print_rows(rows, SCAN_TARGET)
    all_ok = ok
    for what, measured, limit, agent_ratio, target in measure_agent(bindir):
        passed = agent_ratio <= float(target.removeprefix("<= "))
        all_ok = all_ok and passed
        print(f"{what:<44}{measured:>10.3f}{limit:>10.3f}{agent_ratio:>8.3f}{target:>9}  "
              f"{'PASS' if passed else 'FAIL'}")  # fmt: skip
    print(
        f"(medians of {RUNS} alternating warm runs; start-up over {STARTUP_RUNS} runs; "
        + "; ".join(row.runs() for row in rows)
        + "; agent rows: MiB, % of a core, CPU seconds per cycle)"
    )
    return 0 if all_ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
