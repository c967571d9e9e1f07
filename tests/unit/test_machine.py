"""Tests for patchd.discovery.machine: real fake /sys and /proc trees, real command output."""

from __future__ import annotations

import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from patchd.discovery import machine
from patchd.discovery.machine import (
    MachineFacts,
    MachineType,
    classify_machine,
    identify_virtual_platform,
    parse_macos_facts,
    parse_windows_facts,
    read_linux_facts,
)

X86_CPUINFO = """\
processor\t: 0
vendor_id\t: GenuineIntel
model name\t: Intel(R) Xeon(R) Platinum 8259CL CPU @ 2.50GHz
flags\t\t: fpu vme de pse tsc msr pae mce cx8 apic sep mtrr pge mca cmov {extra}sse sse2

"""
GUEST_CPUINFO = X86_CPUINFO.format(extra="hypervisor ")
METAL_CPUINFO = X86_CPUINFO.format(extra="")


@dataclass(frozen=True)
class LinuxCase:
    """A fake Linux system: files relative to a tmp dir holding sys/, proc/ and root/."""

    files: Mapping[str, str]
    expected: MachineType
    facts: Mapping[str, Any] = field(default_factory=dict)  # MachineFacts fields to check


def dmi(vendor: str, product: str, chassis: int | None = None) -> dict[str, str]:
    files = {
        "sys/class/dmi/id/sys_vendor": vendor + "\n",
        "sys/class/dmi/id/product_name": product + "\n",
    }
    if chassis is not None:
        files["sys/class/dmi/id/chassis_type"] = f"{chassis}\n"
    return files


def power_supply(name: str, kind: str, scope: str | None = None) -> dict[str, str]:
    files = {f"sys/class/power_supply/{name}/type": kind + "\n"}
    if scope is not None:
        files[f"sys/class/power_supply/{name}/scope"] = scope + "\n"
    return files


