"""The apk backend on captured apk-tools output (apk is not packaged for Debian).

Captures are real (tests/data/apk/PROVENANCE.md). A recording fake of the process
gateway answers ``apk`` with them; the installed database is a real file in a test
root, which the fake rewrites after ``apk add`` as apk would (the new ``V:`` line), so
the backend's verdict still comes from the database. Every argv is asserted.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from _pytest.mark.structures import ParameterSet

from patchd.backends import backend_class, compare_versions
from patchd.backends.apk.backend import ApkBackend
from patchd.backends.apk.installeddb import parse_installed
from patchd.backends.apk.listing import parse_upgradable, split_name_version
from patchd.backends.apk.secdb import parse_secdb, security_facts
from patchd.backends.apk.versions import compare, is_valid
from patchd.backends.base import BackendContext, Outcome, ProbeStatus
from patchd.errors import BackendError, CommandError, ConfigError, ToolNotFoundError
from patchd.models import Classification, PackageChange
from patchd.platforms import ALPINE
from patchd.target import Target
from patchd.transcript import Transcript
from tests.backends.fakeprocess import DATA, CannedCommands, captured

WORLD = "alpine-baselayout\nbusybox\nca-certificates-bundle\n"


def _version_pairs() -> list[ParameterSet]:
    pairs = []
    for number, line in enumerate(captured("apk/version.data").splitlines(), start=1):
        a, op, b = line.split("#")[0].split()[:3]
        pairs.append(pytest.param(a, op, b, id=f"{number}:{a}{op}{b}"))
    return pairs


@pytest.mark.parametrize(("a", "op", "b"), _version_pairs())
def test_versions_order_as_apk_tools_test_data_says(a: str, op: str, b: str) -> None:
    if not (is_valid(a) and is_valid(b)):
        with pytest.raises(ValueError, match="not an apk version"):
            compare(a, b)
        return
    expected = {"<": -1, "=": 0, ">": 1}[op]
    assert compare(a, b) == expected
    assert compare(b, a) == -expected
    assert compare_versions("apk", a, b) == expected


def test_the_registry_names_the_backend() -> None:
    assert backend_class("apk") is ApkBackend


def test_the_installed_database_gives_name_version_arch_and_origin() -> None:
    packages = parse_installed(captured("apk/installed"))
    assert [(p.name, p.version, p.arch, p.origin) for p in packages] == [
        ("alpine-baselayout", "3.6.5-r0", "x86_64", "alpine-baselayout"),
        ("alpine-baselayout-data", "3.6.5-r0", "x86_64", "alpine-baselayout"),
    ]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        pytest.param("P:a\nV:1\nnot a field\n", "line 3: not a `X:value` line", id="garbage-line"),
        pytest.param("P:a\nA:x86_64\n\n", "has no V field", id="no-version"),
    ],
)
def test_a_malformed_database_is_refused_with_where(text: str, message: str) -> None:
    with pytest.raises(BackendError, match=message):
        parse_installed(text, "ROOT/lib/apk/db/installed")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("busybox-1.36.1-r29", ("busybox", "1.36.1-r29")),
        ("ca-certificates-bundle-20240705-r0", ("ca-certificates-bundle", "20240705-r0")),
        ("ssl_client-1.36.1-r29", ("ssl_client", "1.36.1-r29")),
        ("py3-foo-bar-1.0", ("py3-foo-bar", "1.0")),
        ("foo-bar-baz", None),  # a second dash without a version after it: apk refuses
        ("nodash", None),
    ],
)
def test_names_and_versions_split_as_apk_splits_them(
    text: str, expected: tuple[str, str] | None
) -> None:
    assert split_name_version(text) == expected


def test_apk_list_upgradable_is_read_with_arch_and_origin() -> None:
    entries, others = parse_upgradable(captured("apk/list-upgradable.txt"))
    assert others == []
    assert [(e.name, e.arch, e.origin, e.installed_version, e.version) for e in entries] == [
        ("busybox", "x86_64", "busybox", "1.36.1-r28", "1.36.1-r29"),
        ("busybox-binsh", "x86_64", "busybox", "1.36.1-r28", "1.36.1-r29"),
        ("ca-certificates-bundle", "x86_64", "ca-certificates", "20240226-r0", "20240705-r0"),
        ("libcrypto3", "x86_64", "openssl", "3.3.0-r2", "3.3.2-r0"),
        ("libssl3", "x86_64", "openssl", "3.3.0-r2", "3.3.2-r0"),
        ("ssl_client", "x86_64", "busybox", "1.36.1-r28", "1.36.1-r29"),
    ]


def test_lines_that_are_not_upgrades_are_kept_apart() -> None:
    entries, others = parse_upgradable(captured("apk/list-installed-warnings.txt"))
    assert entries == []
    assert len(others) == 5
    assert others[0].startswith("WARNING: opening from cache")


def test_secdb_secfixes_between_installed_and_available_make_a_security_update() -> None:
    secfixes = parse_secdb((DATA / "apk/secdb-v3.15-main.yaml").read_bytes(), "main.yaml")
    assert secfixes["zsh"][0] == ("5.4.2-r1", ("CVE-2018-1083", "CVE-2018-1071"))
    both = security_facts(secfixes, "zlib", "1.2.11-r3", "1.2.12-r2")
    assert both is not None
    assert (both.cves, both.fixed_in) == (
        ("CVE-2018-25032", "CVE-2022-37434"),
        ("1.2.12-r0", "1.2.12-r2"),
    )
    later = security_facts(secfixes, "zlib", "1.2.12-r0", "1.2.12-r2")
    assert later is not None
    assert later.cves == ("CVE-2022-37434",)
    assert security_facts(secfixes, "zlib", "1.3.1-r2", "1.3.2-r0") is None  # fixes all older
    assert security_facts(secfixes, "busybox", "1.36.1-r28", "1.36.1-r29") is None  # not listed


def test_a_file_that_is_not_a_secdb_is_refused() -> None:
    with pytest.raises(ConfigError, match="not an Alpine secdb"):
        parse_secdb(b'{"name": "x"}', "/etc/patchd/secdb.json")


# -- the backend, through the recording fake --------------------------------------


class AlpineRoot:
    """A root holding the captured installed database and a world file."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.db = path / "lib/apk/db/installed"
        self.db.parent.mkdir(parents=True)
        self.db.write_text(captured("apk/installed"))
        self.world = path / "etc/apk/world"
        self.world.parent.mkdir(parents=True)
        self.world.write_text(WORLD)

    def version(self, name: str) -> str:
        return {p.name: p.version for p in parse_installed(self.db.read_text())}[name]

    def apk_adds(self, name: str, version: str) -> Callable[[tuple[str, ...]], str]:
        """What ``apk add NAME=VERSION`` does to the files patchd reads: a new V: and a pin."""

        def answer(argv: tuple[str, ...]) -> str:
            old = self.version(name)
            self.db.write_text(
                self.db.read_text().replace(f"P:{name}\nV:{old}\n", f"P:{name}\nV:{version}\n", 1)
            )
            self.world.write_text(
                self.world.read_text().replace(f"{name}\n", f"{name}={version}\n")
            )
            return f"(1/1) Upgrading {name} ({old} -> {version})\nOK: 8 MiB in 15 packages\n"

        return answer


