"""The snap backend on captured ``snap`` output (snapd cannot run here: it needs its daemon).

The captures are real (tests/data/snap/PROVENANCE.md); a recording fake of the process
gateway answers with them and every argv is asserted. Where a test needs ``snap list``
to change after a refresh, it answers with the captured table and the revision the
real command would now show — built in the test, in the open.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from patchd.backends import backend_class, compare_versions
from patchd.backends.base import BackendContext, Outcome, ProbeStatus
from patchd.backends.snap.backend import SnapBackend
from patchd.backends.snap.table import parse_table, parse_version
from patchd.errors import BackendError, CommandError, ToolNotFoundError
from patchd.models import Classification, PackageChange, UpdateState
from patchd.platforms import UBUNTU
from patchd.target import Target
from patchd.transcript import Transcript
from tests.backends.fakeprocess import CannedCommands, Reply, captured

LIST = ("snap", "list")
REFRESH_LIST = ("snap", "refresh", "--list")
VERSION = ("snap", "version")


def snap(tmp_path: Path, root: str = "/") -> SnapBackend:
    context = BackendContext(Target(Path(root)), UBUNTU, tmp_path, {"arch": "amd64"})
    return SnapBackend(context)


def _with_revision(table: str, name: str, old: str, new: str) -> str:
    """The captured ``snap list`` as it reads once ``name`` moved from ``old`` to ``new``."""
    lines = table.splitlines(keepends=True)
    changed = [
        line.replace(f" {old} ", f" {new} ".ljust(len(old) + 2), 1)
        if line.startswith(name + " ")
        else line
        for line in lines
    ]
    assert changed != lines
    return "".join(changed)


def test_the_registry_names_the_backend_and_gives_it_no_version_order() -> None:
    assert backend_class("snap") is SnapBackend
    with pytest.raises(ValueError, match="no version ordering"):
        compare_versions("snap", "768", "770")  # revisions are not a release order


@pytest.mark.parametrize(
    ("capture", "expected"),
    [
        pytest.param(
            "snap-refresh-list.txt",
            [
                ("core", "16-2.45.1+git2022.b6b3c25", "9584"),
                ("get-iplayer", "3.26", "250"),
                ("qt551", "5.5", "30"),
            ],
            id="without-size",
        ),
        pytest.param(
            "snap-refresh-list-size.txt",
            [("intellij-idea-community", "2022.3.3", "421")],
            id="with-size",
        ),
        pytest.param("snap-refresh-none.txt", [], id="up-to-date"),
    ],
)
def test_refresh_list_tables_are_read_by_their_header(
    capture: str, expected: list[tuple[str, str, str]]
) -> None:
    rows = parse_table(captured(f"snap/{capture}"))
    assert [(r.name, r.version, r.revision) for r in rows] == expected


def test_snap_list_notes_say_held_and_disabled() -> None:
    rows = {r.name: r for r in parse_table(captured("snap/snap-list.txt"))}
    assert rows["yt-dlp"].notes == {"held"}
    assert rows["vlc"].notes == frozenset()
    assert rows["alacritty"].notes == {"classic"}
    all_vlc = parse_table(captured("snap/snap-list-all-vlc.txt"))
    assert [(r.revision, sorted(r.notes)) for r in all_vlc] == [("768", []), ("770", ["disabled"])]
    ubuntu = parse_table(captured("snap/snap-list-ubuntu-2404.txt"))
    assert len(ubuntu) == 9
    assert ("firefox", "129.0.2-1", "4793") in [(r.name, r.version, r.revision) for r in ubuntu]


def test_snap_version_names_snapd() -> None:
    assert parse_version(captured("snap/snap-version.txt"))["snapd"] == "2.38+19.04"


def test_probe_is_absent_here(tmp_path: Path) -> None:
    if shutil.which("snap"):
        pytest.skip("snap is installed on this machine")
    probe = snap(tmp_path).probe()
    assert (probe.status, probe.detail) == (ProbeStatus.ABSENT, "snap is not installed")


def test_probe_is_absent_for_an_alternate_root_without_asking_snap(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = CannedCommands({}).install(monkeypatch)
    probe = snap(tmp_path, "/srv/image").probe()
    assert probe.status is ProbeStatus.ABSENT
    assert probe.detail == "snapd manages only the running system, not /srv/image (no --root)"
    assert fake.calls == []


@pytest.mark.parametrize(
    ("answer", "status", "detail"),
    [
        pytest.param(
            captured("snap/snap-version.txt"), ProbeStatus.PRESENT, "snapd 2.38+19.04", id="present"
        ),
        pytest.param(
            ToolNotFoundError("snap"), ProbeStatus.ABSENT, "snap is not installed", id="absent"
        ),
        pytest.param(
            "snap    2.38+19.04\nsnapd   unavailable\nseries  -\n",
            ProbeStatus.BROKEN,
            "snapd is not answering (`snap version`: snapd unavailable)",
            id="daemon-down",
        ),
    ],
)
def test_probe(
    answer: str | Exception,
    status: ProbeStatus,
    detail: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fake = CannedCommands({VERSION: answer}).install(monkeypatch)
    probe = snap(tmp_path).probe()
    assert (probe.status, probe.detail) == (status, detail)
    assert fake.argvs == [VERSION]


@pytest.fixture
def present(monkeypatch: pytest.MonkeyPatch) -> CannedCommands:
    fake = CannedCommands({VERSION: captured("snap/snap-version.txt")}).install(monkeypatch)
    return fake


def test_installed_snaps_are_their_revisions(tmp_path: Path, present: CannedCommands) -> None:
    present.answers[LIST] = captured("snap/snap-list.txt")
    installed = {p.name: (p.version, p.arch, p.status) for p in snap(tmp_path).installed_packages()}
    assert installed == {
        "alacritty": ("46", "amd64", "installed"),
        "vlc": ("3078", "amd64", "installed"),
        "yt-dlp": ("212", "amd64", "installed"),
    }
    assert present.argvs == [VERSION, LIST]


def test_scan_pairs_refresh_list_with_snap_list(tmp_path: Path, present: CannedCommands) -> None:
    present.answers[LIST] = captured("snap/snap-list-all-vlc.txt").replace(
        "vlc   3.0.6    770  stable    videolan✓  disabled\n", ""
    )  # snap list (without --all) shows the active revision only
    present.answers[REFRESH_LIST] = (
        "Name  Version  Rev  Size  Publisher  Notes\nvlc   3.0.6    770  40MB  videolan✓  -\n"
    )
    (update,) = snap(tmp_path).scan().updates
    assert (update.name, update.installed_version, update.available_version) == (
        "vlc",
        "768",
        "770",
    )
    assert update.id == "snap:vlc:amd64=770"
    assert update.classification is Classification.OTHER
    assert update.notes == ("version 3.0.5-1 → 3.0.6 (revisions 768 → 770)",)
    assert present.argvs == [VERSION, LIST, REFRESH_LIST]


def test_a_held_snap_is_listed_as_held(tmp_path: Path, present: CannedCommands) -> None:
    present.answers[LIST] = captured("snap/snap-list.txt")
    present.answers[REFRESH_LIST] = (
        "Name    Version  Rev  Size  Publisher  Notes\nyt-dlp  19       215  9MB   morrisong  -\n"
    )
    (update,) = snap(tmp_path).scan().updates
    assert update.state is UpdateState.HELD
    assert "held by the administrator" in update.notes[1]


def test_nothing_to_refresh(tmp_path: Path, present: CannedCommands) -> None:
    present.answers[LIST] = captured("snap/snap-list.txt")
    present.answers[REFRESH_LIST] = Reply(0, "", captured("snap/snap-refresh-none.txt"))
    assert snap(tmp_path).scan().updates == ()


def test_apply_refreshes_only_when_the_store_still_offers_the_revision(
    tmp_path: Path, present: CannedCommands
) -> None:
    before = captured("snap/snap-list-ubuntu-2404.txt")
    after = _with_revision(before, "firefox", "4793", "4848")
    present.answers[LIST] = after  # asked once, after the refresh, for the verdict
    present.answers[REFRESH_LIST] = (
        "Name     Version  Rev   Size   Publisher  Notes\nfirefox  130.0-1  4848  280MB  mozilla✓   -\n"
    )
    present.answers[("snap", "refresh", "firefox")] = "firefox 130.0-1 from Mozilla✓ refreshed\n"
    backend = snap(tmp_path)
    change = PackageChange("snap", "firefox", "amd64", "4793", "4848")
    result = backend.apply([change], Transcript())
    assert result.ok, result
    assert result.results[0].outcome is Outcome.DONE
    assert present.argvs == [VERSION, REFRESH_LIST, ("snap", "refresh", "firefox"), LIST]


def test_apply_of_a_revision_the_store_no_longer_offers_runs_no_refresh(
    tmp_path: Path, present: CannedCommands
) -> None:
    present.answers[LIST] = captured("snap/snap-list-ubuntu-2404.txt")
    present.answers[REFRESH_LIST] = Reply(0, "", captured("snap/snap-refresh-none.txt"))
    change = PackageChange("snap", "firefox", "amd64", "4793", "4848")
    result = snap(tmp_path).apply([change], Transcript())
    assert not result.ok
    (verdict,) = result.results
    assert (verdict.outcome, verdict.found_version) == (Outcome.FAILED, "4793")
    assert result.notes == (
        "firefox: the store offers no refresh now, not revision 4848; nothing done (scan again)",
    )
    assert present.argvs == [VERSION, REFRESH_LIST, LIST]


def test_rollback_reverts_to_the_revision_snapd_kept(
    tmp_path: Path, present: CannedCommands
) -> None:
    all_vlc = captured("snap/snap-list-all-vlc.txt")
    present.answers[("snap", "list", "--all")] = all_vlc
    backend = snap(tmp_path)
    change = PackageChange("snap", "vlc", "amd64", "768", "770")
    (source,) = backend.prepare_rollback([change], tmp_path / "keep", Transcript())
    assert source.available
    assert "snapd keeps revision 768" in source.detail
    present.answers[("snap", "revert")] = captured("snap/snap-revert.txt")
    present.answers[LIST] = (
        "Name  Version  Rev  Tracking  Publisher  Notes\nvlc   3.0.5-1  768  stable    videolan✓  -\n"
    )
    present.calls.clear()
    result = backend.rollback([change.reversed()], Transcript())
    assert result.ok, result
    assert present.argvs == [("snap", "revert", "vlc", "--revision=768"), LIST]


def test_no_way_back_when_snapd_no_longer_has_the_revision(
    tmp_path: Path, present: CannedCommands
) -> None:
    present.answers[("snap", "list", "--all")] = captured("snap/snap-list-all-vlc.txt")
    change = PackageChange("snap", "vlc", "amd64", "700", "770")
    (source,) = snap(tmp_path).prepare_rollback([change], tmp_path / "keep", Transcript())
    assert (source.available, source.detail) == (False, "revision 700 of vlc is not installed")


def test_a_failed_revert_is_judged_from_snap_list(tmp_path: Path, present: CannedCommands) -> None:
    present.answers[("snap", "revert")] = CommandError(
        ("snap", "revert"), 1, 'error: cannot revert "vlc": no revision 700'
    )
    present.answers[LIST] = (
        "Name  Version  Rev  Tracking  Publisher  Notes\nvlc   3.0.6    770  stable    videolan✓  -\n"
    )
    result = snap(tmp_path).rollback(
        [PackageChange("snap", "vlc", "amd64", "770", "700")], Transcript()
    )
    (verdict,) = result.results
    assert (verdict.outcome, verdict.found_version) == (Outcome.FAILED, "770")


def test_a_change_for_another_backend_is_refused_before_anything_runs(
    tmp_path: Path, present: CannedCommands
) -> None:
    with pytest.raises(BackendError, match="belongs to apt"):
        snap(tmp_path).apply([PackageChange("apt", "vlc", "amd64", "1", "2")], Transcript())
    assert present.calls == []
