"""The Homebrew backend on output captured from real Homebrew, with the exact argv of each step.

Homebrew cannot run here: ``brew`` is a stand-in that must never run, and the process
gateway is a recording fake answering with captures (tests/data/homebrew/PROVENANCE.md).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from patchd.backends import backend_class, compare_versions
from patchd.backends.base import Outcome, ProbeStatus
from patchd.backends.homebrew.backend import BREW_ENV, HomebrewBackend, brew_argv
from patchd.backends.homebrew.listing import parse_list_versions, parse_outdated, version_key
from patchd.errors import BackendError
from patchd.models import Classification, PackageChange, UpdateState
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

NOBODY = 65534
SUDO_ENV = [f"{k}={v}" for k, v in sorted(BREW_ENV.items())]


@pytest.fixture
def gateway(monkeypatch: pytest.MonkeyPatch) -> FakeGateway:
    return install_gateway(monkeypatch)


@pytest.fixture
def brew(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A stand-in ``brew`` on PATH, owned (as Homebrew must be) by an ordinary user."""
    path = install_tool(make_tool_dir(tmp_path, monkeypatch), "brew")
    if os.geteuid() == 0:
        os.chown(path, NOBODY, -1)
    return path


def expected(brew: Path, *args: str) -> tuple[str, ...]:
    """The argv patchd must build: through sudo as the owner when the test runs as root."""
    if os.geteuid() == 0:
        return ("sudo", "-n", "-H", "-u", "nobody", "/usr/bin/env", *SUDO_ENV, str(brew), *args)
    return (str(brew), *args)


def backend(tmp_path: Path) -> HomebrewBackend:
    return HomebrewBackend(context(tmp_path, "darwin"))


def test_outdated_formulae_and_casks_from_real_homebrew() -> None:
    formulae = parse_outdated(captured("homebrew", "outdated-formula-v2.json"))
    assert [(o.name, o.kind, o.installed_version, o.current, o.pinned) for o in formulae] == [
        ("pygobject3", "formula", "3.36.1", "3.38.0", False),
        ("rav1e", "formula", "0.3.3", "0.3.4", False),
    ]
    casks = parse_outdated(captured("homebrew", "outdated-cask-v2.json"))
    assert [(o.name, o.kind, o.installed) for o in casks] == [
        ("electrum", "cask", ("4.0.2",)),  # Homebrew 2.x printed a string, not a list
        ("qlcolorcode", "cask", ("3.0.2",)),
    ]


def test_greedy_casks_skip_latest_and_split_several_versions() -> None:
    casks = {
        o.name: o for o in parse_outdated(captured("homebrew", "outdated-greedy-cask-v2.json"))
    }
    assert "caldigit-thunderbolt-charging" not in casks  # latest -> latest: nothing to move to
    lg = casks["lg-onscreen-control"]
    assert lg.installed == ("5.33,cV8xqv5TSZA.upgrading", "5.47,yi5XuIZw6hg")
    assert lg.installed_version == "5.47,yi5XuIZw6hg"
    assert len(casks) == 4


def test_list_versions_picks_the_newest_kept_version_and_flags_missing_files() -> None:
    listed = {
        x.name: x for x in parse_list_versions(captured("homebrew", "list-versions-cask.txt"))
    }
    assert listed["virtualbox"].version == "5.1.10-112026"  # 10 sorts after 8, numerically
    assert listed["tunnelblick"].version == "3.6.9_build_4685"
    assert listed["audacity"].missing is True
    assert listed["firefox"].versions == ("49.0.1",)
    formulae = parse_list_versions(captured("homebrew", "list-versions-formula.txt"))
    assert len(formulae) == 11
    assert version_key("1.10") > version_key("1.9")


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("not json", id="not-json"),
        pytest.param("[]", id="not-an-object"),
        pytest.param('{"formulae": [{"name": "x"}]}', id="entry-without-versions"),
        pytest.param('{"formulae": {"name": "x"}}', id="formulae-not-a-list"),
    ],
)
def test_malformed_outdated_json_is_a_clear_error(text: str) -> None:
    with pytest.raises(BackendError, match="brew outdated"):
        parse_outdated(text)


