"""The RPM family's scan cost: ``patchd scan`` ÷ the package manager's own listing.

On an isolated root built from the test catalogue (tests/support/rpmcatalogue.py), for
each of dnf and zypper whose tool is installed: ``patchd --root R scan --json`` against
``dnf -C check-update`` (dnf on the metadata it has, as patchd's scan) and
``zypper --no-refresh list-updates`` on the same root, medians of warm runs taken
alternately (target ≤ 1.25, Python start-up included). ``main(bindir)`` measures the
patchd installed in ``bindir``; without it, patchd is installed as ``scripts/bench.py``
installs it (not editable, compiled, in ``.stamps/bench-venv``), as an administrator
would have it.
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

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.support.rpmcatalogue import (  # noqa: E402
    base_specs,
    build_rpm_catalogue,
    zypper_base_specs,
)
from tests.support.rpmroot import LEAP_OS_RELEASE, ROCKY_OS_RELEASE, RpmRoot  # noqa: E402

WARM_RUNS = 3
RUNS = 11
SCAN_TARGET = 1.25


def _time(argv: Sequence[str], env: dict[str, str], ok: Sequence[int] = (0,)) -> float:
    started = time.perf_counter()
    proc = subprocess.run(
        argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env, check=False, timeout=600
    )
    if proc.returncode not in ok:
        raise SystemExit(f"bench: {argv[0]} failed ({proc.returncode}): {proc.stderr[-500:]!r}")
    return time.perf_counter() - started


def _dnf_root(work: Path, repos: dict[str, Path]) -> tuple[RpmRoot, list[str]]:
    root = RpmRoot.create(work / "dnf-root", work / "dnf-home", os_release=ROCKY_OS_RELEASE)
    root.set_yum_repos(repos)
    root.dnf("install", *base_specs())
    listing = [
        "dnf", "-C", f"--installroot={root.path}", "--releasever=9",
        f"--setopt=reposdir={root.path}/etc/yum.repos.d", "--noplugins", "check-update",
    ]  # fmt: skip
    return root, listing


def _zypper_root(work: Path, repos: dict[str, Path]) -> tuple[RpmRoot, list[str]]:
    root = RpmRoot.create(work / "zypper-root", work / "zypper-home", os_release=LEAP_OS_RELEASE)
    root.set_zypp_repos(repos)
    root.zypper("refresh")
    root.zypper("install", *zypper_base_specs())
    listing = ["zypper", "--non-interactive", "--no-refresh", "--root", str(root.path), "lu"]
    return root, listing


def measure(
    bindir: Path | None = None,
) -> list[tuple[str, float, float, float, list[float], list[float]]]:
    """Rows of (what, patchd median s, tool median s, ratio, patchd runs, tool runs)."""
    if bindir is None:
        from bench import _install

        bindir = _install()
    patchd = [str(bindir / "patchd")]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        catalogue = build_rpm_catalogue(work / "catalogue")
        repos = dict(catalogue.repos)
        config = work / "agent.yaml"
        config.write_text("{}\n")
        builders = {"dnf": _dnf_root, "zypper": _zypper_root}
        for tool, build in builders.items():
            if shutil.which(tool) is None:
                print(f"bench: {tool} is not installed; its scan is not measured")
                continue
            root, listing = build(work, repos)
            env = {**os.environ, "LC_ALL": "C", **root.env}
            scan = [
                *patchd, "--root", str(root.path), "--config", str(config),
                "--state-dir", str(work / f"state-{tool}"), "scan", "--json",
            ]  # fmt: skip
            for _ in range(WARM_RUNS):
                _time(scan, env)
                _time(listing, env, ok=(0, 100))
            scan_s, list_s = [], []
            for _ in range(RUNS):
                scan_s.append(_time(scan, env))
                list_s.append(_time(listing, env, ok=(0, 100)))
            scan_median, list_median = statistics.median(scan_s), statistics.median(list_s)
            label = "dnf -C check-update" if tool == "dnf" else "zypper lu"
            rows.append(
                (
                    f"scan vs {label}",
                    scan_median,
                    list_median,
                    scan_median / list_median,
                    scan_s,
                    list_s,
                )
            )
    return rows


def main(bindir: Path | None = None) -> int:
    """Print one ratio line per RPM tool; exit status 1 if a target is missed."""
    rows = measure(bindir)
    all_ok = bool(rows)
    print(f"{'benchmark':<34}{'patchd':>10}{'limit':>10}{'ratio':>8}{'target':>9}  verdict")
    for what, scan_median, list_median, ratio, _, _ in rows:
        ok = ratio <= SCAN_TARGET
        all_ok = all_ok and ok
        print(
            f"{what:<34}{scan_median:>9.3f}s{list_median:>9.3f}s"
            f"{ratio:>8.2f}{'<= ' + str(SCAN_TARGET):>9}  {'PASS' if ok else 'FAIL'}"
        )
    for what, _, _, _, scan_s, list_s in rows:
        print(
            f"({what}: medians of {RUNS} alternating warm runs; patchd runs: "
            f"{', '.join(f'{s:.3f}' for s in scan_s)}; tool runs: "
            f"{', '.join(f'{s:.3f}' for s in list_s)})"
        )
    return 0 if all_ok else 1


if __name__ == "__main__":
    raise SystemExit(main(Path(sys.argv[1]) if len(sys.argv) > 1 else None))
