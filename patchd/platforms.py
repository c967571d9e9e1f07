"""Operating-system differences, as data.

One frozen :class:`OsProfile` per family, with small overrides for distributions that
differ (Ubuntu phases its updates). :func:`profile_for` chooses by the os-release ``ID``,
then each ``ID_LIKE``. Code asks the profile; it never tests distribution names.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace


@dataclass(frozen=True)
class OsProfile:
    """What patchd needs to know about an operating-system family."""

    family: str
    backends: tuple[str, ...]  # package managers to probe, in order of preference
    reboot_required_markers: tuple[str, ...] = ()  # files whose presence means "reboot"
    security_labels: tuple[str, ...] = ()  # repository labels of security archives
    security_suite_suffixes: tuple[str, ...] = ()  # suites whose name marks security
    bugfix_suite_suffixes: tuple[str, ...] = ()
    enhancement_suite_suffixes: tuple[str, ...] = ()
    stable_origins: tuple[str, ...] = ()  # the vendor's own archive: updates there are fixes
    phased_updates: bool = False
    kernel_packages: tuple[str, ...] = ()  # name prefixes whose update needs a reboot
    reboot_packages: tuple[str, ...] = ()  # names whose update needs a reboot


DEBIAN = OsProfile(
    family="debian",
    backends=("apt", "snap", "flatpak"),  # absent ones are skipped quietly
    reboot_required_markers=("/run/reboot-required", "/var/run/reboot-required"),
    security_labels=("Debian-Security",),
    security_suite_suffixes=("-security",),
    bugfix_suite_suffixes=("-updates", "-proposed-updates"),
    enhancement_suite_suffixes=("-backports", "-backports-sloppy"),
    stable_origins=("Debian",),
    kernel_packages=("linux-image-",),
    reboot_packages=(
        "libc6",
        "systemd",
        "dbus",
        "linux-firmware",
        "intel-microcode",
        "amd64-microcode",
    ),
)

UBUNTU = replace(
    DEBIAN,
    security_labels=(),  # Ubuntu labels every pocket "Ubuntu": the -security suite decides
    stable_origins=("Ubuntu", "UbuntuESM", "UbuntuESMApps"),
    bugfix_suite_suffixes=("-updates", "-proposed"),
    phased_updates=True,
)

RHEL = OsProfile(
    family="rhel",
    backends=("dnf", "yum", "flatpak", "snap"),
    kernel_packages=("kernel", "kernel-core"),
    reboot_packages=("glibc", "systemd", "linux-firmware", "dbus"),
)
SUSE = OsProfile(
    family="suse", backends=("zypper", "flatpak", "snap"), kernel_packages=("kernel-default",)
)
ARCH = OsProfile(
    family="arch",
    backends=("pacman", "flatpak", "snap"),
    # Exact package names: Arch's kernels are named whole ("linux-api-headers" is no kernel).
    kernel_packages=(
        "linux",
        "linux-lts",
        "linux-zen",
        "linux-hardened",
        "linux-rt",
        "linux-rt-lts",
    ),
    reboot_packages=("linux-firmware", "intel-ucode", "amd-ucode", "glibc", "systemd"),
)
ALPINE = OsProfile(family="alpine", backends=("apk",), kernel_packages=("linux-lts", "linux-virt"))
MACOS = OsProfile(family="macos", backends=("softwareupdate", "homebrew"))
WINDOWS = OsProfile(family="windows", backends=("windows-update", "winget", "chocolatey"))
UNKNOWN = OsProfile(family="unknown", backends=())

_BY_ID: dict[str, OsProfile] = {
    "debian": DEBIAN,
    "raspbian": DEBIAN,
    "kali": DEBIAN,
    "ubuntu": UBUNTU,
    "linuxmint": UBUNTU,
    "pop": UBUNTU,
    "elementary": UBUNTU,
    "rhel": RHEL,
    "centos": RHEL,
    "fedora": RHEL,
    "rocky": RHEL,
    "almalinux": RHEL,
    "ol": RHEL,
    "amzn": RHEL,
    "sles": SUSE,
    "sled": SUSE,
    "suse": SUSE,
    "opensuse": SUSE,
    "opensuse-leap": SUSE,
    "opensuse-tumbleweed": SUSE,
    "arch": ARCH,
    "manjaro": ARCH,
    "endeavouros": ARCH,
    "alpine": ALPINE,
    "macos": MACOS,
    "windows": WINDOWS,
}


def profile_for(os_id: str, id_like: Sequence[str] = ()) -> OsProfile:
    """The profile for an os-release ``ID`` and ``ID_LIKE`` list; :data:`UNKNOWN` if none fits."""
    for candidate in (os_id, *id_like):
        profile = _BY_ID.get(candidate.lower())
        if profile is not None:
            return profile
    return UNKNOWN


def known_families() -> set[str]:
    """Every family name a policy may select (``os_family``)."""
    return {p.family for p in _BY_ID.values()}
