"""Real RPM packages and repositories, built on demand for the dnf and zypper tests.

Packages are built with ``rpmbuild -bb`` from a small generated spec (no dependencies,
``AutoReqProv: no``); repositories are directories indexed with ``createrepo_c``, and
security or bug-fix advisories are added as ``updateinfo.xml`` with ``modifyrepo_c``,
exactly as distributions publish them. A base package ships a static busybox as
``/bin/sh`` so that scriptlets can run inside an isolated root.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from xml.sax.saxutils import escape, quoteattr

TOOL_TIMEOUT_S = 300
BUSYBOX = Path("/bin/busybox")
SHELL_PACKAGE = "rootshell"


@dataclass(frozen=True)
class RpmSpec:
    """A package to build; ``pre`` is a ``%pre`` scriptlet (a failing one aborts the install)."""

    name: str
    version: str
    release: str = "1"
    epoch: int | None = None
    pre: str | None = None
    post: str | None = None
    arch: str = "noarch"

    @property
    def evr(self) -> str:
        """``[epoch:]version-release`` as rpm, dnf and zypper print it."""
        prefix = f"{self.epoch}:" if self.epoch else ""
        return f"{prefix}{self.version}-{self.release}"

    @property
    def filename(self) -> str:
        return f"{self.name}-{self.version}-{self.release}.{self.arch}.rpm"


@dataclass(frozen=True)
class AdvisoryPackage:
    name: str
    version: str
    release: str = "1"
    epoch: int = 0
    arch: str = "noarch"
    reboot_suggested: bool = False


@dataclass(frozen=True)
class AdvisorySpec:
    """One ``<update>`` of an updateinfo.xml."""

    id: str
    type: str  # security, bugfix, enhancement, recommended
    severity: str  # Critical, Important, Moderate, Low, or ""
    packages: tuple[AdvisoryPackage, ...]
    cves: tuple[str, ...] = ()
    bugs: tuple[str, ...] = ()
    title: str = "patchd test advisory"


@dataclass(frozen=True)
class RepoSpec:
    name: str
    packages: tuple[RpmSpec, ...]
    advisories: tuple[AdvisorySpec, ...] = ()
    extra: Mapping[str, str] = field(default_factory=dict)


def _spec_text(spec: RpmSpec) -> str:
    lines = [
        f"Name: {spec.name}",
        f"Version: {spec.version}",
        f"Release: {spec.release}",
        *([f"Epoch: {spec.epoch}"] if spec.epoch else []),
        "Summary: patchd test package",
        "License: MIT",
        f"BuildArch: {spec.arch}",
        "AutoReqProv: no",
        "",
        "%description",
        "A package built by patchd's tests.",
        "",
        "%install",
        f"mkdir -p %{{buildroot}}/usr/share/{spec.name}",
        f"echo '{spec.evr}' > %{{buildroot}}/usr/share/{spec.name}/version",
    ]
    files = [f"/usr/share/{spec.name}"]
    if spec.name == SHELL_PACKAGE:
        lines += [
            "mkdir -p %{buildroot}/bin",
            f"cp {BUSYBOX} %{{buildroot}}/bin/busybox",
            "ln -s busybox %{buildroot}/bin/sh",
        ]
        files += ["/bin/busybox", "/bin/sh"]
    for name, body in (("pre", spec.pre), ("post", spec.post)):
        if body is not None:
            lines += ["", f"%{name}", body.rstrip("\n")]
    lines += ["", "%files", *files, ""]
    return "\n".join(lines)


def build_rpm(spec: RpmSpec, out_dir: Path, work_dir: Path) -> Path:
    """Build ``spec`` with ``rpmbuild``; return the .rpm's path in ``out_dir``."""
    top = work_dir / f"{spec.name}-{spec.evr}"
    (top / "SPECS").mkdir(parents=True, exist_ok=True)
    spec_file = top / "SPECS" / f"{spec.name}.spec"
    spec_file.write_text(_spec_text(spec))
    subprocess.run(
        [
            "rpmbuild", "-bb", "--quiet",
            "--define", f"_topdir {top}",
            "--define", "_binaries_in_noarch_packages_terminate_build 0",
            "--define", "debug_package %{nil}",
            "--define", "__os_install_post %{nil}",
            "--define", "_build_id_links none",
            str(spec_file),
        ],
        check=True, capture_output=True, text=True, timeout=TOOL_TIMEOUT_S,
        env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "HOME": str(top), "LC_ALL": "C"},
    )  # fmt: skip
    built = top / "RPMS" / spec.arch / spec.filename
    out_dir.mkdir(parents=True, exist_ok=True)
    return Path(shutil.copy2(built, out_dir / spec.filename))


