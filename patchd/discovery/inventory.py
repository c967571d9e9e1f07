"""The inventory: everything discovery learns about the target, in one value.

Discovery is the first step of every run. Hardware and machine facts describe the host
patchd runs on, so they are reported only when the target is the host.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from patchd.discovery.osinfo import OsInfo
from patchd.discovery.reboot import RebootState, reboot_state, with_reasons
from patchd.models import InstalledPackage
from patchd.platforms import OsProfile
from patchd.target import Target
from patchd.timeutil import format_time

if TYPE_CHECKING:
    from patchd.discovery.eol import EolStatus

MAX_HOSTNAME_BYTES = 256


@dataclass(frozen=True)
class BackendStatus:
    """A backend patchd looked for, and what it found."""

    name: str
    status: str
    detail: str

    def as_dict(self) -> dict[str, str]:
        return {"name": self.name, "status": self.status, "detail": self.detail}


@dataclass(frozen=True)
class Inventory:
    """What the target is, what it runs, and whether it is supported and up to date."""

    collected_at: datetime
    hostname: str
    os: OsInfo
    os_family: str
    architecture: str
    machine_type: str | None
    hardware: dict[str, Any] | None
    packages: tuple[InstalledPackage, ...]
    reboot: RebootState
    eol: EolStatus | None
    tags: tuple[str, ...]
    backends: tuple[BackendStatus, ...]
    root: str

    def as_dict(self, *, include_packages: bool = True) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "collected_at": format_time(self.collected_at),
            "hostname": self.hostname,
            "root": self.root,
            "os": {**self.os.as_dict(), "family": self.os_family},
            "architecture": self.architecture,
            "machine_type": self.machine_type,
            "hardware": self.hardware,
            "reboot": self.reboot.as_dict(),
            "end_of_life": self.eol.as_dict() if self.eol else None,
            "tags": list(self.tags),
            "backends": [b.as_dict() for b in self.backends],
            "package_count": len(self.packages),
        }
        if include_packages:
            doc["packages"] = [p.as_dict() for p in self.packages]
        return doc


def _windows_hostname() -> str:
    import socket

    return socket.gethostname()


def _windows_machine() -> str:
    import platform

    return platform.machine()


def _hostname(target: Target) -> str:
    if target.is_host:
        return os.uname().nodename if hasattr(os, "uname") else _windows_hostname()
    try:
        raw = target.path("/etc/hostname").read_bytes()[:MAX_HOSTNAME_BYTES]
    except OSError:
        return ""
    return raw.decode("utf-8", "replace").strip()


def _architecture(target: Target, packages: Sequence[InstalledPackage]) -> str:
    if target.is_host:
        return os.uname().machine if hasattr(os, "uname") else _windows_machine()
    arches = Counter(p.arch for p in packages if p.arch and p.arch not in ("all", "noarch", "any"))
    return arches.most_common(1)[0][0] if arches else ""


def _machine(now: datetime) -> tuple[str | None, dict[str, Any] | None]:
    from patchd.discovery.hardware import read_hardware
    from patchd.discovery.machine import classify_machine, read_machine_facts

    return classify_machine(read_machine_facts()).value, read_hardware(now).as_dict()


def discover(
    *,
    target: Target,
    os_info: OsInfo,
    profile: OsProfile,
    packages: Sequence[InstalledPackage],
    backends: Sequence[BackendStatus],
    tags: Sequence[str],
    now: datetime,
    reboot_reasons: Sequence[str] = (),
) -> Inventory:
    """Assemble the inventory of ``target`` (packages come from the backends' databases;
    ``reboot_reasons`` are the package managers' own reboot-pending signals)."""
    from patchd.discovery.eol import eol_status  # loads a data table: only when discovering

    machine_type, hardware = _machine(now) if target.is_host else (None, None)
    return Inventory(
        collected_at=now,
        hostname=_hostname(target),
        os=os_info,
        os_family=profile.family,
        architecture=_architecture(target, packages),
        machine_type=machine_type,
        hardware=hardware,
        packages=tuple(sorted(packages, key=lambda p: (p.backend, p.name, p.arch))),
        reboot=with_reasons(reboot_state(target, profile, os_info.kernel), reboot_reasons),
        eol=eol_status(os_info.id, os_info.version, id_like=os_info.id_like, today=now.date()),
        tags=tuple(tags),
        backends=tuple(backends),
        root=str(target),
    )
