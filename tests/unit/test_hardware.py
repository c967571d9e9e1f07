"""Tests for patchd.discovery.hardware: this real machine, and real mount tables."""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import psutil
import pytest

from patchd.discovery import hardware
from patchd.discovery.hardware import (
    Hardware,
    Mount,
    measure_disks,
    parse_cpu_model,
    read_hardware,
    select_mounts,
)

# Written out here rather than taken from the module, so that the module's table is
# what is under test.
NOT_STORAGE = {
    "proc", "sysfs", "tmpfs", "devtmpfs", "devpts", "cgroup", "cgroup2", "mqueue", "securityfs",
    "debugfs", "tracefs", "pstore", "bpf", "autofs", "hugetlbfs", "squashfs", "nsfs", "devfs",
    "nfs", "nfs4", "cifs", "fuse.sshfs", "fuse.lxcfs",
}  # fmt: skip


@pytest.fixture(scope="module")
def now() -> datetime:
    return datetime.now(UTC)


@pytest.fixture(scope="module")
def this_machine(now: datetime) -> Hardware:
    return read_hardware(now)


def test_memory_and_cpu_are_sane(this_machine: Hardware) -> None:
    assert this_machine.memory_total_bytes > 0
    assert this_machine.swap_total_bytes >= 0
    if sys.platform == "linux":
        assert this_machine.cpu_logical is not None
    if this_machine.cpu_logical is not None:
        assert this_machine.cpu_logical >= 1
        if this_machine.cpu_physical is not None:
            assert 1 <= this_machine.cpu_physical <= this_machine.cpu_logical


@pytest.mark.skipif(sys.platform != "linux", reason="compares with /proc/cpuinfo")
def test_cpu_model_matches_cpuinfo(this_machine: Hardware) -> None:
    cpuinfo = Path("/proc/cpuinfo").read_text()
    if "model name" in cpuinfo:
        assert this_machine.cpu_model is not None
        assert this_machine.cpu_model.split()[0] in cpuinfo


def test_boot_time_and_uptime_agree_with_now(this_machine: Hardware, now: datetime) -> None:
    assert this_machine.boot_time.tzinfo is not None
    assert this_machine.boot_time < now
    assert this_machine.uptime_s == pytest.approx((now - this_machine.boot_time).total_seconds())
    assert this_machine.uptime_s > 0


@pytest.mark.skipif(sys.platform != "linux", reason="compares with /proc/uptime")
def test_uptime_agrees_with_the_kernel() -> None:
    now = datetime.now(UTC)
    kernel_uptime_s = float(Path("/proc/uptime").read_text().split()[0])
    # The kernel's boot time is whole seconds; allow for that and for the time between reads.
    assert read_hardware(now).uptime_s == pytest.approx(kernel_uptime_s, abs=5.0)


def test_disks_are_real_storage(this_machine: Hardware) -> None:
    disks = this_machine.disks
    assert len(disks) <= hardware.MAX_DISKS
    for disk in disks:
        assert disk.fstype.lower() not in NOT_STORAGE, disk
        assert disk.total_bytes > 0
        assert 0 <= disk.used_bytes <= disk.total_bytes
        assert 0 <= disk.free_bytes <= disk.total_bytes
    assert len({disk.device for disk in disks}) == len(disks)
    assert len({disk.mountpoint for disk in disks}) == len(disks)
    if sys.platform == "linux":
        assert "/" in {disk.mountpoint for disk in disks}


def test_max_disks_is_respected(this_machine: Hardware, now: datetime) -> None:
    assert len(read_hardware(now, max_disks=1).disks) == min(1, len(this_machine.disks))
    assert read_hardware(now, max_disks=0).disks == ()


def test_max_disks_caps_many_mounts(tmp_path: Path) -> None:
    mounts = []
    for index in range(5):
        (tmp_path / str(index)).mkdir()
        mounts.append(Mount(f"/dev/fake{index}", str(tmp_path / str(index)), "ext4"))
    assert [d.device for d in measure_disks(mounts, 2)] == ["/dev/fake0", "/dev/fake1"]
    assert len(measure_disks(mounts, 64)) == 5


def test_unmeasurable_mounts_are_skipped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("ok", "denied"):
        (tmp_path / name).mkdir()
    mounts = [
        Mount("/dev/gone", str(tmp_path / "gone"), "ext4"),  # unmounted since the table was read
        Mount("/dev/denied", str(tmp_path / "denied"), "ext4"),
        Mount("/dev/ok", str(tmp_path / "ok"), "ext4"),
    ]
    real_disk_usage = psutil.disk_usage

    def disk_usage_denying(path: str) -> object:
        # Root may statvfs anything; inject the PermissionError a user can get.
        if path.endswith("denied"):
            raise PermissionError(13, "Permission denied", path)
        return real_disk_usage(path)

    monkeypatch.setattr(psutil, "disk_usage", disk_usage_denying)
    assert [disk.device for disk in measure_disks(mounts, 64)] == ["/dev/ok"]


