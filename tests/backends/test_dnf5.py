"""The dnf backend driving dnf 5, on dnf 5's captured output (dnf 5 is not packaged for Debian).

Captures are dnf 5's own test expectations and pasted transcripts
(tests/data/rpm/PROVENANCE.md). The parsers are checked on them; the backend runs
against a recording fake of the process gateway that answers with them
(tests/conformance/offline_dnf5.py), and every command line it builds is asserted.
The lock test holds a real ``fcntl`` lock from another process.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from patchd.backends.base import BackendContext, Outcome, ProbeStatus
from patchd.backends.dnf import dnf5
from patchd.backends.dnf.backend import DnfBackend, YumBackend
from patchd.backends.dnf.dnf5 import Dnf5Environment, is_dnf5, parse_version
from patchd.backends.dnf.dnf5_backend import Dnf5Backend
from patchd.backends.dnf.dnf5_output import (
    AdvisoryOutputError,
    parse_advisory_info,
    parse_check_upgrade,
)
from patchd.backends.dnf.listing import CheckUpdateEntry
from patchd.backends.rpm.failures import rpm_filename
from patchd.backends.rpm.rpmdb import RpmDatabase
from patchd.errors import LockHeldError
from patchd.models import Classification, PackageChange, Severity
from patchd.platforms import RHEL
from patchd.target import Target
from patchd.transcript import Transcript
from tests.backends.fakeprocess import CannedCommands, Reply, captured
from tests.conformance import offline_dnf5
from tests.conformance.offline import OfflineFixture
from tests.conformance.offline_dnf5 import ARCH, NAME, NEW, OLD, dnf_prefix, fedora_database

FLAC_ADVISORY = "FEDORA-2999:002-02"  # flac's advisory in dnf5-updateinfo-info-object.json
CACHED = ("--cacheonly", "-q", "--setopt=skip_if_unavailable=True")

# -- parsers -------------------------------------------------------------------------


@pytest.mark.parametrize("capture", ["rpm/dnf5-check-upgrade.txt", "rpm/dnf5.0-check-upgrade.txt"])
def test_check_upgrade_with_and_without_its_header(capture: str) -> None:
    entries, problems = parse_check_upgrade(captured(capture))
    assert entries == [
        CheckUpdateEntry("flac", "x86_64", "1.4.0-1.fc29", "dnf-ci-fedora-updates-testing")
    ]
    assert problems == []


def test_check_upgrades_sentence_is_no_update() -> None:
    assert parse_check_upgrade(captured("rpm/dnf5-check-upgrade-security-none.txt")) == ([], [])


def test_a_line_that_is_no_entry_is_reported() -> None:
    text = captured("rpm/dnf5-check-upgrade.txt") + "Error: something odd\n"
    entries, problems = parse_check_upgrade(text)
    assert [e.name for e in entries] == ["flac"]
    assert len(problems) == 1
    assert "something odd" in problems[0]


def test_advisory_info_of_early_dnf5_is_an_object() -> None:
    found = {a.id: a for a in parse_advisory_info(captured("rpm/dnf5-updateinfo-info-object.json"))}
    glibc, flac = found["FEDORA-2018-318f184000"], found[FLAC_ADVISORY]
    assert (glibc.type, glibc.severity, glibc.cves) == ("bugfix", "", ("CVE-2999",))
    assert [(p.name, p.arch, p.evr) for p in glibc.packages] == [
        ("glibc", "x86_64", "2.28-26.fc29")
    ]
    assert (flac.type, flac.severity, flac.cves) == ("enhancement", "Moderate", ())


def test_advisory_info_of_later_dnf5_is_an_array_and_drops_source_packages() -> None:
    found = parse_advisory_info(captured("rpm/dnf5-advisory-info-array.json"))
    assert [a.id for a in found] == [
        "FEDORA-2019-f4eb34cf4c",
        "FEDORA-2019-57b5902ed1",
        "FEDORA-2022-2222222222",
        "FEDORA-2022-2222222223",
        "FEDORA-2022-2222222224",
    ]
    critical = found[1]
    assert (critical.type, critical.severity) == ("security", "Critical")
    assert {(p.arch, p.evr) for p in critical.packages} == {
        ("i686", "1.56.2-6.fc30"),
        ("x86_64", "1.56.2-6.fc30"),
    }
    assert [(a.type, a.severity) for a in found[2:]] == [
        ("custom_type", "custom_severity"),
        ("security", "custom_severity"),
        ("custom_type", "Critical"),
    ]


def test_advisory_info_keeps_only_wanted_packages() -> None:
    text = captured("rpm/dnf5-updateinfo-info-object.json")
    assert [a.id for a in parse_advisory_info(text, frozenset({"flac"}))] == [FLAC_ADVISORY]
    assert parse_advisory_info(text, frozenset({"bash"})) == []


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("Failed to load repositories", "not JSON"),
        ('"an advisory"', "neither an array nor an object"),
        ('[["FEDORA-1"]]', "not an object"),
        ('[{"Name": "A", "collections": {"packages": "glibc-1-1.x86_64"}}]', "package list"),
    ],
    ids=["text", "scalar", "nested-array", "packages-not-a-list"],
)
def test_advisory_info_that_is_not_dnf5s_is_refused(text: str, why: str) -> None:
    with pytest.raises(AdvisoryOutputError, match=why):
        parse_advisory_info(text)


def test_version_of_dnf5_and_not_of_dnf4() -> None:
    assert parse_version(captured("rpm/dnf5-5.4.3.0-version.txt")) == "5.4.3.0"
    assert parse_version("4.14.0\n  Installed: dnf-0:4.14.0-3.noarch\n") is None


# -- telling dnf 5 from dnf 4 --------------------------------------------------------


def _tool(tmp_path: Path, name: str, content: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(content)
    path.chmod(0o755)
    return path


def test_dnf5_is_told_by_its_binary(tmp_path: Path) -> None:
    elf = _tool(tmp_path, "dnf", b"\x7fELF\x02\x01\x01")
    script = _tool(tmp_path, "dnf-3", b"#!/usr/bin/python3\nimport dnf\n")
    (tmp_path / "dnf5").write_bytes(b"#!/bin/sh\n")
    link5, link4 = tmp_path / "bin-dnf", tmp_path / "bin-dnf4"
    link5.symlink_to(tmp_path / "dnf5")
    link4.symlink_to(script)
    assert [is_dnf5(p) for p in (elf, link5, script, link4, tmp_path / "missing", None)] == [
        True, True, False, False, False, False,
    ]  # fmt: skip


def test_the_dnf_backend_is_dnf5s_where_dnf_is_dnf5(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    context = BackendContext(Target.at(tmp_path), RHEL, tmp_path / "work")
    monkeypatch.setattr(dnf5, "host_dnf", lambda: str(_tool(tmp_path, "dnf", b"\x7fELF")))
    assert type(DnfBackend(context)) is Dnf5Backend
    assert type(YumBackend(context)) is YumBackend  # yum is never driven as dnf 5
    monkeypatch.setattr(dnf5, "host_dnf", lambda: str(_tool(tmp_path, "dnf-3", b"#!/usr/bin/py")))
    assert type(DnfBackend(context)) is DnfBackend


# -- command lines -------------------------------------------------------------------


def test_dnf5_on_the_host_uses_its_own_configuration() -> None:
    host = Target.at("/")
    env = Dnf5Environment(host, dnf5.DNF5, RpmDatabase(host, "/var/lib/rpm"), Path("/unused"))
    assert env.argv("upgrade", "flac-1.4.0-1.fc29.x86_64") == [
        "dnf", "-y", "--setopt=exit_on_lock=True", "upgrade", "flac-1.4.0-1.fc29.x86_64",
    ]  # fmt: skip
    assert env.cachedir == Path("/var/cache/libdnf5")
    assert env.fcntl_lock_files() == [Path("/run/dnf/rpmtransaction.lock")]


@pytest.fixture
def fx(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> OfflineFixture:
    return offline_dnf5.build(tmp_path, monkeypatch)


def _argvs(commands: CannedCommands, program: str = "dnf") -> list[tuple[str, ...]]:
    return [a for a in commands.argvs if a[0] == program]


def test_every_command_line_of_a_scan_apply_and_rollback(
    fx: OfflineFixture, tmp_path: Path
) -> None:
    root = tmp_path / "root"
    dnf = dnf_prefix(root)
    probe = fx.backend.probe()
    assert (probe.status, probe.version) == (ProbeStatus.PRESENT, "5.4.3.0")
    (update,) = fx.backend.scan().updates
    change = update.change()
    keep = tmp_path / "keep"
    (source,) = fx.backend.prepare_rollback([change], keep, Transcript())
    assert fx.backend.apply([change], Transcript()).ok
    kept = {source.change.key: source.kept_file} if source.kept_file else {}
    assert fx.backend.rollback([change.reversed()], Transcript(), kept).ok
    kept_file = keep / rpm_filename(NAME, OLD, ARCH)
    assert _argvs(fx.commands) == [
        ("dnf", "--version"),
        (*dnf, *CACHED, "check-upgrade"),
        (*dnf, *CACHED, "advisory", "info", "--json", "--updates"),
        (*dnf, "download", f"--destdir={keep}", "--skip-unavailable", f"{NAME}-{OLD}.{ARCH}"),
        (*dnf, "upgrade", f"{NAME}-{NEW}.{ARCH}"),
        (*dnf, "downgrade", str(kept_file)),
    ]
    assert not any("--use-host-config" in a for argv in fx.commands.argvs for a in argv)
    reposdir = next(a for a in dnf if a.startswith("--setopt=reposdir="))
    assert reposdir.partition("=")[2].partition("=")[2].split(",") == [
        f"{root}/etc/yum.repos.d",
        f"{root}/etc/distro.repos.d",
        f"{root}/usr/share/dnf5/repos.d",
    ]
    assert fx.versions()[NAME] == OLD


def test_refresh_is_dnf5s_makecache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = offline_dnf5.dnf5_root(tmp_path)
    commands = offline_dnf5.canned_dnf5(root, fedora_database(), {"yes": True})
    commands.answers[(*dnf_prefix(root), "makecache", "--refresh")] = ""
    commands.install(monkeypatch, start=True)
    offline_dnf5.backend(root, tmp_path / "work").scan(refresh=True)
    assert _argvs(commands)[:2] == [
        ("dnf", "--version"),
        (*dnf_prefix(root), "makecache", "--refresh"),
    ]


# -- what a scan says ----------------------------------------------------------------


def test_a_scan_classifies_from_dnf5s_own_advisories(fx: OfflineFixture) -> None:
    (update,) = fx.backend.scan().updates
    assert (update.name, update.installed_version, update.available_version) == (NAME, OLD, NEW)
    assert (update.classification, update.severity) == (
        Classification.ENHANCEMENT,
        Severity.MODERATE,
    )
    assert update.notes == (f"advisories: {FLAC_ADVISORY}",)
    assert update.source.label == "dnf-ci-fedora-updates-testing"
    assert not update.reboot_required


UPDATEINFO = f"""<?xml version="1.0" encoding="UTF-8"?>
<updates>
  <update type="enhancement">
    <id>{FLAC_ADVISORY}</id>
    <severity>Moderate</severity>
    <pkglist><collection>
      <package name="flac" arch="x86_64" epoch="0" version="1.3.3" release="8.fc29">
        <reboot_suggested>True</reboot_suggested>
      </package>
    </collection></pkglist>
  </update>
  <update type="security">
    <id>ONLY-IN-XML</id>
    <severity>Important</severity>
    <references><reference type="cve" id="CVE-2024-0001"/></references>
    <pkglist><collection>
      <package name="flac" arch="x86_64" epoch="0" version="1.4.0" release="1.fc29"/>
    </collection></pkglist>
  </update>
