"""The winget backend on tables captured from real winget, with exact argv.

winget cannot run here: the probe finds a stand-in that must never run and the process
gateway is a recording fake (tests/data/winget/PROVENANCE.md).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from patchd.backends import BACKENDS, backend_class, compare_versions, select_backends
from patchd.backends.base import BackendContext, Outcome, ProbeStatus
from patchd.backends.winget.backend import (
    WingetBackend,
    install_argv,
    list_installed_argv,
    list_upgrades_argv,
    parse_versions,
    upgrade_argv,
    versions_argv,
)
from patchd.backends.winget.table import parse_table
from patchd.errors import BackendError
from patchd.models import PackageChange
from patchd.platforms import MACOS, WINDOWS, OsProfile
from patchd.target import Target
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

AGREE = ("--accept-source-agreements", "--disable-interactivity")
UPGRADES = ("winget", "upgrade", "--include-unknown", *AGREE)
LIST = ("winget", "list", *AGREE)


@pytest.fixture
def gateway(monkeypatch: pytest.MonkeyPatch) -> FakeGateway:
    return install_gateway(monkeypatch)


@pytest.fixture
def winget(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, gateway: FakeGateway) -> WingetBackend:
    install_tool(make_tool_dir(tmp_path, monkeypatch), "winget")
    gateway.answers[("winget", "--version")] = "v1.3.431\r\n"
    return WingetBackend(context(tmp_path, "win32"))


def test_real_upgrade_tables_are_read_by_column_position() -> None:
    rows = parse_table(captured("winget", "upgrade-v1.3-issue2022.txt"))
    assert [(r.id, r.version, r.available, r.source) for r in rows] == [
        ("Git.Git", "2.20.1", "2.35.1.2", "winget"),
        ("HexChat.HexChat", "2.14.2", "2.16.1", "winget"),
        ("Microsoft.Teams", "1.4.00.23957", "1.5.00.4689", "winget"),
        ("Twilio.Authy", "1.9.0", "2.0.0", "winget"),
        ("Microsoft.Teams", "1.2.0.24753", "1.5.00.4689", "winget"),
    ]  # both footer lines are left out
    assert rows[2].name == "Microsoft Teams"
    older = parse_table(captured("winget", "upgrade-v1.1-issue1869.txt"))
    assert len(older) == 6
    assert older[3] == older[4]  # winget listed Microsoft.Office twice


def test_unknown_versions_truncated_names_and_a_missing_source_column() -> None:
    unknown = parse_table(captured("winget", "upgrade-unknown-issue2381.txt"))
    assert [(r.id, r.version) for r in unknown] == [
        ("Mozilla.Firefox", "86.0"),
        ("Cyanfish.NAPS2", "Unknown"),
        ("GOG.Galaxy", "Unknown"),
    ]
    truncated = parse_table(captured("winget", "upgrade-truncated-waupdate16.txt"))
    assert truncated[3].name == "Windows Package Manager Manifest Creat\u2026"
    assert truncated[3].id == "Microsoft.WingetCreate"
    assert not any(r.truncated_id for r in truncated)
    (rustup,) = parse_table(captured("winget", "list-id-issue2714.txt"))
    assert (rustup.id, rustup.version, rustup.available, rustup.source) == (
        "Rustlang.Rustup",
        "Unknown",
        "1.25.1",
        "",
    )


def test_spinner_output_before_the_table_crlf_and_no_table_at_all() -> None:
    table = captured("winget", "upgrade-unknown-issue2381.txt")
    assert parse_table(table.replace("\n", "\r\n")) == parse_table(table)  # winget writes CRLF
    assert parse_table("   - \r   \\ \r" + table.lstrip("\n")) == parse_table(table)
    assert parse_table("No installed package found matching input criteria.\r\n") == []


def test_show_versions_skips_the_leftover_spinner() -> None:
    assert parse_versions(captured("winget", "show-versions-issue318.txt")) == [
        "3.12.0",
        "3.11.0",
        "3.8.0",
        "3.6.4",
    ]


def test_argv_of_every_operation() -> None:
    assert list_upgrades_argv() == list(UPGRADES)
    assert list_installed_argv() == list(LIST)
    assert upgrade_argv("Git.Git", "2.35.1.2") == [
        "winget", "upgrade", "--id", "Git.Git", "--version", "2.35.1.2", "--exact", "--silent",
        "--accept-package-agreements", *AGREE,
    ]  # fmt: skip
    assert install_argv("Git.Git", "2.20.1") == [
        "winget", "install", "--id", "Git.Git", "--version", "2.20.1", "--exact", "--silent",
        "--force", "--accept-package-agreements", *AGREE,
    ]  # fmt: skip
    assert versions_argv("Git.Git") == [
        "winget",
        "show",
        "--id",
        "Git.Git",
        "--exact",
        "--versions",
        *AGREE,
    ]


def test_probe_and_registry(tmp_path: Path, winget: WingetBackend, gateway: FakeGateway) -> None:
    probe = winget.probe()
    assert (probe.status, probe.version) == (ProbeStatus.PRESENT, "1.3.431")
    assert gateway.calls == [("winget", "--version")]
    mac = WingetBackend(context(tmp_path, "darwin"))
    assert (mac.probe().status, mac.probe().detail) == (
        ProbeStatus.ABSENT,
        "winget exists only on Windows",
    )
    assert backend_class("winget") is WingetBackend
    with pytest.raises(ValueError, match="no version ordering"):
        compare_versions("winget", "1.0", "2.0")


def test_scan_lists_each_package_once_with_ids_and_warns_about_duplicates(
    winget: WingetBackend, gateway: FakeGateway
) -> None:
    gateway.answers[UPGRADES] = captured("winget", "upgrade-v1.3-issue2022.txt")
    result = winget.scan()
    assert [u.id for u in result.updates] == [
        "winget:Git.Git:all=2.35.1.2",
        "winget:HexChat.HexChat:all=2.16.1",
        "winget:Microsoft.Teams:all=1.5.00.4689",
        "winget:Twilio.Authy:all=2.0.0",
    ]
    assert result.updates[2].installed_version == "1.4.00.23957"
    assert result.warnings == (
        "winget lists Microsoft.Teams more than once (installed 1.4.00.23957, 1.2.0.24753); "
        "the first is used",
    )
    assert gateway.calls[-1] == UPGRADES


def test_apply_pins_the_version_and_the_verdict_reads_winget_list(
    winget: WingetBackend, gateway: FakeGateway
) -> None:
    listing = captured("winget", "upgrade-unknown-issue2381.txt")
    gateway.answers[LIST] = listing.replace("86.0    103.0 ", "103.0   103.0 ")
    gateway.answers[("winget", "upgrade", "--id")] = "Successfully installed\r\n"
    changes = [
        PackageChange("winget", "Mozilla.Firefox", "all", "86.0", "103.0"),
        PackageChange("winget", "GOG.Galaxy", "all", "Unknown", "2.0.49.1"),
    ]
    result = winget.apply(changes, Transcript())
    assert [(r.change.name, r.outcome, r.found_version) for r in result.results] == [
        ("Mozilla.Firefox", Outcome.DONE, "103.0"),
        ("GOG.Galaxy", Outcome.FAILED, "Unknown"),
    ]
    assert tuple(upgrade_argv("Mozilla.Firefox", "103.0")) in gateway.calls
    assert tuple(upgrade_argv("GOG.Galaxy", "2.0.49.1")) in gateway.calls


def test_rollback_source_is_checked_and_rollback_reinstalls_the_old_version(
    tmp_path: Path, winget: WingetBackend, gateway: FakeGateway
) -> None:
    gateway.answers[tuple(versions_argv("Badlion.BadlionClient"))] = captured(
        "winget", "show-versions-issue318.txt"
    )
    kept = PackageChange("winget", "Badlion.BadlionClient", "all", "3.11.0", "3.12.0")
    gone = PackageChange("winget", "Badlion.BadlionClient", "all", "3.9.0", "3.12.0")
    unknown = PackageChange("winget", "GOG.Galaxy", "all", "Unknown", "2.0.49.1")
    sources = [
        winget.prepare_rollback([c], tmp_path / "keep", Transcript())[0]
        for c in (kept, gone, unknown)
    ]
    assert [s.available for s in sources] == [True, False, False]
    assert sources[1].detail == "the source no longer offers 3.9.0"
    assert sources[2].detail == "the installed version is Unknown"
    gateway.answers[("winget", "install")] = "Successfully installed\r\n"
    gateway.answers[LIST] = (
        "Name           Id                    Version\r\n"
        "--------------------------------------------\r\n"
        "Badlion Client Badlion.BadlionClient 3.11.0\r\n"
    )  # a table of the captured layout, naming the rolled-back package
    result = winget.rollback([kept.reversed()], Transcript())
    assert result.ok
    assert gateway.calls[-2] == tuple(install_argv("Badlion.BadlionClient", "3.11.0"))


def test_a_failing_upgrade_is_judged_and_foreign_changes_are_refused(
    winget: WingetBackend, gateway: FakeGateway
) -> None:
    gateway.answers[("winget", "upgrade", "--id")] = Answer(
        stdout="No applicable upgrade found.\r\n", returncode=-1978335189
    )
    gateway.answers[LIST] = captured("winget", "upgrade-unknown-issue2381.txt")
    change = PackageChange("winget", "Mozilla.Firefox", "all", "86.0", "103.0")
    result = winget.apply([change], Transcript())
    assert result.results[0].outcome is Outcome.FAILED
    assert "No applicable upgrade found." in result.results[0].detail
    calls = len(gateway.calls)
    with pytest.raises(BackendError, match="belongs to chocolatey"):
        winget.apply([PackageChange("chocolatey", "git", "all", "1", "2")], Transcript())
    assert len(gateway.calls) == calls


@pytest.mark.parametrize("profile", [MACOS, WINDOWS], ids=["macos", "windows"])
def test_on_this_linux_machine_every_macos_and_windows_backend_is_absent(
    profile: OsProfile, tmp_path: Path, gateway: FakeGateway
) -> None:
    def context_for(name: str) -> BackendContext:
        return BackendContext(Target(Path("/")), profile, tmp_path / name)  # the real platform

    assert set(profile.backends) <= set(BACKENDS)
    usable, problems = select_backends(profile, context_for)
    assert (usable, problems) == ([], [])  # skipped quietly
    for name in profile.backends:
        probe = backend_class(name)(context_for(name)).probe()
        assert probe.status is ProbeStatus.ABSENT
        assert probe.detail
    assert gateway.calls == []