LINUX_CASES: dict[str, LinuxCase] = {
    "kvm-guest-qemu": LinuxCase(
        {**dmi("QEMU", "Standard PC (Q35 + ICH9, 2009)", 1), "proc/cpuinfo": GUEST_CPUINFO},
        MachineType.VIRTUAL_MACHINE,
        {"virtualization": "qemu", "hypervisor_cpu_flag": True},
    ),
    "kvm-guest-red-hat": LinuxCase(
        dmi("Red Hat", "KVM", 1), MachineType.VIRTUAL_MACHINE, {"virtualization": "kvm"}
    ),
    "vmware": LinuxCase(
        dmi("VMware, Inc.", "VMware Virtual Platform", 1),
        MachineType.VIRTUAL_MACHINE,
        {"virtualization": "vmware"},
    ),
    "hyper-v-reports-desktop-chassis": LinuxCase(
        dmi("Microsoft Corporation", "Virtual Machine", 3),
        MachineType.VIRTUAL_MACHINE,
        {"virtualization": "hyperv", "chassis_type": 3},
    ),
    "surface-laptop-is-not-hyper-v": LinuxCase(
        dmi("Microsoft Corporation", "Surface Laptop 4", 9),
        MachineType.LAPTOP,
        {"virtualization": None},
    ),
    "aws-nitro": LinuxCase(
        {**dmi("Amazon EC2", "m5.large", 1), "proc/cpuinfo": GUEST_CPUINFO},
        MachineType.VIRTUAL_MACHINE,
        {"virtualization": "amazon"},
    ),
    "aws-bare-metal": LinuxCase(
        {**dmi("Amazon EC2", "m5.metal", 23), "proc/cpuinfo": METAL_CPUINFO},
        MachineType.SERVER,
        {"virtualization": None, "hypervisor_cpu_flag": False},
    ),
    "google-compute-engine": LinuxCase(
        dmi("Google", "Google Compute Engine", 1),
        MachineType.VIRTUAL_MACHINE,
        {"virtualization": "google"},
    ),
    "virtualbox": LinuxCase(
        dmi("innotek GmbH", "VirtualBox", 1),
        MachineType.VIRTUAL_MACHINE,
        {"virtualization": "virtualbox"},
    ),
    "xen-pv-guest-without-dmi": LinuxCase(
        {"sys/hypervisor/type": "xen\n"},
        MachineType.VIRTUAL_MACHINE,
        {"virtualization": "xen"},
    ),
    "xen-control-domain-is-the-host": LinuxCase(
        {
            **dmi("Supermicro", "SYS-1029P-WTR", 23),
            "sys/hypervisor/type": "xen\n",
            "proc/xen/capabilities": "control_d\n",
            "proc/cpuinfo": GUEST_CPUINFO,
        },
        MachineType.SERVER,
        {"virtualization": None, "hypervisor_cpu_flag": False},
    ),
    "unknown-hypervisor-by-cpu-flag": LinuxCase(
        {**dmi("Acme Cloud", "Instance", 1), "proc/cpuinfo": GUEST_CPUINFO},
        MachineType.VIRTUAL_MACHINE,
        {"virtualization": None, "hypervisor_cpu_flag": True},
    ),
    "xenon-systems-is-a-maker-not-xen": LinuxCase(
        dmi("Xenon Systems", "Workstation", 7), MachineType.DESKTOP, {"virtualization": None}
    ),
    "laptop-by-chassis": LinuxCase(
        {**dmi("LENOVO", "20XW0055GE", 10), "proc/cpuinfo": METAL_CPUINFO},
        MachineType.LAPTOP,
        {"chassis_type": 10, "has_battery": False},
    ),
    "laptop-by-battery": LinuxCase(
        {**power_supply("AC", "Mains"), **power_supply("BAT0", "Battery", "System")},
        MachineType.LAPTOP,
        {"has_battery": True},
    ),
    "laptop-by-battery-despite-desktop-chassis": LinuxCase(
        {**dmi("Default string", "Default string", 3), **power_supply("BAT1", "Battery")},
        MachineType.LAPTOP,
        {"has_battery": True, "sys_vendor": None, "product_name": None},
    ),
    "desktop": LinuxCase(
        {**dmi("Dell Inc.", "OptiPlex 7090", 6), **power_supply("AC", "Mains")},
        MachineType.DESKTOP,
        {"sys_vendor": "Dell Inc.", "product_name": "OptiPlex 7090", "has_battery": False},
    ),
    "desktop-with-wireless-mouse-battery": LinuxCase(
        {
            **dmi("Dell Inc.", "OptiPlex 7090", 3),
            **power_supply("hidpp_battery_0", "Battery", "Device"),
        },
        MachineType.DESKTOP,
        {"has_battery": False},
    ),
    "desktop-with-placeholder-dmi": LinuxCase(
        dmi("To be filled by O.E.M.", "To be filled by O.E.M.", 3),
        MachineType.DESKTOP,
        {"sys_vendor": None, "product_name": None},
    ),
    "rack-server": LinuxCase(
        {**dmi("Dell Inc.", "PowerEdge R740", 23), "proc/cpuinfo": METAL_CPUINFO},
        MachineType.SERVER,
        {"chassis_type": 23, "virtualization": None},
    ),
    "docker-beats-vm": LinuxCase(
        {**dmi("QEMU", "Standard PC (i440FX + PIIX, 1996)", 1), "root/.dockerenv": ""},
        MachineType.CONTAINER,
        {"container": "docker", "virtualization": "qemu"},
    ),
    "podman": LinuxCase(
        {"root/run/.containerenv": 'engine="podman-4.9.3"\n', "root/.dockerenv": ""},
        MachineType.CONTAINER,
        {"container": "podman"},
    ),
    "systemd-nspawn": LinuxCase(
        {"root/run/systemd/container": "systemd-nspawn\n"},
        MachineType.CONTAINER,
        {"container": "systemd-nspawn"},
    ),
    "container-manager-file": LinuxCase(
        {"root/run/host/container-manager": "podman\n"},
        MachineType.CONTAINER,
        {"container": "podman"},
    ),
    "pid1-environment": LinuxCase(
        {"proc/1/environ": "PATH=/usr/bin\0container=lxc\0TERM=linux\0"},
        MachineType.CONTAINER,
        {"container": "lxc"},
    ),
    "lxc-by-cgroup": LinuxCase(
        {"proc/1/cgroup": "12:devices:/lxc/web01\n11:memory:/lxc/web01\n0::/\n"},
        MachineType.CONTAINER,
        {"container": "lxc"},
    ),
    "kubernetes-by-cgroup": LinuxCase(
        {"proc/1/cgroup": "11:memory:/kubepods/besteffort/pod3a1b/docker-9f2c.scope\n0::/\n"},
        MachineType.CONTAINER,
        {"container": "kubernetes"},
    ),
    "host-cgroup-is-not-a-container": LinuxCase(
        {**dmi("HP", "ProLiant DL380 Gen10", 23), "proc/1/cgroup": "0::/init.scope\n"},
        MachineType.SERVER,
        {"container": None},
    ),
    "wsl": LinuxCase(
        {
            "proc/sys/kernel/osrelease": "5.15.153.1-microsoft-standard-WSL2\n",
            "proc/cpuinfo": GUEST_CPUINFO,
        },
        MachineType.CONTAINER,
        {"container": "wsl"},
    ),
    "openvz": LinuxCase({"proc/vz/veinfo": ""}, MachineType.CONTAINER, {"container": "openvz"}),
    "openvz-host": LinuxCase(
        {"proc/vz/veinfo": "", "proc/bc/0/resources": ""},
        MachineType.SERVER,
        {"container": None},
    ),
    "nothing-known-is-a-server": LinuxCase({}, MachineType.SERVER, {}),
    "garbled-files": LinuxCase(
        {
            "sys/class/dmi/id/chassis_type": "laptop\n",
            "sys/class/dmi/id/sys_vendor": "\n\n",
            "proc/cpuinfo": "\x00\x01 not cpuinfo",
        },
        MachineType.SERVER,
        {"chassis_type": None, "sys_vendor": None, "hypervisor_cpu_flag": False},
    ),
}


