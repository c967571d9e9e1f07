"""The repositories dnf (or yum) uses in a target, and the metadata it already fetched.

Repository definitions are INI files in the ``reposdir`` (``/etc/yum.repos.d``); dnf
keeps each repository's metadata in ``CACHEDIR/ID-HASH/repodata`` and yum in
``/var/cache/yum/BASEARCH/RELEASEVER/ID``. Reading the updateinfo.xml files there is
what dnf itself does for ``updateinfo`` — without starting dnf a second time.
"""

from __future__ import annotations

import configparser
import logging
import re
from collections.abc import Iterable
from pathlib import Path

log = logging.getLogger(__name__)

MAX_REPO_FILES = 1000
MAX_REPO_FILE_BYTES = 1024 * 1024
_TRUE = frozenset({"1", "yes", "true", "on"})
_DNF_CACHE_DIR = re.compile(r"^(?P<id>.+)-[0-9a-f]{16}$")


def enabled_repo_ids(reposdir: Path) -> list[str]:
    """Ids of the repositories enabled in ``reposdir``'s ``*.repo`` files."""
    ids: list[str] = []
    try:
        files = sorted(reposdir.glob("*.repo"))[:MAX_REPO_FILES]
    except OSError:
        return ids
    for path in files:
        parser = configparser.ConfigParser(interpolation=None, strict=False)
        try:
            with path.open("rb") as f:
                text = f.read(MAX_REPO_FILE_BYTES).decode("utf-8", "replace")
            parser.read_string(text, source=str(path))
        except (OSError, configparser.Error) as e:
            log.warning("repository file %s not read: %s", path, e)
            continue
        for section in parser.sections():
            if section == "main":
                continue
            enabled = parser.get(section, "enabled", fallback="1").strip().lower()
            if enabled in _TRUE:
                ids.append(section)
    return list(dict.fromkeys(ids))


def dnf_repodata_dirs(cachedir: Path, repo_ids: Iterable[str]) -> dict[str, Path]:
    """For each repository id, the newest ``repodata`` directory dnf keeps for it."""
    wanted = set(repo_ids)
    found: dict[str, tuple[float, Path]] = {}
    try:
        entries = list(cachedir.iterdir())
    except OSError:
        return {}
    for entry in entries:
        match = _DNF_CACHE_DIR.match(entry.name)
        if match is None or match["id"] not in wanted:
            continue
        repomd = entry / "repodata" / "repomd.xml"
        try:
            mtime = repomd.stat().st_mtime
        except OSError:
            continue
        if match["id"] not in found or mtime > found[match["id"]][0]:
            found[match["id"]] = (mtime, repomd.parent)
    return {repo_id: path for repo_id, (_, path) in found.items()}


def yum_repodata_dirs(cachedir: Path, repo_ids: Iterable[str]) -> dict[str, Path]:
    """yum (EL7) keeps ``repomd.xml`` and the metadata files side by side per repository."""
    found: dict[str, Path] = {}
    for repo_id in repo_ids:
        try:
            candidates = sorted(cachedir.glob(f"*/*/{repo_id}/repomd.xml"))
        except OSError:
            continue
        if candidates:
            newest = max(candidates, key=lambda p: p.stat().st_mtime)
            found[repo_id] = newest.parent
    return found
