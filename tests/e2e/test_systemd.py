"""patchd as a service under a real systemd, end to end (issue 7, deliverables 3 and 4).

A Debian root boots with ``systemd-nspawn``; patchd is installed in it as an administrator
installs it; a real collector runs on the host's loopback. The tests run in order on the
same endpoint: it starts and reports READY, enrols, takes a newly signed policy on
``systemctl reload``, installs a policy-approved update inside its maintenance window and
reports it, stops in the middle of a run only at a safe step, and starts again clean.
"""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from patchd.signing.dsse import pae
from tests.e2e.conftest import AGENT_UNIT, WAIT_S, Endpoint, build_repository, patchd_deb

pytestmark = [pytest.mark.e2e, pytest.mark.root, pytest.mark.slow]

HELLO = ["hello=1.1"]
SLOW = ["hello=1.1", "slowpkg=2.0"]
SLOW_TWO = [*SLOW, "slowtwo=2.0"]


def _runs(endpoint: Endpoint) -> list[dict[str, Any]]:
    runs: list[dict[str, Any]] = endpoint.status()["runs"]
    return runs


def _verified_payloads(endpoint: Endpoint, endpoint_id: str) -> list[dict[str, Any]]:
    """The collector's stored reports from the endpoint, each checked against its pinned key."""
    key = Ed25519PublicKey.from_public_bytes(
        base64.b64decode(endpoint.admin.public_key(endpoint_id))
    )
    payloads = []
    for _seq, raw in endpoint.admin.envelopes(endpoint_id):
        envelope = json.loads(raw)
        body = base64.b64decode(envelope["payload"])
        signature = base64.b64decode(envelope["signatures"][0]["sig"])
        key.verify(signature, pae(envelope["payloadType"], body))  # raises if not signed by it
        payloads.append(json.loads(body))
    return payloads


def test_the_service_starts_and_reports_ready(endpoint: Endpoint) -> None:
    # Installing started it (as the package's postinst does); READY=1 came with a status line.
    unit = endpoint.unit("ActiveState", "SubState", "Type", "MainPID", "NRestarts", "StatusText")
    assert unit["ActiveState"] == "active", unit
    assert unit["SubState"] == "running"
    assert unit["Type"] == "notify"
    assert unit["NRestarts"] == "0"
    assert "policy e2e v1 active" in unit["StatusText"], unit
    # The main process is patchd's agent (the pid is the container's: read it inside).
    argv = endpoint.container.run("cat", f"/proc/{unit['MainPID']}/cmdline").stdout.split("\0")
    # The package's launcher, run by the Python the package carries.
    assert argv[-3:] == ["/opt/patchd/bin/patchd", "agent", ""], argv
    assert argv[0].startswith("/opt/patchd/python/bin/python3"), argv
    # The window is closed: hello stays at 1.0, the next change is planned for the window.
    endpoint.container.wait_for(
        "the first cycle's plan",
        lambda: "next change due at" in endpoint.container.journal(AGENT_UNIT),
        timeout=WAIT_S,
    )
    assert endpoint.versions()["hello"][0] == "1.0"


def test_it_enrols_with_the_collector(endpoint: Endpoint) -> None:
    enrolled = endpoint.patchd(
        "enroll", "--collector", endpoint.admin.collector.url, "--token", endpoint.admin.token(),
        "--json",
    )  # fmt: skip
    document = json.loads(enrolled.stdout)
    endpoint_id = document["endpoint_id"]
    endpoint.facts["endpoint_id"] = endpoint_id
    assert endpoint.admin.endpoint(endpoint_id)["hostname"] == "patchd-e2e"
    # Enrolling again with a used token is refused, and the enrolment stays.
    again = endpoint.patchd(
        "enroll", "--collector", endpoint.admin.collector.url, "--token", "not-a-token",
        check=False,
    )  # fmt: skip
    assert again.returncode == 77, again.stderr
    assert endpoint.admin.endpoint(endpoint_id)["hostname"] == "patchd-e2e"


def test_systemctl_reload_activates_a_newly_signed_policy(endpoint: Endpoint) -> None:
    assert endpoint.status()["policy"]["version"] == 1
    endpoint.admin.publish(2, HELLO, window_open=True)
    # The agent fetches policies every hour; only the reload makes it look now.
    endpoint.container.systemctl("reload", AGENT_UNIT)
    endpoint.container.wait_for(
        "policy v2 in the unit's status",
        lambda: "policy e2e v2 active" in endpoint.unit("StatusText")["StatusText"],
        timeout=WAIT_S,
    )
    assert endpoint.status()["policy"]["version"] == 2
    unit = endpoint.unit("ActiveState", "NRestarts")
    assert unit == {"ActiveState": "active", "NRestarts": "0"}  # reloaded, not restarted


