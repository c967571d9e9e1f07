"""Lay a :class:`ServiceLayout` down under a root, or take it away again.

Idempotent: a second install changes nothing; an outdated service definition is
replaced; the configuration, once written, is the administrator's and is never
overwritten. Uninstall removes the definition, files still as installed, and the
directories if empty — state the agent made (its database, its key) is kept and said so.
Parent directories that a system already has (``/etc/systemd/system``) are made if
missing but never removed.
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from patchd.atomicfile import atomic_write_text
from patchd.errors import PatchdError
from patchd.service.layout import ADMIN_TOKEN_BYTES, Entry, ServiceLayout

ROOT_UID = ROOT_GID = 0


@dataclass(frozen=True)
class Change:
    """What happened to one path: created, updated, unchanged, removed, kept (with why)."""

    action: str
    path: Path
    why: str = ""


def _owner() -> tuple[int, int] | None:
    """root:root when we can set it (running as root); else leave the owner as made."""
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        return ROOT_UID, ROOT_GID
    return None


def _settle(path: Path, mode: int, *, follow: bool = True) -> None:
    owner = _owner()
    if owner is not None:
        os.chown(path, *owner, follow_symlinks=follow)
    os.chmod(path, mode)


def _install_entry(root: Path, entry: Entry) -> Change:
    path = root / entry.path
    if entry.is_dir:
        created = not path.exists()
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        mode_was = path.stat().st_mode & 0o7777
        _settle(path, entry.mode)
        return Change(
            "created" if created else "updated" if mode_was != entry.mode else "unchanged", path
        )
    path.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
    if path.exists():
        if entry.secret:
            _settle(path, entry.mode)  # a secret is never left readable by others
            return Change("kept", path, "already there")
        if not entry.replace:
            return Change("kept", path, "already there")
        assert entry.content is not None
        if path.read_text("utf-8", "replace") == entry.content:
            _settle(path, entry.mode)
            return Change("unchanged", path)
        atomic_write_text(path, entry.content, mode=entry.mode)
        _settle(path, entry.mode)
        return Change("updated", path)
    content = secrets.token_urlsafe(ADMIN_TOKEN_BYTES) + "\n" if entry.secret else entry.content
    assert content is not None
    atomic_write_text(path, content, mode=entry.mode)
    _settle(path, entry.mode)
    return Change("created", path)


def _preflight(layout: ServiceLayout, root: Path) -> None:
    """Refuse before changing anything: a symlink or a file where a directory goes, or so."""
    for entry in layout.entries:
        path = root / entry.path
        if path.is_symlink():
            raise PatchdError(
                f"{path} is a symbolic link; patchd will not write through it",
                hint="remove it and run `patchd service install` again",
            )
        if path.exists() and path.is_dir() != entry.is_dir:
            kind = "a directory" if entry.is_dir else "a file"
            raise PatchdError(f"{path} exists and is not {kind}", hint="move it away first")


def install(layout: ServiceLayout, root: Path) -> list[Change]:
    """Create every entry of ``layout`` under ``root``; return what changed.

    Every path is checked before the first change, so a refused install changes nothing.
    """
    _preflight(layout, root)
    return [_install_entry(root, entry) for entry in layout.entries]


def _uninstall_dir(path: Path) -> Change:
    if path.is_symlink() or not path.is_dir():
        return Change("kept", path, "not a directory patchd made")
    if any(path.iterdir()):
        return Change("kept", path, "not empty")
    path.rmdir()
    return Change("removed", path)


def _uninstall_file(path: Path, entry: Entry) -> Change:
    if path.is_symlink() or not path.is_file():
        return Change("kept", path, "not a file patchd made")
    edited = not entry.replace and not entry.secret
    if edited and path.read_text("utf-8", "replace") != entry.content:
        return Change("kept", path, "changed since installed")
    path.unlink()
    return Change("removed", path)


def _uninstall_entry(root: Path, entry: Entry) -> Change | None:
    path = root / entry.path
    if not path.exists() and not path.is_symlink():
        return None
    return _uninstall_dir(path) if entry.is_dir else _uninstall_file(path, entry)


def uninstall(layout: ServiceLayout, root: Path) -> list[Change]:
    """Remove what :func:`install` made, newest first; keep what was changed or filled."""
    changes = (_uninstall_entry(root, entry) for entry in reversed(layout.entries))
    return [change for change in changes if change is not None]


def definition_state(layout: ServiceLayout, root: Path) -> str:
    """``installed``, ``outdated`` (another version's definition) or ``absent``."""
    path = root / layout.definition
    if not path.is_file():
        return "absent"
    definition = next(e for e in layout.entries if e.path == layout.definition)
    return "installed" if path.read_text("utf-8", "replace") == definition.content else "outdated"
