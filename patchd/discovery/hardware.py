"""What the machine is made of: CPU, memory, disks, and how long it has been up.

Read through psutil, which works alike on Linux, macOS and Windows. Only real storage
is listed: pseudo filesystems, network shares, a container's layers and bind mounts of
a filesystem already listed are left out, because an administrator asking "is the disk
full?" means the machine's own disks.
"""

from __future__ import annotations

import logging
import os
import platform
import sys
import warnings
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path, PurePath
from types import MappingProxyType
from typing import Any

import psutil

from patchd import process
from patchd.errors import CommandError, ToolNotFoundError

log = logging.getLogger(__name__)

MAX_DISKS = 64  # filesystems reported; a Kubernetes node can mount thousands
MAX_CPUINFO_BYTES = 64 * 1024  # the first processor's block is about 1.5 KiB
MAX_COMMAND_OUTPUT_BYTES = 64 * 1024
SYSCTL_TIMEOUT_S = 15.0

# Kernel views and memory-backed filesystems: no storage behind them. squashfs is here
# for snaps and live media: read-only images, always full, dozens of them.
PSEUDO_FILESYSTEMS = frozenset(
    {
        "autofs", "binfmt_misc", "bpf", "cgroup", "cgroup2", "configfs", "debugfs", "devfs",
        "devpts", "devtmpfs", "efivarfs", "fdescfs", "fuse", "fusectl", "hugetlbfs", "mqueue",
        "nsfs", "nullfs", "proc", "procfs", "pstore", "ramfs", "rpc_pipefs", "securityfs",
        "selinuxfs", "squashfs", "sysfs", "tmpfs", "tracefs",
    }
)  # fmt: skip
# Another machine's storage, which that machine reports. Also statvfs() on a hard-mounted
# share whose server is gone blocks for ever, and would hang discovery with it.
NETWORK_FILESYSTEMS = frozenset(
    {
        "9p", "afs", "ceph", "cifs", "coda", "davfs", "glusterfs", "lustre", "ncpfs", "nfs",
        "nfs4", "smb3", "smbfs", "sshfs", "virtiofs",
    }
)  # fmt: skip
# FUSE filesystems run in user space: network mounts (sshfs, s3fs), views (lxcfs, gvfs).
# "fuseblk" (NTFS and exFAT disks through FUSE) does not match and is kept.
SKIPPED_FSTYPE_PREFIXES = ("fuse.",)
# Union filesystems are a container's storage when they are its root, and elsewhere the
# layers of containers whose space the host's own disk already shows.
ROOT_ONLY_FILESYSTEMS = frozenset({"overlay", "aufs"})
# macOS mounts APFS volumes for its own bookkeeping (VM, Preboot, Update, xarts) that
# share one container with "/"; the user's data volume is the one worth reporting.
MACOS_SYSTEM_VOLUMES = "/System/Volumes/"
MACOS_KEPT_SYSTEM_VOLUMES = frozenset({"/System/Volumes/Data"})

# /proc/cpuinfo keys naming the CPU, by preference: x86 and 32-bit ARM ("model name"),
# older ARM kernels ("Processor", capitalised, unlike x86's "processor : 0"), MIPS
# ("cpu model"), POWER ("cpu"). 64-bit ARM names no model at all.
CPUINFO_MODEL_KEYS = ("model name", "Processor", "cpu model", "cpu")


@dataclass(frozen=True)
class Mount:
    """One entry of the mount table."""

    device: str
    mountpoint: str
    fstype: str


@dataclass(frozen=True)
class Disk:
    """A mounted filesystem on real storage; ``free_bytes`` is what unprivileged users may use."""

    device: str
    mountpoint: str
    fstype: str
    total_bytes: int
    used_bytes: int
    free_bytes: int