def write_tree(base: Path, files: Mapping[str, str]) -> None:
    for relative, content in files.items():
        path = base / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content)


def read_tree(base: Path) -> MachineFacts:
    return read_linux_facts(sys_dir=base / "sys", proc_dir=base / "proc", root=base / "root")


@pytest.mark.parametrize("case", LINUX_CASES.values(), ids=LINUX_CASES.keys())
def test_linux_machine_types(tmp_path: Path, case: LinuxCase) -> None:
    write_tree(tmp_path, case.files)
    facts = read_tree(tmp_path)
    assert classify_machine(facts) == case.expected
    for name, value in case.facts.items():
        assert getattr(facts, name) == value, name


def test_nothing_known_reads_as_no_facts(tmp_path: Path) -> None:
    assert read_tree(tmp_path) == MachineFacts()


def test_unreadable_files_mean_unknown(tmp_path: Path) -> None:
    # A directory where each file should be: open() fails with an OSError, as for an
    # unreadable file (chmod cannot stop root, who runs these tests in CI).
    for relative in (
        "sys/class/dmi/id/chassis_type",
        "sys/class/dmi/id/sys_vendor",
        "sys/class/dmi/id/product_name",
        "sys/class/power_supply/BAT0/type",
        "sys/hypervisor/type",
        "proc/cpuinfo",
        "proc/1/environ",
        "proc/1/cgroup",
        "proc/sys/kernel/osrelease",
        "root/run/systemd/container",
    ):
        (tmp_path / relative).mkdir(parents=True)
    assert read_tree(tmp_path) == MachineFacts()


def test_root_only_environ_is_tolerated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # /proc/1/environ is readable only by root; inject the PermissionError a user gets.
    write_tree(
        tmp_path,
        {"proc/1/environ": "container=lxc\0", "proc/1/cgroup": "1:name=systemd:/docker/4f1e\n"},
    )
    real_open = Path.open

    def open_denying_environ(self: Path, *args: Any, **kwargs: Any) -> Any:
        if self.name == "environ":
            raise PermissionError(13, "Permission denied", str(self))
        return real_open(self, *args, **kwargs)

    monkeypatch.setattr(Path, "open", open_denying_environ)
    facts = read_tree(tmp_path)
    assert facts.container == "docker"  # found by the next mark instead


def test_file_reads_are_bounded(tmp_path: Path) -> None:
    huge = "x" * (machine.MAX_FACT_FILE_BYTES * 4)
    write_tree(tmp_path, {"sys/class/dmi/id/product_name": huge})
    facts = read_tree(tmp_path)
    assert facts.product_name is not None
    assert len(facts.product_name) == machine.MAX_FACT_FILE_BYTES


@pytest.mark.skipif(sys.platform != "linux", reason="reads this Linux machine's /sys and /proc")
def test_reads_this_linux_machine() -> None:
    facts = read_linux_facts()
    assert isinstance(classify_machine(facts), MachineType)
    if Path("/.dockerenv").exists() or Path("/run/.containerenv").exists():
        assert classify_machine(facts) == MachineType.CONTAINER


