"""The flatpak backend against the real flatpak, in an isolated system installation.

flatpak runs here (Debian's flatpak 1.14): each test builds a local OSTree repository
with a tiny runtime and two applications, installs them into ``ROOT/var/lib/flatpak``
and exports newer commits, then drives the backend with ``--root``. What the backend
reports is checked against flatpak's own listing; every argv it ran is asserted
through a spy on the process gateway. The host's installation stays untouched.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from patchd import process
from patchd.backends import backend_class
from patchd.backends.base import BackendContext, Outcome, ProbeStatus
from patchd.backends.flatpak.backend import FlatpakBackend
from patchd.backends.flatpak.listing import parse_list, parse_updates
from patchd.errors import BackendError, ToolNotFoundError
from patchd.models import Classification, PackageChange
from patchd.platforms import DEBIAN
from patchd.target import Target
from patchd.transcript import Transcript
from tests.backends.fakeprocess import CannedCommands, captured
from tests.conftest import require
from tests.support.flatpakrepo import APPS, ARCH, FlatpakRoot, installed_then_updated

HELLO, WORLD = APPS
HOST_INSTALLATION = Path("/var/lib/flatpak")


@dataclass
class Setup:
    backend: FlatpakBackend
    root: FlatpakRoot
    old: dict[str, str]  # ID//BRANCH -> abbreviated commit installed
    new: dict[str, str]  # ID//BRANCH -> abbreviated commit the remote offers
    calls: list[tuple[str, ...]]

    def ref(self, app: str) -> str:
        return f"app/{app}/{ARCH}/stable"

    def argv(self, *args: str) -> tuple[str, ...]:
        return ("flatpak", "--system", *args)


def _host_fingerprint() -> list[str]:
    if not HOST_INSTALLATION.is_dir():
        return []
    return sorted(str(p) for p in HOST_INSTALLATION.rglob("*"))


@pytest.fixture
def setup(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Setup]:
    require("flatpak")
    host_before = _host_fingerprint()
    apps = installed_then_updated(tmp_path)
    root = apps.root
    calls: list[tuple[str, ...]] = []
    real_start = process.start

    def spy(argv: list[str], **kwargs: object) -> process.RunningCommand:
        calls.append(tuple(argv))  # every command: process.run starts through it too
        return real_start(argv, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(process, "start", spy)
    context = BackendContext(Target.at(root.path), DEBIAN, tmp_path / "work")
    yield Setup(FlatpakBackend(context), root, apps.old, apps.new, calls)
    assert _host_fingerprint() == host_before, "the host's flatpak installation changed"


def _change(s: Setup, app: str, to: str | None = None) -> PackageChange:
    name = f"{app}//stable"
    return PackageChange("flatpak", name, ARCH, s.old[name], to or s.new[name])


def test_the_registry_names_the_backend_and_gives_it_no_version_order() -> None:
    from patchd.backends import compare_versions

    assert backend_class("flatpak") is FlatpakBackend
    with pytest.raises(ValueError, match="no version ordering"):
        compare_versions("flatpak", "da5dd1922477", "70d74989257e")


def test_captured_listings_parse_into_refs() -> None:
    (hello, platform) = parse_list(captured("flatpak/list-columns.txt"))
    assert (hello.kind, hello.name, hello.ref, hello.commit, hello.origin) == (
        "app",
        "org.patchd.Hello//stable",
        "app/org.patchd.Hello/x86_64/stable",
        "da5dd1922477",
        "test",
    )
    assert (platform.kind, platform.name) == ("runtime", "org.patchd.Platform//1")
    (update,) = parse_updates(captured("flatpak/remote-ls-updates.txt"))
    assert (update.ref, update.commit) == ("app/org.patchd.Hello/x86_64/stable", "70d74989257e")
    assert parse_updates("error: Unable to load summary from remote test\n") == []


def test_probe_is_absent_without_flatpak(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = CannedCommands({("flatpak", "--version"): ToolNotFoundError("flatpak")}).install(
        monkeypatch
    )
    probe = FlatpakBackend(BackendContext(Target(Path("/")), DEBIAN, tmp_path)).probe()
    assert (probe.status, probe.detail) == (ProbeStatus.ABSENT, "flatpak is not installed")
    assert fake.argvs == [("flatpak", "--version")]


def test_probe_is_absent_for_a_root_without_an_installation(tmp_path: Path) -> None:
    require("flatpak")
    (tmp_path / "empty").mkdir()
    probe = FlatpakBackend(BackendContext(Target.at(tmp_path / "empty"), DEBIAN, tmp_path)).probe()
    assert probe.status is ProbeStatus.ABSENT
    assert probe.detail == f"no system flatpak installation at {tmp_path / 'empty/var/lib/flatpak'}"


def test_probe_finds_flatpak_and_its_version(setup: Setup) -> None:
    probe = setup.backend.probe()
    assert probe.status is ProbeStatus.PRESENT, probe.detail
    assert (
        f"Flatpak {probe.version}"
        == process.run(["flatpak", "--version"], timeout_s=30).stdout.strip()
    )


def test_installed_refs_agree_with_flatpak(setup: Setup) -> None:
    installed = {(p.name, p.arch): p.version for p in setup.backend.installed_packages()}
    assert installed == {(name, ARCH): commit for name, commit in setup.old.items()}
    assert setup.calls[-1] == setup.argv(
        "list", "--columns=application,arch,branch,active,origin,options"
    )


def test_scan_lists_the_new_commits_and_changes_nothing(setup: Setup) -> None:
    setup.calls.clear()
    result = setup.backend.scan()
    found = {u.name: u for u in result.updates}
    assert set(found) == {f"{HELLO}//stable", f"{WORLD}//stable"}
    for name, update in found.items():
        assert (update.installed_version, update.available_version) == (
            setup.old[name],
            setup.new[name],
        )
        assert update.classification is Classification.OTHER  # flatpak has no security metadata
        assert update.id == f"flatpak:{name}:{ARCH}={setup.new[name]}"
    assert setup.calls == [
        ("flatpak", "--version"),
        setup.argv("list", "--columns=application,arch,branch,active,origin,options"),
        setup.argv("remote-ls", "--updates", "--columns=ref,commit,origin"),
    ]
    assert setup.root.commits() == setup.old


def test_apply_installs_exactly_the_commit_scanned(setup: Setup) -> None:
    change = _change(setup, HELLO)
    full = setup.root.run("remote-info", "--show-commit", "test", setup.ref(HELLO)).strip()
    setup.backend.probe()
    setup.calls.clear()
    result = setup.backend.apply([change], Transcript())
    assert result.ok, result
    (verdict,) = result.results
    assert (verdict.outcome, verdict.found_version) == (Outcome.DONE, setup.new[f"{HELLO}//stable"])
    assert setup.calls == [
        setup.argv("list", "--columns=application,arch,branch,active,origin,options"),
        setup.argv("remote-info", "--show-commit", "test", setup.ref(HELLO)),
        setup.argv("update", "-y", "--noninteractive", f"--commit={full}", setup.ref(HELLO)),
        setup.argv("list", "--columns=application,arch,branch,active,origin,options"),
    ]
    commits = setup.root.commits()
    assert commits[f"{HELLO}//stable"] == setup.new[f"{HELLO}//stable"]
    assert commits[f"{WORLD}//stable"] == setup.old[f"{WORLD}//stable"]  # only what was chosen


def test_apply_of_a_commit_the_remote_does_not_offer_fails_and_changes_nothing(
    setup: Setup,
) -> None:
    change = _change(setup, WORLD, to="0123456789ab")
    result = setup.backend.apply([change], Transcript())
    assert not result.ok
    (verdict,) = result.results
    assert (verdict.outcome, verdict.found_version) == (
        Outcome.FAILED,
        setup.old[f"{WORLD}//stable"],
    )
    assert "commit 0123456789ab is not available" in result.notes[0]
    assert not any(argv[2] == "update" for argv in setup.calls if len(argv) > 2)
    assert setup.root.commits() == setup.old


def test_rollback_returns_to_the_commit_recorded_before_applying(
    setup: Setup, tmp_path: Path
) -> None:
    change = _change(setup, HELLO)
    old_full = setup.root.full_commit(setup.ref(HELLO))
    sources = setup.backend.prepare_rollback([change], tmp_path / "keep", Transcript())
    (source,) = sources
    assert source.available, source
    assert source.kept_file is not None
    assert source.kept_file.read_text().strip() == old_full
    assert setup.calls[-1] == setup.argv("info", "--show-commit", setup.ref(HELLO))
    assert setup.backend.apply([change], Transcript()).ok
    setup.calls.clear()
    result = setup.backend.rollback(
        [change.reversed()], Transcript(), {change.key: source.kept_file}
    )
    assert result.ok, result
    assert setup.calls[1] == setup.argv(
        "update", "-y", "--noninteractive", f"--commit={old_full}", setup.ref(HELLO)
    )
    assert setup.root.commits() == setup.old


def test_rollback_without_a_recorded_commit_fails_and_changes_nothing(setup: Setup) -> None:
    change = _change(setup, HELLO)
    assert setup.backend.apply([change], Transcript()).ok
    after = setup.root.commits()
    result = setup.backend.rollback([change.reversed()], Transcript(), {})
    assert not result.ok
    assert "no recorded commit" in result.notes[0]
    assert setup.root.commits() == after


def test_a_change_for_another_backend_is_refused_before_anything_runs(setup: Setup) -> None:
    setup.calls.clear()
    foreign = PackageChange("snap", f"{HELLO}//stable", ARCH, "1", "2")
    with pytest.raises(BackendError, match="belongs to snap"):
        setup.backend.apply([foreign], Transcript())
    assert setup.calls == []
    assert setup.root.commits() == setup.old


def test_the_host_installation_is_used_without_flatpak_variables(tmp_path: Path) -> None:
    assert FlatpakBackend(BackendContext(Target(Path("/")), DEBIAN, tmp_path)).env == {}


def test_a_scan_lists_once_and_a_second_probe_asks_no_version(setup: Setup, tmp_path: Path) -> None:
    """As patchd's scan drives it: listings started together, the installed refs read once."""
    setup.backend.start_scan()
    installed = setup.backend.installed_packages()
    result = setup.backend.scan()
    assert {p.name for p in installed} == set(setup.old)
    assert {u.name for u in result.updates} == {f"{HELLO}//stable", f"{WORLD}//stable"}
    assert setup.calls == [
        ("flatpak", "--version"),
        setup.argv("list", "--columns=application,arch,branch,active,origin,options"),
        setup.argv("remote-ls", "--updates", "--columns=ref,commit,origin"),
    ]
    again = FlatpakBackend(setup.backend.context)
    assert again.probe() == setup.backend.probe()
    assert setup.calls.count(("flatpak", "--version")) == 1
    again.start_scan()
    assert again.scan().updates == result.updates  # a new scan reads afresh
    assert len(setup.calls) == 5
