"""The policy gate's acceptance path: what it keeps, what it reports, what survives a restart.

The refusals are in test_attacks.py; these are the positive paths, run against real
keys, real files and a real database, with a frozen clock.
"""

from __future__ import annotations

import hashlib
import os
import stat
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from patchd.errors import PolicyError
from patchd.policy.gate import KEPT_VERSIONS, PolicyRefused
from patchd.policy.loader import MAX_POLICY_BYTES, PolicyInvalid
from patchd.signing.dsse import (
    POLICY_PAYLOAD_TYPE,
    Signature,
    add_detached_signature,
    read_detached,
)
from patchd.timeutil import format_time
from tests.policy.simulator import (
    START,
    Endpoint,
    PolicySimulator,
    SignedPolicy,
    endpoint_with_simulator,
)

DAY = timedelta(days=1)


@pytest.fixture
def world(tmp_path: Path) -> Iterator[tuple[PolicySimulator, Endpoint]]:
    yield from endpoint_with_simulator(tmp_path / "state")


def activate(ep: Endpoint, policy: SignedPolicy, source: str = "policy.yaml") -> None:
    ep.gate.activate(policy.data, policy.signatures, source)


def kept_policy(ep: Endpoint) -> Path:
    active = ep.gate.status()
    return ep.policy_dir / f"v{active['version']}-{active['sha256'][:12]}.yaml"


def test_accepts_a_policy_signed_by_a_threshold(world: tuple[PolicySimulator, Endpoint]) -> None:
    sim, ep = world
    policy = sim.policy(1, signers=[0, 1])
    active = ep.gate.activate(policy.data, policy.signatures, "policy.yaml")
    assert active.loaded.data == policy.data
    assert active.loaded.policy.version == 1
    assert active.loaded.sha256 == hashlib.sha256(policy.data).hexdigest()
    assert active.activated_at == START
    assert active.key_ids == tuple(sorted([sim.key_id(0), sim.key_id(1)]))
    assert [(e["code"], e["version"], e["source"]) for e in ep.events("accepted")] == [
        ("accepted", 1, "policy.yaml")
    ]
    assert ep.gate.active() == active


def test_only_valid_trusted_signers_are_recorded(world: tuple[PolicySimulator, Endpoint]) -> None:
    sim, ep = world
    policy = sim.policy(1, signers=[3, 2, 0])  # key 3 is nobody's
    padding = (Signature("f" * 64, bytes(64)),)
    active = ep.gate.activate(policy.data, policy.signatures + padding, "policy.yaml")
    assert active.key_ids == tuple(sorted([sim.key_id(0), sim.key_id(2)]))
    assert ep.gate.status()["signed_by"] == sorted([sim.key_id(0), sim.key_id(2)])


def test_status_before_any_policy(world: tuple[PolicySimulator, Endpoint]) -> None:
    _, ep = world
    assert ep.gate.active() is None
    assert ep.gate.status() == {
        "name": None,
        "version": None,
        "sha256": None,
        "issued_at": None,
        "expires": None,
        "activated_at": None,
        "signed_by": [],
        "state": "none",
        "min_version": 0,
        "last_refusal": None,
    }


def test_status_of_the_policy_in_force(world: tuple[PolicySimulator, Endpoint]) -> None:
    sim, ep = world
    policy = sim.policy(7, issued=-DAY, name="web-fleet")
    sim.clock.advance(timedelta(hours=2))
    activate(ep, policy)
    assert ep.gate.status() == {
        "name": "web-fleet",
        "version": 7,
        "sha256": hashlib.sha256(policy.data).hexdigest(),
        "issued_at": "2026-11-30T09:00:00Z",
        "expires": "2026-12-30T09:00:00Z",
        "activated_at": "2026-12-01T11:00:00Z",
        "signed_by": sorted([sim.key_id(0), sim.key_id(1)]),
        "state": "active",
        "min_version": 7,
        "last_refusal": None,
    }


