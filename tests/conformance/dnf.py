"""The dnf backend's conformance fixture: an isolated rpm root managed by the real dnf."""

from __future__ import annotations

from pathlib import Path

from patchd.backends.base import Backend, BackendContext
from patchd.backends.dnf.backend import DnfBackend
from patchd.platforms import RHEL
from patchd.target import Target
from tests.conformance.harness import Expected, Fixture, Harness
from tests.support.rpmcatalogue import RPM_TOOLS, SECURITY_CVES, base_specs, shared_catalogue
from tests.support.rpmroot import HOST_RPM_STATE, ROCKY_OS_RELEASE, RpmRoot


def _backend(root: Path, work: Path) -> DnfBackend:
    return DnfBackend(BackendContext(Target.at(root), RHEL, work, {"lock_timeout_s": 5}))


def build(tmp: Path) -> Fixture:
    catalogue = shared_catalogue(tmp / "catalogue")
    root = RpmRoot.create(tmp / "root", tmp / "home", os_release=ROCKY_OS_RELEASE)
    root.set_yum_repos(catalogue.repos)
    root.dnf("install", *base_specs())
    return Fixture(
        backend=_backend(root.path, tmp / "work"),
        security=Expected("hello", "1.0-1", "1.1-1", "noarch"),
        ordinary=Expected("world", "1.0-1", "2.0-1", "noarch"),
        versions=root.versions,
        cves=SECURITY_CVES,
        severity_known=True,
        host_state=HOST_RPM_STATE,
    )


def absent(tmp: Path) -> Backend:
    (tmp / "empty").mkdir()
    return _backend(tmp / "empty", tmp / "work")


HARNESS = Harness(name="dnf", tools=("dnf", *RPM_TOOLS), build=build, absent=absent)
