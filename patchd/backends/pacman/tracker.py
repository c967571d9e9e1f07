"""Arch Linux security advisories, from a local copy of the security tracker's JSON.

Arch's repositories carry no security metadata. The Arch Security Team publishes its
advisory groups (AVGs) at ``https://security.archlinux.org/all.json``: a list of
``{"name": "AVG-708", "packages": [...], "status": "Fixed", "severity": "Critical",
"affected": "2.6.0-1", "fixed": "2.6.1-1", "issues": ["CVE-..."], "advisories":
["ASA-..."]}``. patchd never fetches it: an administrator (or a timer) keeps a copy and
names it in ``pacman.advisories``. An update is a security update when it reaches the
``fixed`` version of a group whose fix the installed version lacks.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from patchd.errors import ConfigError
from patchd.models import Severity

MAX_FILE_BYTES = 64 * 1024 * 1024  # all.json is a few MiB
MAX_GROUPS = 200_000
MAX_IDS = 256  # CVE or ASA ids kept per group
_CVE = re.compile(r"^CVE-\d{4}-\d{4,}$")
# The tracker's severity labels (tracker/model/enum.py), mapped to patchd's scale.
SEVERITIES = {
    "Critical": Severity.CRITICAL,
    "High": Severity.IMPORTANT,
    "Medium": Severity.MODERATE,
    "Low": Severity.LOW,
}
NOT_AFFECTED = "Not affected"


@dataclass(frozen=True)
class AdvisoryGroup:
    """One AVG: a set of CVEs affecting some packages, fixed (or not yet) in one version."""

    name: str
    packages: tuple[str, ...]
    status: str
    severity: Severity
    fixed: str | None
    cves: tuple[str, ...]
    advisories: tuple[str, ...]


@dataclass(frozen=True)
class SecurityFix:
    """What an update fixes, according to the tracker."""

    groups: tuple[str, ...]
    advisories: tuple[str, ...]
    cves: tuple[str, ...]
    severity: Severity


def _strings(value: object) -> tuple[str, ...]:
    if not isinstance(value, list):
        return ()
    return tuple(v for v in value[:MAX_IDS] if isinstance(v, str))


def parse_groups(data: object, where: str) -> list[AdvisoryGroup]:
    """The advisory groups of a decoded ``all.json``; :class:`ConfigError` if it is not one."""
    if not isinstance(data, list):
        raise ConfigError(
            f"{where}: not an Arch security tracker export (expected a JSON list)",
            hint="save https://security.archlinux.org/all.json there",
        )
    groups = []
    for item in data[:MAX_GROUPS]:
        if not isinstance(item, dict) or not isinstance(item.get("name"), str):
            continue  # a record the tracker may add later; the rest stay usable
        fixed = item.get("fixed")
        groups.append(
            AdvisoryGroup(
                name=item["name"],
                packages=_strings(item.get("packages")),
                status=str(item.get("status", "")),
                severity=SEVERITIES.get(str(item.get("severity", "")), Severity.UNKNOWN),
                fixed=fixed if isinstance(fixed, str) and fixed else None,
                cves=tuple(c for c in _strings(item.get("issues")) if _CVE.match(c)),
                advisories=_strings(item.get("advisories")),
            )
        )
    return groups


def load_groups(path: Path) -> list[AdvisoryGroup]:
    """Read and parse a tracker export; :class:`ConfigError` naming the file if unusable."""
    try:
        with path.open("rb") as f:
            raw = f.read(MAX_FILE_BYTES + 1)
    except OSError as e:
        raise ConfigError(
            f"cannot read the Arch security advisories {path}: {e.strerror}",
            hint="fix pacman.advisories in the agent configuration, or remove it",
        ) from None
    if len(raw) > MAX_FILE_BYTES:
        raise ConfigError(f"{path}: larger than {MAX_FILE_BYTES // (1024 * 1024)} MiB")
    try:
        data = json.loads(raw)
    except ValueError as e:
        raise ConfigError(
            f"{path}: not valid JSON ({e})",
            hint="save https://security.archlinux.org/all.json there",
        ) from None
    return parse_groups(data, str(path))


class AdvisoryIndex:
    """The groups by package name, to find what one update fixes."""

    def __init__(self, groups: Iterable[AdvisoryGroup]) -> None:
        self._by_package: dict[str, list[AdvisoryGroup]] = {}
        for group in groups:
            for name in group.packages:
                self._by_package.setdefault(name, []).append(group)

    def fixes(
        self,
        name: str,
        installed: str,
        available: str,
        compare: Callable[[str, str], int],
    ) -> SecurityFix | None:
        """What moving ``name`` from ``installed`` to ``available`` fixes, if anything."""
        hits = []
        for group in self._by_package.get(name, ()):
            if group.status == NOT_AFFECTED or group.fixed is None:
                continue
            try:
                if compare(installed, group.fixed) < 0 <= compare(available, group.fixed):
                    hits.append(group)
            except ValueError:
                continue  # a version the tracker mistyped; the other groups still count
        if not hits:
            return None
        return SecurityFix(
            groups=tuple(g.name for g in hits),
            advisories=tuple(dict.fromkeys(a for g in hits for a in g.advisories)),
            cves=tuple(dict.fromkeys(c for g in hits for c in g.cves)),
            severity=max((g.severity for g in hits), key=lambda s: s.rank),
        )
