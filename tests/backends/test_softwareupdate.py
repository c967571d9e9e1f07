"""The softwareupdate backend on listings captured from a real Mac, with exact argv.

softwareupdate cannot run here: the probe finds a stand-in that must never run and the
process gateway is a recording fake (tests/data/softwareupdate/PROVENANCE.md).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from patchd.backends import backend_class
from patchd.backends.base import Outcome, ProbeStatus
from patchd.backends.softwareupdate.backend import (
    SoftwareUpdateBackend,
    install_argv,
    list_argv,
)
from patchd.backends.softwareupdate.listing import parse_list
from patchd.errors import BackendError
from patchd.models import Classification, PackageChange
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

LIST = ("softwareupdate", "--list")
SW_VERS = ("sw_vers", "-productVersion")
NONE = Answer(
    stdout=captured("softwareupdate", "list-none-stdout.txt"),
    stderr=captured("softwareupdate", "list-none-stderr.txt"),
)


@pytest.fixture
def gateway(monkeypatch: pytest.MonkeyPatch) -> FakeGateway:
    return install_gateway(monkeypatch)


@pytest.fixture
def mac(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, gateway: FakeGateway
) -> SoftwareUpdateBackend:
    """The backend on a (pretend) Mac whose softwareupdate answers from captures."""
    install_tool(make_tool_dir(tmp_path, monkeypatch), "softwareupdate")
    gateway.answers[SW_VERS] = "26.7\n"
    return SoftwareUpdateBackend(context(tmp_path, "darwin"))


def test_the_listing_of_a_real_mac_is_parsed() -> None:
    updates = parse_list(captured("softwareupdate", "list-mixed.txt"))
    assert [(u.label, u.version, u.needs_restart, u.recommended) for u in updates] == [
        ("Safari27.0TahoeAuto-27.0", "27.0", False, True),
        ("Command Line Tools for Xcode 27.0-27.0", "27.0", False, True),
        ("macOS Tahoe 26.7.1-25H300", "26.7.1", True, True),
        ("macOS Tahoe 26.7.1 (a)-25H300a", "26.7.1 (a)", True, True),
        ("macOS 27-26A428", "27", True, True),
    ]
    assert updates[2].size_bytes == 1843200 * 1024
    assert updates[3].title == "macOS Tahoe 26.7.1 (a)"


def test_nothing_available_is_no_update() -> None:
    assert parse_list(NONE.stdout + NONE.stderr) == []


def test_a_label_without_its_title_line_is_an_error_not_a_guess() -> None:
    header = captured("softwareupdate", "list-none-stdout.txt")
    with pytest.raises(BackendError, match="without its Title line"):
        parse_list(header + "* Label: macOS Next-27Z1\n")


def test_probe_on_a_mac_and_elsewhere(
    tmp_path: Path, mac: SoftwareUpdateBackend, gateway: FakeGateway
) -> None:
    probe = mac.probe()
    assert (probe.status, probe.version) == (ProbeStatus.PRESENT, "26.7")
    assert gateway.calls == [SW_VERS]
    linux = SoftwareUpdateBackend(context(tmp_path, "linux"))
    assert str(linux.probe().detail) == "softwareupdate exists only on macOS"
    assert linux.probe().status is ProbeStatus.ABSENT
    image = SoftwareUpdateBackend(context(tmp_path, "darwin", root=str(tmp_path)))
    assert image.probe().status is ProbeStatus.ABSENT
    assert gateway.calls == [SW_VERS]
    assert backend_class("softwareupdate") is SoftwareUpdateBackend


def test_scan_maps_restart_and_apple_security_titles(
    mac: SoftwareUpdateBackend, gateway: FakeGateway
) -> None:
    gateway.answers[LIST] = captured("softwareupdate", "list-mixed.txt")
    updates = {u.name: u for u in mac.scan().updates}
    assert gateway.calls[-1] == LIST
    assert updates["macOS Tahoe 26.7.1-25H300"].reboot_required is True
    assert updates["Safari27.0TahoeAuto-27.0"].reboot_required is False
    rsr = updates["macOS Tahoe 26.7.1 (a)-25H300a"]
    assert rsr.classification is Classification.OTHER  # "(a)" releases are not titled "Security"
    assert updates["macOS 27-26A428"].id == "softwareupdate:macOS 27-26A428:all=27"
    assert {u.backend for u in updates.values()} == {"softwareupdate"}


def test_an_apple_security_release_is_classified_security() -> None:
    # Title text as Apple names such releases; the line layout is the captured one.
    line = captured("softwareupdate", "list-major-only.txt").replace(
        "macOS 27, Version: 27", "macOS Background Security Improvement (a), Version: 26.3.1 (a)"
    )
    (update,) = parse_list(line)
    assert update.security_named


def test_apply_installs_by_label_and_judges_from_the_fresh_listing(
    mac: SoftwareUpdateBackend, gateway: FakeGateway
) -> None:
    after = captured("softwareupdate", "list-major-only.txt")  # only the upgrade is left
    gateway.answers[LIST] = after
    gateway.answers[("softwareupdate", "--install")] = "Downloading Safari\nDone.\n"
    changes = [
        PackageChange("softwareupdate", "Safari27.0TahoeAuto-27.0", "all", "", "27.0"),
        PackageChange("softwareupdate", "macOS 27-26A428", "all", "", "27"),
    ]
    transcript = Transcript()
    result = mac.apply(changes, transcript)
    assert tuple(install_argv([c.name for c in changes])) in gateway.calls
    assert install_argv(["a b"]) == ["softwareupdate", "--install", "a b"]
    assert [(r.change.name, r.outcome) for r in result.results] == [
        ("Safari27.0TahoeAuto-27.0", Outcome.DONE),
        ("macOS 27-26A428", Outcome.FAILED),  # still offered: not installed
    ]
    assert gateway.calls[-1] == tuple(list_argv())
    assert transcript.entries[0].argv[:2] == ("softwareupdate", "--install")


def test_no_rollback_path_and_foreign_changes_refused(
    mac: SoftwareUpdateBackend, gateway: FakeGateway, tmp_path: Path
) -> None:
    change = PackageChange("softwareupdate", "macOS 27-26A428", "all", "", "27")
    (source,) = mac.prepare_rollback([change], tmp_path / "keep", Transcript())
    assert (source.available, source.detail) == (
        False,
        "Apple offers no way to uninstall an installed macOS update",
    )
    with pytest.raises(BackendError, match="belongs to homebrew"):
        mac.apply([PackageChange("homebrew", "x", "all", "", "1")], Transcript())
    assert gateway.calls == [SW_VERS]
