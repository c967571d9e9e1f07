"""Whether the target's OS release is past its vendor's end of life.

The dates live in ``patchd/data/eol.json``, a table reviewed by hand against each vendor's
lifecycle page (its ``notes`` say what the two end dates mean per vendor). This module
checks the table when it loads it and answers one question: given the os-release ``ID`` and
``VERSION_ID`` and a date, is this release past its vendor's security support, and past the
longest extension the vendor publishes?

How a version is matched, in order:

1. The version itself, with whitespace collapsed and case ignored, against each release's
   name and aliases (``"22.04"``, ``"15 SP5"``, ``"2012 R2"``, ``"23H2"``).
2. The version normalised by the product's scheme, named in the table:

   - ``major``: ``"9.4"`` -> ``"9"``, ``"14.5"`` -> ``"14"`` (RHEL family, Debian,
     Fedora, Amazon Linux, macOS);
   - ``major.minor``: ``"3.19.1"`` -> ``"3.19"`` (Alpine, Ubuntu, openSUSE Leap);
   - ``service-pack``: ``"15.5"`` -> ``"15 SP5"`` (SLES);
   - ``windows-build``: ``"10.0.19045"``, ``"10.0.19045.4529"``, ``"6.3.9600"`` or a bare
     ``"19045"`` -> the release listing that build. Builds are per product, so 26100 is
     Windows 11 24H2 for ``windows`` and Server 2025 for ``windows-server``. A display
     version alone matches only where it is unambiguous and listed as an alias: ``"22H2"``
     is both Windows 10 and 11, so it matches nothing.

``ID_LIKE`` is consulted only when the ``ID`` is not in the table at all, and a parent
product is used only if the version is exactly one of its releases' spellings (step 1, no
normalising): derivatives number their own releases. An unknown product or release gives
``None``: for a compliance report, unknown is better than wrong.
"""

from __future__ import annotations

import functools
import itertools
import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, fields
from datetime import date
from importlib import resources
from typing import Any

TABLE_RESOURCE = "data/eol.json"  # inside the patchd package
SCHEMA_VERSION = 1
MAX_INPUT_CHARS = 64  # longer IDs and versions are not releases; also bounds the regex work
MAX_ID_LIKE = 8  # os-release ID_LIKE entries consulted

_TOP_REQUIRED = frozenset({"schema_version", "reviewed", "sources", "version_schemes", "products"})
_ENTRY_REQUIRED = frozenset({"release", "name", "released", "security_end", "extended_end"})
_ENTRY_OPTIONAL = frozenset({"extended_kind", "estimated", "match", "note"})
_ISO_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")  # date.fromisoformat alone allows more


def _major(version: str) -> str | None:
    match = re.fullmatch(r"([0-9]+)(?:\.[0-9]+)*", version)
    return match[1] if match else None


def _major_minor(version: str) -> str | None:
    match = re.fullmatch(r"([0-9]+\.[0-9]+)(?:\.[0-9]+)*", version)
    return match[1] if match else None


def _service_pack(version: str) -> str | None:
    # "15" alone is the GA release, which the table does not list: no match is right.
    match = re.fullmatch(r"([0-9]+)\.([1-9][0-9]*)", version)
    return f"{match[1]} sp{match[2]}" if match else None


def _windows_build(version: str) -> str | None:
    match = re.fullmatch(r"(?:[0-9]{1,2}\.[0-9]{1,2}\.)?([0-9]{3,6})(?:\.[0-9]{1,6})?", version)
    return f"build:{int(match[1])}" if match else None


# Scheme name (as the table gives it) -> lookup key for a cleaned, case-folded version.
_NORMALISERS: Mapping[str, Callable[[str], str | None]] = {
    "major": _major,
    "major.minor": _major_minor,
    "service-pack": _service_pack,
    "windows-build": _windows_build,
}


def _key(spelling: str) -> str:
    return " ".join(spelling.split()).casefold()


@dataclass(frozen=True)
class Release:
    """One row of the table: a release of a product and its support dates."""

    release: str
    name: str
    released: date
    security_end: date
    extended_end: date | None
    extended_kind: str | None
    estimated: bool
    note: str | None
    builds: tuple[int, ...]
    aliases: tuple[str, ...]


@dataclass(frozen=True)
class EolTable:
    """The checked table. ``lookup_keys`` maps every accepted spelling, per product."""

    reviewed: date
    notes: tuple[str, ...]
    sources: Mapping[str, str]
    schemes: Mapping[str, str]
    products: Mapping[str, tuple[Release, ...]]
    lookup_keys: Mapping[str, Mapping[str, Release]]

    def find(self, product: str, version: str, *, normalise: bool = True) -> Release | None:
        """The release of ``product`` that ``version`` names, or ``None``.

        With ``normalise=False`` only a release's own spelling or an alias matches.
        """
        keys = self.lookup_keys.get(product)
        if keys is None:
            return None
        cleaned = _key(version)
        hit = keys.get(cleaned)
        if hit is None and normalise:
            normalised = _NORMALISERS[self.schemes[product]](cleaned)
            hit = keys.get(normalised) if normalised is not None else None
        return hit


