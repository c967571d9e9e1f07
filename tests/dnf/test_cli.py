"""``patchd scan``, ``apply`` and ``rollback`` through the real command, on a real dnf root."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.conftest import Patchd
from tests.support.rpmcatalogue import EXPECTED, RpmCatalogue
from tests.support.rpmcli import items_by_name, updates_by_name
from tests.support.rpmroot import RpmRoot


def test_scan_lists_every_update_with_dnfs_advisory_facts(patchd: Patchd) -> None:
    result = patchd("scan", "--json")
    assert result.returncode == 0, result.stderr
    document = result.json()
    assert document["inventory"]["os"]["id"] == "rocky"
    updates = updates_by_name(document)
    assert set(updates) == set(EXPECTED)
    for name, (classification, severity, cves, reboot) in EXPECTED.items():
        update = updates[name]
        assert update["backend"] == "dnf"
        assert update["id"] == f"dnf:{name}:noarch={update['available_version']}"
        assert (update["classification"], update["severity"]) == (classification, severity), name
        assert tuple(update["cves"]) == cves
        assert update["reboot_required"] is reboot


def test_scan_reads_no_network_and_warns_without_metadata(
    patchd: Patchd, dnf_root: RpmRoot
) -> None:
    dnf_root.dnf("clean", "all")
    result = patchd("scan", "--json")
    assert result.returncode == 0, result.stderr
    assert result.json()["updates"] == []
    assert any("patchd scan --refresh" in w for w in result.json()["warnings"])
    refreshed = patchd("scan", "--refresh", "--json")
    assert refreshed.returncode == 0, refreshed.stderr
    assert set(updates_by_name(refreshed.json())) == set(EXPECTED)


def test_scan_uses_fetched_metadata_until_refresh(
    patchd: Patchd, dnf_root: RpmRoot, rpm_catalogue: RpmCatalogue, tmp_path: Path
) -> None:
    mirror = tmp_path / "mirror"
    shutil.copytree(rpm_catalogue.repos["updates"], mirror)
    dnf_root.set_yum_repos({"updates": mirror})
    dnf_root.dnf("makecache", "--refresh")
    assert set(updates_by_name(patchd("scan", "--json").json())) == set(EXPECTED)
    # The mirror moves on (it now carries nothing newer); a scan keeps to what was fetched.
    shutil.rmtree(mirror)
    shutil.copytree(rpm_catalogue.repos["base"], mirror)
    assert set(updates_by_name(patchd("scan", "--json").json())) == set(EXPECTED)
    refreshed = patchd("scan", "--refresh", "--json")
    assert refreshed.returncode == 0, refreshed.stderr
    assert refreshed.json()["updates"] == []


def test_apply_judges_each_package_from_the_rpm_database(
    patchd: Patchd, dnf_root: RpmRoot, rpm_catalogue: RpmCatalogue
) -> None:
    result = patchd("apply", "--yes", "--json")
    run = result.json()["run"]
    items = items_by_name(result.json())
    versions = dnf_root.versions()
    # fragile's %pre fails: its install cannot complete, the run is partial and says why.
    assert result.returncode == 1
    assert run["status"] == "partial"
    assert items["fragile"]["outcome"] == "failed"
    assert "%prein scriptlet failed" in items["fragile"]["detail"]
    assert versions["fragile"] == "1.0-1"
    for name, version in rpm_catalogue.new_versions().items():
        if name != "fragile":
            assert items[name]["outcome"] == "done", items[name]
            assert versions[name] == version


def test_apply_of_named_packages_changes_only_those(patchd: Patchd, dnf_root: RpmRoot) -> None:
    before = dnf_root.versions()
    result = patchd("apply", "--yes", "--json", "hello", "epochal")
    assert result.returncode == 0, result.stderr
    assert result.json()["run"]["status"] == "succeeded"
    after = dnf_root.versions()
    assert {n for n in after if after[n] != before[n]} == {"hello", "epochal"}
    assert after["epochal"] == "1:1.1-1"


def test_apply_without_yes_and_without_a_terminal_changes_nothing(
    patchd: Patchd, dnf_root: RpmRoot
) -> None:
    before = dnf_root.versions()
    result = patchd("apply", "hello")
    assert result.returncode == 2
    assert dnf_root.versions() == before


def test_rollback_returns_packages_to_their_recorded_versions(
    patchd: Patchd, dnf_root: RpmRoot
) -> None:
    before = dnf_root.versions()
    run = patchd("apply", "--yes", "--json", "hello", "world", "epochal").json()["run"]
    assert run["status"] == "succeeded"
    result = patchd("rollback", "--json", str(run["id"]))
    assert result.returncode == 0, result.stderr
    assert result.json()["run"]["status"] == "succeeded"
    assert dnf_root.versions() == before


@pytest.mark.parametrize("package", ["hello", "epochal"])
def test_rollback_uses_the_kept_rpm_when_no_repository_has_the_old_version(
    patchd: Patchd, dnf_root: RpmRoot, rpm_catalogue: RpmCatalogue, package: str
) -> None:
    run = patchd("apply", "--yes", "--json", package).json()["run"]
    assert run["items"][0]["rollback"]["available"] is True
    # The base repository goes away: the old version is in no repository any more.
    dnf_root.set_yum_repos({"updates": rpm_catalogue.repos["updates"]})
    (dnf_root.path / "etc/yum.repos.d/base.repo").unlink()
    dnf_root.dnf("makecache")
    result = patchd("rollback", str(run["id"]))
    assert result.returncode == 0, result.stdout + result.stderr
    assert dnf_root.versions()[package] == rpm_catalogue.old_versions()[package]


def test_without_a_way_back_the_run_says_so_before_applying(
    patchd: Patchd, dnf_root: RpmRoot, rpm_catalogue: RpmCatalogue
) -> None:
    (dnf_root.path / "etc/yum.repos.d/base.repo").unlink()
    dnf_root.dnf("makecache")
    result = patchd("apply", "--yes", "--json", "plain")
    assert result.returncode == 0, result.stderr
    rollback = result.json()["run"]["items"][0]["rollback"]
    assert rollback["available"] is False
    assert "1.0-1 is in no repository" in rollback["detail"]


def test_rollback_also_undoes_a_run_that_failed_half_way(
    patchd: Patchd, dnf_root: RpmRoot, rpm_catalogue: RpmCatalogue
) -> None:
    run = patchd("apply", "--yes", "--json", "fragile", "hello").json()["run"]
    assert run["status"] == "partial"
    result = patchd("rollback", "--json", str(run["id"]))
    assert result.returncode == 0, result.stdout + result.stderr
    versions = dnf_root.versions()
    assert (versions["fragile"], versions["hello"]) == ("1.0-1", "1.0-1")
