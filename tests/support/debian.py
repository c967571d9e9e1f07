"""Real Debian packages and repositories, built on demand for tests and the demo.

Packages are built with ``dpkg-deb`` from a spec (name, version, files, conffiles,
maintainer scripts, a Debian changelog); repositories are flat directories indexed
with ``apt-ftparchive``, with a Release file that says which archive they are (a
repository labelled ``Debian-Security`` is classified exactly like Debian's own).
"""

from __future__ import annotations

import gzip
import shutil
import subprocess
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import format_datetime
from pathlib import Path

TOOL_TIMEOUT_S = 120


@dataclass(frozen=True)
class ChangelogEntry:
    """One upload in a Debian changelog."""

    version: str
    changes: tuple[str, ...] = ("New upstream release.",)
    urgency: str = "medium"
    distribution: str = "bookworm"


@dataclass(frozen=True)
class DebSpec:
    """A package to build. ``files`` and ``conffiles`` map absolute paths to contents."""

    name: str
    version: str
    arch: str = "all"
    files: Mapping[str, str] = field(default_factory=dict)
    conffiles: Mapping[str, str] = field(default_factory=dict)
    postinst: str | None = None
    preinst: str | None = None
    depends: str | None = None
    changelog: tuple[ChangelogEntry, ...] = ()
    description: str = "patchd test package"

    @property
    def filename(self) -> str:
        return f"{self.name}_{self.version.replace(':', '%3a')}_{self.arch}.deb"


def _changelog_text(spec: DebSpec) -> str:
    when = format_datetime(datetime(2026, 11, 1, tzinfo=UTC))
    blocks = []
    for entry in spec.changelog:
        lines = "\n".join(f"  * {line}" for line in entry.changes)
        blocks.append(
            f"{spec.name} ({entry.version}) {entry.distribution}; urgency={entry.urgency}\n\n"
            f"{lines}\n\n -- patchd tests <tests@patchd.invalid>  {when}\n"
        )
    return "\n".join(blocks)


def build_deb(spec: DebSpec, out_dir: Path, work_dir: Path) -> Path:
    """Build ``spec`` into ``out_dir``; return the .deb's path."""
    tree = work_dir / f"{spec.name}_{spec.version}_{spec.arch}"
    (tree / "DEBIAN").mkdir(parents=True, exist_ok=True)
    control = [
        f"Package: {spec.name}",
        f"Version: {spec.version}",
        f"Architecture: {spec.arch}",
        "Maintainer: patchd tests <tests@patchd.invalid>",
        "Priority: optional",
        "Section: misc",
    ]
    if spec.depends:
        control.append(f"Depends: {spec.depends}")
    control.append(f"Description: {spec.description}")
    (tree / "DEBIAN" / "control").write_text("\n".join(control) + "\n")
    files = {f"/usr/share/{spec.name}/version": f"{spec.version}\n", **spec.files, **spec.conffiles}
    for path, content in files.items():
        target = tree / path.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(content)
    if spec.conffiles:
        (tree / "DEBIAN" / "conffiles").write_text("".join(f"{p}\n" for p in spec.conffiles))
    for script_name, body in (("postinst", spec.postinst), ("preinst", spec.preinst)):
        if body is not None:
            script = tree / "DEBIAN" / script_name
            script.write_text(body)
            script.chmod(0o755)
    if spec.changelog:
        doc = tree / "usr" / "share" / "doc" / spec.name
        doc.mkdir(parents=True, exist_ok=True)
        with gzip.open(doc / "changelog.Debian.gz", "wt") as f:
            f.write(_changelog_text(spec))
    out_dir.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [
            "dpkg-deb",
            "--root-owner-group",
            "-Zgzip",
            "--build",
            str(tree),
            str(out_dir / spec.filename),
        ],
        check=True,
        capture_output=True,
        timeout=TOOL_TIMEOUT_S,
    )
    return out_dir / spec.filename


@dataclass(frozen=True)
class RepoSpec:
    """A flat repository and the identity its Release file declares."""

    name: str
    origin: str = "Debian"
    label: str = "Debian"
    suite: str = "stable"
    codename: str = "bookworm"
    version: str = "12"
    # (package, version) → extra fields for its Packages stanza (Phased-Update-Percentage, ...)
    extra_fields: Mapping[tuple[str, str], Mapping[str, str]] = field(default_factory=dict)


def publish_repo(spec: RepoSpec, root: Path, debs: Iterable[Path]) -> Path:
    """Create (or refresh) the repository ``root/spec.name`` holding ``debs``."""
    repo = root / spec.name
    repo.mkdir(parents=True, exist_ok=True)
    for stale in repo.glob("*.deb"):
        stale.unlink()
    for deb in debs:
        shutil.copy2(deb, repo / deb.name)
    packages = subprocess.run(
        ["apt-ftparchive", "packages", "."],
        cwd=repo,
        check=True,
        capture_output=True,
        text=True,
        timeout=TOOL_TIMEOUT_S,
    ).stdout
    (repo / "Packages").write_text(_add_fields(packages, spec.extra_fields))
    release = subprocess.run(
        [
            "apt-ftparchive",
            "-o", f"APT::FTPArchive::Release::Origin={spec.origin}",
            "-o", f"APT::FTPArchive::Release::Label={spec.label}",
            "-o", f"APT::FTPArchive::Release::Suite={spec.suite}",
            "-o", f"APT::FTPArchive::Release::Codename={spec.codename}",
            "-o", f"APT::FTPArchive::Release::Version={spec.version}",
            "release", ".",
        ],
        cwd=repo,
        check=True,
        capture_output=True,
        text=True,
        timeout=TOOL_TIMEOUT_S,
    ).stdout  # fmt: skip
    (repo / "Release").write_text(release)
    return repo


def _add_fields(packages: str, extra: Mapping[tuple[str, str], Mapping[str, str]]) -> str:
    if not extra:
        return packages
    stanzas = [s for s in packages.strip().split("\n\n") if s]
    out = []
    for stanza in stanzas:
        fields = dict(
            line.split(": ", 1) for line in stanza.splitlines() if ": " in line and line[0] != " "
        )
        added = extra.get((fields.get("Package", ""), fields.get("Version", "")), {})
        out.append(stanza + "".join(f"\n{k}: {v}" for k, v in added.items()))
    return "\n\n".join(out) + "\n"


def deb_names(specs: Sequence[DebSpec]) -> list[str]:
    return [s.filename for s in specs]
