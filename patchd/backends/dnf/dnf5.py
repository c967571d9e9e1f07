"""dnf 5 (Fedora 41 and later): telling it from dnf 4, its version, and its command lines.

From Fedora 41 ``/usr/bin/dnf`` is dnf 5, a C++ program (``dnf``, ``dnf5`` and ``yum``
are names of one binary); on EL 8-10 it is dnf 4, a Python script (``dnf-3``). patchd
tells them apart by the binary itself — a link to ``dnf5`` or an ELF file — without
starting it, and asks dnf 5 its version once per installed binary (``dnf --version``
prints ``dnf5 version 5.4.3.0``; remembered like zypper's).

Under ``--installroot`` dnf 5 reads the configuration, the repository definitions and
the variables of the *root* unless ``--use-host-config`` is given (dnf5-installroot(7));
patchd never gives it, and also names the root's repository directories
(``--setopt=reposdir=``, a host path under dnf 5 too), as it does for dnf 4, so a
scan of a root cannot read the host's repositories whatever dnf 5's defaults become.
dnf 5 keeps its metadata in ``/var/cache/libdnf5/ID-HASH/`` (the layout of dnf 4's
cache) and locks transactions with an ``fcntl`` lock on ``/run/dnf/rpmtransaction.lock``
instead of pid files.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

from patchd import process
from patchd.backends.dnf.environment import DnfEnvironment, Flavour
from patchd.backends.rpm.toolversion import remembered_version
from patchd.errors import PatchdError

VERSION_TIMEOUT_S = 30.0
MAX_VERSION_BYTES = 64 * 1024
ELF_MAGIC = b"\x7fELF"
# libdnf5's REPOSITORY_CONF_DIRS, in its order (libdnf5/conf/const.hpp).
REPOS_DIRS = ("/etc/yum.repos.d", "/etc/distro.repos.d", "/usr/share/dnf5/repos.d")
TRANSACTION_LOCK = "/run/dnf/rpmtransaction.lock"  # libdnf5 TRANSACTION_LOCK_FILEPATH
_VERSION = re.compile(r"^dnf5 version (\S+)$", re.MULTILINE)

DNF5 = Flavour(
    program="dnf",
    cachedir="/var/cache/libdnf5",
    cache_layout="dnf",
    refresh=(("makecache", "--refresh"),),
    pid_locks=(),  # dnf 5 takes fcntl locks only
    lock_exit_code=-1,  # dnf 5 has no exit status of its own for a held lock: read its message
)


def is_dnf5(program: str | Path | None) -> bool:
    """Whether the ``dnf`` found at ``program`` is dnf 5 (``False`` when absent).

    dnf 4's ``dnf`` is a Python script (or a link to ``dnf-3``); dnf 5's is a link to
    ``dnf5`` or the ELF binary itself.
    """
    if program is None:
        return False
    path = Path(program)
    try:
        if path.resolve().name.startswith("dnf5"):
            return True
        with path.open("rb") as f:
            return f.read(len(ELF_MAGIC)) == ELF_MAGIC
    except OSError:
        return False


def host_dnf() -> str | None:
    """The ``dnf`` patchd would run (the system ``PATH`` first), or ``None``."""
    return shutil.which("dnf", path=process.base_environment()["PATH"])


def parse_version(text: str) -> str | None:
    """The version in ``dnf --version`` output of dnf 5 (``None`` for anything else)."""
    match = _VERSION.search(text[:MAX_VERSION_BYTES])
    return match[1] if match else None


def dnf5_version(cache_file: Path) -> str | None:
    """dnf 5's version, asked once per installed binary and remembered in ``cache_file``."""

    def ask() -> str | None:
        try:
            result = process.run(["dnf", "--version"], timeout_s=VERSION_TIMEOUT_S)
        except PatchdError:  # failed, timed out or vanished: asked again next time
            return None
        return parse_version(result.stdout)

    return remembered_version("dnf", cache_file, ask)


class Dnf5Environment(DnfEnvironment):
    """dnf 5's command lines for one target: dnf 4's, with dnf 5's option names."""

    def argv(self, *args: str) -> list[str]:
        argv = [self.flavour.program, "-y", "--setopt=exit_on_lock=True"]
        if not self.target.is_host:
            argv += [
                f"--installroot={self.target.root}",
                "--setopt=reposdir=" + ",".join(str(d) for d in self.reposdirs),
                "--no-plugins",
            ]
            if self.releasever:
                argv.append(f"--releasever={self.releasever}")
        return [*argv, *args]

    @property
    def reposdirs(self) -> list[Path]:
        """The repository directories dnf 5 reads, inside the target."""
        return [self.target.path(d) for d in REPOS_DIRS]

    def fcntl_lock_files(self) -> list[Path]:
        """The files dnf 5 locks with ``fcntl`` (besides rpm's own database lock)."""
        return [self.target.path(TRANSACTION_LOCK)]
