"""What the dnf and zypper CLI tests share: the catalogue, the host guard, the checks."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Patchd
from tests.support.rpmcatalogue import RpmCatalogue, shared_catalogue
from tests.support.rpmroot import HOST_RPM_STATE

CONFIG = "tags: [test]\n"


def catalogue_for(factory: pytest.TempPathFactory) -> RpmCatalogue:
    return shared_catalogue(factory.getbasetemp() / "rpm-catalogue")


def _digest(path: Path) -> str:
    if path.is_dir():
        return ",".join(sorted(p.name for p in path.iterdir()))
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else "-"


def host_rpm_state_unchanged() -> Iterator[None]:
    """The host's rpm databases, dnf's and zypper's state and logs stay byte-identical."""
    before = {p: _digest(p) for p in HOST_RPM_STATE}
    yield
    changed = [str(p) for p in HOST_RPM_STATE if _digest(p) != before[p]]
    assert not changed, f"the test changed the host's package state: {changed}"


def make_patchd(root: Path, tmp_path: Path) -> Patchd:
    config = tmp_path / "agent.yaml"
    config.write_text(CONFIG)
    return Patchd(root, tmp_path / "state", config)


def updates_by_name(document: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {u["name"]: u for u in document["updates"]}


def items_by_name(document: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {i["name"]: i for i in document["run"]["items"]}