def test_as_dict_is_json_ready(this_machine: Hardware) -> None:
    data = json.loads(json.dumps(this_machine.as_dict()))
    assert data["boot_time"].endswith("Z")
    parsed = datetime.fromisoformat(data["boot_time"].replace("Z", "+00:00"))
    assert abs(parsed - this_machine.boot_time) < timedelta(seconds=1)
    assert data["memory_total_bytes"] == this_machine.memory_total_bytes
    assert len(data["disks"]) == len(this_machine.disks)
    for disk in data["disks"]:
        assert set(disk) == {
            "device",
            "mountpoint",
            "fstype",
            "total_bytes",
            "used_bytes",
            "free_bytes",
        }


def test_as_dict_converts_other_zones_to_utc() -> None:
    local = datetime(2024, 3, 1, 11, 30, 15, tzinfo=timezone(timedelta(hours=2)))
    facts = Hardware(None, None, None, 1, 0, (), local, 10.0)
    assert facts.as_dict()["boot_time"] == "2024-03-01T09:30:15Z"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"now": datetime(2024, 1, 1)}, "timezone-aware"),  # naive on purpose
        ({"now": datetime(2024, 1, 1, tzinfo=UTC), "max_disks": -1}, "negative"),
    ],
    ids=["naive-now", "negative-max-disks"],
)
def test_bad_arguments(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        read_hardware(**kwargs)  # type: ignore[arg-type]


DOCKER_CONTAINER = [
    Mount("overlay", "/", "overlay"),
    Mount("proc", "/proc", "proc"),
    Mount("tmpfs", "/dev", "tmpfs"),
    Mount("devpts", "/dev/pts", "devpts"),
    Mount("sysfs", "/sys", "sysfs"),
    Mount("cgroup", "/sys/fs/cgroup", "cgroup2"),
    Mount("mqueue", "/dev/mqueue", "mqueue"),
    Mount("shm", "/dev/shm", "tmpfs"),
    Mount("/dev/vda1", "/etc/resolv.conf", "ext4"),
    Mount("/dev/vda1", "/etc/hostname", "ext4"),
    Mount("/dev/vda1", "/etc/hosts", "ext4"),
    Mount("/dev/vdb1", "/var/lib/postgresql/data", "ext4"),  # a volume on its own disk
]
DOCKER_HOST = [
    Mount("/dev/nvme0n1p2", "/", "ext4"),
    Mount("/dev/nvme0n1p1", "/boot/efi", "vfat"),
    Mount("overlay", "/var/lib/docker/overlay2/3f9a/merged", "overlay"),
    Mount("/dev/loop3", "/snap/core22/1380", "squashfs"),
    Mount("nsfs", "/run/docker/netns/1c2d", "nsfs"),
]
BTRFS_LAPTOP = [
    Mount("/dev/nvme0n1p3", "/home", "btrfs"),  # subvolume listed before the root
    Mount("/dev/nvme0n1p3", "/", "btrfs"),
    Mount("/dev/nvme0n1p1", "/boot/efi", "vfat"),
    Mount("/dev/sdb1", "/media/usb", "fuseblk"),
    Mount("gvfsd-fuse", "/run/user/1000/gvfs", "fuse.gvfsd-fuse"),
    Mount("user@nas:/srv", "/mnt/nas", "fuse.sshfs"),
]
FILE_SERVER = [
    Mount("/dev/sda1", "/", "xfs"),
    Mount("rpool/data", "/data", "zfs"),
    Mount("nas:/export/home", "/home", "nfs4"),
    Mount("//nas/share", "/mnt/share", "cifs"),
    Mount("lxcfs", "/var/lib/lxcfs", "fuse.lxcfs"),
]
MACOS = [
    Mount("/dev/disk3s1s1", "/", "apfs"),
    Mount("devfs", "/dev", "devfs"),
    Mount("/dev/disk3s6", "/System/Volumes/VM", "apfs"),
    Mount("/dev/disk3s2", "/System/Volumes/Preboot", "apfs"),
    Mount("/dev/disk3s4", "/System/Volumes/Update", "apfs"),
    Mount("/dev/disk3s5", "/System/Volumes/Data", "apfs"),
    Mount("map auto_home", "/System/Volumes/Data/home", "autofs"),
]
WINDOWS = [
    Mount("C:\\", "C:\\", "NTFS"),
    Mount("D:\\", "D:\\", ""),  # an optical drive without a disc
    Mount("E:\\", "E:\\", "exFAT"),
]

MOUNT_CASES: dict[str, tuple[list[Mount], list[tuple[str, str]]]] = {
    "docker-container-keeps-overlay-root": (
        DOCKER_CONTAINER,
        [("overlay", "/"), ("/dev/vdb1", "/var/lib/postgresql/data")],
    ),
    "docker-host-drops-layers-and-snaps": (
        DOCKER_HOST,
        [("/dev/nvme0n1p2", "/"), ("/dev/nvme0n1p1", "/boot/efi")],
    ),
    "btrfs-subvolumes-and-fuse": (
        BTRFS_LAPTOP,
        [("/dev/nvme0n1p3", "/"), ("/dev/nvme0n1p1", "/boot/efi"), ("/dev/sdb1", "/media/usb")],
    ),
    "file-server-drops-network-shares": (
        FILE_SERVER,
        [("/dev/sda1", "/"), ("rpool/data", "/data")],
    ),
    "macos-drops-system-volumes": (
        MACOS,
        [("/dev/disk3s1s1", "/"), ("/dev/disk3s5", "/System/Volumes/Data")],
    ),
    "windows-drops-empty-drive": (WINDOWS, [("C:\\", "C:\\"), ("E:\\", "E:\\")]),
}


# Mountpoints of the tables above that are files, as the runtime's bind mounts are.
FILE_MOUNTPOINTS = {"/etc/resolv.conf", "/etc/hostname", "/etc/hosts"}


@pytest.mark.parametrize(("mounts", "expected"), MOUNT_CASES.values(), ids=MOUNT_CASES.keys())
def test_select_mounts(mounts: list[Mount], expected: list[tuple[str, str]]) -> None:
    def is_directory(mountpoint: str) -> bool:
        return mountpoint not in FILE_MOUNTPOINTS

    selected = select_mounts(mounts, is_directory=is_directory)
    assert [(m.device, m.mountpoint) for m in selected] == expected


def test_file_bind_mounts_are_not_disks(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    (tmp_path / "hosts").write_text("127.0.0.1 localhost\n")
    mounts = [
        Mount("/dev/vda1", str(tmp_path / "hosts"), "ext4"),
        Mount("/dev/vdb1", str(tmp_path / "data"), "xfs"),
    ]
    assert [disk.device for disk in measure_disks(mounts, 64)] == ["/dev/vdb1"]


def test_network_mounts_are_never_looked_at() -> None:
    looked_at: list[str] = []

    def is_directory(mountpoint: str) -> bool:
        looked_at.append(mountpoint)
        return True

    select_mounts(FILE_SERVER, is_directory=is_directory)
    assert looked_at == ["/", "/data"]


# /proc/cpuinfo as Linux prints it on each architecture (first processor's block, cut).
CPUINFO_CASES: dict[str, tuple[str, str | None]] = {
    "x86-64": (
        "processor\t: 0\nvendor_id\t: GenuineIntel\ncpu family\t: 6\n"
        "model name\t: Intel(R) Xeon(R) CPU           E5-2670 0 @ 2.60GHz\n"
        "flags\t\t: fpu vme de pse\n\nprocessor\t: 1\nmodel name\t: ignored\n",
        "Intel(R) Xeon(R) CPU E5-2670 0 @ 2.60GHz",
    ),
    "amd-epyc": (
        "processor\t: 0\nmodel name\t: AMD EPYC 7R13 Processor\n",
        "AMD EPYC 7R13 Processor",
    ),
    "aarch64-names-no-model": (
        "processor\t: 0\nBogoMIPS\t: 50.00\nFeatures\t: fp asimd\nCPU implementer\t: 0x41\n"
        "CPU part\t: 0xd0c\n",
        None,
    ),
    "old-arm": (
        "Processor\t: ARMv6-compatible processor rev 7 (v6l)\nprocessor\t: 0\n"
        "Hardware\t: BCM2708\n",
        "ARMv6-compatible processor rev 7 (v6l)",
    ),
    "power9": (
        "processor\t: 0\ncpu\t\t: POWER9 (raw), altivec supported\n",
        "POWER9 (raw), altivec supported",
    ),
    "mips": (
        "system type\t\t: MediaTek MT7621\nprocessor\t\t: 0\ncpu model\t\t: MIPS 1004Kc V2.15\n",
        "MIPS 1004Kc V2.15",
    ),
    "empty": ("", None),
}


@pytest.mark.parametrize(("text", "expected"), CPUINFO_CASES.values(), ids=CPUINFO_CASES.keys())
def test_parse_cpu_model(text: str, expected: str | None) -> None:
    assert parse_cpu_model(text) == expected