@pytest.fixture
def root(tmp_path: Path) -> AlpineRoot:
    return AlpineRoot(tmp_path / "root")


def _backend(
    root: AlpineRoot, tmp_path: Path, settings: dict[str, object] | None = None
) -> ApkBackend:
    return ApkBackend(
        BackendContext(Target.at(root.path), ALPINE, tmp_path / "work", settings or {})
    )


def _apk(root: AlpineRoot, *args: str) -> tuple[str, ...]:
    return ("apk", "--root", str(root.path), *args)


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> CannedCommands:
    return CannedCommands({("apk", "--version"): captured("apk/apk-version.txt")}).install(
        monkeypatch
    )


def test_probe_is_absent_here(tmp_path: Path) -> None:
    if shutil.which("apk"):
        pytest.skip("apk is installed on this machine")
    probe = ApkBackend(BackendContext(Target(Path("/")), ALPINE, tmp_path)).probe()
    assert (probe.status, probe.detail) == (ProbeStatus.ABSENT, "apk is not installed")


def test_probe_reads_the_apk_tools_version(
    root: AlpineRoot, tmp_path: Path, fake: CannedCommands
) -> None:
    probe = _backend(root, tmp_path).probe()
    assert (probe.status, probe.detail, probe.version) == (
        ProbeStatus.PRESENT,
        "apk-tools 2.14.10 (x86_64)",
        "2.14.10",
    )
    assert fake.argvs == [("apk", "--version")]


