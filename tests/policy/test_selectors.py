"""Segments and rings: which endpoints a policy's selectors pick."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from patchd.policy.model import Policy, SegmentMatch
from patchd.policy.selectors import EndpointFacts, fleet_bucket, ring_for, segment_matches

FACTS = EndpointFacts("machine-id:abc", "web-01.prod.example.com", "debian", "ubuntu", "22.04", "server",
                      ("web", "production"))  # fmt: skip


@pytest.mark.parametrize(
    ("match", "expected"),
    [
        ({}, True),
        ({"os_family": ["Debian"]}, True),
        ({"os_family": ["rhel"]}, False),
        ({"os_id": ["debian", "ubuntu"]}, True),
        ({"os_version": ">=20.04, <24.04"}, True),
        ({"os_version": ">=24.04"}, False),
        ({"os_version": "==22.4"}, True),
        ({"machine_type": ["laptop"]}, False),
        ({"hostname": ["WEB-*"]}, True),
        ({"hostname": ["db-*", "*.staging.*"]}, False),
        ({"tags_all": ["web", "production"]}, True),
        ({"tags_all": ["web", "eu"]}, False),
        ({"tags_any": ["db", "web"]}, True),
        ({"tags_any": ["db"]}, False),
        ({"tags_none": ["production"]}, False),
        ({"os_family": ["debian"], "tags_none": ["no-patch"]}, True),
    ],
    ids=["empty", "family-any-case", "other-family", "id-list", "version-range", "version-too-low",
         "version-numeric-parts", "machine-type", "hostname-glob-any-case", "hostname-no-glob", "tags-all",
         "tags-all-missing", "tags-any", "tags-any-none", "tags-none", "all-conditions"],
)  # fmt: skip
def test_segment_matching(match: dict[str, Any], expected: bool) -> None:
    assert segment_matches(SegmentMatch.model_validate(match), FACTS) is expected


def test_an_endpoint_without_a_version_matches_no_version_range() -> None:
    facts = replace(FACTS, os_version="")
    assert not segment_matches(SegmentMatch.model_validate({"os_version": ">=1"}), facts)


def test_fleet_bucket_is_stable_and_spread() -> None:
    buckets = [fleet_bucket(f"machine-id:{i:032x}") for i in range(2000)]
    assert all(0 <= b < 100 for b in buckets)
    assert fleet_bucket("machine-id:abc") == fleet_bucket("machine-id:abc")
    share_below_25 = sum(b < 25 for b in buckets) / len(buckets)
    assert 0.2 < share_below_25 < 0.3


def _policy(rings: list[dict[str, Any]]) -> Policy:
    return Policy.model_validate({
        "version": 1, "name": "t", "issued_at": "2026-01-01T00:00:00Z", "expires": "2027-01-01T00:00:00Z",
        "segments": [{"name": "webs", "match": {"tags_any": ["web"]}}], "rings": rings,
    })  # fmt: skip


def test_percentage_rings_are_cumulative_stages() -> None:
    policy = _policy([
        {"name": "canary", "members": {"percentage": 5}},
        {"name": "pilot", "members": {"percentage": 25}},
        {"name": "broad", "members": {"percentage": 100}},
    ])  # fmt: skip
    counts = {"canary": 0, "pilot": 0, "broad": 0}
    for i in range(2000):
        ring = ring_for(policy, replace(FACTS, endpoint_key=f"machine-id:{i:032x}", tags=()), [])
        assert ring is not None
        counts[ring.name] += 1
    assert 0.03 < counts["canary"] / 2000 < 0.07
    assert 0.16 < counts["pilot"] / 2000 < 0.24


def test_first_ring_taking_the_endpoint_wins_by_segment_or_tag() -> None:
    policy = _policy([
        {"name": "db-first", "members": {"tags": ["db"]}},
        {"name": "by-segment", "members": {"segments": ["webs"]}},
        {"name": "broad", "members": {"percentage": 100}},
    ])  # fmt: skip
    ring = ring_for(policy, FACTS, ["webs"])
    assert ring is not None
    assert ring.name == "by-segment"
    assert ring_for(_policy([{"name": "db", "members": {"tags": ["db"]}}]), FACTS, ["webs"]) is None
