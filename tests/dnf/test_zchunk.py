"""Advisories dnf fetched in their zchunk form, read from a real dnf cache.

Fedora's repositories offer updateinfo as zchunk too (``updateinfo_zck`` in repomd.xml),
and dnf's default (``zchunk=True``) fetches only that form. Debian's librepo has no
zchunk, so the dnf here fetches the plain form; the test swaps in the ``.zck`` that the
same repomd.xml names, as a zchunk-enabled dnf keeps it. (This dnf then refuses the
cache — "Cache-only enabled but no cache" — so the advisories are read through the
backend, not through a whole scan.)
"""

from __future__ import annotations

import shutil
from pathlib import Path

from patchd.backends.dnf.backend import DnfBackend
from patchd.config import AgentConfig
from patchd.session import Session
from patchd.target import Target
from tests.support.rpmcatalogue import ADVISORIES, EXPECTED, REPOS, RpmCatalogue, base_specs
from tests.support.rpmrepo import publish_repo
from tests.support.rpmroot import ROCKY_OS_RELEASE, RpmRoot


def test_the_advisories_dnf_fetched_as_zchunk_are_the_same_advisories(
    tmp_path: Path, rpm_catalogue: RpmCatalogue
) -> None:
    spec = next(r for r in REPOS if r.name == "updates")
    rpms = [rpm_catalogue.rpms[(s.name, s.evr)] for s in spec.packages]
    updates = publish_repo(spec, rpms, tmp_path / "zchunk-repos", zchunk=True)
    root = RpmRoot.create(tmp_path / "root", tmp_path / "home", os_release=ROCKY_OS_RELEASE)
    root.set_yum_repos({"base": rpm_catalogue.repos["base"], "updates": updates})
    root.dnf("install", *base_specs())  # fetches the metadata into root/var/cache/dnf
    with Session(AgentConfig(), Target(root.path), tmp_path / "state") as session:
        backend = session.backend("dnf")
        assert isinstance(backend, DnfBackend)
        warnings: list[str] = []
        plain = backend._repo_advisories(frozenset(EXPECTED), warnings)

        (cached,) = (root.path / "var/cache/dnf").glob("updates-*/repodata/*-updateinfo.xml.*")
        (zck,) = (updates / "repodata").glob("*-updateinfo.xml.zck")
        assert cached.suffix != ".zck"
        cached.unlink()
        shutil.copy2(zck, cached.parent / zck.name)
        from_zchunk = backend._repo_advisories(frozenset(EXPECTED), warnings)

    assert {a.id for a in plain} == {a.id for a in ADVISORIES}
    assert from_zchunk == plain
    assert warnings == []