PRECEDENCE_CASES: dict[str, tuple[MachineFacts, MachineType]] = {
    "container-beats-everything": (
        MachineFacts(container="docker", virtualization="kvm", has_battery=True, chassis_type=9),
        MachineType.CONTAINER,
    ),
    "virtualization-beats-battery-and-chassis": (
        MachineFacts(virtualization="vmware", has_battery=True, chassis_type=10),
        MachineType.VIRTUAL_MACHINE,
    ),
    "cpu-flag-alone-is-a-vm": (
        MachineFacts(hypervisor_cpu_flag=True, chassis_type=23),
        MachineType.VIRTUAL_MACHINE,
    ),
    "battery-beats-desktop-chassis": (
        MachineFacts(has_battery=True, chassis_type=3),
        MachineType.LAPTOP,
    ),
    "laptop-chassis": (MachineFacts(chassis_type=9), MachineType.LAPTOP),
    "desktop-chassis": (MachineFacts(chassis_type=7), MachineType.DESKTOP),
    "server-chassis": (MachineFacts(chassis_type=23), MachineType.SERVER),
    "unknown-chassis-is-a-server": (MachineFacts(chassis_type=2), MachineType.SERVER),
    "windows-first-known-chassis": (MachineFacts(chassis_types=(2, 10, 3)), MachineType.LAPTOP),
    "macbook": (MachineFacts(hw_model="MacBookPro18,3"), MachineType.LAPTOP),
    "mac-mini": (MachineFacts(hw_model="Macmini9,1"), MachineType.DESKTOP),
    "apple-silicon-laptop-by-battery": (
        MachineFacts(hw_model="Mac14,2", has_battery=True),
        MachineType.LAPTOP,
    ),
    "mac-studio": (MachineFacts(hw_model="Mac13,1"), MachineType.DESKTOP),
    "xserve": (MachineFacts(hw_model="Xserve3,1"), MachineType.SERVER),
    "nothing-known": (MachineFacts(), MachineType.SERVER),
}


@pytest.mark.parametrize(
    ("facts", "expected"), PRECEDENCE_CASES.values(), ids=PRECEDENCE_CASES.keys()
)
def test_classify_precedence(facts: MachineFacts, expected: MachineType) -> None:
    assert classify_machine(facts) == expected


@pytest.mark.parametrize(
    ("codes", "expected"),
    [
        ((8, 9, 10, 11, 14, 30, 31, 32), MachineType.LAPTOP),
        ((3, 4, 5, 6, 7, 13, 15, 16, 24, 35, 36), MachineType.DESKTOP),
        ((17, 23, 25, 28, 29), MachineType.SERVER),
    ],
    ids=["laptop-codes", "desktop-codes", "server-codes"],
)
def test_smbios_chassis_codes(codes: tuple[int, ...], expected: MachineType) -> None:
    for code in codes:
        assert classify_machine(MachineFacts(chassis_type=code)) == expected, code


@pytest.mark.parametrize(
    ("vendor", "product", "expected"),
    [
        ("QEMU", "Standard PC (i440FX + PIIX, 1996)", "qemu"),
        ("Bochs", "Bochs", "bochs"),
        ("Parallels Software International Inc.", "Parallels Virtual Platform", "parallels"),
        ("OpenStack Foundation", "OpenStack Nova", "openstack"),
        ("Apple Inc.", "Apple Virtualization Generic Platform", "apple"),
        ("Apple Inc.", "MacBookPro11,1", None),
        ("Xen", "HVM domU", "xen"),
        (None, None, None),
    ],
)
def test_identify_virtual_platform(
    vendor: str | None, product: str | None, expected: str | None
) -> None:
    assert identify_virtual_platform(vendor, product) == expected


# Output as printed by `sysctl -n hw.model`, `sysctl -n kern.hv_vmm_present` and
# `pmset -g batt` on macOS 12 to 14 (a MacBook Pro, a Mac mini with a USB UPS, a VM).
PMSET_LAPTOP = (
    "Now drawing from 'AC Power'\n"
    " -InternalBattery-0 (id=4653155)\t100%; charged; 0:00 remaining present: true\n"
)
PMSET_DESKTOP_WITH_UPS = (
    "Now drawing from 'AC Power'\n -CP1500PFCLCD (id=5177344)\t100%; charging present: true\n"
)
PMSET_DESKTOP = "Now drawing from 'AC Power'\n"

MACOS_CASES: dict[str, tuple[tuple[str | None, str | None, str | None], MachineType]] = {
    "macbook-pro": (("MacBookPro18,3\n", "0\n", PMSET_LAPTOP), MachineType.LAPTOP),
    "apple-silicon-macbook-air": (("Mac14,2\n", "0\n", PMSET_LAPTOP), MachineType.LAPTOP),
    "mac-mini-with-ups": (("Macmini9,1\n", "0\n", PMSET_DESKTOP_WITH_UPS), MachineType.DESKTOP),
    "imac": (("iMac21,1\n", "0\n", PMSET_DESKTOP), MachineType.DESKTOP),
    "vm-by-kernel": (("MacBookPro18,3\n", "1\n", PMSET_DESKTOP), MachineType.VIRTUAL_MACHINE),
    "vm-by-model": (("VirtualMac2,1\n", None, None), MachineType.VIRTUAL_MACHINE),
    "old-macos-without-hv-sysctl": (("iMac14,2\n", None, PMSET_DESKTOP), MachineType.DESKTOP),
    "every-command-failed": ((None, None, None), MachineType.SERVER),
}


