"""``patchd apply`` against real apt and dpkg in an isolated root."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest

from tests.conftest import Patchd
from tests.support.aptroot import AptRoot
from tests.support.catalogue import HELLO_CONF, SECURITY_CVES, Catalogue
from tests.support.httpd import StaticServer


def _items(document: dict[str, Any]) -> dict[str, dict[str, Any]]:
    run = document["run"]
    assert isinstance(run, dict)
    return {i["name"]: i for i in run["items"]}


def test_apply_installs_available_updates_and_judges_each_from_the_database(
    patchd: Patchd, apt_root: AptRoot
) -> None:
    result = patchd("apply", "--yes", "--json")
    run = result.json()["run"]
    items = _items(result.json())
    versions = apt_root.versions()
    # fragile's configuration fails: the run is partial and says so with exit status 1.
    assert result.returncode == 1
    assert run["status"] == "partial"
    assert items["fragile"]["outcome"] == "failed"
    assert "half-configured" in items["fragile"]["detail"]
    for name, version in {
        "hello": "1.1",
        "world": "2.0",
        "gadget": "1.5",
        "acme-agent": "2.0",
        "pinned": "1.1",
        "epochal": "1:1.1",
    }.items():
        assert items[name]["outcome"] == "done", items[name]
        assert versions[name] == version
    # The update the distribution is still phasing in is not applied by default.
    assert "phasey" not in items
    assert versions["phasey"] == "1.0"


def test_apply_of_named_packages_changes_only_those(patchd: Patchd, apt_root: AptRoot) -> None:
    before = apt_root.versions()
    result = patchd("apply", "--yes", "--json", "hello", "world")
    assert result.returncode == 0, result.stderr
    assert result.json()["run"]["status"] == "succeeded"
    after = apt_root.versions()
    assert {n for n in after if after[n] != before[n]} == {"hello", "world"}


def test_locally_changed_configuration_is_kept_and_recorded(
    patchd: Patchd, apt_root: AptRoot
) -> None:
    conf = apt_root.path / "etc/hello.conf"
    conf.write_text("greeting=local\n")
    result = patchd("apply", "--yes", "--json", "hello")
    assert result.returncode == 0, result.stderr
    assert conf.read_text() == "greeting=local\n"
    assert (apt_root.path / "etc/hello.conf.dpkg-dist").read_text() != HELLO_CONF
    notes = result.json()["run"]["notes"]
    assert any("/etc/hello.conf" in n and "kept" in n for n in notes), notes


def test_apply_takes_cves_and_urgency_from_the_packages_changelog(
    patchd: Patchd, apt_root: AptRoot, catalogue: Catalogue
) -> None:
    # Served over HTTP, as mirrors are: apt then keeps what it downloads in its cache.
    with StaticServer(catalogue.repos["base"].parent) as server:
        apt_root.set_sources([f"{server.url}/{name}" for name in catalogue.repos])
        apt_root.update()
        assert patchd("apply", "--yes", "hello").returncode == 0
    assert (apt_root.path / "var/cache/apt/archives/hello_1.1_all.deb").exists()
    # The advisory read from the downloaded package is kept for the next scans.
    assert patchd("rollback", _last_run_id(patchd)).returncode == 0
    updates = {u["name"]: u for u in patchd("scan", "--json").json()["updates"]}
    assert tuple(updates["hello"]["cves"]) == SECURITY_CVES
    assert updates["hello"]["severity"] == "important"  # urgency=high


def _last_run_id(patchd: Patchd) -> str:
    runs = patchd("status", "--json").json()["runs"]
    return str(runs[0]["id"])


def test_apply_without_a_terminal_needs_yes_and_changes_nothing(
    patchd: Patchd, apt_root: AptRoot
) -> None:
    before = apt_root.status_bytes()
    result = patchd("apply", stdin="y\n")
    assert result.returncode == 2
    assert "--yes" in result.stderr
    assert "Traceback" not in result.stderr
    assert apt_root.status_bytes() == before
    assert patchd("status", "--json").json()["runs"] == []


def test_dry_run_records_the_plan_and_changes_nothing(patchd: Patchd, apt_root: AptRoot) -> None:
    before = apt_root.status_bytes()
    result = patchd("apply", "--dry-run", "--json")
    assert result.returncode == 0, result.stderr
    run = result.json()["run"]
    assert run["status"] == "dry-run"
    assert {i["outcome"] for i in run["items"]} == {"skipped"}
    assert apt_root.status_bytes() == before


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["no-such-package"], "no update available"),
        (["pinned"], "held"),
    ],
    ids=["unknown-package", "held-package"],
)
def test_apply_refuses_what_it_cannot_do_and_changes_nothing(
    patchd: Patchd, apt_root: AptRoot, args: list[str], message: str
) -> None:
    apt_root.hold("pinned")
    before = apt_root.status_bytes()
    result = patchd("apply", "--yes", *args)
    assert result.returncode == 2
    assert message in result.stderr
    assert apt_root.status_bytes() == before


@pytest.fixture
def lock_holder(apt_root: AptRoot) -> Iterator[int]:
    """Another process holding dpkg's frontend lock, as apt would."""
    lock = apt_root.path / "var/lib/dpkg/lock-frontend"
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import fcntl, os, sys, time\n"
         f"fd = os.open({str(lock)!r}, os.O_RDWR | os.O_CREAT, 0o640)\n"
         "fcntl.lockf(fd, fcntl.LOCK_EX)\n"
         "print('locked', flush=True)\n"
         "time.sleep(300)\n"],
        stdout=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == "locked"
        yield holder.pid
    finally:
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait()
        if holder.stdout is not None:
            holder.stdout.close()