def test_probe_is_absent_for_a_root_without_an_apk_database(
    tmp_path: Path, fake: CannedCommands
) -> None:
    (tmp_path / "debian").mkdir()
    backend = ApkBackend(BackendContext(Target.at(tmp_path / "debian"), ALPINE, tmp_path))
    assert str(backend.probe().detail) == f"no apk database under {tmp_path / 'debian'}"


def test_probe_without_apk(
    root: AlpineRoot, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    CannedCommands({("apk", "--version"): ToolNotFoundError("apk")}).install(monkeypatch)
    assert _backend(root, tmp_path).probe().status is ProbeStatus.ABSENT


def test_the_host_is_managed_without_root(tmp_path: Path) -> None:
    backend = ApkBackend(BackendContext(Target(Path("/")), ALPINE, tmp_path))
    assert backend.apk_argv("list", "--upgradable") == ["apk", "list", "--upgradable"]


def test_installed_packages_come_from_the_database(
    root: AlpineRoot, tmp_path: Path, fake: CannedCommands
) -> None:
    installed = _backend(root, tmp_path).installed_packages()
    assert [(p.name, p.version, p.arch, p.backend) for p in installed] == [
        ("alpine-baselayout", "3.6.5-r0", "x86_64", "apk"),
        ("alpine-baselayout-data", "3.6.5-r0", "x86_64", "apk"),
    ]


def test_scan_lists_updates_and_says_security_is_unknown_without_a_secdb(
    root: AlpineRoot, tmp_path: Path, fake: CannedCommands
) -> None:
    fake.answers[_apk(root, "list", "--upgradable")] = captured("apk/list-upgradable.txt")
    result = _backend(root, tmp_path).scan(refresh=False)
    assert [u.id for u in result.updates][:2] == [
        "apk:busybox:x86_64=1.36.1-r29",
        "apk:busybox-binsh:x86_64=1.36.1-r29",
    ]
    assert {u.classification for u in result.updates} == {Classification.OTHER}
    assert "apk keeps no security metadata locally" in result.warnings[-1]
    assert fake.argvs == [("apk", "--version"), _apk(root, "list", "--upgradable")]


def test_scan_with_a_secdb_classifies_by_origin(
    root: AlpineRoot, tmp_path: Path, fake: CannedCommands
) -> None:
    secdb = tmp_path / "main.json"
    secdb.write_text(
        '{"packages": [{"pkg": {"name": "openssl", "secfixes": {"3.3.2-r0": ["CVE-2024-6119"]}}}]}'
    )
    fake.answers[_apk(root, "list", "--upgradable")] = captured("apk/list-upgradable.txt")
    updates = {u.name: u for u in _backend(root, tmp_path, {"secdb": [str(secdb)]}).scan().updates}
    for name in ("libcrypto3", "libssl3"):  # both built from origin openssl
        assert updates[name].classification is Classification.SECURITY
        assert updates[name].cves == ("CVE-2024-6119",)
    assert updates["busybox"].classification is Classification.OTHER


def test_refresh_runs_apk_update_first(
    root: AlpineRoot, tmp_path: Path, fake: CannedCommands
) -> None:
    fake.answers[_apk(root, "update")] = "OK: 24163 distinct packages available\n"
    fake.answers[_apk(root, "list", "--upgradable")] = ""
    _backend(root, tmp_path).scan(refresh=True)
    assert fake.argvs[1:] == [_apk(root, "update"), _apk(root, "list", "--upgradable")]


def test_apply_installs_the_exact_version_and_leaves_no_pin(
    root: AlpineRoot, tmp_path: Path, fake: CannedCommands
) -> None:
    fake.answers[_apk(root, "add")] = root.apk_adds("alpine-baselayout", "3.6.5-r1")
    change = PackageChange("apk", "alpine-baselayout", "x86_64", "3.6.5-r0", "3.6.5-r1")
    transcript = Transcript()
    result = _backend(root, tmp_path).apply([change], transcript)
    assert result.ok, result
    assert result.results[0].found_version == "3.6.5-r1"
    assert fake.argvs[1:] == [_apk(root, "add", "--no-progress", "alpine-baselayout=3.6.5-r1")]
    assert root.world.read_text() == WORLD  # the pin apk wrote is gone
    assert "restored /etc/apk/world" in result.notes[0]
    assert transcript.entries[0].argv == _apk(
        root, "add", "--no-progress", "alpine-baselayout=3.6.5-r1"
    )


def test_apply_of_a_version_no_repository_has_fails_and_changes_nothing(
    root: AlpineRoot, tmp_path: Path, fake: CannedCommands
) -> None:
    db_before = root.db.read_bytes()
    fake.answers[_apk(root, "add")] = CommandError(
        ("apk", "add"), 1, "ERROR: unable to select packages"
    )
    change = PackageChange("apk", "alpine-baselayout", "x86_64", "3.6.5-r0", "99.9-r0")
    result = _backend(root, tmp_path).apply([change], Transcript())
    (verdict,) = result.results
    assert (verdict.outcome, verdict.found_version) == (Outcome.FAILED, "3.6.5-r0")
    assert root.db.read_bytes() == db_before
    assert root.world.read_text() == WORLD


def test_rollback_keeps_the_old_apk_from_the_cache_and_installs_it(
    root: AlpineRoot, tmp_path: Path, fake: CannedCommands
) -> None:
    cache = root.path / "etc/apk/cache"
    cache.mkdir(parents=True)
    (cache / "alpine-baselayout-3.6.5-r0.5c46b3a0.apk").write_bytes(b"old package")
    (cache / "alpine-baselayout-3.6.5-r0.1.5c46b3a0.apk").write_bytes(b"another version")
    change = PackageChange("apk", "alpine-baselayout", "x86_64", "3.6.5-r0", "3.6.5-r1")
    backend = _backend(root, tmp_path)
    (source,) = backend.prepare_rollback([change], tmp_path / "keep", Transcript())
    assert source.available
    assert source.kept_file == tmp_path / "keep/alpine-baselayout-3.6.5-r0.5c46b3a0.apk"
    assert source.kept_file.read_bytes() == b"old package"
    fake.answers[_apk(root, "add")] = [
        root.apk_adds("alpine-baselayout", "3.6.5-r1"),
        root.apk_adds("alpine-baselayout", "3.6.5-r0"),
    ]
    assert backend.apply([change], Transcript()).ok
    result = backend.rollback([change.reversed()], Transcript(), {change.key: source.kept_file})
    assert result.ok, result
    assert fake.argvs[-1] == _apk(root, "add", "--no-progress", str(source.kept_file))
    assert root.version("alpine-baselayout") == "3.6.5-r0"


def test_without_a_cached_copy_apk_fetch_is_tried_and_the_answer_is_honest(
    root: AlpineRoot, tmp_path: Path, fake: CannedCommands
) -> None:
    keep = tmp_path / "keep"
    fake.answers[_apk(root, "fetch")] = CommandError(
        ("apk", "fetch"), 1, "ERROR: alpine-baselayout-3.6.5-r0: No such package"
    )
    change = PackageChange("apk", "alpine-baselayout", "x86_64", "3.6.5-r0", "3.6.5-r1")
    (source,) = _backend(root, tmp_path).prepare_rollback([change], keep, Transcript())
    assert not source.available
    assert "in neither apk's cache nor its repositories" in source.detail
    assert fake.argvs[-1] == _apk(
        root, "fetch", "--no-progress", "-o", str(keep), "alpine-baselayout=3.6.5-r0"
    )


def test_a_change_for_another_backend_is_refused_before_anything_runs(
    root: AlpineRoot, tmp_path: Path, fake: CannedCommands
) -> None:
    with pytest.raises(BackendError, match="belongs to apt"):
        _backend(root, tmp_path).apply(
            [PackageChange("apt", "busybox", "x86_64", "1", "2")], Transcript()
        )
    assert fake.calls == []


def test_the_agent_configuration_names_secdb_copies(tmp_path: Path) -> None:
    from patchd.config import parse_config

    config = parse_config(b"apk:\n  secdb: [/srv/secdb/v3.20/main.json]\n", tmp_path / "agent.yaml")
    assert config.backend_settings("apk") == {"secdb": ["/srv/secdb/v3.20/main.json"]}
    with pytest.raises(
        ConfigError, match=r"agent.yaml:2:11: apk.secdb.0: must be an absolute path"
    ):
        parse_config(b"apk:\n  secdb: [main.json]\n", tmp_path / "agent.yaml")


def test_an_unreadable_secdb_is_a_configuration_error(
    root: AlpineRoot, tmp_path: Path, fake: CannedCommands
) -> None:
    fake.answers[_apk(root, "list", "--upgradable")] = captured("apk/list-upgradable.txt")
    backend = _backend(root, tmp_path, {"secdb": [str(tmp_path / "missing.json")]})
    with pytest.raises(ConfigError, match="cannot read the apk secdb file"):
        backend.scan()