def test_it_applies_the_approved_update_in_its_window_and_reports_it(endpoint: Endpoint) -> None:
    endpoint_id = endpoint.facts["endpoint_id"]
    # Policy v2 opened the window: the cycle the reload started installs hello 1.1.
    endpoint.container.wait_for(
        "a finished run",
        lambda: any(r["status"] != "running" for r in _runs(endpoint)),
        timeout=WAIT_S,
    )
    run = _runs(endpoint)[0]
    assert run["status"] == "succeeded", run
    assert endpoint.versions()["hello"] == ("1.1", "install ok installed")
    assert endpoint.versions()["slowpkg"][0] == "1.0"  # not approved: untouched
    # The collector received a report with the run, signed by the endpoint's key.
    endpoint.container.wait_for(
        "the run in the collector",
        lambda: any(r["run_id"] == run["id"] for r in endpoint.admin.endpoint(endpoint_id)["runs"]),
        timeout=WAIT_S,
    )
    seen = next(r for r in endpoint.admin.endpoint(endpoint_id)["runs"] if r["run_id"] == run["id"])
    assert (seen["status"], seen["done"], seen["failed"]) == ("succeeded", 1, 0)
    payloads = _verified_payloads(endpoint, endpoint_id)
    assert any(run["id"] in json.dumps(p) for p in payloads)
    assert endpoint.admin.endpoint(endpoint_id)["policy_version"] == 2


def test_systemctl_stop_in_the_middle_of_a_run_waits_for_the_package_transaction(
    endpoint: Endpoint,
) -> None:
    container = endpoint.container
    endpoint.admin.publish(3, SLOW, window_open=True)
    container.systemctl("reload", AGENT_UNIT)
    started = endpoint.on_host("/var/lib/slowpkg-postinst-started")
    container.wait_for("slowpkg's postinst to start", started.exists, timeout=WAIT_S, every=0.1)
    main_pid = endpoint.unit("MainPID")["MainPID"]
    container.systemctl("stop", AGENT_UNIT)  # returns once the unit is stopped
    assert endpoint.on_host("/var/lib/slowpkg-postinst-finished").exists()
    assert container.run("dpkg", "--audit").stdout == ""
    assert endpoint.versions()["slowpkg"] == ("2.0", "install ok installed")
    unit = endpoint.unit("ActiveState", "Result", "ExecMainStatus", "ExecMainPID")
    assert unit["ActiveState"] == "inactive"
    assert unit["Result"] == "success"  # no SIGKILL, no timeout
    assert unit["ExecMainPID"] == main_pid
    assert unit["ExecMainStatus"] == "0"
    journal = container.journal(AGENT_UNIT)
    run = _runs(endpoint)[0]
    assert run["status"] == "succeeded", run
    # In order: the stop was asked, the run finished, the agent then stopped at a safe step.
    order = [
        "Stopping patchd-agent.service",
        f"run {run['id']}: succeeded",
        "stop requested during the cycle",
        "agent stopped",
        "Stopped patchd-agent.service",
    ]
    positions = [journal.rfind(line) for line in order]
    assert all(p >= 0 for p in positions), (order, positions, journal[-4000:])
    assert positions == sorted(positions), journal[-4000:]
    endpoint.facts["stopped_run"] = run["id"]


def test_it_restarts_clean(endpoint: Endpoint) -> None:
    container = endpoint.container
    before = container.journal(AGENT_UNIT)
    container.systemctl("start", AGENT_UNIT)  # returns after READY=1
    unit = endpoint.unit("ActiveState", "SubState", "StatusText")
    assert (unit["ActiveState"], unit["SubState"]) == ("active", "running")
    assert "policy e2e v3 active" in unit["StatusText"]
    container.wait_for(
        "the first cycle after the restart",
        lambda: container.journal(AGENT_UNIT).count("cycle done") > before.count("cycle done"),
        timeout=WAIT_S,
    )
    since_start = container.journal(AGENT_UNIT)[len(before) :]
    assert "interrupted" not in since_start
    assert "finishing it" not in since_start
    runs = _runs(endpoint)
    assert all(r["status"] != "running" for r in runs)
    assert runs[0]["id"] == endpoint.facts["stopped_run"]  # nothing left to do: no new run
    assert container.run("dpkg", "--audit").stdout == ""


