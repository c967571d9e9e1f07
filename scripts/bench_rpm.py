"""The RPM family's scan cost: the agent's scan ÷ the package manager's own listing.

For each of dnf and zypper whose tool is installed, on a root of realistic size
(tests/support/rpmrealistic.py: 1,000 installed packages, repositories of 4,150, 150
updates with advisories; built once and cached under ``.stamps/``): the agent's scan,
measured as the agent runs it (a forked worker with a new session per cycle:
scripts/bench_scan.py), against ``dnf -C check-update`` (dnf on the metadata it has, as
patchd's scan) and ``zypper --no-refresh list-updates``, alternately, warm, medians of N
runs each (target ≤ 1.25: the verdict). For information: the same scan in one session
kept across runs; the listing patchd asks zypper for (``--xmlout``, packages and
patches) against ``zypper lu``, a floor under zypper's ratio, and the agent's scan against
that listing (what patchd adds to the command it runs); ``patchd --root R scan
--json`` from the command line (Python's start-up and imports included), on that root
and on the tests' tiny catalogue (tests/support/rpmcatalogue.py), where the tools answer
in less time than any Python program takes to start.
``main(bindir)`` measures the patchd installed in ``bindir``; without it, patchd is
installed as ``scripts/bench.py`` installs it (not editable, compiled, in
``.stamps/bench-venv``), as an administrator would have it."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench_scan import AgentScan, Row, measure_agent_scan, print_rows  # noqa: E402

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


def _listing_name(tool: str) -> str:
    return "dnf -C check-update" if tool == "dnf" else "zypper lu"


def _cli_row(
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
    return Row(f"{label}: patchd scan (CLI) vs {_listing_name(tool)}", scan_s, list_s, False)


def _agent_rows(python: Path, tool: str, root: RpmRoot, work: Path) -> list[Row]:
    config = work / "agent.yaml"
    config.write_text("{}\n")

    def agent_scan(listing: list[str], state: str) -> AgentScan:
        return measure_agent_scan(
            python,
            root=root.path,
            config=config,
            state_dir=work / state,
            listing=listing,
            env={**os.environ, "LC_ALL": "C", **root.env},
            listing_ok=(0, 100),
            expect=UPDATES,
        )

    agent = agent_scan(
        _dnf_listing(root) if tool == "dnf" else _zypper_listing(root), f"agent-state-{tool}"
    )
    rows = [
        Row(f"realistic: {row.what}", row.patchd_s, row.tool_s, row.verdict)
        for row in agent.rows(_listing_name(tool))
    ]
    if tool == "zypper":
        rows.append(_zypper_floor(root))
        # The same scan against the listing patchd itself runs: what patchd adds to it.
        own = agent_scan(_zypper_xml_listing(root), "agent-state-zypper-xml")
        rows.append(
            Row("realistic: agent scan vs zypper's XML listing", own.worker_s, own.listing_s)
        )
    return rows


def _zypper_xml_listing(root: RpmRoot) -> list[str]:
    """The listing patchd's zypper backend runs (patchd/backends/zypper)."""
    return ["zypper", "--non-interactive", "--xmlout", "--no-refresh", "--root", str(root.path),
            "list-updates", "-t", "package", "-t", "patch"]  # fmt: skip


def _zypper_floor(root: RpmRoot) -> Row:
    """The listing patchd asks zypper for (XML, packages and patches) ÷ ``zypper lu``.

    patchd needs the patches' categories, severities and CVE ids, which only the XML
    carries; zypper takes longer to write it than to list the packages as a table, so
    this is a floor under the agent's ratio that no work in patchd can lower.
    """
    env = {**os.environ, "LC_ALL": "C", **root.env}
    xml = _zypper_xml_listing(root)
    plain = _zypper_listing(root)
    for _ in range(WARM_RUNS):
        _time(xml, env, ok=(0, 100))
        _time(plain, env, ok=(0, 100))
    xml_s, plain_s = [], []
    for _ in range(RUNS):
        xml_s.append(_time(xml, env, ok=(0, 100)))
        plain_s.append(_time(plain, env, ok=(0, 100)))
    return Row("realistic: zypper's XML listing (patchd's) vs zypper lu", xml_s, plain_s, False)


def measure(bindir: Path | None = None, *, tiny: bool = True) -> list[Row]:
    """Every row: the agent's scan and the CLI's on the realistic roots, the CLI's on the tiny."""
    if bindir is None:
        from bench import _install

        bindir = _install()
    patchd = [str(bindir / "patchd")]
    tools = [t for t in ("dnf", "zypper") if shutil.which(t) is not None]
    for tool in {"dnf", "zypper"} - set(tools):
        print(f"bench: {tool} is not installed; its scan is not measured")
    rows: list[Row] = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        roots = realistic_roots(REPO / ".stamps")
        for tool in tools:
            root = roots.dnf if tool == "dnf" else roots.zypper
            rows += _agent_rows(bindir / "python", tool, root, work)
            rows.append(_cli_row(patchd, tool, root, work, label="realistic", expect=UPDATES))
        if tiny:
            catalogue = build_rpm_catalogue(work / "catalogue")
            builders = {"dnf": _dnf_root, "zypper": _zypper_root}
            for tool in tools:
                root = builders[tool](work, dict(catalogue.repos))
                rows.append(_cli_row(patchd, tool, root, work, label="tiny", expect=None))
    return rows


def main(bindir: Path | None = None) -> int:
    """Print the ratio lines; exit status 1 if an agent scan misses its target."""
    rows = measure(bindir)
    all_ok = print_rows(rows, SCAN_TARGET, width=52) and any(row.verdict for row in rows)
    print(
        "(the verdict is on the agent's scan on the realistic roots: 1,000 installed, 4,150 in "
        f"the repositories, {UPDATES} updates; the rest is for information)"
    )
    for row in rows:
        print(f"(medians of {RUNS} alternating warm runs; {row.runs()})")
    return 0 if all_ok else 1


if __name__ == "__main__":
    raise SystemExit(main(Path(sys.argv[1]) if len(sys.argv) > 1 else None))
