"""``make demo``: patchd's main job, for real, in a few minutes.

1. Scan this machine: its inventory and the updates it lacks, classified by risk.
   Read-only: nothing on this machine is changed.
2. Build an isolated Debian root from local repositories (one of them labelled as a
   security archive, served over HTTP on 127.0.0.1), then scan it, apply its security
   update, look at the run, and roll it back.
3. Sign the example policy with two throwaway administrator keys and enforce it.
4. Start a collector on SQLite, enrol the root's agent, publish the signed policy, run
   one agent cycle that reports, and print the fleet's compliance and the dashboard.

Everything it writes stays under ``demo-output/``.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import socket
import sqlite3
import subprocess
import sys
import textwrap
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import requests

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.support.aptroot import AptRoot, tools_missing  # noqa: E402
from tests.support.catalogue import build_catalogue  # noqa: E402
from tests.support.httpd import StaticServer  # noqa: E402

OUT = REPO / "demo-output"
HOST_ROWS = 15  # updates of this machine shown on screen; the rest are in the JSON file
PATCHD = [sys.executable, "-m", "patchd"]


def banner(text: str) -> None:
    print(f"\n\033[1m== {text}\033[0m" if sys.stdout.isatty() else f"\n== {text}", flush=True)


def patchd(*args: str, check: bool = True, show: bool = True) -> subprocess.CompletedProcess[str]:
    print(f"$ patchd {' '.join(args)}", flush=True)
    proc = subprocess.run(
        [*PATCHD, *args], capture_output=True, text=True, check=False, timeout=600
    )
    if show:
        print(proc.stdout, end="")
    if proc.stderr.strip():
        print(textwrap.indent(proc.stderr.rstrip(), "  | "))
    if check and proc.returncode != 0:
        raise SystemExit(f"demo: patchd {' '.join(args)} exited {proc.returncode}")
    return proc


def scan_this_machine(config: Path) -> None:
    banner("1. This machine: inventory and pending updates (read-only)")
    state = OUT / "host-state"
    proc = patchd(
        "--config", str(config), "--state-dir", str(state), "scan", show=False, check=False
    )
    lines = proc.stdout.splitlines()
    table_start = next(
        (i for i, line in enumerate(lines) if line.startswith("Updates:")), len(lines)
    )
    shown = lines[: table_start + 2 + HOST_ROWS]
    print("\n".join(shown))
    if len(lines) > len(shown):
        print(f"  ... {len(lines) - len(shown)} more lines")
    doc = patchd(
        "--config",
        str(config),
        "--state-dir",
        str(state),
        "scan",
        "--json",
        show=False,
        check=False,
    ).stdout
    (OUT / "host-scan.json").write_text(doc)
    try:
        summary = json.loads(doc)["summary"]
        print(
            f"Summary: {summary['total']} updates, {summary['security']} security; "
            f"by severity {summary['by_severity']}"
        )
    except (ValueError, KeyError):
        print("(this machine has no supported package manager; see host-scan.json)")


def patch_an_isolated_root(config: Path) -> None:
    banner("2. An isolated Debian root built from local repositories")
    work = OUT / "root-demo"
    catalogue = build_catalogue(work / "catalogue")
    root = AptRoot.create(work / "root", work / "aptconf")
    (root.path / "etc" / "hostname").write_text("web-01.frontend.acme.example\n")  # a web frontend
    with StaticServer(catalogue.repos["base"].parent) as server:
        root.set_sources([f"{server.url}/{name}" for name in catalogue.repos])
        root.update()
        root.install(*catalogue.base_specs())
        print(
            f"root: {root.path}\nrepositories served at {server.url}: {', '.join(catalogue.repos)}"
        )
        common = [
            "--config",
            str(config),
            "--root",
            str(root.path),
            "--state-dir",
            str(work / "state"),
        ]

        banner("2a. Scan the root: updates classified by the archive they come from")
        patchd(*common, "scan")

        banner(
            "2b. Apply the security update of 'hello': a snapshot first, a journalled run, "
            "judged by dpkg's database"
        )
        applied = json.loads(
            patchd(*common, "apply", "--yes", "--json", "hello", show=False).stdout
        )
        run = applied["run"]
        patchd(*common, "status")
        item = run["items"][0]
        print(
            f"run {run['id']}: hello {item['from_version']} -> {item['found_version']} ({item['outcome']}); "
            f"rollback kept: {item['rollback']['file']}"
        )
        print("notes:", *(f"  {n}" for n in run["notes"]), sep="\n")
        print("journal (each step durable before the next):",
              " -> ".join(journal(work / "state", run["id"])))  # fmt: skip

        banner(f"2c. Roll back run {run['id']}")
        patchd(*common, "rollback", run["id"])
        print(f"dpkg now records hello {root.versions()['hello']} (back to the release version)")

        banner(
            "2d. Scan again: hello is pending again, its CVEs and urgency read from its changelog"
        )
        patchd(*common, "scan")

        admins = sign_and_plan(common, work)
        collect(common, work, admins)


def journal(state_dir: Path, run_id: str) -> list[str]:
    """The run's write-ahead journal, as patchd recorded it."""
    db = sqlite3.connect(state_dir / "state.db")
    try:
        rows = db.execute("SELECT step FROM run_journal WHERE run_id = ? ORDER BY seq", (run_id,))
        return [step for (step,) in rows]
    finally:
        db.close()


