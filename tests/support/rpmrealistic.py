"""An RPM endpoint of realistic size for the scan benchmarks, built once and cached.

A typical server has ~1,000 installed packages, repositories of several thousand and
around 150 pending updates, about a third of them security fixes. Building that many
packages one ``rpmbuild`` at a time would take many minutes, so one spec carries every
package as a subpackage (``%package -n``, empty ``%files``) and is built in a single
``rpmbuild`` call; the newer versions are a second spec. The installed set is recorded
with ``rpm -i --justdb`` (the database only: no files, no scriptlets), exactly what the
package managers read when they list updates. The updates repository carries an
updateinfo.xml with security, bug-fix and enhancement advisories (CVE ids, severities).

The result — repositories, a dnf root and a zypper root with fetched metadata — is kept
under ``.stamps/rpm-realistic-HASH/``, the hash taken over this file and the sizes, so
``make bench`` builds it once (~1 min) and reuses it while nothing here changes.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from tests.support.rpmrepo import AdvisoryPackage, AdvisorySpec, RepoSpec, publish_repo
from tests.support.rpmroot import DB_DIR, LEAP_OS_RELEASE, ROCKY_OS_RELEASE, RpmRoot

INSTALLED = 1000
REPOSITORY = 4000  # packages in the base repository, the installed ones among them
UPDATES = 150  # installed packages with a newer version in the updates repository
PACKAGES_PER_ADVISORY = 3
TOOL_TIMEOUT_S = 900
_SEVERITIES = ("Critical", "Important", "Moderate", "Low")
_COMPLETE = "complete"


def package_name(number: int) -> str:
    return f"bench-{number:05d}"


def updated_numbers() -> list[int]:
    """The installed packages that have an update, spread evenly over the installed set."""
    return [n for n in range(INSTALLED) if (n * UPDATES) % INSTALLED < UPDATES]


def advisories() -> list[AdvisorySpec]:
    """Every third group of updates is a security fix, then bug fixes, enhancements, none."""
    found = []
    numbers = updated_numbers()
    groups = [
        numbers[i : i + PACKAGES_PER_ADVISORY]
        for i in range(0, len(numbers), PACKAGES_PER_ADVISORY)
    ]
    for index, group in enumerate(groups):
        kind = ("security", "security", "bugfix", "enhancement", "security", None)[index % 6]
        if kind is None:
            continue  # updates no advisory mentions
        packages = tuple(AdvisoryPackage(package_name(n), "1.1") for n in group)
        prefix = {"security": "RLSA", "bugfix": "RLBA", "enhancement": "RLEA"}[kind]
        found.append(
            AdvisorySpec(
                f"{prefix}-2026:{1000 + index}",
                kind,
                _SEVERITIES[index % len(_SEVERITIES)] if kind == "security" else "",
                packages,
                cves=(f"CVE-2026-{30000 + index}",) if kind == "security" else (),
            )
        )
    return found


def _spec_text(name: str, version: str, numbers: Sequence[int]) -> str:
    lines = [
        f"Name: {name}",
        f"Version: {version}",
        "Release: 1",
        "Summary: patchd benchmark packages",
        "License: MIT",
        "BuildArch: noarch",
        "AutoReqProv: no",
        "",
        "%description",
        "The packages of patchd's realistic benchmark endpoint.",
        "",
    ]
    for number in numbers:
        package = package_name(number)
        lines += [
            f"%package -n {package}",
            f"Summary: {package}, a benchmark package",
            f"%description -n {package}",
            "A package of patchd's benchmark endpoint.",
            f"%files -n {package}",
            "",
        ]
    return "\n".join(lines)


def _build(name: str, version: str, numbers: Sequence[int], work: Path) -> list[Path]:
    """Every package of ``numbers`` at ``version``, from one spec in one rpmbuild call."""
    top = work / f"{name}-{version}"
    (top / "SPECS").mkdir(parents=True, exist_ok=True)
    spec = top / "SPECS" / f"{name}.spec"
    spec.write_text(_spec_text(name, version, numbers))
    subprocess.run(
        [
            "rpmbuild", "-bb", "--quiet",
            "--define", f"_topdir {top}",
            "--define", "debug_package %{nil}",
            "--define", "__os_install_post %{nil}",
            "--define", "_build_id_links none",
            str(spec),
        ],
        check=True, capture_output=True, text=True, timeout=TOOL_TIMEOUT_S,
        env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "HOME": str(top), "LC_ALL": "C"},
    )  # fmt: skip
    return sorted((top / "RPMS" / "noarch").glob("*.rpm"))


@dataclass(frozen=True)
class RealisticRoots:
    """The cached endpoint: one root per tool, over the same repositories."""

    dnf: RpmRoot
    zypper: RpmRoot
    repos: dict[str, Path]


def cache_key() -> str:
    text = Path(__file__).read_text() + f"{INSTALLED}:{REPOSITORY}:{UPDATES}"
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def realistic_roots(stamps: Path) -> RealisticRoots:
    """The cached endpoint under ``stamps``, built first if missing or stale."""
    stamps = stamps.resolve()
    base = stamps / f"rpm-realistic-{cache_key()}"
    repos = {"base": base / "repos" / "base", "updates": base / "repos" / "updates"}
    dnf = RpmRoot(base / "dnf-root", base / "dnf-home")
    zypper = RpmRoot(base / "zypper-root", base / "zypper-home")
    if not (base / _COMPLETE).is_file():
        for old in stamps.glob("rpm-realistic-*"):
            shutil.rmtree(old)
        _build_roots(base, repos)
    return RealisticRoots(dnf=dnf, zypper=zypper, repos=repos)


def _build_roots(base: Path, repos: dict[str, Path]) -> None:
    work = base / "build"
    old = _build("benchset", "1.0", range(REPOSITORY), work)
    new = _build("benchset-updates", "1.1", updated_numbers(), work)
    publish_repo(RepoSpec("base", ()), old, base / "repos")
    publish_repo(RepoSpec("updates", (), tuple(advisories())), new, base / "repos")
    installed = [p for p in old if int(p.name.split("-")[1]) < INSTALLED]
    dnf = RpmRoot.create(base / "dnf-root", base / "dnf-home", os_release=ROCKY_OS_RELEASE)
    _install_db_only(dnf, installed)
    zypper = RpmRoot.create(base / "zypper-root", base / "zypper-home", os_release=LEAP_OS_RELEASE)
    shutil.copytree(dnf.path / DB_DIR.lstrip("/"), zypper.path / DB_DIR.lstrip("/"))
    dnf.set_yum_repos(repos)
    dnf.dnf("makecache")  # the metadata a scan reads (`dnf -C`), fetched once
    zypper.set_zypp_repos(repos)
    zypper.zypper("refresh")
    shutil.rmtree(work)
    (base / _COMPLETE).write_text("")


def _install_db_only(root: RpmRoot, rpms: Sequence[Path]) -> None:
    proc = subprocess.run(
        [
            "rpm", "--root", str(root.path), "--dbpath", DB_DIR, "-i", "--justdb", "--nodeps",
            "--noscripts", "--notriggers", "--nosignature", "--nodigest", *map(str, rpms),
        ],
        check=False, capture_output=True, text=True, timeout=TOOL_TIMEOUT_S,
        env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "HOME": str(root.home), "LC_ALL": "C"},
    )  # fmt: skip
    if proc.returncode != 0:
        raise RuntimeError(f"rpm --justdb failed ({proc.returncode}): {proc.stderr[-2000:]}")