def test_status_records_the_last_refusal(world: tuple[PolicySimulator, Endpoint]) -> None:
    sim, ep = world
    activate(ep, sim.policy(2))
    sim.clock.advance(timedelta(minutes=5))
    for version in (1, 2):  # the second refusal is the last one
        old = sim.policy(version, description="other")
        with pytest.raises(PolicyRefused):
            ep.gate.activate(old.data, old.signatures, f"v{version}.yaml")
    status = ep.gate.status()
    assert status["state"] == "active"
    assert status["last_refusal"] == {
        "reason": "version 2 is already in force with different contents",
        "code": "fork",
        "at": "2026-12-01T09:05:00Z",
        "source": "v2.yaml",
    }


def test_the_exact_bytes_are_kept(world: tuple[PolicySimulator, Endpoint]) -> None:
    sim, ep = world
    document = sim.serialise(sim.document(1))
    # Comments, odd spacing and CRLF line ends: kept as signed, never re-serialised.
    data = b"# signed by the change board\r\n" + document.replace(b"\n", b"   \r\n") + b"# end\r\n"
    policy = sim.signed(data)
    activate(ep, policy)
    path = kept_policy(ep)
    assert path.read_bytes() == data
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(ep.policy_dir.stat().st_mode) == 0o700
    assert sorted(ep.policy_files()) == [path.name, path.name + ".sig"]


def test_the_signatures_are_kept(world: tuple[PolicySimulator, Endpoint]) -> None:
    sim, ep = world
    policy = sim.policy(1, signers=[1, 2])
    activate(ep, policy)
    sig_path = kept_policy(ep).with_suffix(".yaml.sig")
    assert stat.S_IMODE(sig_path.stat().st_mode) == 0o600
    kept = read_detached(sig_path, POLICY_PAYLOAD_TYPE)
    assert kept == policy.signatures
    root = sim.trust.current()
    assert root is not None
    assert root.verify_policy(kept_policy(ep).read_bytes(), kept) == {
        sim.key_id(1),
        sim.key_id(2),
    }


def test_activating_the_same_bytes_again_changes_nothing(
    world: tuple[PolicySimulator, Endpoint],
) -> None:
    sim, ep = world
    policy = sim.policy(1)
    first = ep.gate.activate(policy.data, policy.signatures, "policy.yaml")
    before = ep.snapshot()
    sim.clock.advance(DAY)
    again = ep.gate.activate(policy.data, policy.signatures[::-1], "policy.yaml")
    assert again == first
    assert ep.snapshot() == before
    assert len(ep.events("accepted")) == 1
    assert ep.gate.status()["last_refusal"] is None


def test_activate_file_with_signatures_from_policy_sign(
    world: tuple[PolicySimulator, Endpoint], tmp_path: Path
) -> None:
    sim, ep = world
    path = tmp_path / "policy.yaml"
    path.write_bytes(sim.serialise(sim.document(1)))
    for i in (2, 0):  # two admins sign in turn, as `patchd policy sign` does
        add_detached_signature(path, sim.keys[i], POLICY_PAYLOAD_TYPE)
    active = ep.gate.activate_file(path)
    assert active.loaded.data == path.read_bytes()
    assert active.key_ids == tuple(sorted([sim.key_id(0), sim.key_id(2)]))
    assert ep.events("accepted")[0]["source"] == str(path)


def test_a_policy_of_exactly_the_maximum_size_is_accepted(
    world: tuple[PolicySimulator, Endpoint], tmp_path: Path
) -> None:
    sim, ep = world
    document = sim.serialise(sim.document(1))
    data = document + b"#" * (MAX_POLICY_BYTES - len(document) - 1) + b"\n"
    assert len(data) == MAX_POLICY_BYTES
    active = ep.gate.activate_file(sim.signed(data).write(tmp_path / "big.yaml"))
    assert active.loaded.data == data


def test_a_policy_with_windows_and_segments_is_accepted(
    world: tuple[PolicySimulator, Endpoint],
) -> None:
    sim, ep = world
    window = {"timezone": "local", "weekly": {"days": ["sun"], "start": "02:00", "duration": "4h"}}
    policy = sim.policy(
        1,
        windows={"sunday-night": window},
        segments=[{"name": "servers", "windows": ["sunday-night"]}],
        splay="30m",
    )
    active = ep.gate.activate(policy.data, policy.signatures, "policy.yaml")
    assert list(active.loaded.schedule.windows) == ["sunday-night"]


