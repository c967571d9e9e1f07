"""Whether the target needs a reboot, or restarts, for installed updates to take effect.

A reboot is needed when the distribution says so (its marker files), when the running
kernel is older than the newest installed one of its flavour, or when PID 1 or the system
message bus still maps a program file that an update replaced.

Other processes still mapping replaced files (:func:`restart_needs`, host only) need a
restart, not a reboot: they are reported with their systemd unit, when they have one.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from patchd.boundedread import read_bounded
from patchd.platforms import OsProfile
from patchd.target import Target

MAX_MARKER_BYTES = 64 * 1024
MAX_KERNELS = 256
MAX_PROCESSES = 4096  # processes whose maps are read; more are counted as unscanned
MAX_MAPS_BYTES = 256 * 1024  # read of each /proc/PID/maps
MAX_FILES_LISTED = 10  # replaced files named per process (all are counted)
MAX_COMM_BYTES = 64
MAX_CGROUP_BYTES = 16 * 1024
# Where packages install programs and libraries. /tmp, /home and the like are not here:
# a replaced file there is not something an update did.
DEFAULT_LIBRARY_ROOTS = ("/usr", "/lib", "/lib32", "/lib64", "/libx32", "/bin", "/sbin", "/opt")
# Anonymous shared memory shows up as deleted files; it is never a package's file.
_NEVER_PROGRAM_FILES = ("/memfd:", "/dev/shm/", "/SYSV")  # noqa: S108 - only compared
# Units whose restart amounts to a reboot: every service on the system bus loses it.
REBOOT_ONLY_UNITS = frozenset({"dbus.service", "dbus-broker.service"})
_DELETED = " (deleted)"
_SHARED_OBJECT = re.compile(r"\.so(?:\.\d+)*$")  # libc.so.6, libssl.so.3, _json.cpython-311.so
_PRE_RELEASE = re.compile(r"[-.~]?rc", re.IGNORECASE)  # 6.9.0-rc3, 6.9.0-060900rc3-generic


@dataclass(frozen=True)
class StaleProcess:
    """A process that still maps program files an update replaced on disk.

    ``files`` lists at most :data:`MAX_FILES_LISTED` of them, sorted; ``files_total``
    counts them all. ``unit`` is its systemd system service, if any. ``reboot_only``: it
    is PID 1 or a process of a :data:`REBOOT_ONLY_UNITS` unit, so only a reboot helps.
    """

    pid: int
    name: str
    unit: str | None
    files: tuple[str, ...]
    files_total: int
    reboot_only: bool = False

    def as_dict(self) -> dict[str, Any]:
        return {
            "pid": self.pid,
            "name": self.name,
            "unit": self.unit,
            "files": list(self.files),
            "files_total": self.files_total,
            "reboot_only": self.reboot_only,
        }


@dataclass(frozen=True)
class RestartNeeds:
    """Processes running replaced code, and the units whose restart would fix them.

    ``units`` leaves out reboot-only ones. Processes without a unit (user sessions,
    containers) are in ``processes`` only. ``unreadable`` counts processes whose maps
    patchd may not read (other users' when it runs unprivileged), ``unscanned`` those
    beyond :data:`MAX_PROCESSES`: either means the list may be incomplete.
    """

    processes: tuple[StaleProcess, ...] = ()
    units: tuple[str, ...] = ()
    unreadable: int = 0
    unscanned: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "processes": [p.as_dict() for p in self.processes],
            "units": list(self.units),
            "unreadable": self.unreadable,
            "unscanned": self.unscanned,
        }


@dataclass(frozen=True)
class RebootState:
    """Whether a reboot is required, every reason found, and what needs a restart instead."""

    required: bool
    reasons: tuple[str, ...]
    restart: RestartNeeds = RestartNeeds()

    def as_dict(self) -> dict[str, Any]:
        """``required``, ``reasons``, and ``restart`` only when there is something in it.

        Without restart needs the document is what it was before restart detection, so
        records and consumers of that shape stay valid.
        """
        doc: dict[str, Any] = {"required": self.required, "reasons": list(self.reasons)}
        if self.restart != RestartNeeds():
            doc["restart"] = self.restart.as_dict()
        return doc


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


def reboot_state(
    target: Target, profile: OsProfile, running_kernel: str, *, proc_dir: Path = Path("/proc")
) -> RebootState:
    """Look for the distribution's markers, a running kernel older than the newest installed,
    and (on the host, through ``proc_dir``) processes running replaced program files.

    Replaced files mapped by PID 1 or a reboot-only unit make a reboot required; others
    only fill :attr:`RebootState.restart`.
    """
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
    restart = RestartNeeds()
    if target.is_host:  # an alternate root's files are not what runs
        restart = restart_needs(proc_dir)
        reasons += [_reboot_reason(p) for p in restart.processes if p.reboot_only]
    return RebootState(required=bool(reasons), reasons=tuple(reasons), restart=restart)


def with_reasons(state: RebootState, reasons: Sequence[str]) -> RebootState:
    """``state`` with more reasons (a package manager's own signals): then a reboot is required."""
    if not reasons:
        return state
    merged = (*state.reasons, *reasons)
    return RebootState(required=True, reasons=merged, restart=state.restart)


def _reboot_reason(stale: StaleProcess) -> str:
    who = stale.name if stale.pid == 1 else f"{stale.unit} ({stale.name}, pid {stale.pid})"
    return f"{who} maps a replaced library ({stale.files[0]})"


def restart_needs(
    proc_dir: Path = Path("/proc"), *, library_roots: Sequence[str] = DEFAULT_LIBRARY_ROOTS
) -> RestartNeeds:
    """Processes (at most :data:`MAX_PROCESSES`, lowest pids first) that map a deleted
    shared library or executable under ``library_roots``, read from ``proc_dir``.

    A package update replaces a file by renaming a new one over it: a process started
    before keeps the old, now deleted, file mapped. Processes that end or appear while
    this runs are tolerated; unreadable ones are counted. Never raises for what it reads.
    """
    pids, unscanned = _process_ids(proc_dir)
    roots = tuple(root.rstrip("/") + "/" for root in library_roots)
    processes = []
    unreadable = 0
    for pid in pids:
        base = proc_dir / str(pid)
        try:
            files = _replaced_files(_read_head(base / "maps", MAX_MAPS_BYTES), roots)
        except PermissionError:
            unreadable += 1
            continue
        except OSError:  # it ended meanwhile
            continue
        if not files:
            continue
        name = _read_text(base / "comm", MAX_COMM_BYTES).strip() or "?"
        unit = service_unit(_read_text(base / "cgroup", MAX_CGROUP_BYTES))
        processes.append(
            StaleProcess(
                pid=pid,
                name=name,
                unit=unit,
                files=tuple(files[:MAX_FILES_LISTED]),
                files_total=len(files),
                reboot_only=pid == 1 or unit in REBOOT_ONLY_UNITS,
            )
        )
    units = sorted({p.unit for p in processes if p.unit and not p.reboot_only})
    return RestartNeeds(tuple(processes), tuple(units), unreadable, unscanned)


def service_unit(cgroup: str) -> str | None:
    """The systemd system service of a process, from its ``/proc/PID/cgroup`` text.

    ``0::/system.slice/nginx.service`` → ``nginx.service`` (cgroup v2, or v1's
    ``name=systemd`` line); services in nested slices count; user sessions, scopes and
    containers have none.
    """
    for line in cgroup.split("\n"):
        _, _, rest = line.partition(":")
        controllers, _, path = rest.partition(":")
        if controllers not in ("", "name=systemd"):
            continue
        parts = path.split("/")
        if "system.slice" not in parts:
            continue
        for part in parts[parts.index("system.slice") + 1 :]:
            if part.endswith(".service"):
                return part
            if not part.endswith(".slice"):
                break
    return None


def _process_ids(proc_dir: Path) -> tuple[list[int], int]:
    """The first :data:`MAX_PROCESSES` pids in ``proc_dir``, and how many more there are."""
    try:
        with os.scandir(proc_dir) as entries:
            pids = sorted(int(e.name) for e in entries if e.name.isascii() and e.name.isdigit())
    except OSError:  # no /proc (not Linux)
        return [], 0
    return pids[:MAX_PROCESSES], max(0, len(pids) - MAX_PROCESSES)


def _read_head(path: Path, max_bytes: int) -> bytes:
    """At most ``max_bytes`` of ``path``, cut after its last complete line if it is longer."""
    data = read_bounded(path, max_bytes + 1)
    if len(data) > max_bytes:
        data = data[: data.rfind(b"\n", 0, max_bytes) + 1]
    return data


def _read_text(path: Path, max_bytes: int) -> str:
    try:
        return _read_head(path, max_bytes).decode("utf-8", "replace")
    except OSError:
        return ""


def _replaced_files(maps: bytes, roots: tuple[str, ...]) -> list[str]:
    """The deleted program files a ``/proc/PID/maps`` text names, sorted, each once."""
    found = set()
    for line in maps.decode("utf-8", "replace").split("\n"):
        fields = line.split(maxsplit=5)  # address perms offset dev inode pathname
        if len(fields) < 6 or not fields[5].endswith(_DELETED):
            continue
        path = fields[5][: -len(_DELETED)]
        if _is_program_file(path, fields[1], roots):
            found.add(path)
    return sorted(found)


def _is_program_file(path: str, perms: str, roots: tuple[str, ...]) -> bool:
    """A library or executable an update could have replaced: under a root, and either
    mapped executable or named like a shared object (data files such as locale archives
    are neither)."""
    if path.startswith(_NEVER_PROGRAM_FILES) or not path.startswith(roots):
        return False
    return "x" in perms or _SHARED_OBJECT.search(PurePosixPath(path).name) is not None