def updateinfo_xml(advisories: Sequence[AdvisorySpec]) -> str:
    """An updateinfo.xml in the format libsolv reads (``ext/repo_updateinfoxml.c``)."""
    out = ['<?xml version="1.0" encoding="UTF-8"?>', "<updates>"]
    for adv in advisories:
        out.append(
            f'  <update from="security@patchd.invalid" status="stable" type="{adv.type}" version="1">'
        )
        out.append(f"    <id>{escape(adv.id)}</id>")
        out.append(f"    <title>{escape(adv.title)}</title>")
        if adv.severity:
            out.append(f"    <severity>{escape(adv.severity)}</severity>")
        out.append('    <issued date="2026-11-01 00:00:00"/>')
        out.append('    <updated date="2026-11-02 00:00:00"/>')
        out.append("    <release>patchd test</release>")
        out.append(f"    <summary>{escape(adv.title)}</summary>")
        out.append(f"    <description>{escape(adv.title)}</description>")
        out.append("    <references>")
        for cve in adv.cves:
            href = quoteattr(f"https://www.cve.org/CVERecord?id={cve}")
            out.append(f'      <reference href={href} id="{cve}" title="{cve}" type="cve"/>')
        for bug in adv.bugs:
            href = quoteattr(f"https://bugs.patchd.invalid/{bug}")
            out.append(
                f'      <reference href={href} id="{bug}" title="bug {bug}" type="bugzilla"/>'
            )
        out.append("    </references>")
        out.append('    <pkglist>\n      <collection short="test">\n        <name>test</name>')
        for p in adv.packages:
            filename = f"{p.name}-{p.version}-{p.release}.{p.arch}.rpm"
            out.append(
                f'        <package name="{p.name}" version="{p.version}" release="{p.release}"'
                f' epoch="{p.epoch}" arch="{p.arch}" src="{filename}">'
            )
            out.append(f"          <filename>{filename}</filename>")
            if p.reboot_suggested:
                out.append("          <reboot_suggested>True</reboot_suggested>")
            out.append("        </package>")
        out.append("      </collection>\n    </pkglist>\n  </update>")
    out.append("</updates>\n")
    return "\n".join(out)


def publish_repo(
    spec: RepoSpec, rpms: Sequence[Path], out_dir: Path, *, zchunk: bool = False
) -> Path:
    """A repository directory with ``rpms``, indexed, with ``spec``'s advisories added.

    ``zchunk``: each metadata file in its zchunk form too, as Fedora's repositories have.
    """
    repo = out_dir / spec.name
    repo.mkdir(parents=True, exist_ok=True)
    for rpm in rpms:
        shutil.copy2(rpm, repo / rpm.name)
    zck = ["--zck"] if zchunk else []
    _tool(["createrepo_c", "--quiet", *zck, str(repo)])
    if spec.advisories:
        source = out_dir / f"{spec.name}-updateinfo" / "updateinfo.xml"
        source.parent.mkdir(parents=True, exist_ok=True)
        source.write_text(updateinfo_xml(spec.advisories))
        _tool(["modifyrepo_c", *zck, "--mdtype=updateinfo", str(source), str(repo / "repodata")])
    return repo


def _tool(argv: list[str]) -> None:
    subprocess.run(argv, check=True, capture_output=True, text=True, timeout=TOOL_TIMEOUT_S)
