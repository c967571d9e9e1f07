"""Tiny pacman packages, repositories and isolated roots for the tests.

``makepkg`` refuses to run as root, so packages are built by hand, as makepkg would
lay them out: a ``.PKGINFO``, an optional ``.INSTALL`` scriptlet and the files,
archived with ``bsdtar --zstd``. ``repo-add`` (from Debian's ``makepkg`` package) turns
them into repository databases. A repository is "published" twice, as Arch's mirrors
move: first carrying the old versions (the root installs them, so pacman's cache keeps
them), then the new ones, which only keep the newest version of each package.

A root is an empty directory with pacman's layout, a ``pacman.conf`` (``SigLevel =
Never``, one ``[core]`` repository on ``file://``), ``/etc/os-release`` saying Arch, and
a static busybox as ``/bin/sh`` for scriptlets, which pacman runs chrooted into it.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

BUSYBOX = Path("/bin/busybox")
TOOLS = ("pacman", "repo-add", "bsdtar", "zstd", "vercmp", "/bin/busybox")
TIMEOUT_S = 300
ARCH_OS_RELEASE = (
    'NAME="Arch Linux"\nPRETTY_NAME="Arch Linux"\nID=arch\nBUILD_ID=rolling\n'
    'HOME_URL="https://archlinux.org/"\n'
)
SECURITY_CVES = ("CVE-2026-20001", "CVE-2026-20002")
_FAILING_SCRIPTLET = 'post_upgrade() {\n  echo "fragile: post_upgrade failed" >&2\n  return 1\n}\n'


@dataclass(frozen=True)
class PkgSpec:
    """One package to build: name, ``version-release``, files and an optional scriptlet."""

    name: str
    version: str
    arch: str = "any"
    files: Mapping[str, str] = field(default_factory=dict)
    install: str | None = None  # the .INSTALL scriptlet

    @property
    def filename(self) -> str:
        return f"{self.name}-{self.version}-{self.arch}.pkg.tar.zst"

    def all_files(self) -> dict[str, str]:
        return {f"usr/share/{self.name}/VERSION": f"{self.version}\n", **self.files}


def build_package(spec: PkgSpec, out_dir: Path) -> Path:
    """The package file for ``spec`` in ``out_dir``, built with bsdtar as makepkg would."""
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        build = Path(tmp)
        size = 0
        for relative, content in spec.all_files().items():
            path = build / relative
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(content)
            size += len(content.encode())
        (build / ".PKGINFO").write_text(
            f"pkgname = {spec.name}\npkgbase = {spec.name}\npkgver = {spec.version}\n"
            f"pkgdesc = {spec.name}, a patchd test package\nurl = https://patchd.invalid/\n"
            f"builddate = 1767225600\npackager = patchd tests <tests@patchd.invalid>\n"
            f"size = {size}\narch = {spec.arch}\nlicense = Apache-2.0\n"
        )
        members = [".PKGINFO"]
        if spec.install is not None:
            (build / ".INSTALL").write_text(spec.install)
            members.append(".INSTALL")
        members += sorted({relative.split("/")[0] for relative in spec.all_files()})
        target = out_dir / spec.filename
        _run(["bsdtar", "--zstd", "-cf", str(target), "-C", str(build), *members])
    return target


def publish_repo(directory: Path, name: str, specs: Sequence[PkgSpec]) -> Path:
    """A repository ``name`` in ``directory`` carrying exactly ``specs``."""
    directory.mkdir(parents=True, exist_ok=True)
    files = [str(build_package(spec, directory)) for spec in specs]
    _run(["repo-add", "-q", str(directory / f"{name}.db.tar.gz"), *files])
    return directory


# What the tests use. "hello" gets a security fix (the tracker export below says so);
# "world" an ordinary update; "linux" a kernel (reboot); "fragile" an upgrade whose
# scriptlet fails; "pinned" is held by IgnorePkg; "clash" 2.0 would overwrite a file
# "world" owns, so pacman refuses its transaction.
BASE = (
    PkgSpec("hello", "1.0-1"),
    PkgSpec("world", "1.0-1", files={"usr/share/shared/world.txt": "world\n"}),
    PkgSpec("linux", "6.1.1-1", arch="x86_64"),
    PkgSpec("fragile", "1.0-1", install="post_install() {\n  true\n}\n"),
    PkgSpec("pinned", "1.0-1"),
    PkgSpec("clash", "1.0-1"),
)
NEW = (
    PkgSpec("hello", "1.1-1"),
    PkgSpec("world", "2.0-1", files={"usr/share/shared/world.txt": "world 2\n"}),
    PkgSpec("linux", "6.1.2-1", arch="x86_64"),
    PkgSpec("fragile", "2.0-1", install=_FAILING_SCRIPTLET),
    PkgSpec("pinned", "1.1-1"),
    PkgSpec("clash", "2.0-1", files={"usr/share/shared/world.txt": "clash\n"}),
)
NEW_VERSIONS = {s.name: s.version for s in NEW}
BASE_VERSIONS = {s.name: s.version for s in BASE}


def tracker_export(fixed: Mapping[str, tuple[str, str]] | None = None) -> str:
    """An export in the format of https://security.archlinux.org/all.json, for the tests.

    By default one group: "hello" affected at 1.0-1, fixed in 1.1-1, severity High.
    The data is made up for the tests; the format is the tracker's (see
    tests/data/pacman/PROVENANCE.md for a real capture).
    """
    fixed = fixed or {"hello": ("1.0-1", "1.1-1")}
    groups = []
    for number, (name, (affected, fixed_in)) in enumerate(sorted(fixed.items()), start=9001):
        groups.append(
            {
                "name": f"AVG-{number}",
                "packages": [name],
                "status": "Fixed",
                "severity": "High",
                "type": "arbitrary code execution",
                "affected": affected,
                "fixed": fixed_in,
                "ticket": None,
                "issues": list(SECURITY_CVES),
                "advisories": [f"ASA-202601-{number - 9000:02d}"],
            }
        )
    return json.dumps(groups, indent=2)


@dataclass(frozen=True)
class PacmanCatalogue:
    """The repository as published before and after the updates."""

    old: Path
    new: Path


def build_catalogue(directory: Path) -> PacmanCatalogue:
    """Build both states of the test repository (about a second)."""
    return PacmanCatalogue(
        old=publish_repo(directory / "old", "core", BASE),
        new=publish_repo(directory / "new", "core", NEW),
    )


class PacmanRoot:
    """A throwaway root that pacman manages as if it were an Arch system."""

    def __init__(self, path: Path, ignore: Sequence[str] = ()) -> None:
        self.path = path
        self.ignore = tuple(ignore)  # IgnorePkg in pacman.conf

    @classmethod
    def create(cls, path: Path, *, ignore: Sequence[str] = ()) -> PacmanRoot:
        for d in ("var/lib/pacman", "var/cache/pacman/pkg", "var/log", "etc/pacman.d/hooks",
                  "bin", "tmp"):  # fmt: skip
            (path / d).mkdir(parents=True, exist_ok=True)
        shutil.copy2(BUSYBOX, path / "bin" / "busybox")
        for tool in ("sh", "true", "cat", "echo"):
            (path / "bin" / tool).symlink_to("busybox")
        (path / "etc" / "os-release").write_text(ARCH_OS_RELEASE)
        (path / "etc" / "hostname").write_text("archroot\n")
        return cls(path, ignore)

    @property
    def options(self) -> list[str]:
        r = self.path
        return [
            "--root", str(r),
            "--dbpath", f"{r}/var/lib/pacman",
            "--config", f"{r}/etc/pacman.conf",
            "--cachedir", f"{r}/var/cache/pacman/pkg",
            "--logfile", f"{r}/var/log/pacman.log",
            "--hookdir", f"{r}/etc/pacman.d/hooks",
            "--gpgdir", f"{r}/etc/pacman.d/gnupg",
        ]  # fmt: skip

    def use_repository(self, directory: Path) -> None:
        """Point ``[core]`` at ``directory`` and sync, as after a mirror moved on."""
        ignore = f"IgnorePkg = {' '.join(self.ignore)}\n" if self.ignore else ""
        (self.path / "etc" / "pacman.conf").write_text(
            "[options]\nArchitecture = auto\nSigLevel = Never\n"
            f"{ignore}\n[core]\nServer = file://{directory}\n"
        )
        self.pacman("-Syy", "--noconfirm")

    def pacman(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["pacman", *self.options, *args],
            env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL": "C"},
            check=check,
            capture_output=True,
            text=True,
            timeout=TIMEOUT_S,
        )

    def install(self, *names: str) -> None:
        self.pacman("-S", "--noconfirm", *names)

    def versions(self) -> dict[str, str]:
        """Installed package → version, as ``pacman -Q`` itself reports them."""
        out = self.pacman("-Q", check=False).stdout
        return dict(line.split(" ", 1) for line in out.splitlines() if line.strip())

    def cached(self) -> list[str]:
        return sorted(p.name for p in (self.path / "var/cache/pacman/pkg").iterdir())


def prepared_root(
    path: Path, catalogue: PacmanCatalogue, *, ignore: Sequence[str] = ()
) -> PacmanRoot:
    """A root with every base version installed from the old repository, then synced to the new."""
    root = PacmanRoot.create(path, ignore=ignore)
    root.use_repository(catalogue.old)
    root.install(*(s.name for s in BASE))
    root.use_repository(catalogue.new)
    return root


def _run(argv: list[str]) -> None:
    subprocess.run(argv, check=True, capture_output=True, text=True, timeout=TIMEOUT_S)
