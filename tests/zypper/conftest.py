"""Fixtures for the CLI tests on a real zypper root (an openSUSE Leap 15.6 look-alike)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import Patchd, require
from tests.support.rpmcatalogue import RPM_TOOLS, RpmCatalogue, zypper_base_specs
from tests.support.rpmcli import catalogue_for, host_rpm_state_unchanged, make_patchd
from tests.support.rpmroot import LEAP_OS_RELEASE, RpmRoot


@pytest.fixture(autouse=True)
def _host_unchanged() -> Iterator[None]:
    yield from host_rpm_state_unchanged()


@pytest.fixture
def rpm_catalogue(tmp_path_factory: pytest.TempPathFactory) -> RpmCatalogue:
    require("zypper", *RPM_TOOLS, root=True)
    return catalogue_for(tmp_path_factory)


@pytest.fixture
def zypper_root(tmp_path: Path, rpm_catalogue: RpmCatalogue) -> RpmRoot:
    root = RpmRoot.create(tmp_path / "root", tmp_path / "home", os_release=LEAP_OS_RELEASE)
    root.set_zypp_repos(rpm_catalogue.repos)
    root.zypper("refresh")
    root.zypper("install", *zypper_base_specs())
    return root


@pytest.fixture
def patchd(zypper_root: RpmRoot, tmp_path: Path) -> Patchd:
    return make_patchd(zypper_root.path, tmp_path)
