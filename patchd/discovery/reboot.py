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
_PRE_RELEASE = re.compile(r"[-.~]?rc", re.IGNORECASE)  # 6.9.0-rc3, 6.9.0-060900rc3-generic


@dataclass(frozen=True)
class RebootState:
    """Whether a reboot is required, and every reason found."""

    required: bool
    reasons: tuple[str, ...]

    def as_dict(self) -> dict[str, Any]:
        return {"required": self.required, "reasons": list(self.reasons)}


def _release_part(part: str) -> tuple[int, int | str]:
    if _PRE_RELEASE.fullmatch(part):
        return (0, part)
    return (2, int(part)) if part.isdigit() else (3, part)


def kernel_sort_key(release: str) -> tuple[tuple[int, int | str], ...]:
    """Order kernel releases naturally: ``6.1.0-9`` < ``6.1.0-10``, ``6.9.0-rc3`` < ``6.9.0``."""
    parts = tuple(_release_part(part) for part in re.split(r"(\d+)", release) if part)
    return (*parts, (1, ""))  # the end sorts after a pre-release marker, before anything else


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


def kernel_flavour(release: str) -> str:
    """The build flavour of a kernel release: ``6.1.0-26-cloud-amd64`` → ``cloud-amd64``.

    Kernels of different flavours are different packages, not versions of one another.
    """
    match = re.match(r"^[\d.]+(?:-rc\d+)?-\d+[a-z0-9.~+]*?-(?P<flavour>[a-z][\w.+-]*)$", release)
    return match["flavour"] if match else ""


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
    flavour = kernel_flavour(running_kernel)
    kernels = [k for k in installed_kernels(target) if kernel_flavour(k) == flavour]
    if target.is_host and running_kernel and kernels:
        newest = kernels[-1]
        if kernel_sort_key(newest) > kernel_sort_key(running_kernel):
            reasons.append(f"running kernel {running_kernel} is older than installed {newest}")
    return RebootState(required=bool(reasons), reasons=tuple(reasons))
