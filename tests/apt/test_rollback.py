"""``patchd rollback`` against real apt and dpkg in an isolated root."""

from __future__ import annotations

from tests.conftest import Patchd
from tests.support.aptroot import AptRoot
from tests.support.catalogue import Catalogue


def _apply(patchd: Patchd, *packages: str) -> dict[str, object]:
    result = patchd("apply", "--yes", "--json", *packages)
    run = result.json()["run"]
    assert isinstance(run, dict)
    return run


def test_rollback_returns_packages_to_their_recorded_versions(
    patchd: Patchd, apt_root: AptRoot
) -> None:
    before = apt_root.versions()
    run = _apply(patchd, "hello", "world", "epochal")
    assert run["status"] == "succeeded"
    result = patchd("rollback", "--json", str(run["id"]))
    assert result.returncode == 0, result.stderr
    rollback = result.json()["run"]
    assert rollback["kind"] == "rollback"
    assert rollback["parent_run"] == run["id"]
    assert rollback["status"] == "succeeded"
    assert apt_root.versions() == before
    runs = {r["id"]: r for r in patchd("status", "--json").json()["runs"]}
    assert runs[str(run["id"])]["status"] == "rolled-back"


def test_rollback_uses_the_kept_package_when_no_repository_has_the_old_version(
    patchd: Patchd, apt_root: AptRoot, catalogue: Catalogue
) -> None:
    run = _apply(patchd, "hello")
    items = run["items"]
    assert isinstance(items, list)
    assert items[0]["rollback"]["available"] is True
    # The release repository goes away: hello 1.0 is in no repository any more.
    apt_root.set_sources(catalogue.uris("security"))
    apt_root.update()
    result = patchd("rollback", str(run["id"]))
    assert result.returncode == 0, result.stdout + result.stderr
    assert apt_root.versions()["hello"] == "1.0"


def test_rollback_also_undoes_a_half_installed_failure(patchd: Patchd, apt_root: AptRoot) -> None:
    run = _apply(patchd, "fragile", "hello")
    assert run["status"] == "partial"
    result = patchd("rollback", "--json", str(run["id"]))
    assert result.returncode == 0, result.stdout + result.stderr
    versions = apt_root.versions()
    assert (versions["fragile"], versions["hello"]) == ("1.0", "1.0")
    assert apt_root.dpkg("--audit").stdout == ""


def test_rollback_leaves_alone_a_package_changed_since_the_run(
    patchd: Patchd, apt_root: AptRoot
) -> None:
    run = _apply(patchd, "hello", "world")
    apt_root.install("world=1.0")  # someone else moved it since
    result = patchd("rollback", "--json", str(run["id"]))
    assert result.returncode == 0, result.stderr
    rollback = result.json()["run"]
    assert [i["name"] for i in rollback["items"]] == ["hello"]
    assert apt_root.versions()["hello"] == "1.0"


def test_rolling_back_twice_is_refused_and_changes_nothing(
    patchd: Patchd, apt_root: AptRoot
) -> None:
    run = _apply(patchd, "hello")
    assert patchd("rollback", str(run["id"])).returncode == 0
    before = apt_root.status_bytes()
    result = patchd("rollback", str(run["id"]))
    assert result.returncode == 2
    assert "nothing to roll back" in result.stderr
    assert apt_root.status_bytes() == before


def test_rollback_of_an_unknown_run_is_an_error_and_changes_nothing(
    patchd: Patchd, apt_root: AptRoot
) -> None:
    before = apt_root.status_bytes()
    result = patchd("rollback", "20990101T000000Z-abcdef")
    assert result.returncode == 1
    assert result.stderr.startswith("patchd: error: no run '20990101T000000Z-abcdef' is recorded")
    assert "Traceback" not in result.stderr
    assert apt_root.status_bytes() == before
