"""``make bench``: patchd's costs as ratios against limits measured in the same run.

- scan: the agent's scan ÷ ``apt list --upgradable`` on this host, wall times, medians
  of warm runs taken alternately (target ≤ 1.25). The agent's scan is measured as the
  agent runs it, a forked worker with a fresh session per cycle (scripts/bench_scan.py);
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
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from bench_agent import advisories_recorded
from bench_agent import measure as measure_agent
from bench_scan import measure_agent_scan

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

    ok = agent.worker_ratio <= SCAN_TARGET
    agent_listing = statistics.median(agent.listing_s)
    print(f"{'benchmark':<44}{'patchd':>10}{'limit':>10}{'ratio':>8}{'target':>9}  verdict")
    print(
        f"{'agent scan vs apt list --upgradable':<44}{statistics.median(agent.worker_s):>9.3f}s"
        f"{agent_listing:>9.3f}s{agent.worker_ratio:>8.2f}{'<= ' + str(SCAN_TARGET):>9}  "
        f"{'PASS' if ok else 'FAIL'}"
    )
    print(
        f"{'agent, one session, vs apt list --upgradable':<44}"
        f"{statistics.median(agent.session_s):>9.3f}s{agent_listing:>9.3f}s"
        f"{agent.session_ratio:>8.2f}{'(info)':>9}"
    )
    scan_median, list_median = statistics.median(scan_s), statistics.median(list_s)
    print(
        f"{'patchd scan (CLI) vs apt list --upgradable':<44}{scan_median:>9.3f}s"
        f"{list_median:>9.3f}s{scan_median / list_median:>8.2f}{'(info)':>9}"
    )
    version, bare = statistics.median(version_s), statistics.median(bare_s)
    print(
        f"{'patchd --version vs python -c pass':<44}{version:>9.3f}s{bare:>9.3f}s"
        f"{version / bare:>8.2f}{'(info)':>9}"
    )
    all_ok = ok
    for what, measured, limit, agent_ratio, target in measure_agent(bindir):
        passed = agent_ratio <= float(target.removeprefix("<= "))
        all_ok = all_ok and passed
        print(f"{what:<44}{measured:>10.3f}{limit:>10.3f}{agent_ratio:>8.3f}{target:>9}  "
              f"{'PASS' if passed else 'FAIL'}")  # fmt: skip
    print(
        f"(medians of {RUNS} alternating warm runs; start-up over {STARTUP_RUNS} runs; "
        f"agent scan runs: {', '.join(f'{s:.3f}' for s in agent.worker_s)}; "
        f"one session: {', '.join(f'{s:.3f}' for s in agent.session_s)}; "
        f"apt runs: {', '.join(f'{s:.3f}' for s in agent.listing_s)}; "
        f"CLI scan runs: {', '.join(f'{s:.3f}' for s in scan_s)}; "
        f"apt runs alongside the CLI: {', '.join(f'{s:.3f}' for s in list_s)}; "
        "agent rows: MiB, % of a core, "
        "CPU seconds per cycle)"
    )
    return 0 if all_ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