</updates>
"""
REPOMD = """<?xml version="1.0" encoding="UTF-8"?>
<repomd xmlns="http://linux.duke.edu/metadata/repo">
  <data type="updateinfo"><location href="repodata/updateinfo.xml"/></data>
</repomd>
"""


def _cache_updateinfo(root: Path) -> None:
    """The updates repository's metadata where dnf 5 keeps it (ID-HASH/repodata)."""
    repodata = root / "var/cache/libdnf5/updates-0123456789abcdef/repodata"
    repodata.mkdir(parents=True)
    (repodata / "repomd.xml").write_text(REPOMD)
    (repodata / "updateinfo.xml").write_text(UPDATEINFO)


def test_reboot_suggestions_come_from_dnf5s_cached_updateinfo(
    fx: OfflineFixture, tmp_path: Path
) -> None:
    _cache_updateinfo(tmp_path / "root")
    (update,) = fx.backend.scan().updates
    assert update.reboot_required
    # An advisory dnf 5 did not report (here: only in the XML) still counts.
    assert update.classification is Classification.SECURITY
    assert update.cves == ("CVE-2024-0001",)


def test_without_dnf5s_advisories_the_cached_updateinfo_serves(
    fx: OfflineFixture, tmp_path: Path
) -> None:
    _cache_updateinfo(tmp_path / "root")
    key = (*dnf_prefix(tmp_path / "root"), *CACHED, "advisory", "info", "--json", "--updates")
    fx.commands.answers[key] = Reply(1, "", "Failed to load repositories\n")
    result = fx.backend.scan()
    (update,) = result.updates
    assert update.classification is Classification.SECURITY
    assert any("dnf advisory info gave no advisories" in w for w in result.warnings)


