"""A real systemd for tests: a cached debootstrap root booted with ``systemd-nspawn``.

The root (Debian bookworm, minbase plus systemd, dbus and apt) is built once per package
list and kept under a cache directory outside the work tree; each test session boots a
copy of it, so no test ever dirties the cache. The container shares the host's network
(a collector on the host's 127.0.0.1 is reachable) and is reached with ``nsenter``.
Every container is powered off and its ``systemd-nspawn`` reaped, also when a test fails;
only processes this module started are ever signalled, by their pid.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

SUITE = "bookworm"
# What every cached root holds besides minbase; callers add what their packages depend on.
# The cache is keyed by the whole list (and the build steps' version below), so another
# list builds another root.
BASE_PACKAGES = ("systemd", "systemd-sysv", "dbus", "apt", "init-system-helpers")
ROOT_RECIPE_VERSION = 1  # bump when prepare_root() changes what the cached root holds
CACHE_DIR = Path(os.environ.get("PATCHD_TEST_CACHE", "/var/cache/patchd-tests"))
DEBOOTSTRAP_TIMEOUT_S = 1800
BOOT_TIMEOUT_S = 120.0
COMMAND_TIMEOUT_S = 300.0
POWEROFF_TIMEOUT_S = 60.0
CLEAN_ENV = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL": "C", "TERM": "dumb"}
# Units a test container must not run: apt's own timers would take dpkg's lock mid-test.
MASKED_UNITS = (
    "apt-daily.timer",
    "apt-daily-upgrade.timer",
    "apt-daily.service",
    "apt-daily-upgrade.service",
    "systemd-networkd-wait-online.service",
)


class ContainerError(RuntimeError):
    """A container could not be built, booted or driven; the message says what happened."""


def host_mirror() -> str:
    """The Debian archive the host's own apt uses (``PATCHD_TEST_MIRROR`` overrides it).

    Found the way the package build finds it (packaging/linux/build.py ``archive_uris``).
    """
    if os.environ.get("PATCHD_TEST_MIRROR"):
        return os.environ["PATCHD_TEST_MIRROR"]
    from tests.support.linuxpkg import build_module

    build = build_module()
    try:
        uri: str = build.archive_uris()[0][0]
    except build.BuildError as e:
        raise ContainerError(f"{e}; or set PATCHD_TEST_MIRROR to a Debian mirror") from None
    return uri


def cache_key(packages: Sequence[str]) -> str:
    digest = hashlib.sha256(f"{SUITE} {sorted(set(packages))} {ROOT_RECIPE_VERSION}".encode())
    return digest.hexdigest()[:16]


def deb_depends(deb: Path) -> list[str]:
    """The packages ``deb`` depends on (the first of each set of alternatives)."""
    field = _run(["dpkg-deb", "--field", str(deb), "Depends", "Pre-Depends"], timeout=60).stdout
    names = []
    for line in field.splitlines():
        _, _, value = line.partition(":")
        for clause in value.split(","):
            name = clause.split("|")[0].strip().split(" ")[0].split(":")[0]
            if name:
                names.append(name)
    return sorted(set(names))


def cached_root(extra: Sequence[str] = ()) -> Path:
    """The cached root with :data:`BASE_PACKAGES` and ``extra``, built now if missing.

    The build (a debootstrap from the host's own Debian mirror, a few minutes) happens once
    per package list, under a lock, and appears whole or not at all.
    """
    packages = sorted({*BASE_PACKAGES, *extra})
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    final = CACHE_DIR / f"nspawn-{SUITE}-{cache_key(packages)}"
    with (CACHE_DIR / "nspawn.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (final / "etc" / "os-release").exists():
            return final
        building = final.with_name(final.name + ".building")
        if building.exists():
            shutil.rmtree(building)  # a build a crash left half-way
        _run(["debootstrap", "--variant=minbase", f"--include={','.join(packages)}",
              SUITE, str(building), host_mirror()], timeout=DEBOOTSTRAP_TIMEOUT_S)  # fmt: skip
        prepare_root(building)
        building.rename(final)
        final.with_name(final.name + ".packages").write_text("\n".join(packages) + "\n")
    return final


def prepare_root(root: Path) -> None:
    """Make a fresh debootstrap root fit to boot for tests, offline."""
    # No network repository: the tests' own local repositories are the only sources.
    (root / "etc/apt/sources.list").write_text("")
    for path in (root / "var/lib/apt/lists").glob("*"):
        if path.is_file():
            path.unlink()
    for path in (root / "var/cache/apt/archives").glob("*.deb"):
        path.unlink()
    (root / "etc/hostname").write_text("patchd-e2e\n")
    (root / "etc/machine-id").write_text("")  # systemd makes one at each boot
    for unit in MASKED_UNITS:
        link = root / "etc/systemd/system" / unit
        link.unlink(missing_ok=True)
        link.symlink_to("/dev/null")
    # The journal persists in the root, so a test can read it after a stop.
    (root / "var/log/journal").mkdir(parents=True, exist_ok=True)


def copy_root(source: Path, dest: Path) -> Path:
    """A private copy of ``source`` for one session (reflinked where the file system can)."""
    _run(["cp", "-a", "--reflink=auto", str(source), str(dest)], timeout=COMMAND_TIMEOUT_S)
    return dest


def _run(argv: Sequence[str], *, timeout: float) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout,
                            check=False, env=CLEAN_ENV)  # fmt: skip
    if result.returncode != 0:
        raise ContainerError(
            f"{' '.join(argv)} exited {result.returncode}: {(result.stderr or result.stdout)[-3000:]}"
        )
    return result


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[1]) == pid:
            found.append(int(entry.name))
    return found


def _comm(pid: int) -> str:
    try:
        return (Path("/proc") / str(pid) / "comm").read_text().strip()
    except OSError:
        return ""


@dataclass
class Container:
    """A booted container: its root on the host, ``systemd-nspawn``'s process, its systemd."""

    root: Path
    nspawn: subprocess.Popen[bytes]
    init_pid: int
    log: Path

    def run(
        self, *argv: str, check: bool = True, timeout: float = COMMAND_TIMEOUT_S
    ) -> subprocess.CompletedProcess[str]:
        """Run ``argv`` inside the container (all its namespaces), as root."""
        result = subprocess.run(
            ["nsenter", "-t", str(self.init_pid), "-a", *argv],
            capture_output=True, text=True, timeout=timeout, check=False, env=CLEAN_ENV,
        )  # fmt: skip
        if check and result.returncode != 0:
            raise ContainerError(
                f"in the container, {' '.join(argv)} exited {result.returncode}:\n"
                f"{result.stdout[-2000:]}\n{result.stderr[-3000:]}"
            )
        return result

    def systemctl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return self.run("systemctl", *args, check=check)

    def show(self, unit: str, *properties: str) -> dict[str, str]:
        """``systemctl show`` of ``unit``'s ``properties``."""
        out = self.systemctl("show", unit, *(f"--property={p}" for p in properties)).stdout
        return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)

    def journal(self, unit: str) -> str:
        """The unit's journal since boot, messages only."""
        return self.run("journalctl", "-b", "-u", unit, "--no-pager", "-o", "cat").stdout

    def wait_for(
        self, what: str, check: object, *, timeout: float = COMMAND_TIMEOUT_S, every: float = 0.5
    ) -> None:
        """Poll ``check()`` until it is true (bounded); fail naming ``what``."""
        assert callable(check)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if check():
                return
            if self.nspawn.poll() is not None:
                raise ContainerError(f"the container stopped while waiting for {what}")
            time.sleep(every)
        raise ContainerError(f"timed out after {timeout:.0f} s waiting for {what}")

    def poweroff(self) -> None:
        """Power the container off and reap ``systemd-nspawn``; escalate only on our pids."""
        if self.nspawn.poll() is None:
            self.run("systemctl", "--no-block", "poweroff", check=False, timeout=30)
            try:
                self.nspawn.wait(timeout=POWEROFF_TIMEOUT_S)
                return
            except subprocess.TimeoutExpired:
                pass
            self.nspawn.send_signal(signal.SIGTERM)  # nspawn halts the container on SIGTERM
            try:
                self.nspawn.wait(timeout=POWEROFF_TIMEOUT_S)
                return
            except subprocess.TimeoutExpired:
                pass
            os.killpg(self.nspawn.pid, signal.SIGKILL)  # the session we started for it
            self.nspawn.wait()


