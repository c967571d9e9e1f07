"""What the offline fixtures of RPM tools share: a stand-in for the root's rpm database.

The fake ``rpm -qa`` answers in the query format patchd asks for
(``NAME\\tEPOCH\\tVERSION\\tRELEASE\\tARCH``, ``(none)`` for no epoch, as rpm prints it);
the fake package manager's install commands change the table as the real tool would.
"""

from __future__ import annotations

from pathlib import Path


class FakeRpmDatabase:
    """The root's installed packages: name -> (``[epoch:]version-release``, arch)."""

    def __init__(self, packages: dict[str, tuple[str, str]]) -> None:
        self.packages = dict(packages)

    def query(self, argv: tuple[str, ...]) -> str:
        lines = []
        for name, (evr, arch) in sorted(self.packages.items()):
            epoch, _, version_release = evr.rpartition(":")
            version, _, release = version_release.rpartition("-")
            lines.append(f"{name}\t{epoch or '(none)'}\t{version}\t{release}\t{arch}\n")
        return "".join(lines)

    def versions(self) -> dict[str, str]:
        return {name: evr for name, (evr, _arch) in self.packages.items()}


def rpm_root(tmp: Path, os_release: str, db_file: str = "var/lib/rpm/rpmdb.sqlite") -> Path:
    """A root with an rpm database file where patchd looks for one, and repository files."""
    root = tmp / "root"
    (root / db_file).parent.mkdir(parents=True)
    (root / db_file).write_bytes(b"")
    (root / "etc/yum.repos.d").mkdir(parents=True)
    (root / "etc/os-release").write_text(os_release)
    return root
