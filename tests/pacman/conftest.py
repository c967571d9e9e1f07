"""Fixtures for the pacman CLI tests: the test repository, an Arch root, ``patchd`` on it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import Patchd, _fingerprint, require
from tests.support.pacmanrepo import (
    TOOLS,
    PacmanCatalogue,
    PacmanRoot,
    build_catalogue,
    prepared_root,
    tracker_export,
)

# The host's own pacman state: none of these may change (Debian ships empty directories).
HOST_PACMAN_STATE = (
    Path("/var/lib/pacman"),
    Path("/var/lib/pacman/local"),
    Path("/var/lib/pacman/sync"),
    Path("/var/cache/pacman/pkg"),
    Path("/var/log/pacman.log"),
)


@pytest.fixture(scope="session", autouse=True)
def host_pacman_state_unchanged() -> Iterator[None]:
    """No pacman test may touch the host's pacman database, cache or log."""
    before = {p: _fingerprint(p) for p in HOST_PACMAN_STATE}
    yield
    after = {p: _fingerprint(p) for p in HOST_PACMAN_STATE}
    changed = [str(p) for p in HOST_PACMAN_STATE if before[p] != after[p]]
    assert not changed, f"the pacman tests changed the host's pacman state: {changed}"


@pytest.fixture(scope="session")
def pacman_catalogue(tmp_path_factory: pytest.TempPathFactory) -> PacmanCatalogue:
    require(*TOOLS)
    return build_catalogue(tmp_path_factory.mktemp("pacman-catalogue"))


@pytest.fixture
def arch_root(tmp_path: Path, pacman_catalogue: PacmanCatalogue) -> PacmanRoot:
    """A root with every base version installed; the repository has moved on since."""
    require(*TOOLS, root=True)
    return prepared_root(tmp_path / "root", pacman_catalogue, ignore=["pinned"])


@pytest.fixture
def advisories(tmp_path: Path) -> Path:
    path = tmp_path / "arch-security.json"
    path.write_text(tracker_export())
    return path


@pytest.fixture
def patchd(arch_root: PacmanRoot, advisories: Path, tmp_path: Path) -> Patchd:
    config = tmp_path / "agent.yaml"
    config.write_text(f"tags: [test]\npacman:\n  lock_timeout: 2\n  advisories: {advisories}\n")
    return Patchd(arch_root.path, tmp_path / "state", config)
