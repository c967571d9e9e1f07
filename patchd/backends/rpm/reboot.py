"""Whether an RPM update needs a reboot when no advisory says so: the OS profile's list."""

from __future__ import annotations

from patchd.platforms import OsProfile


def needs_reboot(name: str, profile: OsProfile) -> bool:
    """The kernel and the profile's core packages need a reboot to take effect.

    RPM kernels are named exactly (``kernel``, ``kernel-core``, ``kernel-default``);
    ``kernel-headers`` or ``kernel-tools`` do not need one, so names are not prefixes here.
    """
    return name in profile.kernel_packages or name in profile.reboot_packages