@dataclass(frozen=True)
class EolStatus:
    """Where one OS release stands against its vendor's support dates on ``today``."""

    product: str  # the table's product, which is an ID_LIKE parent after a fallback
    release: str
    name: str
    released: date | None
    security_end: date | None
    extended_end: date | None
    extended_kind: str | None
    estimated: bool
    past_security_end: bool  # today > security_end
    past_extended_end: bool  # today > extended_end; False when there is none
    table_reviewed: date

    def as_dict(self) -> dict[str, Any]:
        """The fields as a JSON-ready dict; dates in ISO format."""
        result: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            result[f.name] = value.isoformat() if isinstance(value, date) else value
        return result


def eol_status(
    os_id: str,
    version_id: str,
    *,
    id_like: Sequence[str] = (),
    today: date,
    table: EolTable | None = None,
) -> EolStatus | None:
    """The end-of-life status of ``os_id`` ``version_id`` on ``today``; ``None`` if unknown.

    ``table`` defaults to the shipped one. Never raises for odd input: anything that is not
    a listed release gives ``None``.
    """
    if table is None:
        table = load_table()
    if len(os_id) > MAX_INPUT_CHARS or len(version_id) > MAX_INPUT_CHARS:
        return None
    product = os_id.strip().casefold()
    if product in table.products:
        candidates: Sequence[tuple[str, bool]] = ((product, True),)
    else:
        # A derivative numbers its own releases: PureOS 10 is not Debian 10. So a parent
        # matches only on a release's exact spelling ("22.04", "12"), never normalised.
        candidates = [(like.strip().casefold(), False) for like in id_like[:MAX_ID_LIKE]]
    for candidate, normalise in candidates:
        release = table.find(candidate, version_id, normalise=normalise)
        if release is not None:
            return EolStatus(
                product=candidate,
                release=release.release,
                name=release.name,
                released=release.released,
                security_end=release.security_end,
                extended_end=release.extended_end,
                extended_kind=release.extended_kind,
                estimated=release.estimated,
                past_security_end=today > release.security_end,
                past_extended_end=release.extended_end is not None and today > release.extended_end,
                table_reviewed=table.reviewed,
            )
    return None


@functools.cache
def load_table() -> EolTable:
    """The shipped table, read and checked once per process.

    Raises ``ValueError`` if the shipped file is malformed: that is a packaging bug.
    """
    resource = resources.files("patchd").joinpath(TABLE_RESOURCE)
    return parse_table(resource.read_bytes(), source=f"patchd/{TABLE_RESOURCE}")


def parse_table(text: str | bytes, *, source: str) -> EolTable:
    """Parse and check an end-of-life table.

    Raises ``ValueError`` naming ``source`` and the entry at the first fault: unknown or
    missing keys, dates that do not parse, an end before its start, releases out of date
    order, or a spelling (release, alias, build) that names two releases of one product.
    """
    try:
        raw = json.loads(text)
    except ValueError as exc:  # JSONDecodeError and undecodable bytes
        raise ValueError(f"{source}: not valid JSON: {exc}") from exc
    if not isinstance(raw, dict):
        raise ValueError(f"{source}: the top level must be an object")
    _check_keys(raw, _TOP_REQUIRED, frozenset({"notes"}), source)
    if raw["schema_version"] != SCHEMA_VERSION:
        version = raw["schema_version"]
        raise ValueError(f"{source}: schema_version {version!r} is not {SCHEMA_VERSION}")
    entries_by_product = raw["products"]
    if not isinstance(entries_by_product, dict) or not entries_by_product:
        raise ValueError(f"{source}: products must be a non-empty object")
    for section in ("sources", "version_schemes"):
        if not isinstance(raw[section], dict) or set(raw[section]) != set(entries_by_product):
            raise ValueError(f"{source}: {section} must name exactly the products")
    notes = raw.get("notes", [])
    if not isinstance(notes, list) or not all(isinstance(n, str) for n in notes):
        raise ValueError(f"{source}: notes must be a list of strings")

    products = {
        product: _parse_product(
            entries,
            raw["sources"][product],
            raw["version_schemes"][product],
            f"{source}: products.{product}",
        )
        for product, entries in entries_by_product.items()
    }
    return EolTable(
        reviewed=_parse_date(raw["reviewed"], f"{source}: reviewed"),
        notes=tuple(notes),
        sources=dict(raw["sources"]),
        schemes=dict(raw["version_schemes"]),
        products=products,
        lookup_keys={
            product: _lookup_keys(releases, f"{source}: products.{product}")
            for product, releases in products.items()
        },
    )


