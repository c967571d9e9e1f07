"""The pacman backend's conformance fixture: an isolated Arch root and the test repository.

Arch's repositories carry no security metadata; the security facts come from a local
export of the Arch security tracker (``pacman.advisories``), which marks "hello" fixed
in 1.1-1. "hello" and "world" are installed at 1.0-1 from the repository's old state,
so pacman's cache keeps them for the rollback; the repository has then moved on.
"""

from __future__ import annotations

from pathlib import Path

from patchd.backends.base import Backend, BackendContext
from patchd.backends.pacman.backend import PacmanBackend
from patchd.platforms import ARCH
from patchd.target import Target
from tests.conformance.harness import Expected, Fixture, Harness
from tests.support.pacmanrepo import (
    SECURITY_CVES,
    TOOLS,
    PacmanCatalogue,
    PacmanRoot,
    build_catalogue,
    tracker_export,
)

# The host's pacman state (Debian ships pacman with empty directories); it must not move.
HOST_STATE = (
    Path("/var/lib/pacman/local/ALPM_DB_VERSION"),
    Path("/var/log/pacman.log"),
    Path("/var/lib/pacman/db.lck"),
)
_CATALOGUES: dict[str, PacmanCatalogue] = {}


def _backend(root: Path, work: Path, advisories: Path | None = None) -> PacmanBackend:
    settings = {"lock_timeout_s": 5, "advisories": str(advisories) if advisories else None}
    return PacmanBackend(BackendContext(Target.at(root), ARCH, work, settings))


def build(tmp: Path) -> Fixture:
    catalogue = _CATALOGUES.get("pacman")
    if catalogue is None:
        # Built once per session: the same packages serve every conformance test.
        catalogue = _CATALOGUES["pacman"] = build_catalogue(tmp / "catalogue")
    root = PacmanRoot.create(tmp / "root")
    root.use_repository(catalogue.old)
    root.install("hello", "world")
    root.use_repository(catalogue.new)
    advisories = tmp / "all.json"
    advisories.write_text(tracker_export())
    return Fixture(
        backend=_backend(root.path, tmp / "work", advisories),
        security=Expected("hello", "1.0-1", "1.1-1", "any"),
        ordinary=Expected("world", "1.0-1", "2.0-1", "any"),
        versions=root.versions,
        cves=SECURITY_CVES,
        severity_known=True,
        host_state=HOST_STATE,
    )


def absent(tmp: Path) -> Backend:
    (tmp / "empty").mkdir()
    return _backend(tmp / "empty", tmp / "work")


HARNESS = Harness(name="pacman", tools=TOOLS, build=build, absent=absent)