def test_apply_waits_a_bounded_time_for_the_dpkg_lock_and_names_its_holder(
    patchd: Patchd, apt_root: AptRoot, lock_holder: int
) -> None:
    before = apt_root.status_bytes()
    result = patchd("apply", "--yes", "hello")
    assert result.returncode == 75
    assert f"process {lock_holder}" in result.stderr
    assert "lock-frontend" in result.stderr
    assert apt_root.status_bytes() == before
    runs = patchd("status", "--json").json()["runs"]
    assert [r["status"] for r in runs] == ["failed"]


def test_interrupted_dpkg_run_is_repaired_before_applying(
    patchd: Patchd, apt_root: AptRoot, catalogue: Catalogue
) -> None:
    apt_root.dpkg("--unpack", str(catalogue.debs[("world", "2.0")]))
    assert _dpkg_state(apt_root, "world") == "unpacked"
    result = patchd("apply", "--yes", "--json", "hello")
    assert result.returncode == 0, result.stderr
    notes = result.json()["run"]["notes"]
    assert any("repaired an interrupted dpkg run" in n and "world" in n for n in notes), notes
    assert _dpkg_state(apt_root, "world") == "installed"


def _dpkg_state(root: AptRoot, package: str) -> str:
    return subprocess.run(
        ["dpkg-query", f"--admindir={root.path}/var/lib/dpkg", "-W", "-f", "${db:Status-Status}",
         package],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip


def test_exit_status_of_apt_is_not_the_verdict(patchd: Patchd, apt_root: AptRoot) -> None:
    # A hook that fails after dpkg has done its work makes apt exit 100.
    hook = apt_root.path / "etc/apt/apt.conf.d/99failing-hook"
    hook.write_text('DPkg::Post-Invoke { "exit 1"; };\n')
    result = patchd("apply", "--yes", "--json", "hello")
    run = result.json()["run"]
    assert run["status"] == "succeeded", run
    assert result.returncode == 0
    assert apt_root.versions()["hello"] == "1.1"
    assert any("reported a failure" in n for n in run["notes"])


def test_transcript_of_every_command_is_kept(patchd: Patchd) -> None:
    assert patchd("apply", "--yes", "hello").returncode == 0
    db = sqlite3.connect(patchd.state_dir / "state.db")
    rows = db.execute("SELECT argv, returncode, output FROM run_transcript ORDER BY seq").fetchall()
    argvs = [r[0] for r in rows]
    assert any('"install"' in a and '"hello=1.1"' in a for a in argvs)
    assert any("Setting up hello (1.1)" in r[2] for r in rows)
