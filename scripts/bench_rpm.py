"""The RPM family's scan cost: ``patchd scan`` ÷ the package manager's own listing.

For each of dnf and zypper whose tool is installed: ``patchd --root R scan --json``
against ``dnf -C check-update`` (dnf on the metadata it has, as patchd's scan) and
``zypper --no-refresh list-updates`` on the same root, medians of warm runs taken
alternately (target ≤ 1.25, Python start-up included). The verdict is on a root of
realistic size (tests/support/rpmrealistic.py: 1,000 installed packages, repositories of
4,150, 150 updates with advisories; built once and cached under ``.stamps/``); the tiny
test catalogue (tests/support/rpmcatalogue.py) is measured too, for information: there
the tools answer in less time than any Python program takes to start.
``main(bindir)`` measures the patchd installed in ``bindir``; without it, patchd is
installed as ``scripts/bench.py`` installs it (not editable, compiled, in
``.stamps/bench-venv``), as an administrator would have it.
"""

from __future__ import annotations

import json
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
from tests.support.rpmrealistic import UPDATES, realistic_roots  # noqa: E402
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


def _dnf_listing(root: RpmRoot) -> list[str]:
    return [
        "dnf", "-C", f"--installroot={root.path}", "--releasever=9",
        f"--setopt=reposdir={root.path}/etc/yum.repos.d", "--noplugins", "check-update",
    ]  # fmt: skip


def _zypper_listing(root: RpmRoot) -> list[str]:
    return ["zypper", "--non-interactive", "--no-refresh", "--root", str(root.path), "lu"]


def _dnf_root(work: Path, repos: dict[str, Path]) -> RpmRoot:
    root = RpmRoot.create(work / "dnf-root", work / "dnf-home", os_release=ROCKY_OS_RELEASE)
    root.set_yum_repos(repos)
    root.dnf("install", *base_specs())
    return root


def _zypper_root(work: Path, repos: dict[str, Path]) -> RpmRoot:
    root = RpmRoot.create(work / "zypper-root", work / "zypper-home", os_release=LEAP_OS_RELEASE)
    root.set_zypp_repos(repos)
    root.zypper("refresh")
    root.zypper("install", *zypper_base_specs())
    return root


Row = tuple[str, float, float, float, list[float], list[float]]


def _measure_root(
    patchd: Sequence[str], tool: str, root: RpmRoot, work: Path, *, label: str, expect: int | None
) -> Row:
    config = work / "agent.yaml"
    config.write_text("{}\n")
    listing = _dnf_listing(root) if tool == "dnf" else _zypper_listing(root)
    env = {**os.environ, "LC_ALL": "C", **root.env}
    state = work / f"state-{tool}-{label}"
    scan = [
        *patchd, "--root", str(root.path), "--config", str(config),
        "--state-dir", str(state), "scan", "--json",
    ]  # fmt: skip
    if expect is not None:  # the same answer from both, or the comparison means nothing
        found = subprocess.run(scan, capture_output=True, env=env, check=False, timeout=600)
        updates = len(json.loads(found.stdout)["updates"]) if found.stdout else -1
        if updates != expect:
            raise SystemExit(f"bench: patchd found {updates} {tool} updates, expected {expect}")
    for _ in range(WARM_RUNS):
        _time(scan, env)
        _time(listing, env, ok=(0, 100))
    scan_s, list_s = [], []
    for _ in range(RUNS):
        scan_s.append(_time(scan, env))
        list_s.append(_time(listing, env, ok=(0, 100)))
    scan_median, list_median = statistics.median(scan_s), statistics.median(list_s)
    what = f"{label}: scan vs {'dnf -C check-update' if tool == 'dnf' else 'zypper lu'}"
    return (what, scan_median, list_median, scan_median / list_median, scan_s, list_s)


def measure(bindir: Path | None = None, *, tiny: bool = True) -> tuple[list[Row], list[Row]]:
    """(realistic rows, tiny rows) of (what, patchd median s, tool median s, ratio, runs...)."""
    if bindir is None:
        from bench import _install

        bindir = _install()
    patchd = [str(bindir / "patchd")]
    tools = [t for t in ("dnf", "zypper") if shutil.which(t) is not None]
    for tool in {"dnf", "zypper"} - set(tools):
        print(f"bench: {tool} is not installed; its scan is not measured")
    realistic, small = [], []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        roots = realistic_roots(REPO / ".stamps")
        for tool in tools:
            root = roots.dnf if tool == "dnf" else roots.zypper
            realistic.append(
                _measure_root(patchd, tool, root, work, label="realistic", expect=UPDATES)
            )
        if tiny:
            catalogue = build_rpm_catalogue(work / "catalogue")
            builders = {"dnf": _dnf_root, "zypper": _zypper_root}
            for tool in tools:
                root = builders[tool](work, dict(catalogue.repos))
                small.append(_measure_root(patchd, tool, root, work, label="tiny", expect=None))
    return realistic, small


def main(bindir: Path | None = None) -> int:
    """Print the ratio lines; exit status 1 if a realistic root misses its target."""
    realistic, small = measure(bindir)
    all_ok = bool(realistic)
    print(f"{'benchmark':<44}{'patchd':>10}{'limit':>10}{'ratio':>8}{'target':>9}  verdict")
    for what, scan_median, list_median, ratio, _, _ in realistic + small:
        if what.startswith("realistic"):
            ok = ratio <= SCAN_TARGET
            all_ok = all_ok and ok
            target, verdict = f"<= {SCAN_TARGET}", "PASS" if ok else "FAIL"
        else:
            target, verdict = "(info)", ""
        print(
            f"{what:<44}{scan_median:>9.3f}s{list_median:>9.3f}s{ratio:>8.2f}{target:>9}  {verdict}"
        )
    print(
        "(the verdict is on the realistic root: 1,000 installed, 4,150 in the repositories, "
        f"{UPDATES} updates; the tiny catalogue is for information)"
    )
    for what, _, _, _, scan_s, list_s in realistic + small:
        print(
            f"({what}: medians of {RUNS} alternating warm runs; patchd runs: "
            f"{', '.join(f'{s:.3f}' for s in scan_s)}; tool runs: "
            f"{', '.join(f'{s:.3f}' for s in list_s)})"
        )
    return 0 if all_ok else 1


if __name__ == "__main__":
    raise SystemExit(main(Path(sys.argv[1]) if len(sys.argv) > 1 else None))