def test_old_versions_are_pruned(world: tuple[PolicySimulator, Endpoint]) -> None:
    sim, ep = world
    for version in range(1, KEPT_VERSIONS + 4):
        activate(ep, sim.policy(version))
    kept = sorted(n for n in ep.policy_files() if n.endswith(".yaml"))
    versions = sorted(int(n[1:].split("-")[0]) for n in kept)
    assert versions == list(range(3, KEPT_VERSIONS + 4))  # the active one and 5 before it
    assert sorted(ep.policy_files()) == sorted(kept + [n + ".sig" for n in kept])


def test_pruning_keeps_the_newest_versions_when_the_clock_went_back(
    world: tuple[PolicySimulator, Endpoint],
) -> None:
    """Modification times follow the host clock; a clock set back must not prune new versions."""
    sim, ep = world
    for version in range(1, KEPT_VERSIONS + 4):
        activate(ep, sim.policy(version))
        stamp = 2_000_000_000 - version * 3600  # each file looks older than the one before
        for path in ep.policy_dir.glob(f"v{version}-*"):
            os.utime(path, (stamp, stamp))
    versions = sorted(int(n[1:].split("-")[0]) for n in ep.policy_files() if n.endswith(".yaml"))
    assert versions == list(range(3, KEPT_VERSIONS + 4))


def test_the_policy_in_force_survives_a_restart(world: tuple[PolicySimulator, Endpoint]) -> None:
    sim, ep = world
    activate(ep, sim.policy(1))
    policy = sim.policy(2)
    activate(ep, policy)
    before = (ep.gate.active(), ep.gate.status(), ep.policy_files())
    ep.restart()
    assert (ep.gate.active(), ep.gate.status(), ep.policy_files()) == before
    active = ep.gate.active()
    assert active is not None
    assert active.loaded.data == policy.data


def test_a_kept_file_changed_on_disk_is_detected(world: tuple[PolicySimulator, Endpoint]) -> None:
    sim, ep = world
    activate(ep, sim.policy(1))
    path = kept_policy(ep)
    path.write_bytes(path.read_bytes().replace(b"acme-fleet", b"evil-fleet"))
    with pytest.raises(PolicyError, match=r"was changed on disk \(sha256 mismatch\)"):
        ep.gate.active()
    assert ep.gate.status()["version"] == 1


def test_a_kept_file_replaced_by_hostile_yaml_is_not_parsed(
    world: tuple[PolicySimulator, Endpoint],
) -> None:
    """The kept bytes are checked against the recorded hash before anything parses them."""
    sim, ep = world
    activate(ep, sim.policy(1))
    kept_policy(ep).write_bytes(b"description: !!python/object/apply:os.system ['true']\n")
    with pytest.raises(PolicyError) as info:
        ep.gate.active()
    assert not isinstance(info.value, PolicyInvalid)
    assert "was changed on disk" in info.value.message


def test_a_deleted_kept_file_is_restored_by_activating_it_again(
    world: tuple[PolicySimulator, Endpoint],
) -> None:
    """The error's hint says to activate the policy again: that must work."""
    sim, ep = world
    policy = sim.policy(1)
    activate(ep, policy)
    kept_policy(ep).unlink()
    with pytest.raises(PolicyError, match="is unreadable") as info:
        ep.gate.active()
    assert info.value.hint == "activate the policy again with `patchd policy activate`"
    active = ep.gate.activate(policy.data, policy.signatures, "policy.yaml")
    assert active.loaded.data == policy.data
    assert ep.gate.active() == active
    assert ep.gate.status()["last_refusal"] is None


def test_a_new_version_replaces_a_damaged_kept_file(
    world: tuple[PolicySimulator, Endpoint],
) -> None:
    sim, ep = world
    activate(ep, sim.policy(1))
    kept_policy(ep).write_bytes(b"garbage")
    activate(ep, sim.policy(2))
    active = ep.gate.active()
    assert active is not None
    assert active.loaded.policy.version == 2


def test_an_expired_policy_stays_in_force_until_a_new_version(
    world: tuple[PolicySimulator, Endpoint],
) -> None:
    sim, ep = world
    activate(ep, sim.policy(1))  # expires after 30 days
    sim.clock.advance(30 * DAY)
    ep.restart()
    assert ep.gate.status()["state"] == "expired"
    active = ep.gate.active()
    assert active is not None
    assert active.loaded.policy.version == 1
    activate(ep, sim.policy(2))
    assert ep.gate.status()["state"] == "active"
    assert ep.gate.status()["version"] == 2