def sign_and_plan(common: list[str], work: Path) -> Path:
    """Part 3: two admins, a trust root needing both, the example policy signed and enforced."""
    banner("3. A signed policy: two administrator keys, a trust root that needs both")
    admins = work / "admins"
    admins.mkdir()
    for name in ("alice", "bob"):
        patchd("key", "generate", "--out", str(admins / name))
    root = admins / "trust-root.json"
    patchd("trust", "init", "--key", str(admins / "alice.pub"), "--key", str(admins / "bob.pub"),
           "--threshold", "2", "--out", str(root))  # fmt: skip
    # The shipped example, dated from today so that it is valid whenever the demo runs.
    now = datetime.now(UTC).replace(microsecond=0)
    text = (REPO / "config" / "policy.example.yaml").read_text()
    text = re.sub(
        r"^issued_at: .*$", f"issued_at: {now.isoformat().replace('+00:00', 'Z')}", text, flags=re.M
    )
    expires = (now + timedelta(days=90)).isoformat().replace("+00:00", "Z")
    text = re.sub(r"^expires: .*$", f"expires: {expires}", text, count=1, flags=re.M)
    policy = admins / "policy.yaml"
    policy.write_text(text)
    patchd("policy", "check", str(policy))
    patchd("policy", "sign", str(policy), "--key", str(admins / "alice.key"))

    banner("3a. Signed by one key of two: the endpoint refuses it")
    patchd(*common, "policy", "activate", str(policy), "--trust", str(root), check=False)

    banner("3b. Signed by both: accepted, kept as the last-known-good")
    patchd("policy", "sign", str(policy), "--key", str(admins / "bob.key"))
    patchd(*common, "policy", "activate", str(policy))
    patchd(*common, "status")

    banner("3c. The plan: every update, the policy's decision, and why")
    patchd(*common, "plan")
    return admins


