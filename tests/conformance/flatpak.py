"""The flatpak backend's conformance fixture: a local OSTree remote and an isolated installation.

Two applications are installed at their first commit under ``ROOT/var/lib/flatpak``;
the remote then offers a second commit of each and keeps the first in its history, so
the rollback has somewhere to go. flatpak publishes no security metadata, so the
fixture says so and the suite checks that patchd invents none.
"""

from __future__ import annotations

from pathlib import Path

from patchd.backends.base import Backend, BackendContext
from patchd.backends.flatpak.backend import FlatpakBackend
from patchd.platforms import DEBIAN
from patchd.target import Target
from tests.conformance.harness import Expected, Fixture, Harness
from tests.support.flatpakrepo import APPS, ARCH, installed_then_updated

# The host's system installation; the suite checks its entries do not change.
HOST_STATE = (Path("/var/lib/flatpak"),)


def _backend(root: Path, work: Path) -> FlatpakBackend:
    return FlatpakBackend(BackendContext(Target.at(root), DEBIAN, work))


def _expected(app: str, old: dict[str, str], new: dict[str, str]) -> Expected:
    name = f"{app}//stable"
    return Expected(name, old[name], new[name], ARCH)


def build(tmp: Path) -> Fixture:
    apps = installed_then_updated(tmp)
    first, second = APPS
    return Fixture(
        backend=_backend(apps.root.path, tmp / "work"),
        security=_expected(first, apps.old, apps.new),  # the update the suite moves
        ordinary=_expected(second, apps.old, apps.new),
        versions=apps.root.commits,
        severity_known=False,
        has_security_metadata=False,
        host_state=HOST_STATE,
    )


def absent(tmp: Path) -> Backend:
    (tmp / "empty").mkdir()
    return _backend(tmp / "empty", tmp / "work")


HARNESS = Harness(name="flatpak", tools=("flatpak",), build=build, absent=absent)
