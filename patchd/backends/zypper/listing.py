"""``zypper --xmlout list-updates -t package -t patch``: packages and patches in one run.

A package is ``<update kind="package" name edition arch edition-old>`` with a
``<source alias>``; a patch is ``<update kind="patch" name status category severity
restart interactive pkgmanager>`` with an ``<issue-list>`` of ``<issue type="cve" id>``.
``restart="true"`` is zypper's word for a patch that suggests a reboot. The output is
untrusted: defusedxml parses it (no DTDs or entities) and counts are capped.
"""

from __future__ import annotations

from dataclasses import dataclass

from patchd.backends.rpm.advisories import AdvisoryFacts, severity_of

MAX_ENTRIES = 200_000
MAX_ISSUES_PER_PATCH = 5_000


class ZypperOutputError(Exception):
    """zypper's XML could not be read."""


@dataclass(frozen=True)
class PackageUpdate:
    name: str
    arch: str
    evr: str
    installed_evr: str
    repo: str


@dataclass(frozen=True)
class PatchInfo:
    """A patch as zypper lists it, with the repository it comes from."""

    facts: AdvisoryFacts
    repo: str
    status: str


@dataclass(frozen=True)
class ZypperUpdates:
    packages: tuple[PackageUpdate, ...]
    patches: tuple[PatchInfo, ...]
    blocked: tuple[str, ...] = ()  # updates zypper cannot install as things are
    messages: tuple[str, ...] = ()  # zypper's error and warning messages


def _flag(value: str | None) -> bool:
    return (value or "").strip().lower() == "true"


def parse_list_updates(text: str) -> ZypperUpdates:
    """Packages and patches of one ``--xmlout list-updates``; :class:`ZypperOutputError` if unreadable."""
    from xml.etree.ElementTree import Element, ParseError

    from defusedxml import DefusedXmlException
    from defusedxml.ElementTree import fromstring

    try:
        stream: Element = fromstring(text.strip() or "<stream/>")
    except (ParseError, DefusedXmlException) as e:
        raise ZypperOutputError(f"zypper's XML output is not readable: {e}") from None
    messages = tuple(
        (m.text or "").strip()
        for m in stream.iter("message")
        if m.get("type") in ("error", "warning") and (m.text or "").strip()
    )
    packages: list[PackageUpdate] = []
    patches: list[PatchInfo] = []
    blocked: list[str] = []
    for status in stream.iter("update-status"):
        for update_list in status:
            for update in update_list.iter("update"):
                if len(packages) + len(patches) + len(blocked) >= MAX_ENTRIES:
                    raise ZypperOutputError(f"zypper listed more than {MAX_ENTRIES} updates")
                if update_list.tag != "update-list":
                    blocked.append(f"{update.get('name', '?')} {update.get('edition', '')}".strip())
                elif update.get("kind") == "package":
                    packages.append(_package(update))
                elif update.get("kind") == "patch":
                    patches.append(_patch(update))
    return ZypperUpdates(tuple(packages), tuple(patches), tuple(blocked), messages)


def _source_alias(update: object) -> str:
    from xml.etree.ElementTree import Element

    assert isinstance(update, Element)
    source = update.find("source")
    return source.get("alias", "") if source is not None else ""


def _package(update: object) -> PackageUpdate:
    from xml.etree.ElementTree import Element

    assert isinstance(update, Element)
    name, evr = update.get("name", ""), update.get("edition", "")
    if not name or not evr:
        raise ZypperOutputError("a package update without a name or edition")
    return PackageUpdate(
        name=name,
        arch=update.get("arch", "noarch"),
        evr=evr,
        installed_evr=update.get("edition-old", ""),
        repo=_source_alias(update),
    )


def _patch(update: object) -> PatchInfo:
    from xml.etree.ElementTree import Element

    assert isinstance(update, Element)
    cves = [
        issue.get("id", "").strip()
        for issue in update.iter("issue")
        if issue.get("type") == "cve" and issue.get("id")
    ][:MAX_ISSUES_PER_PATCH]
    facts = AdvisoryFacts(
        id=update.get("name", ""),
        kind=update.get("category", "").strip().lower(),
        severity=severity_of(update.get("severity", "")),
        cves=tuple(dict.fromkeys(cves)),
        reboot=_flag(update.get("restart")),
        interactive=_flag(update.get("interactive")),
    )
    return PatchInfo(facts=facts, repo=_source_alias(update), status=update.get("status", ""))
