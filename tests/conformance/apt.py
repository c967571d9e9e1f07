"""The apt backend's conformance fixture: an isolated dpkg root and the test catalogue."""

from __future__ import annotations

from pathlib import Path

from patchd.backends.apt.backend import AptBackend
from patchd.backends.base import Backend, BackendContext
from patchd.platforms import DEBIAN
from patchd.target import Target
from tests.conformance.harness import Expected, Fixture, Harness
from tests.support.aptroot import AptRoot
from tests.support.catalogue import build_catalogue

_CATALOGUES: dict[str, object] = {}


def _backend(root: Path, work: Path) -> AptBackend:
    return AptBackend(BackendContext(Target.at(root), DEBIAN, work, {"lock_timeout_s": 5}))


def build(tmp: Path) -> Fixture:
    catalogue = _CATALOGUES.get("apt")
    if catalogue is None:
        # Built once per session: the same packages serve every conformance test.
        catalogue = _CATALOGUES["apt"] = build_catalogue(tmp / "catalogue")
    root = AptRoot.create(tmp / "root", tmp / "aptconf")
    root.set_sources(catalogue.uris("base", "security", "updates"))  # type: ignore[attr-defined]
    root.update()
    root.install("hello=1.0", "world=1.0")
    return Fixture(
        backend=_backend(root.path, tmp / "work"),
        security=Expected("hello", "1.0", "1.1", "all"),
        ordinary=Expected("world", "1.0", "2.0", "all"),
        versions=root.versions,
        # Debian's repositories carry no advisories: apt's CVE ids and urgency come from
        # the changelog of a downloaded package (tests/apt covers that), not the scan.
        cves=(),
        severity_known=False,
        host_state=(Path("/var/lib/dpkg/status"),),
    )


def absent(tmp: Path) -> Backend:
    (tmp / "empty").mkdir()
    return _backend(tmp / "empty", tmp / "work")


HARNESS = Harness(
    name="apt",
    tools=("apt-get", "apt-ftparchive", "dpkg-deb", "/bin/busybox"),
    build=build,
    absent=absent,
)
