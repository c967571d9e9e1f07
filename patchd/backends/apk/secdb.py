"""Alpine's security database (secdb), from copies the administrator keeps on disk.

Alpine publishes, per release and repository, the ``secfixes`` of every APKBUILD as
``main.json``/``main.yaml`` (``{"packages": [{"pkg": {"name": ORIGIN, "secfixes":
{"VERSION": ["CVE-…", …]}}}]}``). apk itself keeps no security metadata locally: the
indexes carry none and ``apk info`` shows none. So patchd classifies an apk update as
security only from secdb files the administrator mirrors and names in the agent
configuration (``apk: secdb: [paths]``); without them every update is ``other``.
An update is a security update when a fix version lies in (installed, available] for
the package's origin; the CVE ids listed for those versions are its CVEs.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from patchd.backends.apk.versions import compare, is_valid
from patchd.errors import ConfigError

MAX_SECDB_BYTES = 64 * 1024 * 1024  # Alpine's largest (community) is a few MiB
MAX_FIXES_PER_PACKAGE = 10_000

# origin -> [(fixed version, (CVE ids...))]
SecFixes = Mapping[str, Sequence[tuple[str, tuple[str, ...]]]]


@dataclass(frozen=True)
class SecurityFacts:
    """What the secdb says about one update."""

    cves: tuple[str, ...]
    fixed_in: tuple[str, ...]  # the secfix versions the update brings


def load_secdb(paths: Sequence[Path]) -> dict[str, list[tuple[str, tuple[str, ...]]]]:
    """Merge the secfixes of ``paths`` (JSON or YAML, by suffix); :class:`ConfigError` if unusable."""
    merged: dict[str, list[tuple[str, tuple[str, ...]]]] = {}
    for path in paths:
        for origin, fixes in parse_secdb(_read(path), str(path)).items():
            merged.setdefault(origin, []).extend(fixes)
    return merged


def _read(path: Path) -> bytes:
    try:
        if path.stat().st_size > MAX_SECDB_BYTES:
            raise ConfigError(f"{path}: larger than {MAX_SECDB_BYTES} bytes")
        data = path.read_bytes()
    except OSError as e:
        raise ConfigError(
            f"cannot read the apk secdb file {path}: {e.strerror}",
            hint="fix `apk: secdb:` in the agent configuration",
        ) from None
    return data


def parse_secdb(data: bytes, where: str) -> dict[str, list[tuple[str, tuple[str, ...]]]]:
    """origin → [(fixed version, CVE ids)] from one secdb document (JSON or YAML)."""
    document = _decode(data, where)
    packages = document.get("packages") if isinstance(document, dict) else None
    if not isinstance(packages, list):
        raise ConfigError(f"{where}: not an Alpine secdb (no `packages` list)")
    found: dict[str, list[tuple[str, tuple[str, ...]]]] = {}
    for item in packages:
        pkg = item.get("pkg") if isinstance(item, dict) else None
        if not isinstance(pkg, dict) or not isinstance(pkg.get("name"), str):
            raise ConfigError(f"{where}: a `packages` entry has no `pkg.name`")
        fixes = pkg.get("secfixes") or {}
        if not isinstance(fixes, dict) or len(fixes) > MAX_FIXES_PER_PACKAGE:
            raise ConfigError(f"{where}: `secfixes` of {pkg['name']} is not a mapping")
        found[pkg["name"]] = [
            (str(version), tuple(str(c) for c in (ids or []) if isinstance(c, str)))
            for version, ids in fixes.items()
        ]
    return found


def _decode(data: bytes, where: str) -> Any:
    if data.lstrip()[:1] in (b"{", b"["):
        try:
            return json.loads(data)
        except ValueError as e:
            raise ConfigError(f"{where}: not valid JSON: {e}") from None
    from patchd import safeyaml  # only for YAML copies: PyYAML is not loaded otherwise

    try:
        return safeyaml.load(data, max_bytes=MAX_SECDB_BYTES).data
    except safeyaml.YamlError as e:
        raise ConfigError(f"{where}, line {e.line}: {e.message}") from None


def security_facts(
    secfixes: SecFixes, origin: str, installed: str, available: str
) -> SecurityFacts | None:
    """The secfixes an upgrade from ``installed`` to ``available`` brings, if any.

    Versions apk could not order (and secdb's ``0`` entries, "never affected") are
    skipped rather than guessed at.
    """
    cves: list[str] = []
    fixed: list[str] = []
    if not (is_valid(installed) and is_valid(available)):
        return None
    for version, ids in secfixes.get(origin, ()):
        if version == "0" or not is_valid(version):
            continue
        if compare(installed, version) < 0 <= compare(available, version):
            fixed.append(version)
            cves.extend(c for c in ids if c not in cves)
    if not fixed:
        return None
    return SecurityFacts(tuple(cves), tuple(fixed))
