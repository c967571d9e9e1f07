"""Whether the target needs a reboot for installed updates to take effect."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from patchd.platforms import OsProfile
from patchd.target import Target

MAX_MARKER_BYTES = 64 * 1024
MAX_KERNELS = 256


@dataclass(frozen=True)
class RebootState:
    """Whether a reboot is required, and every reason found."""

    required: bool
    reasons: tuple[str, ...]

    def as_dict(self) -> dict[str, Any]:
        return {"required": self.required, "reasons": list(self.reasons)}


def kernel_sort_key(release: str) -> tuple[tuple[int, int | str], ...]:
    """Order kernel releases naturally: ``6.1.0-9`` < ``6.1.0-10``."""
    return tuple(
        (0, int(part)) if part.isdigit() else (1, part)
        for part in re.split(r"(\d+)", release)
        if part
    )


def installed_kernels(target: Target) -> list[str]:
    """Kernel releases with modules installed under ``/lib/modules``, oldest first."""
    try:
        names = [
            p.name
            for p in target.path("/lib/modules").iterdir()
            if (p / "modules.dep").exists() or (p / "kernel").is_dir()
        ]
    except OSError:
        return []
    return sorted(names[:MAX_KERNELS], key=kernel_sort_key)


def _marker_reason(path: Path, shown: str) -> str:
    reason = f"{shown} exists"
    try:
        packages = path.with_name(path.name + ".pkgs").read_bytes()[:MAX_MARKER_BYTES]
    except OSError:
        return reason
    names = sorted({n for n in packages.decode("utf-8", "replace").split() if n})
    return f"{reason} (for {', '.join(names)})" if names else reason


def reboot_state(target: Target, profile: OsProfile, running_kernel: str) -> RebootState:
    """Look for the distribution's markers and for a running kernel older than the newest installed."""
    reasons = []
    for marker in profile.reboot_required_markers:
        path = target.path(marker)
        if path.exists():
            reasons.append(_marker_reason(path, marker))
            break  # /var/run is a link to /run: one marker is enough
    kernels = installed_kernels(target)
    if target.is_host and running_kernel and kernels:
        newest = kernels[-1]
        if kernel_sort_key(newest) > kernel_sort_key(running_kernel):
            reasons.append(f"running kernel {running_kernel} is older than installed {newest}")
    return RebootState(required=bool(reasons), reasons=tuple(reasons))
