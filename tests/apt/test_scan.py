"""``patchd scan`` against real apt and dpkg in an isolated root."""

from __future__ import annotations

import pytest

from tests.conftest import Patchd
from tests.support.aptroot import AptRoot
from tests.support.catalogue import EXPECTED

UPDATE_FIELDS = {
    "id", "name", "installed_version", "available_version", "backend", "classification",
    "severity", "cves", "source", "reboot_required", "state",
}  # fmt: skip


def _by_name(document: dict[str, object]) -> dict[str, dict[str, object]]:
    updates = document["updates"]
    assert isinstance(updates, list)
    return {u["name"]: u for u in updates}


def test_scan_lists_every_upgradable_package_with_the_contract_fields(patchd: Patchd) -> None:
    result = patchd("scan", "--json")
    assert result.returncode == 0, result.stderr
    document = result.json()
    assert document["schema_version"] == 1
    assert {"inventory", "updates"} <= document.keys()
    updates = _by_name(document)
    assert set(updates) == set(EXPECTED)
    for update in updates.values():
        assert update.keys() >= UPDATE_FIELDS
        assert update["backend"] == "apt"
        assert update["id"] == f"apt:{update['name']}:all={update['available_version']}"


@pytest.mark.parametrize("name", sorted(EXPECTED), ids=sorted(EXPECTED))
def test_scan_classifies_by_the_archive_it_comes_from(patchd: Patchd, name: str) -> None:
    updates = _by_name(patchd("scan", "--json").json())
    classification, suite = EXPECTED[name]
    assert updates[name]["classification"] == classification
    source = updates[name]["source"]
    assert isinstance(source, dict)
    assert source["suite"] == suite


def test_third_party_repository_reusing_a_suite_name_is_not_taken_for_the_vendor(
    patchd: Patchd,
) -> None:
    source = _by_name(patchd("scan", "--json").json())["acme-agent"]["source"]
    assert isinstance(source, dict)
    assert (source["origin"], source["label"]) == ("Acme", "Acme")


def test_security_archive_is_recognised_by_its_debian_security_label(patchd: Patchd) -> None:
    source = _by_name(patchd("scan", "--json").json())["hello"]["source"]
    assert source == {
        "origin": "Debian",
        "label": "Debian-Security",
        "suite": "stable-security",
        "codename": "bookworm-security",
        "site": source["site"],  # type: ignore[index]
    }


def test_held_package_is_reported_as_held(apt_root: AptRoot, patchd: Patchd) -> None:
    apt_root.hold("pinned")
    updates = _by_name(patchd("scan", "--json").json())
    assert updates["pinned"]["state"] == "held"
    assert updates["hello"]["state"] == "available"


def test_phased_update_is_reported_as_phased_not_missing(patchd: Patchd) -> None:
    updates = _by_name(patchd("scan", "--json").json())
    assert updates["phasey"]["state"] == "phased"
    assert updates["phasey"]["phased_percentage"] == 30
    assert updates["world"]["phased_percentage"] is None


def test_first_seen_is_kept_across_scans(patchd: Patchd) -> None:
    first = _by_name(patchd("scan", "--json").json())["hello"]["first_seen"]
    again = _by_name(patchd("scan", "--json").json())["hello"]["first_seen"]
    assert first is not None
    assert again == first


def test_scan_inventory_describes_the_root(patchd: Patchd, apt_root: AptRoot) -> None:
    inventory = patchd("scan", "--json").json()["inventory"]
    assert inventory["os"]["id"] == "debian"
    assert inventory["os"]["version"] == "12"
    assert inventory["os"]["family"] == "debian"
    assert inventory["hostname"] == "testroot"
    assert inventory["tags"] == ["test"]
    assert inventory["machine_type"] is None  # the hardware is not the root's
    packages = {p["name"]: p["version"] for p in inventory["packages"]}
    assert packages == apt_root.versions()
    assert inventory["end_of_life"]["product"] == "debian"


def test_the_human_scan_names_each_updates_backend(patchd: Patchd) -> None:
    result = patchd("scan")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    header = next(i for i, line in enumerate(lines) if line.lstrip().startswith("PACKAGE"))
    assert lines[header].split()[:2] == ["PACKAGE", "BACKEND"]
    rows = [line.split() for line in lines[header + 1 : header + 1 + len(EXPECTED)]]
    assert {row[0] for row in rows} == set(EXPECTED)
    assert {row[1] for row in rows} == {"apt"}