def _parse_product(entries: object, url: object, scheme: object, where: str) -> tuple[Release, ...]:
    if not isinstance(url, str) or not url.startswith("https://"):
        raise ValueError(f"{where}: the source must be an https URL, not {url!r}")
    if scheme not in _NORMALISERS:
        raise ValueError(f"{where}: unknown version scheme {scheme!r}")
    if not isinstance(entries, list) or not entries:
        raise ValueError(f"{where}: must be a non-empty list")
    releases = tuple(_parse_release(entry, f"{where}[{i}]") for i, entry in enumerate(entries))
    for earlier, later in itertools.pairwise(releases):
        if later.released < earlier.released:
            raise ValueError(f"{where}: {later.release!r} is listed after a later release")
    return releases


def _check_keys(
    obj: Mapping[str, Any], required: frozenset[str], optional: frozenset[str], where: str
) -> None:
    missing = sorted(required - obj.keys())
    unknown = sorted(obj.keys() - required - optional)
    if missing or unknown:
        raise ValueError(f"{where}: missing keys {missing}, unknown keys {unknown}")


def _parse_date(value: object, where: str) -> date:
    if not isinstance(value, str) or not _ISO_DATE.fullmatch(value):
        raise ValueError(f"{where}: {value!r} is not a YYYY-MM-DD date")
    try:
        return date.fromisoformat(value)
    except ValueError as exc:
        raise ValueError(f"{where}: {value!r} is not a date ({exc})") from exc


def _text(entry: Mapping[str, Any], key: str, where: str) -> str:
    value = entry[key]
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{where}: {key} must be a non-empty string")
    return value


def _parse_release(entry: object, where: str) -> Release:
    if not isinstance(entry, dict):
        raise ValueError(f"{where}: must be an object")
    where = f"{where} (release {entry.get('release')!r})"
    _check_keys(entry, _ENTRY_REQUIRED, _ENTRY_OPTIONAL, where)
    released = _parse_date(entry["released"], f"{where}: released")
    security_end = _parse_date(entry["security_end"], f"{where}: security_end")
    extended_end = None
    if entry["extended_end"] is not None:
        extended_end = _parse_date(entry["extended_end"], f"{where}: extended_end")
    if (extended_end is None) != (entry.get("extended_kind") is None):
        raise ValueError(f"{where}: extended_kind must be given exactly when extended_end is")
    if security_end < released:
        raise ValueError(f"{where}: security_end {security_end} is before released {released}")
    if extended_end is not None and extended_end < security_end:
        raise ValueError(
            f"{where}: security_end {security_end} is after extended_end {extended_end}"
        )
    estimated = entry.get("estimated", False)
    if not isinstance(estimated, bool):
        raise ValueError(f"{where}: estimated must be true or false")
    match = entry.get("match", {})
    if not isinstance(match, dict):
        raise ValueError(f"{where}: match must be an object")
    _check_keys(match, frozenset(), frozenset({"builds", "aliases"}), f"{where}: match")
    builds, aliases = match.get("builds", []), match.get("aliases", [])
    # bool is an int subclass; a stray true must not become build 1
    if not isinstance(builds, list) or not all(type(b) is int and b > 0 for b in builds):
        raise ValueError(f"{where}: match.builds must be a list of positive integers")
    if not isinstance(aliases, list) or not all(isinstance(a, str) and a.strip() for a in aliases):
        raise ValueError(f"{where}: match.aliases must be a list of non-empty strings")
    return Release(
        release=_text(entry, "release", where),
        name=_text(entry, "name", where),
        released=released,
        security_end=security_end,
        extended_end=extended_end,
        extended_kind=None if extended_end is None else _text(entry, "extended_kind", where),
        estimated=estimated,
        note=_text(entry, "note", where) if "note" in entry else None,
        builds=tuple(builds),
        aliases=tuple(aliases),
    )


def _lookup_keys(releases: Sequence[Release], where: str) -> dict[str, Release]:
    keys: dict[str, Release] = {}
    for release in releases:
        spellings = [release.release, *release.aliases, *(f"build:{b}" for b in release.builds)]
        for spelling in spellings:
            key = _key(spelling)
            if key in keys:
                earlier = keys[key].release
                raise ValueError(
                    f"{where}: {spelling!r} names both {earlier!r} and {release.release!r}"
                )
            keys[key] = release
    return keys
