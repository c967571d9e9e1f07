"""What kind of machine this is: server, laptop, desktop, virtual machine or container.

The readers gather raw :class:`MachineFacts` from the platform: ``/sys`` and ``/proc`` on
Linux, ``sysctl`` and ``pmset`` on macOS, CIM through PowerShell on Windows. Every read is
bounded and tolerant: a missing, unreadable or garbled source means "unknown", never an
error. :func:`classify_machine` is a pure function of those facts; its rules are the
tables below.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from types import MappingProxyType

from patchd import process
from patchd.errors import CommandError, ToolNotFoundError

log = logging.getLogger(__name__)

MAX_FACT_FILE_BYTES = 64 * 1024  # a fact file is a line; /proc/cpuinfo's first block fits too
MAX_POWER_SUPPLIES = 64  # entries of /sys/class/power_supply looked at
MAX_COMMAND_OUTPUT_BYTES = 64 * 1024  # per stream, for sysctl, pmset and PowerShell
COMMAND_TIMEOUT_S = 15.0  # sysctl and pmset answer at once
POWERSHELL_TIMEOUT_S = 60.0  # the first CIM query after boot can take tens of seconds


class MachineType(StrEnum):
    """How a machine is used, which decides how and when it may be patched."""

    SERVER = "server"
    LAPTOP = "laptop"
    DESKTOP = "desktop"
    VIRTUAL_MACHINE = "virtual-machine"
    CONTAINER = "container"


@dataclass(frozen=True)
class MachineFacts:
    """Raw facts about the machine, as read; each is ``None``, empty or false when unknown."""

    chassis_type: int | None = None  # SMBIOS chassis type, /sys/class/dmi/id/chassis_type
    sys_vendor: str | None = None  # DMI system vendor; Win32_ComputerSystem.Manufacturer
    product_name: str | None = None  # DMI product name; Win32_ComputerSystem.Model
    # The CPU says it runs under a hypervisor (macOS: kern.hv_vmm_present). False in a Xen
    # control domain, which runs on the hypervisor but is the host.
    hypervisor_cpu_flag: bool = False
    container: str | None = None  # docker, podman, lxc, systemd-nspawn, wsl, kubernetes, ...
    virtualization: str | None = None  # kvm, qemu, vmware, virtualbox, xen, hyperv, amazon, ...
    has_battery: bool = False  # a system battery; a wireless mouse's does not count
    chassis_types: tuple[int, ...] = ()  # Windows: Win32_SystemEnclosure.ChassisTypes
    hw_model: str | None = None  # macOS: sysctl hw.model, e.g. "MacBookPro18,3", "Mac14,2"


_LAPTOP = MachineType.LAPTOP
_DESKTOP = MachineType.DESKTOP
_SERVER = MachineType.SERVER

# SMBIOS chassis types: DMTF DSP0134, SMBIOS Reference Specification 3.x, section 7.4.1
# "System Enclosure or Chassis Types". Codes left out (1 Other, 2 Unknown, 12 Docking
# Station, 33 IoT Gateway, 34 Embedded PC) say nothing about how the machine is used.
CHASSIS_CLASSES: Mapping[int, MachineType] = MappingProxyType(
    {
        3: _DESKTOP,  # Desktop
        4: _DESKTOP,  # Low Profile Desktop
        5: _DESKTOP,  # Pizza Box
        6: _DESKTOP,  # Mini Tower
        7: _DESKTOP,  # Tower
        8: _LAPTOP,  # Portable
        9: _LAPTOP,  # Laptop
        10: _LAPTOP,  # Notebook
        11: _LAPTOP,  # Hand Held
        13: _DESKTOP,  # All in One
        14: _LAPTOP,  # Sub Notebook
        15: _DESKTOP,  # Space-saving
        16: _DESKTOP,  # Lunch Box
        17: _SERVER,  # Main Server Chassis
        18: _SERVER,  # Expansion Chassis
        19: _SERVER,  # SubChassis
        20: _SERVER,  # Bus Expansion Chassis
        21: _SERVER,  # Peripheral Chassis
        22: _SERVER,  # RAID Chassis
        23: _SERVER,  # Rack Mount Chassis
        24: _DESKTOP,  # Sealed-case PC
        25: _SERVER,  # Multi-system chassis
        26: _SERVER,  # Compact PCI
        27: _SERVER,  # Advanced TCA
        28: _SERVER,  # Blade
        29: _SERVER,  # Blade Enclosure
        30: _LAPTOP,  # Tablet
        31: _LAPTOP,  # Convertible
        32: _LAPTOP,  # Detachable
        35: _DESKTOP,  # Mini PC
        36: _DESKTOP,  # Stick PC
    }
)

# (system vendor, product name, virtualization): case-insensitive regular expressions
# searched in what DMI (Linux) or Win32_ComputerSystem (Windows) reports; "" matches
# anything; the first row that matches wins. Vendors are anchored so that a real maker
# whose name merely contains one ("Xenon Systems") is not taken for a hypervisor, and
# Microsoft needs its product too because Surface laptops share the vendor.
_VIRTUAL_PLATFORM_ROWS: tuple[tuple[str, str, str], ...] = (
    (r"^qemu\b", "", "qemu"),
    ("", r"\bkvm\b", "kvm"),  # "Red Hat" / "KVM", older oVirt and OpenStack guests
    (r"^bochs\b", "", "bochs"),
    (r"^vmware\b", "", "vmware"),
    ("", r"^vmware", "vmware"),  # "VMware7,1", "VMware Virtual Platform"
    (r"^innotek\b", "", "virtualbox"),  # "innotek GmbH", VirtualBox's old maker
    ("", r"^virtualbox\b", "virtualbox"),
    (r"^xen\b", "", "xen"),
    ("", r"\bhvm domu\b", "xen"),
    (r"^microsoft corporation$", r"^virtual machine$", "hyperv"),  # Hyper-V and Azure
    (r"^amazon ec2$", "", "amazon"),
    (r"^google$", r"^google compute engine$", "google"),
    (r"^parallels\b", "", "parallels"),
    (r"^openstack\b", "", "openstack"),
    ("", r"^openstack\b", "openstack"),
    (r"^digitalocean\b", "", "digitalocean"),
    (r"^alibaba cloud\b", "", "alibaba"),
    (r"^nutanix\b", r"^ahv\b", "nutanix"),
    (r"^hetzner\b", r"^vserver\b", "hetzner"),
    (r"^apple inc\.?$", r"virtual", "apple"),  # Apple's Virtualization framework
)
VIRTUAL_PLATFORMS: tuple[tuple[re.Pattern[str], re.Pattern[str], str], ...] = tuple(
    (re.compile(vendor, re.IGNORECASE), re.compile(product, re.IGNORECASE), name)
    for vendor, product, name in _VIRTUAL_PLATFORM_ROWS
)
# A cloud's bare-metal instances keep the cloud's vendor ("Amazon EC2" / "m5.metal").
BARE_METAL_PRODUCT_MARKERS = (".metal",)

# What firmware writes when the maker filled nothing in: as good as no value.
DMI_PLACEHOLDERS = frozenset(
    {
        "",
        "default string",
        "none",
        "not applicable",
        "not specified",
        "o.e.m.",
        "oem",
        "system manufacturer",
        "system product name",
        "to be filled by o.e.m.",
        "unknown",
    }
)

# Files, relative to the root, whose content names the container manager (systemd's and
# podman's conventions), then files whose mere presence marks a container.
CONTAINER_NAME_FILES = ("run/systemd/container", "run/host/container-manager")
CONTAINER_MARKER_FILES: tuple[tuple[str, str], ...] = (
    ("run/.containerenv", "podman"),
    (".dockerenv", "docker"),
)
# Words in PID 1's cgroup path (cgroup v1; v2 shows "0::/" inside a namespace). Kubernetes
# comes first because its pods run on docker or containerd and show their words too.
CGROUP_CONTAINER_WORDS: tuple[tuple[str, str], ...] = (
    ("kubepods", "kubernetes"),
    ("libpod", "podman"),
    ("docker", "docker"),
    ("lxc", "lxc"),
)
# In /proc/sys/kernel/osrelease: "5.15.153.1-microsoft-standard-WSL2", "4.4.0-19041-Microsoft".
WSL_KERNEL_MARKER = "microsoft"

# macOS has no SMBIOS chassis: the model identifier's prefix tells. Apple Silicon laptops
# since 2023 are "Mac14,2" and the like, so a battery is the better sign; other Macs
# (iMac, Macmini, MacPro, "Mac13,1" Studio) are desktops.
MAC_MODEL_CLASSES: tuple[tuple[str, MachineType], ...] = (
    ("MacBook", _LAPTOP),
    ("Xserve", _SERVER),
)
MAC_VIRTUAL_MODELS: tuple[tuple[str, str], ...] = (
    ("VirtualMac", "apple"),
    ("VMware", "vmware"),
    ("Parallels", "parallels"),
)
PMSET_SYSTEM_BATTERY = "InternalBattery"  # a UPS shows in `pmset -g batt` under its own name

# One PowerShell call rather than two: starting PowerShell costs about a second. The
# hypervisor flag Win32_ComputerSystem.HypervisorPresent is deliberately not asked for:
# it is true on bare-metal hosts that run Hyper-V or virtualization-based security
# (Windows 11's default), so only the vendor and model tell a guest apart.
WINDOWS_FACTS_SCRIPT = (
    "$e = @(Get-CimInstance -ClassName Win32_SystemEnclosure); "
    "$s = Get-CimInstance -ClassName Win32_ComputerSystem; "
    "[pscustomobject]@{ChassisTypes = @($e | ForEach-Object { $_.ChassisTypes }); "
    "Manufacturer = $s.Manufacturer; Model = $s.Model} | ConvertTo-Json -Compress"
)


def classify_machine(facts: MachineFacts) -> MachineType:
    """Say what kind of machine ``facts`` describe.

    A container beats a virtual machine (a container in a VM is patched as a container),
    a virtual machine beats the chassis (hypervisors report made-up chassis). On bare
    metal a system battery means a laptop, even where cheap firmware reports a desktop
    chassis; then the chassis decides, then the Mac model. Nothing known means a server:
    machines without DMI data or a chassis worth the name are servers, boards and
    headless boxes far more often than desktops, and treating an unknown machine as a
    server is the cautious choice for patching.
    """
    if facts.container:
        return MachineType.CONTAINER
    if facts.virtualization or facts.hypervisor_cpu_flag:
        return MachineType.VIRTUAL_MACHINE
    return _bare_metal_type(facts)


def identify_virtual_platform(sys_vendor: str | None, product_name: str | None) -> str | None:
    """Name the hypervisor or cloud that a system vendor and product name belong to, if any."""
    vendor = sys_vendor or ""
    product = product_name or ""
    if any(marker in product.lower() for marker in BARE_METAL_PRODUCT_MARKERS):
        return None
    for vendor_pattern, product_pattern, name in VIRTUAL_PLATFORMS:
        if vendor_pattern.search(vendor) and product_pattern.search(product):
            return name
    return None


def read_linux_facts(
    sys_dir: Path = Path("/sys"), proc_dir: Path = Path("/proc"), root: Path = Path("/")
) -> MachineFacts:
    """Read the machine facts of a Linux system from its ``/sys``, ``/proc`` and root.

    Never raises for a missing or unreadable file: that fact is unknown. ``/proc/1/environ``
    is readable only by root; without it a container is still found by its other marks.
    """
    dmi = sys_dir / "class" / "dmi" / "id"
    sys_vendor = _dmi_value(_read_line(dmi / "sys_vendor"))
    product_name = _dmi_value(_read_line(dmi / "product_name"))
    xen_control_domain = "control_d" in (_read_text(proc_dir / "xen" / "capabilities") or "")
    virtualization = identify_virtual_platform(sys_vendor, product_name)
    if virtualization is None and not xen_control_domain:
        # Xen PV guests have no DMI data; the hypervisor announces itself here.
        virtualization = _read_line(sys_dir / "hypervisor" / "type")
    return MachineFacts(
        chassis_type=_parse_int(_read_line(dmi / "chassis_type")),
        sys_vendor=sys_vendor,
        product_name=product_name,
        hypervisor_cpu_flag=_has_hypervisor_flag(_read_text(proc_dir / "cpuinfo"))
        and not xen_control_domain,
        container=_linux_container(proc_dir, root),
        virtualization=virtualization,
        has_battery=_has_system_battery(sys_dir / "class" / "power_supply"),
    )


def parse_macos_facts(
    hw_model: str | None, hv_vmm_present: str | None, pmset_battery: str | None
) -> MachineFacts:
    """Machine facts from the output of ``sysctl -n hw.model``, ``sysctl -n
    kern.hv_vmm_present`` and ``pmset -g batt``; ``None`` for a command that failed."""
    model = (hw_model or "").strip() or None
    virtualization = None
    if model is not None:
        virtualization = next(
            (name for prefix, name in MAC_VIRTUAL_MODELS if model.startswith(prefix)), None
        )
    return MachineFacts(
        hw_model=model,
        hypervisor_cpu_flag=(hv_vmm_present or "").strip() == "1",
        virtualization=virtualization,
        has_battery=PMSET_SYSTEM_BATTERY in (pmset_battery or ""),
    )


def read_macos_facts() -> MachineFacts:
    """Read the machine facts of macOS; a command that fails leaves its facts unknown."""
    return parse_macos_facts(
        hw_model=_command_output(["sysctl", "-n", "hw.model"], COMMAND_TIMEOUT_S),
        hv_vmm_present=_command_output(["sysctl", "-n", "kern.hv_vmm_present"], COMMAND_TIMEOUT_S),
        pmset_battery=_command_output(["pmset", "-g", "batt"], COMMAND_TIMEOUT_S),
    )


def parse_windows_facts(text: str) -> MachineFacts:
    """Machine facts from the JSON that :data:`WINDOWS_FACTS_SCRIPT` prints.

    Tolerates what Windows PowerShell 5.1's ``ConvertTo-Json`` does to arrays (a bare
    number for one element, ``{"value": [...], "Count": n}`` for a wrapped array);
    anything that is not the expected object means nothing is known.
    """
    try:
        data = json.loads(text)
    except ValueError:
        return MachineFacts()
    if not isinstance(data, dict):
        return MachineFacts()
    vendor = _dmi_value(data.get("Manufacturer"))
    product = _dmi_value(data.get("Model"))
    return MachineFacts(
        sys_vendor=vendor,
        product_name=product,
        chassis_types=_chassis_codes(data.get("ChassisTypes")),
        virtualization=identify_virtual_platform(vendor, product),
    )


def read_windows_facts() -> MachineFacts:
    """Read the machine facts of Windows through CIM; if PowerShell fails, nothing is known."""
    argv = ["powershell", "-NoProfile", "-NonInteractive", "-Command", WINDOWS_FACTS_SCRIPT]
    output = _command_output(argv, POWERSHELL_TIMEOUT_S)
    return parse_windows_facts(output) if output is not None else MachineFacts()


_READERS: Mapping[str, Callable[[], MachineFacts]] = MappingProxyType(
    {"linux": read_linux_facts, "darwin": read_macos_facts, "win32": read_windows_facts}
)


def read_machine_facts() -> MachineFacts:
    """Read the machine facts of the running system; an unsupported OS yields no facts."""
    reader = _READERS.get(sys.platform)
    return reader() if reader is not None else MachineFacts()


def _bare_metal_type(facts: MachineFacts) -> MachineType:
    if facts.has_battery:
        return MachineType.LAPTOP
    for code in (facts.chassis_type, *facts.chassis_types):
        if code is not None and code in CHASSIS_CLASSES:
            return CHASSIS_CLASSES[code]
    if facts.hw_model:
        return next(
            (kind for prefix, kind in MAC_MODEL_CLASSES if facts.hw_model.startswith(prefix)),
            MachineType.DESKTOP,
        )
    return MachineType.SERVER


def _linux_container(proc_dir: Path, root: Path) -> str | None:
    # The most specific marks first: those that name the manager themselves.
    detectors = (
        _container_from_environ,
        _container_from_name_files,
        _container_from_marker_files,
        _openvz_container,
        _container_from_cgroup,
        _wsl_container,
    )
    return next((name for detect in detectors if (name := detect(proc_dir, root))), None)


def _container_from_environ(proc_dir: Path, root: Path) -> str | None:
    environ = _read_text(proc_dir / "1" / "environ") or ""
    values = (
        v.removeprefix("container=") for v in environ.split("\0") if v.startswith("container=")
    )
    return next((value for value in values if value), None)


def _container_from_name_files(proc_dir: Path, root: Path) -> str | None:
    return next((name for f in CONTAINER_NAME_FILES if (name := _read_line(root / f))), None)


def _container_from_marker_files(proc_dir: Path, root: Path) -> str | None:
    return next((name for marker, name in CONTAINER_MARKER_FILES if _exists(root / marker)), None)


def _openvz_container(proc_dir: Path, root: Path) -> str | None:
    # OpenVZ gives containers /proc/vz but, unlike the host, no /proc/bc.
    inside = _exists(proc_dir / "vz") and not _exists(proc_dir / "bc")
    return "openvz" if inside else None


def _container_from_cgroup(proc_dir: Path, root: Path) -> str | None:
    cgroup = _read_text(proc_dir / "1" / "cgroup") or ""
    return next((name for word, name in CGROUP_CONTAINER_WORDS if word in cgroup), None)


def _wsl_container(proc_dir: Path, root: Path) -> str | None:
    osrelease = _read_text(proc_dir / "sys" / "kernel" / "osrelease") or ""
    return "wsl" if WSL_KERNEL_MARKER in osrelease.lower() else None


def _has_hypervisor_flag(cpuinfo: str | None) -> bool:
    for line in (cpuinfo or "").splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "flags":
            return "hypervisor" in value.split()
    return False


def _has_system_battery(power_supply_dir: Path) -> bool:
    try:
        supplies = sorted(power_supply_dir.iterdir())[:MAX_POWER_SUPPLIES]
    except OSError:
        return False
    # A wireless mouse or keyboard reports a battery too, with scope "Device".
    return any(
        _read_line(supply / "type") == "Battery" and _read_line(supply / "scope") != "Device"
        for supply in supplies
    )


def _chassis_codes(value: object) -> tuple[int, ...]:
    if isinstance(value, dict):
        value = value.get("value")
    items: Sequence[object] = value if isinstance(value, list) else [value]
    return tuple(item for item in items if isinstance(item, int) and not isinstance(item, bool))


def _dmi_value(value: object) -> str | None:
    if not isinstance(value, str):
        return None
    text = value.strip()
    return None if text.lower() in DMI_PLACEHOLDERS else text


def _parse_int(text: str | None) -> int | None:
    try:
        return int(text) if text is not None else None
    except ValueError:
        return None


def _read_text(path: Path) -> str | None:
    """The first :data:`MAX_FACT_FILE_BYTES` of a file, or ``None`` if it cannot be read."""
    try:
        with path.open("rb") as stream:
            return stream.read(MAX_FACT_FILE_BYTES).decode("utf-8", "replace")
    except OSError:
        return None


def _read_line(path: Path) -> str | None:
    """The first line of a file, stripped; ``None`` if unreadable or blank."""
    text = _read_text(path)
    if text is None:
        return None
    lines = text.strip().splitlines()
    return lines[0].strip() if lines else None


def _exists(path: Path) -> bool:
    try:
        return path.exists()
    except OSError:
        return False


def _command_output(argv: list[str], timeout_s: float) -> str | None:
    try:
        result = process.run(argv, timeout_s=timeout_s, max_output_bytes=MAX_COMMAND_OUTPUT_BYTES)
    except (ToolNotFoundError, CommandError) as exc:
        log.debug("machine facts: %s", exc)
        return None
    return result.stdout