def test_probe_runs_brew_as_the_owner_of_the_installation(
    tmp_path: Path, brew: Path, gateway: FakeGateway
) -> None:
    gateway.answers[expected(brew, "--version")] = captured("homebrew", "version.txt")
    probe = backend(tmp_path).probe()
    assert probe.status is ProbeStatus.PRESENT, probe.detail
    assert probe.version == "1.8.6-124-g6cd4c31"
    assert gateway.calls == [expected(brew, "--version")]
    if os.geteuid() == 0:
        assert "run as nobody" in probe.detail
        assert gateway.envs == [None]  # the variables travel through env(1) in argv
    else:
        assert gateway.envs == [BREW_ENV]


def test_probe_refuses_a_root_owned_homebrew_when_root(
    tmp_path: Path, brew: Path, gateway: FakeGateway
) -> None:
    if os.geteuid() != 0:
        pytest.skip("only root can own the stand-in as root")  # the CI runs as root
    os.chown(brew, 0, -1)
    probe = backend(tmp_path).probe()
    assert probe.status is ProbeStatus.BROKEN
    assert "refuses to run as root" in probe.detail
    assert gateway.calls == []


def test_probe_says_absent_without_brew_and_for_another_root(
    tmp_path: Path, gateway: FakeGateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    make_tool_dir(tmp_path, monkeypatch)  # an empty directory on PATH: no brew anywhere
    probe = backend(tmp_path).probe()
    assert (probe.status, probe.detail) == (
        ProbeStatus.ABSENT,
        "brew is not installed (looked on PATH and in its prefixes)",
    )
    other = HomebrewBackend(context(tmp_path, "darwin", root=str(tmp_path)))
    assert other.probe().status is ProbeStatus.ABSENT
    assert gateway.calls == []


def test_the_registry_names_the_backend_and_orders_no_versions() -> None:
    assert backend_class("homebrew") is HomebrewBackend
    with pytest.raises(ValueError, match="no version ordering"):
        compare_versions("homebrew", "1.0", "2.0")


def test_scan_lists_formulae_and_casks_with_backend_and_ids(
    tmp_path: Path, brew: Path, gateway: FakeGateway
) -> None:
    both = {
        "formulae": json.loads(captured("homebrew", "outdated-formula-v2.json"))["formulae"],
        "casks": json.loads(captured("homebrew", "outdated-cask-v2.json"))["casks"],
    }
    gateway.answers[expected(brew, "--version")] = captured("homebrew", "version.txt")
    gateway.answers[expected(brew, "outdated", "--json=v2")] = json.dumps(both)
    result = backend(tmp_path).scan()
    assert [u.id for u in result.updates] == [
        "homebrew:pygobject3:formula=3.38.0",
        "homebrew:rav1e:formula=0.3.4",
        "homebrew:electrum:cask=4.0.3",
        "homebrew:qlcolorcode:cask=3.1.1",
    ]
    assert {u.backend for u in result.updates} == {"homebrew"}
    assert {u.classification for u in result.updates} == {Classification.OTHER}
    assert gateway.calls[-1] == expected(brew, "outdated", "--json=v2")


def test_a_pinned_formula_is_held(tmp_path: Path, brew: Path, gateway: FakeGateway) -> None:
    # Built inline: no published capture shows a pinned formula (see PROVENANCE.md).
    pinned = {
        "formulae": [
            {
                "name": "rav1e",
                "installed_versions": ["0.3.3"],
                "current_version": "0.3.4",
                "pinned": True,
                "pinned_version": "0.3.3",
            }
        ],
        "casks": [],
    }
    gateway.answers[expected(brew, "--version")] = captured("homebrew", "version.txt")
    gateway.answers[expected(brew, "outdated", "--json=v2")] = json.dumps(pinned)
    (update,) = backend(tmp_path).scan().updates
    assert update.state is UpdateState.HELD
    assert "brew pin" in update.notes[0]


def test_apply_upgrades_by_kind_and_the_verdict_comes_from_brew_list(
    tmp_path: Path, brew: Path, gateway: FakeGateway
) -> None:
    formulae_before = captured("homebrew", "list-versions-formula.txt")
    formulae_after = formulae_before.replace("atk 2.22.0", "atk 2.24.0")
    gateway.answers.update(
        {
            expected(brew, "--version"): captured("homebrew", "version.txt"),
            expected(brew, "upgrade"): "",
            expected(brew, "list", "--versions", "--formula"): formulae_after,
            expected(brew, "list", "--versions", "--cask"): captured(
                "homebrew", "list-versions-cask.txt"
            ),
        }
    )
    changes = [
        PackageChange("homebrew", "atk", "formula", "2.22.0", "2.24.0"),
        PackageChange("homebrew", "firefox", "cask", "49.0.1", "50.0.1"),
    ]
    transcript = Transcript()
    result = backend(tmp_path).apply(changes, transcript)
    assert [(r.change.name, r.outcome, r.found_version) for r in result.results] == [
        ("atk", Outcome.DONE, "2.24.0"),
        ("firefox", Outcome.FAILED, "49.0.1"),  # brew said nothing; its database disagrees
    ]
    assert gateway.calls[1:3] == [
        expected(brew, "upgrade", "--formula", "atk"),
        expected(brew, "upgrade", "--cask", "firefox"),
    ]
    assert [e.argv for e in transcript.entries] == gateway.calls[1:3]


def test_a_failing_formula_upgrade_still_lets_the_casks_run(
    tmp_path: Path, brew: Path, gateway: FakeGateway
) -> None:
    gateway.answers.update(
        {
            expected(brew, "--version"): captured("homebrew", "version.txt"),
            expected(brew, "upgrade", "--formula"): Answer(
                stderr="Error: atk: no bottle available!\n", returncode=1
            ),
            expected(brew, "upgrade", "--cask"): "",
            expected(brew, "list", "--versions"): captured("homebrew", "list-versions-cask.txt"),
        }
    )
    changes = [
        PackageChange("homebrew", "atk", "formula", "2.22.0", "2.24.0"),
        PackageChange("homebrew", "firefox", "cask", "49.0.1", "50.0.1"),
    ]
    result = backend(tmp_path).apply(changes, Transcript())
    assert not result.ok
    assert expected(brew, "upgrade", "--cask", "firefox") in gateway.calls
    assert any("no bottle available" in n for n in result.notes)


def test_no_rollback_path_is_said_before_applying_and_a_rollback_is_refused(
    tmp_path: Path, brew: Path, gateway: FakeGateway
) -> None:
    gateway.answers[expected(brew, "--version")] = captured("homebrew", "version.txt")
    change = PackageChange("homebrew", "atk", "formula", "2.22.0", "2.24.0")
    homebrew = backend(tmp_path)
    (source,) = homebrew.prepare_rollback([change], tmp_path / "keep", Transcript())
    assert source.available is False
    assert "brew switch" in source.detail
    with pytest.raises(BackendError, match="cannot roll back with Homebrew"):
        homebrew.rollback([change.reversed()], Transcript())
    assert gateway.calls == [expected(brew, "--version")]


def test_a_change_for_another_backend_is_refused_before_anything_runs(
    tmp_path: Path, brew: Path, gateway: FakeGateway
) -> None:
    foreign = PackageChange("winget", "atk", "formula", "2.22.0", "2.24.0")
    with pytest.raises(BackendError, match="belongs to winget"):
        backend(tmp_path).apply([foreign], Transcript())
    assert gateway.calls == []


def test_brew_argv_without_sudo_when_patchd_is_the_owner() -> None:
    assert brew_argv("/opt/homebrew/bin/brew", None, "upgrade", "--formula", "x") == [
        "/opt/homebrew/bin/brew",
        "upgrade",
        "--formula",
        "x",
    ]
    assert brew_argv("/opt/homebrew/bin/brew", "alice", "outdated")[:5] == [
        "sudo",
        "-n",
        "-H",
        "-u",
        "alice",
    ]