@pytest.mark.parametrize(("outputs", "expected"), MACOS_CASES.values(), ids=MACOS_CASES.keys())
def test_macos_facts(
    outputs: tuple[str | None, str | None, str | None], expected: MachineType
) -> None:
    facts = parse_macos_facts(*outputs)
    assert classify_machine(facts) == expected
    if outputs[0] is not None:
        assert facts.hw_model == outputs[0].strip()


# What WINDOWS_FACTS_SCRIPT prints: PowerShell 7 emits arrays as arrays; Windows
# PowerShell 5.1 may wrap an array as {"value": [...], "Count": n}. Vendor and model
# strings as Win32_ComputerSystem reports them on real machines and cloud guests.
WINDOWS_CASES: dict[str, tuple[str, MachineType, Mapping[str, Any]]] = {
    "thinkpad": (
        '{"ChassisTypes":[10],"Manufacturer":"LENOVO","Model":"20XW0055GE"}',
        MachineType.LAPTOP,
        {"chassis_types": (10,), "sys_vendor": "LENOVO"},
    ),
    "hyper-v-guest": (
        '{"ChassisTypes":[3],"Manufacturer":"Microsoft Corporation","Model":"Virtual Machine"}',
        MachineType.VIRTUAL_MACHINE,
        {"virtualization": "hyperv"},
    ),
    "vmware-guest": (
        '{"ChassisTypes":[1],"Manufacturer":"VMware, Inc.","Model":"VMware7,1"}',
        MachineType.VIRTUAL_MACHINE,
        {"virtualization": "vmware"},
    ),
    "aws-guest": (
        '{"ChassisTypes":[1],"Manufacturer":"Amazon EC2","Model":"t3.large"}',
        MachineType.VIRTUAL_MACHINE,
        {"virtualization": "amazon"},
    ),
    "powershell-5-wrapped-array": (
        '{"ChassisTypes":{"value":[23],"Count":1},"Manufacturer":"Dell Inc.",'
        '"Model":"PowerEdge R740"}',
        MachineType.SERVER,
        {"chassis_types": (23,)},
    ),
    "single-number": (
        '{"ChassisTypes":6,"Manufacturer":"HP","Model":"HP EliteDesk 800 G6 Tower PC"}',
        MachineType.DESKTOP,
        {"chassis_types": (6,)},
    ),
    "no-enclosure-and-placeholders": (
        '{"ChassisTypes":[],"Manufacturer":"System manufacturer","Model":"System Product Name"}',
        MachineType.SERVER,
        {"chassis_types": (), "sys_vendor": None, "product_name": None},
    ),
    "null-and-junk-chassis": (
        '{"ChassisTypes":[null,"9",true],"Manufacturer":null,"Model":null}',
        MachineType.SERVER,
        {"chassis_types": ()},
    ),
    "not-json": ("Get-CimInstance : Access denied", MachineType.SERVER, {}),
    "json-but-not-an-object": ("[10]", MachineType.SERVER, {"chassis_types": ()}),
}


@pytest.mark.parametrize(
    ("text", "expected", "fields"), WINDOWS_CASES.values(), ids=WINDOWS_CASES.keys()
)
def test_windows_facts(text: str, expected: MachineType, fields: Mapping[str, Any]) -> None:
    facts = parse_windows_facts(text)
    assert classify_machine(facts) == expected
    for name, value in fields.items():
        assert getattr(facts, name) == value, name


@pytest.mark.skipif(sys.platform != "linux", reason="needs a machine without pmset and PowerShell")
def test_foreign_readers_degrade_to_no_facts() -> None:
    # On Linux, `sysctl hw.model` fails and pmset and powershell are not installed: the
    # macOS and Windows readers must turn that into "nothing known", not an exception.
    assert machine.read_macos_facts() == MachineFacts()
    assert machine.read_windows_facts() == MachineFacts()


def test_read_machine_facts_picks_this_platform() -> None:
    if sys.platform == "linux":
        assert machine.read_machine_facts() == read_linux_facts()
    else:
        assert isinstance(machine.read_machine_facts(), MachineFacts)
