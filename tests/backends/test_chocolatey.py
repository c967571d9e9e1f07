"""The Chocolatey backend on output captured from real choco, with exact argv.

choco cannot run here: the probe finds a stand-in that must never run and the process
gateway is a recording fake (tests/data/chocolatey/PROVENANCE.md).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from patchd.backends import backend_class, compare_versions
from patchd.backends.base import Outcome, ProbeStatus
from patchd.backends.chocolatey.backend import (
    ChocolateyBackend,
    downgrade_argv,
    list_argv,
    outdated_argv,
    search_argv,
    upgrade_argv,
)
from patchd.backends.chocolatey.listing import parse_outdated, parse_versions
from patchd.errors import BackendError
from patchd.models import PackageChange, UpdateState
from patchd.transcript import Transcript
from tests.backends.gateway import (
    Answer,
    FakeGateway,
    captured,
    context,
    install_gateway,
    install_tool,
    make_tool_dir,
)

VERSION = ("choco", "--version")


@pytest.fixture
def gateway(monkeypatch: pytest.MonkeyPatch) -> FakeGateway:
    return install_gateway(monkeypatch)


@pytest.fixture
def choco(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, gateway: FakeGateway
) -> ChocolateyBackend:
    install_tool(make_tool_dir(tmp_path, monkeypatch), "choco")
    gateway.answers[VERSION] = captured("chocolatey", "version.txt")
    return ChocolateyBackend(context(tmp_path, "win32"))


def test_outdated_leaves_out_what_chocolatey_0_10_listed_as_up_to_date() -> None:
    (atom,) = parse_outdated(captured("chocolatey", "outdated-0.10.8.txt"))
    assert (atom.name, atom.installed, atom.available, atom.pinned) == (
        "atom",
        "1.23.3",
        "1.24.0",
        False,
    )


def test_list_and_search_records_and_other_lines() -> None:
    listed = parse_versions(captured("chocolatey", "list-local-only.txt"))
    assert listed[3] == ("ConEmu", "14.9.23.0")
    assert len(listed) == 6
    noisy = "Chocolatey v2.2.2\r\n" + captured("chocolatey", "search-by-id.txt").replace(
        "\n", "\r\n"
    )
    assert parse_versions(noisy)[1] == ("VirtualBox.ExtensionPack", "5.1.10.20161223")
    assert len(parse_versions(noisy)) == 4


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        pytest.param("1.24.0", "1.23.3", 1, id="minor"),
        pytest.param("16.02.0.20170209", "16.02.0.20170210", -1, id="fourth-part"),
        pytest.param("1.2", "1.2.0.0", 0, id="missing-parts-are-zero"),
        pytest.param("1.0.0-beta", "1.0.0", -1, id="prerelease-before-release"),
        pytest.param("1.0.0-alpha", "1.0.0-alpha.1", -1, id="shorter-prerelease-first"),
        pytest.param("1.0.0-2", "1.0.0-beta", -1, id="numeric-label-before-text"),
        pytest.param("1.1.28.00", "1.1.28.0", 0, id="leading-zeros"),
        pytest.param("2.0.0+build5", "2.0.0", 0, id="metadata-ignored"),
    ],
)
def test_versions_order_as_nuget_orders_them(a: str, b: str, expected: int) -> None:
    assert compare_versions("chocolatey", a, b) == expected


def test_an_invalid_version_is_refused() -> None:
    with pytest.raises(ValueError, match="not a Chocolatey"):
        compare_versions("chocolatey", "latest", "1.0")


def test_argv_of_every_operation() -> None:
    assert outdated_argv() == ["choco", "outdated", "-r"]
    assert list_argv(2) == ["choco", "list", "-r"]
    assert list_argv(1) == ["choco", "list", "--local-only", "-r"]
    assert upgrade_argv("atom", "1.24.0") == [
        "choco", "upgrade", "atom", "--version", "1.24.0", "-y", "--no-progress",
    ]  # fmt: skip
    assert downgrade_argv("atom", "1.23.3") == [
        "choco", "install", "atom", "--version", "1.23.3", "--allow-downgrade", "-y", "--no-progress",
    ]  # fmt: skip
    assert search_argv("atom") == ["choco", "search", "atom", "--exact", "--all-versions", "-r"]


def test_probe_reads_the_major_version_and_lists_accordingly(
    tmp_path: Path, choco: ChocolateyBackend, gateway: FakeGateway
) -> None:
    probe = choco.probe()
    assert (probe.status, probe.version) == (ProbeStatus.PRESENT, "0.11.0")
    gateway.answers[tuple(list_argv(1))] = captured("chocolatey", "list-local-only.txt")
    names = [p.name for p in choco.installed_packages()]
    assert names[:2] == ["adobereader", "ccleaner"]
    assert gateway.calls == [VERSION, tuple(list_argv(1))]
    linux = ChocolateyBackend(context(tmp_path, "linux"))
    assert (linux.probe().status, linux.probe().detail) == (
        ProbeStatus.ABSENT,
        "Chocolatey exists only on Windows",
    )
    assert backend_class("chocolatey") is ChocolateyBackend


def test_probe_says_broken_for_a_choco_that_prints_no_version(
    choco: ChocolateyBackend, gateway: FakeGateway
) -> None:
    gateway.answers[VERSION] = "Access to the path is denied.\r\n"
    probe = choco.probe()
    assert probe.status is ProbeStatus.BROKEN
    assert "Access to the path is denied" in probe.detail


def test_scan_accepts_the_enhanced_exit_code_and_holds_pinned_packages(
    choco: ChocolateyBackend, gateway: FakeGateway
) -> None:
    # The real listing, plus one pinned line built inline (no capture shows "|true").
    text = captured("chocolatey", "outdated-0.10.8.txt") + "git|2.17.0|2.18.0|true\n"
    gateway.answers[tuple(outdated_argv())] = Answer(stdout=text, returncode=2)
    updates = {u.name: u for u in choco.scan().updates}
    assert [u.id for u in updates.values()] == [
        "chocolatey:atom:all=1.24.0",
        "chocolatey:git:all=2.18.0",
    ]
    assert updates["git"].state is UpdateState.HELD
    assert updates["atom"].state is UpdateState.AVAILABLE


def test_apply_pins_the_version_accepts_reboot_codes_and_judges_from_choco_list(
    choco: ChocolateyBackend, gateway: FakeGateway
) -> None:
    choco.probe()
    after = captured("chocolatey", "list-local-only.txt").replace("gimp|2.8.14.1", "gimp|2.8.16")
    gateway.answers[tuple(list_argv(1))] = after
    gateway.answers[("choco", "upgrade", "gimp")] = Answer(
        stdout="upgraded 1/1\r\n", returncode=3010
    )
    gateway.answers[("choco", "upgrade", "git")] = Answer(
        stdout="git not upgraded. An error occurred during installation\r\n", returncode=1
    )
    changes = [
        PackageChange("chocolatey", "gimp", "all", "2.8.14.1", "2.8.16"),
        PackageChange("chocolatey", "git", "all", "1.9.5.20150114", "2.0.0"),
    ]
    transcript = Transcript()
    result = choco.apply(changes, transcript)
    assert [(r.change.name, r.outcome, r.found_version) for r in result.results] == [
        ("gimp", Outcome.DONE, "2.8.16"),
        ("git", Outcome.FAILED, "1.9.5.20150114"),
    ]
    reboot = "gimp: installed; Windows needs a restart (exit 3010)"
    assert reboot in [e.output for e in transcript.entries]
    assert choco.apply(changes[:1], Transcript()).notes == (reboot,)
    assert tuple(upgrade_argv("git", "2.0.0")) in gateway.calls


def test_rollback_needs_the_old_version_on_a_feed(
    tmp_path: Path, choco: ChocolateyBackend, gateway: FakeGateway
) -> None:
    gateway.answers[tuple(search_argv("virtualbox"))] = captured("chocolatey", "search-exact.txt")
    back = PackageChange("chocolatey", "virtualbox", "all", "6.1.0", "6.1.2")
    gone = PackageChange("chocolatey", "virtualbox", "all", "5.2.0", "6.1.2")
    sources = [
        choco.prepare_rollback([c], tmp_path / "keep", Transcript())[0] for c in (back, gone)
    ]
    assert [s.available for s in sources] == [True, False]
    assert sources[1].detail == "no feed offers 5.2.0 any more"
    gateway.answers[("choco", "install")] = ""
    gateway.answers[tuple(list_argv(0))] = "virtualbox|6.1.0\r\n"  # Chocolatey 0.11: --local-only
    result = choco.rollback([back.reversed()], Transcript())
    assert result.ok
    assert tuple(downgrade_argv("virtualbox", "6.1.0")) in gateway.calls


def test_a_change_for_another_backend_is_refused_before_anything_runs(
    choco: ChocolateyBackend, gateway: FakeGateway
) -> None:
    with pytest.raises(BackendError, match="belongs to winget"):
        choco.apply([PackageChange("winget", "git", "all", "1", "2")], Transcript())
    assert gateway.calls == []
