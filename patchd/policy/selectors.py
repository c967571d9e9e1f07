"""Which segments and ring an endpoint belongs to, from its inventory facts. Pure functions."""

from __future__ import annotations

import fnmatch
import hashlib
import operator
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from patchd.policy.model import Policy, Ring, SegmentMatch, parse_version_range, version_key

_COMPARE: dict[str, Callable[[Any, Any], bool]] = {
    ">=": operator.ge,
    "<=": operator.le,
    ">": operator.gt,
    "<": operator.lt,
    "==": operator.eq,
    "!=": operator.ne,
}


@dataclass(frozen=True)
class EndpointFacts:
    """What the policy may select endpoints by."""

    endpoint_key: str  # stable identity for percentage rings and splay (machine id)
    hostname: str
    os_family: str
    os_id: str
    os_version: str
    machine_type: str | None
    tags: tuple[str, ...]


def _version_in_range(version: str, spec: str) -> bool:
    if not version:
        return False
    key = version_key(version)
    try:
        return all(_COMPARE[op](key, bound) for op, bound in parse_version_range(spec))
    except TypeError:  # "12" against "bookworm"-like parts: not comparable, not a match
        return False


def segment_matches(match: SegmentMatch, facts: EndpointFacts) -> bool:
    """True when every condition given in ``match`` holds for the endpoint.

    Names compare case-insensitively; hostnames are shell globs; ``os_version`` is a
    range of dotted versions compared part by part (``>=11, <14``).
    """
    tags = set(facts.tags)
    checks = [
        match.os_family is None or facts.os_family.lower() in {f.lower() for f in match.os_family},
        match.os_id is None or facts.os_id.lower() in {i.lower() for i in match.os_id},
        match.os_version is None or _version_in_range(facts.os_version, match.os_version),
        match.machine_type is None or facts.machine_type in match.machine_type,
        match.hostname is None
        or any(fnmatch.fnmatchcase(facts.hostname.lower(), g.lower()) for g in match.hostname),
        set(match.tags_all) <= tags,
        not match.tags_any or bool(tags & set(match.tags_any)),
        not tags & set(match.tags_none),
    ]
    return all(checks)


def matching_segments(policy: Policy, facts: EndpointFacts) -> list[str]:
    """The names of every segment the endpoint belongs to, in policy order."""
    return [s.name for s in policy.segments if segment_matches(s.match, facts)]


def fleet_bucket(endpoint_key: str) -> float:
    """A stable position of the endpoint in the fleet, in [0, 100), for percentage rings."""
    digest = hashlib.sha256(b"patchd-ring\0" + endpoint_key.encode()).digest()
    return int.from_bytes(digest[:8], "big") % 10_000 / 100


def ring_for(policy: Policy, facts: EndpointFacts, segments: Sequence[str]) -> Ring | None:
    """The first ring whose members include the endpoint (rings are stages, in order)."""
    bucket = fleet_bucket(facts.endpoint_key)
    for ring in policy.rings:
        members = ring.members
        if (
            set(segments) & set(members.segments)
            or set(facts.tags) & set(members.tags)
            or (members.percentage is not None and bucket < members.percentage)
        ):
            return ring
    return None