def test_policies_signed_by_rotated_keys_are_accepted(
    world: tuple[PolicySimulator, Endpoint],
) -> None:
    sim, ep = world
    activate(ep, sim.policy(1))
    new = sim.new_key()
    sim.rotate([1, 2, new], 2)
    active = ep.gate.activate(*_parts(sim.policy(2, signers=[new, 2])), "policy.yaml")
    assert active.key_ids == tuple(sorted([sim.key_id(new), sim.key_id(2)]))
    assert ep.gate.status()["min_version"] == 2


def test_the_highest_version_the_schema_allows_is_accepted(
    world: tuple[PolicySimulator, Endpoint],
) -> None:
    sim, ep = world
    activate(ep, sim.policy(2**53))
    ep.restart()
    assert ep.gate.status()["min_version"] == 2**53


def _parts(policy: SignedPolicy) -> tuple[bytes, tuple[Signature, ...]]:
    return policy.data, policy.signatures


# -- the clock floor --------------------------------------------------------------------


def test_the_clock_floor_is_raised_only_by_signed_valid_policies(
    world: tuple[PolicySimulator, Endpoint],
) -> None:
    sim, ep = world
    activate(ep, sim.policy(5))
    assert ep.gate.now() == START
    ahead = 100 * DAY
    attempts = [
        sim.policy(6, signers=[], issued=ahead),  # unsigned
        sim.policy(6, signers=[0], issued=ahead),  # below the threshold
        sim.policy(6, signers=[3, 0], issued=ahead),  # an untrusted key helps nothing
        sim.policy(6, issued=ahead, unknown_field=1),  # signed, but not a policy
        sim.policy(6, issued=ahead, name="not a name"),
    ]
    for policy in attempts:
        with pytest.raises(PolicyRefused):
            activate(ep, policy)
    assert ep.gate.now() == START
    # Signed and valid, though refused as a rollback: the admins vouch for that time.
    half_a_day = DAY / 2
    with pytest.raises(PolicyRefused, match="older than"):
        activate(ep, sim.policy(4, issued=half_a_day))
    assert ep.gate.now() == START + half_a_day
    activate(ep, sim.policy(6, issued=half_a_day / 2))  # an earlier issued_at never lowers it
    assert ep.gate.now() == START + half_a_day
    ep.restart()
    assert ep.gate.now() == START + half_a_day
    sim.clock.advance(10 * DAY)  # past the floor, the clock rules again
    assert ep.gate.now() == START + 10 * DAY


def test_a_policy_issued_far_ahead_of_the_clock_is_refused(
    world: tuple[PolicySimulator, Endpoint],
) -> None:
    # Accepting it would push the clock floor into the future and expire every policy
    # until then: a signing machine with a wrong clock must not freeze the fleet.
    sim, ep = world
    activate(ep, sim.policy(1))
    before = ep.snapshot()
    with pytest.raises(PolicyRefused) as info:
        activate(ep, sim.policy(2, issued=2 * DAY))
    assert info.value.code == "future"
    assert "ahead of this endpoint's clock" in info.value.message
    assert ep.gate.now() == START
    assert ep.snapshot().active == before.active


def test_the_clock_floor_decides_expiry(world: tuple[PolicySimulator, Endpoint]) -> None:
    sim, ep = world
    activate(ep, sim.policy(1))  # expires on day 30
    sim.clock.advance(40 * DAY)
    activate(ep, sim.policy(2))  # issued on day 40
    sim.clock.advance(-40 * DAY)  # the host clock is set back to day 0
    assert ep.gate.now() == START + 40 * DAY
    assert ep.gate.status()["state"] == "active"
    late = sim.policy(3, issued=-DAY, lifetime=20 * DAY)  # fine by the host clock: day 19
    with pytest.raises(PolicyRefused) as info:
        activate(ep, late)
    assert info.value.code == "expired"
    assert ep.events("refused")[-1]["at"] == format_time(START)  # events use the host clock