@dataclass(frozen=True)
class Hardware:
    """CPU, memory, disks and uptime of a machine, as read at one moment."""

    cpu_model: str | None
    cpu_logical: int | None
    cpu_physical: int | None
    memory_total_bytes: int
    swap_total_bytes: int
    disks: tuple[Disk, ...]
    boot_time: datetime
    uptime_s: float

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready dict; ``boot_time`` is ISO 8601 in UTC with a "Z"."""
        fields = asdict(self)
        fields["disks"] = [asdict(disk) for disk in self.disks]
        utc = self.boot_time.astimezone(UTC).isoformat(timespec="seconds")
        fields["boot_time"] = utc.replace("+00:00", "Z")
        return fields


def read_hardware(now: datetime, *, max_disks: int = MAX_DISKS) -> Hardware:
    """Read the running machine's hardware; ``now`` (timezone-aware) dates the uptime.

    Raises :class:`ValueError` for a naive ``now`` or a negative ``max_disks``.
    """
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    if max_disks < 0:
        raise ValueError(f"max_disks must not be negative, not {max_disks}")
    boot_time = datetime.fromtimestamp(psutil.boot_time(), tz=UTC)
    with warnings.catch_warnings():
        # psutil warns when /proc/vmstat lacks the swap-in/out counters (some containers);
        # only the total is wanted here.
        warnings.simplefilter("ignore", RuntimeWarning)
        swap_total = psutil.swap_memory().total
    partitions = psutil.disk_partitions(all=True)
    return Hardware(
        cpu_model=read_cpu_model(),
        cpu_logical=psutil.cpu_count(logical=True),
        cpu_physical=psutil.cpu_count(logical=False),
        memory_total_bytes=psutil.virtual_memory().total,
        swap_total_bytes=swap_total,
        disks=measure_disks(
            (Mount(p.device, p.mountpoint, p.fstype) for p in partitions), max_disks
        ),
        boot_time=boot_time,
        uptime_s=max(0.0, (now - boot_time).total_seconds()),
    )


def select_mounts(
    mounts: Iterable[Mount], *, is_directory: Callable[[str], bool] = os.path.isdir
) -> list[Mount]:
    """The mounts of real storage, one per device, in mount-table order.

    A mountpoint that ``is_directory`` denies is a bind-mounted file (the ``/etc/hosts``
    a container runtime binds in), not a filesystem. Of several mounts of one device
    (bind mounts, btrfs subvolumes) the one nearest the root is kept.
    """
    chosen: dict[str, Mount] = {}
    for mount in mounts:
        # The type is judged before the mountpoint is looked at: stat() of a network
        # mount whose server is gone can hang.
        if not _is_storage(mount) or not is_directory(mount.mountpoint):
            continue
        kept = chosen.get(mount.device)
        if kept is None or _depth(mount.mountpoint) < _depth(kept.mountpoint):
            chosen[mount.device] = mount
    return list(chosen.values())


def measure_disks(mounts: Iterable[Mount], max_disks: int) -> tuple[Disk, ...]:
    """Size up to ``max_disks`` of the real-storage ``mounts``.

    A mount whose usage cannot be read (gone, or not permitted) or that has no size is
    skipped rather than failing the whole inventory.
    """
    disks: list[Disk] = []
    for mount in select_mounts(mounts):
        if len(disks) >= max_disks:
            break
        try:
            usage = psutil.disk_usage(mount.mountpoint)
        except OSError as exc:
            log.debug("skipping %s: %s", mount.mountpoint, exc)
            continue
        if usage.total == 0:
            continue
        disks.append(
            Disk(
                device=mount.device,
                mountpoint=mount.mountpoint,
                fstype=mount.fstype,
                total_bytes=usage.total,
                used_bytes=usage.used,
                free_bytes=usage.free,
            )
        )
    return tuple(disks)


def parse_cpu_model(cpuinfo: str) -> str | None:
    """The CPU model named in the text of ``/proc/cpuinfo``, whitespace collapsed."""
    values: dict[str, str] = {}
    for line in cpuinfo.splitlines():
        key, separator, value = line.partition(":")
        key = key.strip()
        value = " ".join(value.split())
        if separator and value and key not in values:
            values[key] = value
    return next((values[key] for key in CPUINFO_MODEL_KEYS if key in values), None)


def read_cpu_model() -> str | None:
    """The running machine's CPU model, or ``None`` if the platform does not say."""
    reader = _CPU_MODEL_READERS.get(sys.platform, _generic_cpu_model)
    return reader()


def _linux_cpu_model() -> str | None:
    try:
        with Path("/proc/cpuinfo").open("rb") as stream:
            text = stream.read(MAX_CPUINFO_BYTES).decode("utf-8", "replace")
    except OSError:
        return None
    return parse_cpu_model(text)


def _macos_cpu_model() -> str | None:
    argv = ["sysctl", "-n", "machdep.cpu.brand_string"]
    try:
        result = process.run(
            argv, timeout_s=SYSCTL_TIMEOUT_S, max_output_bytes=MAX_COMMAND_OUTPUT_BYTES
        )
    except (ToolNotFoundError, CommandError) as exc:
        log.debug("cpu model: %s", exc)
        return None
    return " ".join(result.stdout.split()) or None


def _generic_cpu_model() -> str | None:
    return platform.processor().strip() or None


_CPU_MODEL_READERS: Mapping[str, Callable[[], str | None]] = MappingProxyType(
    {"linux": _linux_cpu_model, "darwin": _macos_cpu_model}
)


def _is_storage(mount: Mount) -> bool:
    fstype = mount.fstype.lower()
    if not fstype or fstype in PSEUDO_FILESYSTEMS or fstype in NETWORK_FILESYSTEMS:
        return False  # an empty type is a Windows drive without media
    if fstype.startswith(SKIPPED_FSTYPE_PREFIXES):
        return False
    if fstype in ROOT_ONLY_FILESYSTEMS and mount.mountpoint != "/":
        return False
    return not (
        mount.mountpoint.startswith(MACOS_SYSTEM_VOLUMES)
        and mount.mountpoint not in MACOS_KEPT_SYSTEM_VOLUMES
    )


def _depth(mountpoint: str) -> int:
    return len(PurePath(mountpoint).parts)
