"""Tests for restart detection in patchd.discovery.reboot: processes still mapping replaced files.

Most tests build a ``/proc``-like tree (``PID/maps``, ``PID/comm``, ``PID/cgroup``) in a
temporary directory. One starts a real child that maps a shared library from a temporary
directory, replaces the library on disk as a package update does, and finds the child
through the real ``/proc`` (the library roots are pointed at the temporary directory).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from patchd.discovery import reboot as reboot_module
from patchd.discovery.reboot import (
    MAX_FILES_LISTED,
    MAX_MAPS_BYTES,
    MAX_PROCESSES,
    RebootState,
    RestartNeeds,
    StaleProcess,
    reboot_state,
    restart_needs,
    service_unit,
)
from patchd.platforms import UNKNOWN
from patchd.target import Target

LIBC = "/usr/lib/x86_64-linux-gnu/libc.so.6"
LIBSYSTEMD = "/usr/lib/x86_64-linux-gnu/systemd/libsystemd-shared-252.so"
LIBSSL = "/usr/lib/x86_64-linux-gnu/libssl.so.3"
USER_SESSION = "0::/user.slice/user-1000.slice/session-3.scope\n"


def mapping(path: str = "", perms: str = "r-xp", *, deleted: bool = True) -> str:
    """One line of /proc/PID/maps, as the kernel pads it."""
    suffix = " (deleted)" if deleted and path else ""
    return f"7f3c1a000000-7f3c1a1c2000 {perms} 00028000 fe:01 1311       {path}{suffix}".rstrip()


def add_process(
    proc: Path,
    pid: int,
    maps: list[str] | None,
    *,
    comm: str | None = "app",
    cgroup: str | None = USER_SESSION,
) -> None:
    """A /proc/PID directory; ``None`` leaves that file out (as for a process that ended)."""
    base = proc / str(pid)
    base.mkdir(parents=True)
    if maps is not None:
        (base / "maps").write_text("".join(line + "\n" for line in maps))
    if comm is not None:
        (base / "comm").write_text(comm + "\n")
    if cgroup is not None:
        (base / "cgroup").write_text(cgroup)


def service(name: str) -> str:
    return f"0::/system.slice/{name}\n"


# --- which mappings count -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("maps", "files"),
    [
        ([mapping(LIBC)], [LIBC]),
        ([mapping(LIBC, "r--p"), mapping(LIBC, "r-xp"), mapping(LIBC, "rw-p")], [LIBC]),
        ([mapping(LIBC, "r--p")], [LIBC]),
        ([mapping(LIBC, deleted=False)], []),
        ([mapping("/usr/sbin/nginx")], ["/usr/sbin/nginx"]),
        ([mapping("/usr/sbin/nginx", "r--p")], []),
        ([mapping("/usr/lib/locale/locale-archive", "r--p")], []),
        ([mapping("/usr/lib/python3/dist-packages/_cffi_backend.cpython-311-x86_64-linux-gnu.so", "r--p")],
         ["/usr/lib/python3/dist-packages/_cffi_backend.cpython-311-x86_64-linux-gnu.so"]),
        ([mapping("/opt/My App/lib/libapp.so.1.2")], ["/opt/My App/lib/libapp.so.1.2"]),
        ([mapping("/lib64/ld-linux-x86-64.so.2")], ["/lib64/ld-linux-x86-64.so.2"]),
        ([mapping("/tmp/libevil.so")], []),
        ([mapping("/home/ann/bin/tool")], []),
        ([mapping("/usrlocal/lib/libx.so")], []),
        ([mapping("/memfd:wayland-shm", "rwxp")], []),
        ([mapping("/dev/shm/pulse-shm-1", "r-xp")], []),
        ([mapping("/SYSV00000000", "rw-s")], []),
        ([mapping(), mapping("[heap]", "rw-p", deleted=False), mapping("[vdso]", deleted=False)], []),
        ([mapping(LIBSSL), mapping(LIBC), "garbage", ""], [LIBC, LIBSSL]),
    ],
    ids=[
        "deleted-library",
        "segments-count-once",
        "library-by-name",
        "not-deleted",
        "deleted-executable",
        "executable-by-mapping-only",
        "data-file",
        "python-extension",
        "path-with-spaces",
        "loader",
        "tmp-is-not-a-library-root",
        "home-is-not-a-library-root",
        "root-prefix-is-a-directory",
        "memfd",
        "dev-shm",
        "sysv-shared-memory",
        "anonymous",
        "sorted-and-tolerant",
    ],
)  # fmt: skip
def test_which_mappings_count(tmp_path: Path, maps: list[str], files: list[str]) -> None:
    add_process(tmp_path, 300, maps)
    needs = restart_needs(tmp_path)
    assert [list(p.files) for p in needs.processes] == ([files] if files else [])


# --- units ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("cgroup", "unit"),
    [
        ("0::/system.slice/nginx.service\n", "nginx.service"),
        ("0::/system.slice/system-getty.slice/getty@tty1.service\n", "getty@tty1.service"),
        ("0::/system.slice/docker.service/payload\n", "docker.service"),
        ("12:pids:/system.slice/cron.service\n1:name=systemd:/system.slice/cron.service\n0::/\n", "cron.service"),
        ("3:cpu,cpuacct:/system.slice/cron.service\n", None),
        (USER_SESSION, None),
        ("0::/user.slice/user-1000.slice/user@1000.service/app.slice/pipewire.service\n", None),
        ("0::/system.slice/docker-0123abcd.scope\n", None),
        ("0::/init.scope\n", None),
        ("0::/\n", None),
        ("", None),
    ],
    ids=[
        "v2",
        "nested-slice",
        "delegated-subgroup",
        "v1-named-hierarchy",
        "v1-other-controller-ignored",
        "user-session",
        "user-service",
        "container-scope",
        "pid1",
        "root",
        "empty",
    ],
)  # fmt: skip
def test_service_unit(cgroup: str, unit: str | None) -> None:
    assert service_unit(cgroup) == unit


# --- restart versus reboot ------------------------------------------------------------------


def a_patched_system(proc: Path) -> None:
    add_process(proc, 1, [mapping(LIBSYSTEMD)], comm="systemd", cgroup="0::/init.scope\n")
    add_process(proc, 420, [mapping(LIBC)], comm="dbus-daemon", cgroup=service("dbus.service"))
    add_process(
        proc, 800, [mapping(LIBSSL), mapping(LIBC)], comm="nginx", cgroup=service("nginx.service")
    )
    add_process(proc, 801, [mapping(LIBSSL)], comm="nginx", cgroup=service("nginx.service"))
    add_process(proc, 900, [mapping(LIBC)], comm="bash")
    add_process(
        proc, 950, [mapping(LIBC, deleted=False)], comm="fresh", cgroup=service("fresh.service")
    )
    add_process(proc, 2, [], comm="kthreadd", cgroup="0::/\n")


def test_processes_are_grouped_with_their_units(tmp_path: Path) -> None:
    a_patched_system(tmp_path)
    needs = restart_needs(tmp_path)
    assert needs == RestartNeeds(
        processes=(
            StaleProcess(1, "systemd", None, (LIBSYSTEMD,), 1, reboot_only=True),
            StaleProcess(420, "dbus-daemon", "dbus.service", (LIBC,), 1, reboot_only=True),
            StaleProcess(800, "nginx", "nginx.service", (LIBC, LIBSSL), 2),
            StaleProcess(801, "nginx", "nginx.service", (LIBSSL,), 1),
            StaleProcess(900, "bash", None, (LIBC,), 1),
        ),
        units=("nginx.service",),  # not dbus: restarting it is no better than a reboot
    )


def test_pid1_or_the_system_bus_mapping_a_replaced_library_needs_a_reboot(tmp_path: Path) -> None:
    a_patched_system(tmp_path)
    state = reboot_state(Target(), UNKNOWN, running_kernel="", proc_dir=tmp_path)
    assert state.required
    assert state.reasons == (
        f"systemd maps a replaced library ({LIBSYSTEMD})",
        f"dbus.service (dbus-daemon, pid 420) maps a replaced library ({LIBC})",
    )
    assert state.restart == restart_needs(tmp_path)


def test_services_mapping_replaced_libraries_need_restarts_not_a_reboot(tmp_path: Path) -> None:
    add_process(tmp_path, 1, [mapping(LIBSYSTEMD, deleted=False)], comm="systemd")
    add_process(tmp_path, 800, [mapping(LIBSSL)], comm="nginx", cgroup=service("nginx.service"))
    add_process(tmp_path, 640, [mapping(LIBC)], comm="cron", cgroup=service("cron.service"))
    state = reboot_state(Target(), UNKNOWN, running_kernel="", proc_dir=tmp_path)
    assert (state.required, state.reasons) == (False, ())
    assert state.restart.units == ("cron.service", "nginx.service")
    assert state.as_dict() == {
        "required": False,
        "reasons": [],
        "restart": {
            "processes": [
                {
                    "pid": 640,
                    "name": "cron",
                    "unit": "cron.service",
                    "files": [LIBC],
                    "files_total": 1,
                    "reboot_only": False,
                },
                {
                    "pid": 800,
                    "name": "nginx",
                    "unit": "nginx.service",
                    "files": [LIBSSL],
                    "files_total": 1,
                    "reboot_only": False,
                },
            ],
            "units": ["cron.service", "nginx.service"],
            "unreadable": 0,
            "unscanned": 0,
        },
    }


def test_nothing_to_restart_keeps_the_old_document(tmp_path: Path) -> None:
    add_process(tmp_path, 800, [mapping(LIBSSL, deleted=False)], comm="nginx")
    state = reboot_state(Target(), UNKNOWN, running_kernel="", proc_dir=tmp_path)
    assert state == RebootState(False, ())
    assert state.as_dict() == {"required": False, "reasons": []}


def test_an_alternate_root_is_not_scanned(tmp_path: Path) -> None:
    proc = tmp_path / "proc"
    a_patched_system(proc)
    root = tmp_path / "root"
    root.mkdir()
    assert reboot_state(Target.at(root), UNKNOWN, "", proc_dir=proc) == RebootState(False, ())


# --- bounds and races -----------------------------------------------------------------------


def test_files_listed_are_bounded_and_all_counted(tmp_path: Path) -> None:
    libraries = [f"/usr/lib/libplugin{i:02d}.so" for i in range(15)]
    add_process(tmp_path, 300, [mapping(path) for path in libraries])
    (stale,) = restart_needs(tmp_path).processes
    assert stale.files == tuple(libraries[:MAX_FILES_LISTED])
    assert stale.files_total == 15


def test_maps_are_read_up_to_the_cap(tmp_path: Path) -> None:
    filler = mapping("/usr/lib/x86_64-linux-gnu/libfiller.so.1", deleted=False)
    lines = [mapping(LIBC)] + [filler] * (MAX_MAPS_BYTES // len(filler))
    lines += [mapping(LIBSSL)]  # beyond the cap: never read
    add_process(tmp_path, 300, lines)
    assert (tmp_path / "300" / "maps").stat().st_size > MAX_MAPS_BYTES
    (stale,) = restart_needs(tmp_path).processes
    assert stale.files == (LIBC,)


@pytest.mark.parametrize(
    ("fillers_removed", "found"), [(0, False), (1, True)], ids=["newline-past-cap", "within-cap"]
)
def test_a_line_is_read_only_with_its_newline(
    tmp_path: Path, fillers_removed: int, found: bool
) -> None:
    line = mapping("/usr/lib/libcut.so") + "\n"
    filler = mapping("/usr/lib/libfiller.so", deleted=False) + "\n"
    count, rest = divmod(MAX_MAPS_BYTES - len(line) + 1, len(filler))
    last = mapping("/usr/lib/libfiller.so" + "x" * rest, deleted=False) + "\n"
    head = filler * (count - 1 - fillers_removed) + last
    # Unless a filler is removed, the cap falls just before the line's newline: a path read
    # without its newline might go on, so the line is not trusted.
    assert len(head) + len(line) == MAX_MAPS_BYTES + 1 - fillers_removed * len(filler)
    add_process(tmp_path, 300, None)
    (tmp_path / "300" / "maps").write_text(head + line)
    assert bool(restart_needs(tmp_path).processes) is found


def test_at_most_max_processes_are_scanned(tmp_path: Path) -> None:
    for pid in range(1, MAX_PROCESSES + 5):
        (tmp_path / str(pid)).mkdir()  # no maps: as if each had just ended
    add_process(tmp_path, MAX_PROCESSES + 5, [mapping(LIBC)])
    add_process(tmp_path, 99999, [mapping(LIBC)])
    (tmp_path / "self").mkdir()
    (tmp_path / "net").mkdir()
    needs = restart_needs(tmp_path)
    assert needs == RestartNeeds(unscanned=6)


def test_processes_that_ended_or_cannot_be_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    add_process(tmp_path, 300, None)  # ended between listing /proc and reading its maps
    add_process(tmp_path, 301, [mapping(LIBC)], comm=None, cgroup=None)  # ended half-way
    add_process(tmp_path, 302, [mapping(LIBC)])  # another user's, read unprivileged
    real_read: Callable[[Path, int], bytes] = reboot_module._read_head

    def denied_for_302(path: Path, max_bytes: int) -> bytes:
        if path == tmp_path / "302" / "maps":
            raise PermissionError(13, "Permission denied", str(path))
        return real_read(path, max_bytes)

    monkeypatch.setattr(reboot_module, "_read_head", denied_for_302)  # injects the fault only
    needs = restart_needs(tmp_path)
    assert needs == RestartNeeds(
        processes=(StaleProcess(301, "?", None, (LIBC,), 1),), unreadable=1
    )
    assert needs.as_dict()["unreadable"] == 1


def test_no_proc_directory(tmp_path: Path) -> None:
    assert restart_needs(tmp_path / "absent") == RestartNeeds()


# --- the real /proc -------------------------------------------------------------------------


@pytest.mark.parametrize("update", ["replaced", "deleted"])
def test_a_real_process_mapping_a_replaced_library_is_found(tmp_path: Path, update: str) -> None:
    import _ctypes

    source = getattr(_ctypes, "__file__", None)
    if source is None:
        pytest.skip("this Python has ctypes built in: no shared object to copy")
    libdir = tmp_path.resolve() / "lib"
    libdir.mkdir()
    library = libdir / "libpatchd-test.so.1"
    shutil.copyfile(source, library)
    script = (
        "import ctypes, sys; ctypes.CDLL(sys.argv[1]); print('ready', flush=True); sys.stdin.read()"
    )
    with subprocess.Popen(
        [sys.executable, "-c", script, str(library)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    ) as child:
        try:
            assert child.stdout is not None
            assert child.stdout.readline() == "ready\n"
            name = Path(f"/proc/{child.pid}/comm").read_text().strip()
            before = restart_needs(library_roots=[str(libdir)])
            if update == "replaced":  # as dpkg does: a new file renamed over the old one
                shutil.copyfile(source, library.with_name(library.name + ".dpkg-new"))
                os.replace(library.with_name(library.name + ".dpkg-new"), library)
            else:
                library.unlink()
            after = restart_needs(library_roots=[str(libdir)])
        finally:
            child.communicate(input="")
    assert child.pid not in [p.pid for p in before.processes]
    (found,) = [p for p in after.processes if p.pid == child.pid]
    assert found.files == (str(library),)
    assert found.name == name