# -- failures ------------------------------------------------------------------------


@contextmanager
def fcntl_lock_held(path: Path) -> Iterator[int]:
    """Another process holding an ``fcntl`` write lock on ``path``, as dnf 5 does."""
    path.parent.mkdir(parents=True, exist_ok=True)
    code = (
        "import fcntl, sys, time\n"
        "f = open(sys.argv[1], 'a')\n"
        "fcntl.lockf(f, fcntl.LOCK_EX)\n"
        "print('locked', flush=True)\n"
        "time.sleep(120)\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code, str(path)], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    try:
        assert proc.stdout.readline().strip() == "locked"
        yield proc.pid
    finally:
        proc.kill()
        proc.wait()
        proc.stdout.close()


def test_a_held_transaction_lock_is_waited_for_and_named(
    fx: OfflineFixture, tmp_path: Path
) -> None:
    change = PackageChange("dnf", NAME, ARCH, OLD, NEW)
    lock = tmp_path / "root/run/dnf/rpmtransaction.lock"
    with fcntl_lock_held(lock) as pid, pytest.raises(LockHeldError) as caught:
        fx.backend.apply([change], Transcript())
    assert (caught.value.holder_pid, caught.value.lock_path) == (pid, str(lock))
    assert caught.value.exit_code == 75
    assert not any("upgrade" in argv for argv in fx.commands.argvs)
    assert fx.versions()[NAME] == OLD


def test_dnf5s_own_lock_failure_is_a_held_lock(fx: OfflineFixture, tmp_path: Path) -> None:
    key = (*dnf_prefix(tmp_path / "root"), "upgrade")
    fx.commands.answers[key] = Reply(1, "", captured("rpm/dnf5-transaction-lock.txt"))
    change = PackageChange("dnf", NAME, ARCH, OLD, NEW)
    with pytest.raises(LockHeldError) as caught:
        fx.backend.apply([change], Transcript())
    assert caught.value.lock_path == str(tmp_path / "root/run/dnf/rpmtransaction.lock")
    assert fx.versions()[NAME] == OLD


def test_a_version_dnf5_cannot_find_fails_that_package_only(
    fx: OfflineFixture, tmp_path: Path
) -> None:
    key = (*dnf_prefix(tmp_path / "root"), "upgrade")
    fx.commands.answers[key] = Reply(1, "", captured("rpm/dnf5-upgrade-no-match.txt"))
    result = fx.backend.apply([PackageChange("dnf", NAME, ARCH, OLD, NEW)], Transcript())
    (verdict,) = result.results
    assert (verdict.outcome, verdict.found_version) == (Outcome.FAILED, OLD)
    assert not result.ok
    assert fx.versions()[NAME] == OLD
