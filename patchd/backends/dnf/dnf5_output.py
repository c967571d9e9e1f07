"""dnf 5's output: ``check-upgrade`` and ``advisory info --json`` (pure).

``check-upgrade`` prints dnf 4's three columns (``name.arch  evr  repository``) under an
``Upgrades`` header (later dnf 5; early dnf 5 printed none); with a filter
that leaves nothing it prints a sentence instead ("No security updates needed, but 1
update(s) available").

``advisory info --json`` (``updateinfo`` is its alias) gives each advisory's type,
severity, references and packages. Early dnf 5 printed an object keyed by advisory
name, later versions an array (as dnf5's manual documents); both are read. It carries no reboot suggestion:
those come from the repositories' updateinfo.xml (see :mod:`patchd.backends.rpm.updateinfo`).
The output is untrusted and bounded in size and counts.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable

from patchd.backends.dnf.listing import CheckUpdateEntry, parse_check_update
from patchd.backends.rpm.updateinfo import AdvisoryPackage, RepoAdvisory
from patchd.backends.rpm.versions import evr

MAX_JSON_BYTES = 64 * 1024 * 1024  # the advisories of pending updates only: far less
MAX_ADVISORIES = 200_000
MAX_PACKAGES_PER_ADVISORY = 50_000
MAX_REFERENCES_PER_ADVISORY = 5_000
_HEADERS = ("Upgrades",)
_SENTENCES = ("No security updates needed",)  # "..., but 1 update(s) available"
_NEVRA = re.compile(
    r"^(?P<name>.+)-(?:(?P<epoch>\d+):)?(?P<version>[^-:]+)-(?P<release>[^-:]+)\.(?P<arch>[^.]+)$"
)


class AdvisoryOutputError(ValueError):
    """``advisory info --json`` printed something patchd cannot read."""


def parse_check_upgrade(text: str) -> tuple[list[CheckUpdateEntry], list[str]]:
    """The entries of ``dnf check-upgrade`` (dnf 5), and a note for anything else."""
    kept = []
    for line in text.splitlines():
        stripped = line.strip()
        if stripped in _HEADERS or stripped.startswith(_SENTENCES):
            continue
        if stripped.lower().startswith("obsoleting packages"):
            break
        kept.append(line)
    return parse_check_update("\n".join(kept))


def parse_advisory_info(text: str, wanted: frozenset[str] | None = None) -> list[RepoAdvisory]:
    """Every advisory of ``dnf advisory info --json`` with packages of ``wanted`` names.

    Source packages (``.src``) are dropped: they are never installed. Raises
    :class:`AdvisoryOutputError` for output that is not the JSON dnf 5 prints.
    """
    if len(text) > MAX_JSON_BYTES:
        raise AdvisoryOutputError(f"larger than {MAX_JSON_BYTES} bytes")
    try:
        document = json.loads(text) if text.strip() else []
    except ValueError as e:
        raise AdvisoryOutputError(f"not JSON: {e}") from None
    if isinstance(document, dict):
        records: Iterable[object] = document.values()
    elif isinstance(document, list):
        records = document
    else:
        raise AdvisoryOutputError("neither an array nor an object of advisories")
    advisories = []
    for record in records:
        if not isinstance(record, dict):
            raise AdvisoryOutputError("an advisory that is not an object")
        advisory = _advisory(record, wanted)
        if advisory is not None:
            advisories.append(advisory)
            if len(advisories) > MAX_ADVISORIES:
                raise AdvisoryOutputError(f"more than {MAX_ADVISORIES} advisories")
    return advisories


def _advisory(record: dict[str, object], wanted: frozenset[str] | None) -> RepoAdvisory | None:
    name = _text(record.get("Name"))
    collections = record.get("collections")
    nevras = collections.get("packages", []) if isinstance(collections, dict) else []
    if not isinstance(nevras, list) or len(nevras) > MAX_PACKAGES_PER_ADVISORY:
        raise AdvisoryOutputError(f"advisory {name}: a bad or too long package list")
    packages = []
    for nevra in nevras:
        match = _NEVRA.match(_text(nevra))
        if match is None or match["arch"] == "src":
            continue
        if wanted is not None and match["name"] not in wanted:
            continue
        packages.append(
            AdvisoryPackage(
                match["name"],
                match["arch"],
                evr(match["epoch"], match["version"], match["release"]),
            )
        )
    if not name or not packages:
        return None
    return RepoAdvisory(
        id=name,
        type=_text(record.get("Type")).lower(),
        severity=_severity(_text(record.get("Severity"))),
        cves=_cves(record.get("references"), name),
        packages=tuple(packages),
    )


def _cves(references: object, name: str) -> tuple[str, ...]:
    if references is None:
        return ()
    if not isinstance(references, list) or len(references) > MAX_REFERENCES_PER_ADVISORY:
        raise AdvisoryOutputError(f"advisory {name}: bad or too many references")
    found = []
    for reference in references:
        if not isinstance(reference, dict) or _text(reference.get("Type")).lower() != "cve":
            continue
        # The id is the CVE id; where a publisher put a bare number there, the title has it.
        ref_id, title = _text(reference.get("Id")), _text(reference.get("Title"))
        chosen = next((c for c in (ref_id, title) if c.upper().startswith("CVE-")), ref_id)
        if chosen:
            found.append(chosen)
    return tuple(dict.fromkeys(found))


def _severity(text: str) -> str:
    """dnf 5 writes ``none`` where the advisory states no severity."""
    return "" if text.lower() == "none" else text


def _text(value: object) -> str:
    return value.strip() if isinstance(value, str) else ""
