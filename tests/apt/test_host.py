"""``patchd scan`` on this very host: read-only, and in agreement with apt itself."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.conftest import require, run_patchd


def _apt_list_upgradable() -> dict[str, tuple[str, tuple[str, ...]]]:
    """name → (candidate version, suites), as ``apt list --upgradable`` prints them."""
    out = subprocess.run(
        ["apt", "list", "--upgradable"],
        env={**os.environ, "LC_ALL": "C"},
        capture_output=True,
        text=True,
        check=True,
        timeout=300,
    ).stdout
    listed = {}
    for line in out.splitlines():
        if "[upgradable from:" not in line:
            continue
        name_suites, version, _arch, *_ = line.split()
        name, _, suites = name_suites.partition("/")
        listed[name] = (version, tuple(suites.split(",")))
    return listed


@pytest.fixture(scope="module")
def host_scan(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    tmp_path = tmp_path_factory.mktemp("host")
    require("apt", "apt-get")
    if not Path("/etc/debian_version").exists():
        pytest.skip("the host is not Debian-family")
    config = tmp_path / "agent.yaml"
    config.write_text("{}\n")
    result = run_patchd(
        ["--state-dir", str(tmp_path / "state"), "--config", str(config), "scan", "--json"]
    )
    assert result.returncode == 0, result.stderr
    document = result.json()
    assert isinstance(document, dict)
    return document


def test_host_scan_lists_exactly_what_apt_lists(host_scan: dict[str, object]) -> None:
    expected = _apt_list_upgradable()
    updates = host_scan["updates"]
    assert isinstance(updates, list)
    found = {u["name"]: u["available_version"] for u in updates}
    assert found == {name: version for name, (version, _) in expected.items()}


def test_host_scan_classifies_the_security_archive_as_security(
    host_scan: dict[str, object],
) -> None:
    expected = _apt_list_upgradable()
    updates = host_scan["updates"]
    assert isinstance(updates, list)
    for update in updates:
        _, suites = expected[update["name"]]
        from_security = any(s.endswith("-security") for s in suites)
        assert (update["classification"] == "security") == from_security, update