def test_killed_in_the_middle_of_a_run_it_is_restarted_and_finishes_the_run(
    endpoint: Endpoint,
) -> None:
    container = endpoint.container
    endpoint.admin.publish(4, SLOW_TWO, window_open=True)
    container.systemctl("reload", AGENT_UNIT)
    started = endpoint.on_host("/var/lib/slowtwo-postinst-started")
    container.wait_for("slowtwo's postinst to start", started.exists, timeout=WAIT_S, every=0.1)
    before = endpoint.unit("NRestarts", "MainPID")
    # A crash of the whole unit (everything in its cgroup, dpkg too), not a stop.
    container.systemctl("kill", "--signal=SIGKILL", AGENT_UNIT)
    assert not endpoint.on_host("/var/lib/slowtwo-postinst-finished").exists()
    # Restart=always brings it back (after RestartSec); it finishes the run before READY.
    container.wait_for(
        "systemd to restart the agent",
        lambda: (
            endpoint.unit("NRestarts")["NRestarts"] == str(int(before["NRestarts"]) + 1)
            and endpoint.unit("ActiveState")["ActiveState"] == "active"
        ),
        timeout=WAIT_S,
    )
    assert endpoint.unit("MainPID")["MainPID"] != before["MainPID"]
    assert container.run("dpkg", "--audit").stdout == ""
    assert endpoint.versions()["slowtwo"] == ("2.0", "install ok installed")
    assert endpoint.on_host("/var/lib/slowtwo-postinst-finished").exists()
    run = _runs(endpoint)[0]
    item = next(i for i in run["items"] if i["name"] == "slowtwo")
    assert item["outcome"] == "done", run
    assert run["status"] == "succeeded", run
    assert any("resumed after an interruption" in note for note in run["notes"]), run["notes"]
    assert any("repaired an interrupted dpkg run" in note for note in run["notes"]), run["notes"]
    assert f"run {run['id']} was interrupted" in container.journal(AGENT_UNIT)


def test_it_upgrades_itself_and_comes_back_on_the_new_version(
    endpoint: Endpoint, versions: tuple[str, str]
) -> None:
    container = endpoint.container
    first, second = versions
    assert endpoint.versions()["patchd"] == (first, "install ok installed")
    old_pid = endpoint.unit("MainPID")["MainPID"]
    # The repository gets patchd's next version; policy v4 approves it.
    build_repository(
        container.root, endpoint.facts["work"], [patchd_deb(first), patchd_deb(second)]
    )
    endpoint.admin.publish(5, [*SLOW_TWO, f"patchd={second}"], window_open=True)
    container.systemctl("reload", AGENT_UNIT)
    # The agent's own run installs it; the postinst's try-restart brings the agent back.
    container.wait_for(
        "the agent to come back after upgrading itself",
        lambda: (
            endpoint.versions()["patchd"][0] == second
            and endpoint.unit("ActiveState")["ActiveState"] == "active"
            and f"agent started (patchd {second}" in container.journal(AGENT_UNIT)
        ),
        timeout=WAIT_S,
    )
    # The package transaction finished.
    assert container.run("dpkg", "--audit").stdout == ""
    assert endpoint.versions()["patchd"] == (second, "install ok installed")
    assert container.run("/opt/patchd/bin/patchd", "--version").stdout.split()[-1] == second
    # The running agent is the new one: a new process, none of whose files was replaced.
    unit = endpoint.unit("MainPID", "ActiveState", "SubState", "StatusText")
    assert unit["MainPID"] not in ("0", old_pid)
    assert (unit["ActiveState"], unit["SubState"]) == ("active", "running")
    maps = container.run("cat", f"/proc/{unit['MainPID']}/maps").stdout
    assert "/opt/patchd/" in maps
    assert "(deleted)" not in maps, [line for line in maps.splitlines() if "(deleted)" in line]
    # The run that upgraded patchd is recorded as finished, with patchd's own change done.
    journal = container.journal(AGENT_UNIT)
    runs = _runs(endpoint)
    upgrade = next(r for r in runs if any(i["name"] == "patchd" for i in r.get("items", [])))
    assert upgrade["status"] == "succeeded", upgrade
    item = next(i for i in upgrade["items"] if i["name"] == "patchd")
    assert (item["from_version"], item["to_version"], item["outcome"]) == (first, second, "done")
    assert all(r["status"] != "running" for r in runs)
    # The old agent stopped only after its run ended; the new one started after that.
    order = [
        f"run {upgrade['id']}: succeeded",
        "stop requested during the cycle",
        f"agent started (patchd {second}",
    ]
    positions = [journal.rfind(line) for line in order]
    assert all(p >= 0 for p in positions), (order, positions, journal[-5000:])
    assert positions == sorted(positions), journal[-5000:]
    # And the collector hears about the run from the new agent.
    endpoint_id = endpoint.facts["endpoint_id"]
    container.wait_for(
        "the upgrade run in the collector",
        lambda: any(
            r["run_id"] == upgrade["id"] and r["status"] == "succeeded"
            for r in endpoint.admin.endpoint(endpoint_id)["runs"]
        ),
        timeout=WAIT_S,
    )
