"""Securing a way back before an RPM transaction: the old packages, kept as files."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Sequence
from pathlib import Path

from patchd.backends.base import RollbackSource
from patchd.backends.rpm.failures import rpm_filename
from patchd.models import PackageChange


def keep_old_rpms(
    changes: Sequence[PackageChange],
    keep_dir: Path,
    *,
    cached: Callable[[str], Path | None],
    download: Callable[[list[PackageChange]], object],
    program: str,
) -> list[RollbackSource]:
    """Each change's old package in ``keep_dir``: from the manager's cache (``cached(file
    name)``), else downloaded (``download(missing)`` into ``keep_dir``), else an honest
    "no way back" naming ``program``'s cache."""
    keep_dir.mkdir(parents=True, exist_ok=True)
    wanted = {c.key: keep_dir / rpm_filename(c.name, c.from_version, c.arch) for c in changes}
    for change in changes:
        target = wanted[change.key]
        found = cached(target.name)
        if found is not None and not target.exists():
            shutil.copy2(found, target)
    missing = [c for c in changes if not wanted[c.key].is_file()]
    if missing:
        download(missing)
    sources = []
    for change in changes:
        kept = wanted[change.key]
        if kept.is_file():
            sources.append(RollbackSource(change, True, kept, f"kept {kept.name}"))
        else:
            detail = (
                f"version {change.from_version} is in no repository and not in {program}'s cache"
            )
            sources.append(RollbackSource(change, False, detail=detail))
    return sources