@contextmanager
def booted(root: Path, log: Path, *, name: str | None = None) -> Iterator[Container]:
    """Boot ``root`` with systemd-nspawn; yield once systemd finished booting; power off.

    The machine name is unique to this process (sessions may run side by side); the
    container's host name comes from the root's /etc/hostname.
    """
    name = name or f"patchd-e2e-{os.getpid()}"
    with log.open("wb") as out:
        nspawn = subprocess.Popen(
            ["systemd-nspawn", "-q", "-D", str(root), "-b", "--register=no", "--keep-unit",
             "--console=passive", "--link-journal=no", f"--machine={name}"],
            stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True, env=CLEAN_ENV,
        )  # fmt: skip
    container: Container | None = None
    try:
        deadline = time.monotonic() + BOOT_TIMEOUT_S
        init_pid = None
        while init_pid is None:
            if nspawn.poll() is not None:
                raise ContainerError(f"systemd-nspawn exited {nspawn.returncode}: "
                                     f"{log.read_text(errors='replace')[-3000:]}")  # fmt: skip
            if time.monotonic() > deadline:
                raise ContainerError("the container's systemd did not start")
            init_pid = next((p for p in _children(nspawn.pid) if _comm(p) == "systemd"), None)
            time.sleep(0.1)
        container = Container(root, nspawn, init_pid, log)
        private = Path(f"/proc/{init_pid}/root/run/systemd/private")
        container.wait_for(
            "systemd's private socket", private.exists, timeout=BOOT_TIMEOUT_S, every=0.1
        )
        state = container.run("systemctl", "is-system-running", "--wait", check=False,
                              timeout=BOOT_TIMEOUT_S).stdout.strip()  # fmt: skip
        if state not in ("running", "degraded"):
            raise ContainerError(f"the container's systemd is {state!r} after booting")
        yield container
    finally:
        if container is not None:
            container.poweroff()
        elif nspawn.poll() is None:
            nspawn.send_signal(signal.SIGTERM)
            try:
                nspawn.wait(timeout=POWEROFF_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                os.killpg(nspawn.pid, signal.SIGKILL)
                nspawn.wait()
