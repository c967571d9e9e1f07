"""Which operating system the target runs: os-release on Linux, platform APIs elsewhere."""

from __future__ import annotations

import os
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from patchd.target import Target

OS_RELEASE_PATHS = ("/etc/os-release", "/usr/lib/os-release")  # os-release(5) lookup order
MAX_OS_RELEASE_BYTES = 64 * 1024


@dataclass(frozen=True)
class OsInfo:
    """The identity of the target's operating system."""

    id: str  # os-release ID, or "macos" / "windows" / "windows-server"
    id_like: tuple[str, ...]
    name: str
    version: str  # VERSION_ID, or the product version
    codename: str
    pretty_name: str
    kernel: str  # the running kernel (host only; empty for an alternate root)

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "id_like": list(self.id_like),
            "name": self.name,
            "version": self.version,
            "codename": self.codename,
            "pretty_name": self.pretty_name,
            "kernel": self.kernel,
        }


def parse_os_release(text: str) -> dict[str, str]:
    """Parse os-release(5): ``KEY=value`` lines with shell-style quoting."""
    values: dict[str, str] = {}
    for raw_line in text.splitlines():
        line = raw_line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, _, raw = line.partition("=")
        try:
            parts = shlex.split(raw)
        except ValueError:
            continue
        values[key.strip()] = parts[0] if parts else ""
    return values


def _inside(target: Target, system_path: str) -> Path:
    """``system_path`` in the target, following one absolute symlink within the root.

    ``/etc/os-release`` is usually a link to ``/usr/lib/os-release``; in an alternate
    root that link must resolve inside the root, not on the host.
    """
    path = target.path(system_path)
    if not target.is_host and path.is_symlink():
        link = os.readlink(path)
        if os.path.isabs(link):
            return target.path(link)
    return path


def _read_os_release(target: Target) -> dict[str, str]:
    for candidate in OS_RELEASE_PATHS:
        path: Path = _inside(target, candidate)
        try:
            with path.open("rb") as f:
                return parse_os_release(f.read(MAX_OS_RELEASE_BYTES).decode("utf-8", "replace"))
        except OSError:
            continue
    return {}


def read_os_info(target: Target) -> OsInfo:
    """Identify the target's operating system; fields it cannot learn are empty strings."""
    kernel = os.uname().release if target.is_host and hasattr(os, "uname") else ""
    if target.is_host and sys.platform == "darwin":
        import platform

        version = platform.mac_ver()[0]
        return OsInfo("macos", (), "macOS", version, "", f"macOS {version}", kernel)
    if target.is_host and sys.platform == "win32":
        import platform

        release, build, _, _ = platform.win32_ver()
        server = "server" in platform.win32_edition().lower()
        os_id = "windows-server" if server else "windows"
        return OsInfo(os_id, (), "Windows", build, release, f"Windows {release} ({build})", kernel)
    fields = _read_os_release(target)
    return OsInfo(
        id=fields.get("ID", "linux").lower(),
        id_like=tuple(fields.get("ID_LIKE", "").lower().split()),
        name=fields.get("NAME", "Linux"),
        version=fields.get("VERSION_ID", ""),
        codename=fields.get("VERSION_CODENAME", "") or fields.get("UBUNTU_CODENAME", ""),
        pretty_name=fields.get("PRETTY_NAME", fields.get("NAME", "Linux")),
        kernel=kernel,
    )
