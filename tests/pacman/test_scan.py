"""``patchd scan`` against the real pacman in an isolated Arch root."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.conftest import Patchd
from tests.support.pacmanrepo import BASE_VERSIONS, NEW_VERSIONS, SECURITY_CVES, PacmanRoot


def _by_name(document: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {u["name"]: u for u in document["updates"]}


def test_scan_lists_every_update_pacman_knows_with_the_contract_fields(
    patchd: Patchd, arch_root: PacmanRoot
) -> None:
    result = patchd("scan", "--json")
    assert result.returncode == 0, result.stderr
    document = result.json()
    assert document["inventory"]["os"]["id"] == "arch"
    updates = _by_name(document)
    assert set(updates) == set(NEW_VERSIONS)
    for name, update in updates.items():
        assert update["backend"] == "pacman"
        assert update["installed_version"] == BASE_VERSIONS[name]
        assert update["available_version"] == NEW_VERSIONS[name]
        assert update["id"] == f"pacman:{name}:{update['arch']}={NEW_VERSIONS[name]}"
    assert updates["linux"]["arch"] == "x86_64"
    assert arch_root.versions() == BASE_VERSIONS  # a scan changes nothing


def test_security_facts_come_from_the_tracker_export_and_nothing_else_is_security(
    patchd: Patchd,
) -> None:
    updates = _by_name(patchd("scan", "--json").json())
    hello = updates.pop("hello")
    assert hello["classification"] == "security"
    assert hello["severity"] == "important"  # the tracker's "High"
    assert hello["cves"] == list(SECURITY_CVES)
    assert hello["source"]["origin"] == "arch-security-tracker"
    assert any("AVG-9001" in n and "ASA-202601-01" in n for n in hello["notes"])
    for update in updates.values():
        assert (update["classification"], update["severity"], update["cves"]) == (
            "other",
            "unknown",
            [],
        )


def test_without_a_tracker_export_no_update_is_called_security(
    patchd: Patchd, tmp_path: Path
) -> None:
    patchd.config.write_text("pacman:\n  lock_timeout: 2\n")
    updates = _by_name(patchd("scan", "--json").json())
    assert {u["classification"] for u in updates.values()} == {"other"}
    assert {u["severity"] for u in updates.values()} == {"unknown"}


def test_an_unreadable_tracker_export_is_a_warning_not_a_guess(
    patchd: Patchd, advisories: Path
) -> None:
    advisories.write_text("<html>not the tracker</html>")
    result = patchd("scan", "--json")
    assert result.returncode == 0, result.stderr
    document = result.json()
    assert any(str(advisories) in w and "not valid JSON" in w for w in document["warnings"])
    assert _by_name(document)["hello"]["classification"] == "other"


def test_kernel_updates_need_a_reboot_and_ignored_packages_are_held(patchd: Patchd) -> None:
    updates = _by_name(patchd("scan", "--json").json())
    assert updates["linux"]["reboot_required"] is True
    assert not any(u["reboot_required"] for n, u in updates.items() if n != "linux")
    assert updates["pinned"]["state"] == "held"
    assert any("IgnorePkg" in n for n in updates["pinned"]["notes"])
    assert {u["state"] for n, u in updates.items() if n != "pinned"} == {"available"}


def test_refresh_syncs_the_databases_inside_the_root(patchd: Patchd, arch_root: PacmanRoot) -> None:
    sync = arch_root.path / "var/lib/pacman/sync/core.db"
    sync.unlink()
    result = patchd("scan", "--json")
    assert result.returncode == 0, result.stderr
    assert result.json()["updates"] == []
    assert any("pacman -Sy" in w for w in result.json()["warnings"])
    refreshed = patchd("scan", "--json", "--refresh")
    assert refreshed.returncode == 0, refreshed.stderr
    assert sync.is_file()
    assert set(_by_name(refreshed.json())) == set(NEW_VERSIONS)


def test_a_damaged_local_database_is_reported_broken(patchd: Patchd, arch_root: PacmanRoot) -> None:
    local = arch_root.path / "var/lib/pacman/local"
    (local / "ALPM_DB_VERSION").unlink()
    before = sorted(p.name for p in local.iterdir())
    result = patchd("scan", "--json")
    assert result.returncode == 1
    assert result.json()["complete"] is False
    warnings = result.json()["warnings"]
    assert any("pacman: broken" in w and "pacman-db-upgrade" in w for w in warnings), warnings
    # pacman itself refuses such a database too; patchd left it as it was.
    assert arch_root.pacman("-Q", check=False).returncode != 0
    assert sorted(p.name for p in local.iterdir()) == before