def collect(common: list[str], work: Path, admins: Path) -> None:
    """Part 4: a collector on SQLite, the agent enrolled, a cycle reported, the compliance."""
    banner("4. A collector: enrol this endpoint, report, and see the fleet's compliance")
    directory = work / "collector"
    directory.mkdir()
    token_file = directory / "admin.token"
    token_file.write_text(secrets.token_hex(24) + "\n")
    token_file.chmod(0o600)
    admin = {"Authorization": f"Bearer {token_file.read_text().strip()}"}
    db = directory / "collector.db"
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    serve = ["collector", "serve", "--db", str(db), "--listen", f"127.0.0.1:{port}",
             "--admin-token-file", str(token_file)]  # fmt: skip
    print(f"$ patchd {' '.join(serve)} &")
    with (directory / "collector.log").open("wb") as log:
        server = subprocess.Popen([*PATCHD, *serve], stdout=log, stderr=subprocess.STDOUT)
        try:
            _wait_for(url, server, directory)
            token = patchd("collector", "token", "create", "--db", str(db), "--note", "demo").stdout
            patchd(*common, "enroll", "--collector", url, "--token", token.strip())
            patchd("collector", "policy", "publish", "--db", str(db), str(admins / "policy.yaml"),
                   "--trust", str(admins / "trust-root.json"))  # fmt: skip

            banner(
                "4a. One agent cycle: scan, plan, apply what is due, queue a signed report, send it"
            )
            patchd(*common, "agent", "--once", check=False)
            patchd(*common, "report", "status")

            banner("4b. The fleet's compliance, from the signed reports (GET /v1/compliance)")
            _show_compliance(requests.get(f"{url}/v1/compliance", headers=admin, timeout=30).json())
            export = directory / "fleet.json"
            patchd("collector", "report", "--db", str(db), "--format", "json", "--out", str(export))
            patchd("collector", "verify-export", str(export))
            print(
                textwrap.dedent(f"""\
                dashboard (while the demo's collector runs): {url}/  admin token in {token_file}
                The demo stops its collector now. To browse the dashboard afterwards:
                  patchd collector serve --db {db} --listen 127.0.0.1:{port} --admin-token-file {token_file}
                then open {url}/ and log in with the token from {token_file}.""")
            )
        finally:
            server.terminate()
            server.wait(timeout=60)


def _wait_for(url: str, server: subprocess.Popen[bytes], directory: Path) -> None:
    deadline = time.monotonic() + 60
    while True:
        try:
            if requests.get(f"{url}/healthz", timeout=2).ok:
                return
        except requests.ConnectionError:
            pass
        if time.monotonic() > deadline or server.poll() is not None:
            raise SystemExit(f"demo: the collector did not start; see {directory}/collector.log")
        time.sleep(0.2)


def _show_compliance(figures: dict[str, Any]) -> None:
    e = figures["endpoints"]
    rate = figures["compliance_rate"]
    print(f"endpoints: {e['enrolled']} enrolled, {e['reporting']} reporting, {e['compliant']} compliant, "
          f"{e['stale']} stale, {e['end_of_life']} end-of-life")  # fmt: skip
    print(f"compliance rate: {'-' if rate is None else f'{rate * 100:.0f} %'}")
    for what in ("pending", "overdue"):
        counts = figures[f"{what}_by_severity"]
        print(f"{what} by severity:", ", ".join(f"{k} {v}" for k, v in counts.items()))


def main() -> int:
    if OUT.exists():
        shutil.rmtree(OUT)
    OUT.mkdir()
    config = OUT / "agent.yaml"
    config.write_text("tags: [demo, web]\napt:\n  lock_timeout: 60\n")
    scan_this_machine(config)
    missing = tools_missing("apt-get", "apt-ftparchive", "dpkg-deb", "/bin/busybox")
    if missing or os.geteuid() != 0:
        why = (
            f"missing {', '.join(missing)}"
            if missing
            else "it needs root (dpkg chroots into the root)"
        )
        print(f"\nSkipping part 2: {why}. Run `sudo make demo` on a Debian/Ubuntu machine.")
        return 0
    patch_an_isolated_root(config)
    banner("What to look at")
    print(
        textwrap.dedent(f"""\
        - {OUT}/host-scan.json: this machine's inventory and classified updates (patchd scan --json)
        - {OUT}/root-demo/state/state.db: runs, per-package results and full apt transcripts (SQLite)
        - {OUT}/root-demo/admins/: the throwaway keys, trust root and signed policy (policy.yaml.sig)
        - {OUT}/root-demo/collector/: the collector's SQLite database, its log and a verified export
        - patchd --root {OUT}/root-demo/root --state-dir {OUT}/root-demo/state status
        - patchd --root {OUT}/root-demo/root --state-dir {OUT}/root-demo/state plan --json
        - README.md and docs/: the agent service, the collector, compliance definitions
        """)
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
