"""The policy gate against TUF's attack catalogue, adapted to signed policies.

Each attack sets up an endpoint (trust root version 1: keys 0, 1 and 2, threshold 2; key
3 is nobody's), then offers one policy. Every refusal must give the exact code and
reason, record it as the last refusal (flagging forks), and leave the trusted state
alone: the policy in force, the kept files under STATE/policy/ byte for byte, the
recorded version protections and the trust root.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pytest

import patchd.policy.gate as gate_module
from patchd.atomicfile import atomic_write_bytes
from patchd.errors import ExitCode, TrustError
from patchd.policy.gate import PolicyRefused
from patchd.policy.loader import MAX_POLICY_BYTES, OUT_OF_RANGE
from patchd.signing.dsse import (
    POLICY_PAYLOAD_TYPE,
    TRUST_ROOT_PAYLOAD_TYPE,
    Envelope,
    Signature,
    canonical_json,
    pae,
)
from patchd.signing.keys import PublicKey
from tests.conftest import run_patchd
from tests.policy.simulator import (
    DROP,
    Endpoint,
    FrozenClock,
    PolicySimulator,
    SignedPolicy,
    endpoint_with_simulator,
    json_sig,
)

SOURCE = "attack.yaml"
HOSTILE_SECONDS = 5.0  # wall-clock bound on refusing any hostile document
BIG = MAX_POLICY_BYTES + 1
DAY = timedelta(days=1)

Attempt = Callable[[], object]


@pytest.fixture
def world(tmp_path: Path) -> Iterator[tuple[PolicySimulator, Endpoint]]:
    yield from endpoint_with_simulator(tmp_path / "state")


@pytest.fixture
def bare(tmp_path: Path) -> Iterator[tuple[PolicySimulator, Endpoint]]:
    """An endpoint on which no trust root was ever installed."""
    yield from endpoint_with_simulator(tmp_path / "state", root=False)


def offer(endpoint: Endpoint, data: bytes, signatures: tuple[Signature, ...]) -> Attempt:
    # Looked up when called: an attack that restarts the endpoint gets the new gate.
    return lambda: endpoint.gate.activate(data, signatures, SOURCE)


def offer_signed(endpoint: Endpoint, policy: SignedPolicy) -> Attempt:
    return offer(endpoint, policy.data, policy.signatures)


def in_force(sim: PolicySimulator, endpoint: Endpoint, version: int = 1) -> SignedPolicy:
    policy = sim.policy(version)
    endpoint.gate.activate(policy.data, policy.signatures, f"v{version}.yaml")
    return policy


# -- arbitrary installation --------------------------------------------------------------


def unsigned(sim: PolicySimulator, ep: Endpoint) -> Attempt:
    in_force(sim, ep)
    return offer(ep, sim.policy(2).data, ())


def signed_by_untrusted_key(sim: PolicySimulator, ep: Endpoint) -> Attempt:
    in_force(sim, ep)
    return offer_signed(ep, sim.policy(2, signers=[3]))


def signed_by_two_untrusted_keys(sim: PolicySimulator, ep: Endpoint) -> Attempt:
    in_force(sim, ep)
    return offer_signed(ep, sim.policy(2, signers=[3, sim.new_key()]))


def untrusted_key_claims_trusted_ids(sim: PolicySimulator, ep: Endpoint) -> Attempt:
    in_force(sim, ep)
    data = sim.policy(2).data
    (forged,) = sim.sign(data, [3])
    return offer(
        ep, data, (Signature(sim.key_id(0), forged.sig), Signature(sim.key_id(1), forged.sig))
    )


def trusted_plus_untrusted(sim: PolicySimulator, ep: Endpoint) -> Attempt:
    in_force(sim, ep)
    return offer_signed(ep, sim.policy(2, signers=[0, 3]))


def mix_and_match(sim: PolicySimulator, ep: Endpoint) -> Attempt:
    """A valid signature file of one policy with the bytes of another."""
    in_force(sim, ep)
    genuine = sim.policy(2, description="what the admins signed")
    other = sim.policy(2, description="what the attacker wants")
    return offer(ep, other.data, genuine.signatures)


def signed_bytes_with_more_appended(sim: PolicySimulator, ep: Endpoint) -> Attempt:
    in_force(sim, ep)
    genuine = sim.policy(2)
    return offer(ep, genuine.data + b"reboot: {allowed: false}\n", genuine.signatures)


# -- threshold tricks -------------------------------------------------------------------


def one_of_two(sim: PolicySimulator, ep: Endpoint) -> Attempt:
    in_force(sim, ep)
    return offer_signed(ep, sim.policy(2, signers=[0]))


def same_signature_twice(sim: PolicySimulator, ep: Endpoint) -> Attempt:
    in_force(sim, ep)
    policy = sim.policy(2, signers=[0])
    return offer(ep, policy.data, policy.signatures * 2)


def one_key_under_two_key_ids(sim: PolicySimulator, ep: Endpoint) -> Attempt:
    in_force(sim, ep)
    policy = sim.policy(2, signers=[0])
    (signature,) = policy.signatures
    return offer(ep, policy.data, (signature, Signature(sim.key_id(1), signature.sig)))


def signature_relabelled_as_other_trusted_key(sim: PolicySimulator, ep: Endpoint) -> Attempt:
    in_force(sim, ep)
    policy = sim.policy(2, signers=[0])
    return offer(ep, policy.data, (Signature(sim.key_id(1), policy.signatures[0].sig),))


def unknown_key_ids_padding(sim: PolicySimulator, ep: Endpoint) -> Attempt:
    in_force(sim, ep)
    policy = sim.policy(2, signers=[0])
    padding = tuple(Signature(f"{i:064x}", os.urandom(64)) for i in range(100))
    return offer(ep, policy.data, policy.signatures + padding)


def trust_root_signatures(sim: PolicySimulator, ep: Endpoint) -> Attempt:
    """Valid signatures by trusted keys, but as trust-root payloads (domain separation)."""
    in_force(sim, ep)
    data = sim.policy(2).data
    return offer(ep, data, sim.sign(data, [0, 1], TRUST_ROOT_PAYLOAD_TYPE))


def one_policy_one_trust_root_signature(sim: PolicySimulator, ep: Endpoint) -> Attempt:
    in_force(sim, ep)
    data = sim.policy(2).data
    return offer(ep, data, sim.sign(data, [0]) + sim.sign(data, [1], TRUST_ROOT_PAYLOAD_TYPE))


def signatures_without_pae(sim: PolicySimulator, ep: Endpoint) -> Attempt:
    """Ed25519 signatures over the bare bytes, not over DSSE's typed encoding."""
    in_force(sim, ep)
    data = sim.policy(2).data
    raw = tuple(Signature(sim.key_id(i), sim.keys[i].sign(data)) for i in (0, 1))
    return offer(ep, data, raw)


def truncated_signature(sim: PolicySimulator, ep: Endpoint) -> Attempt:
    in_force(sim, ep)
    policy = sim.policy(2)
    first, second = policy.signatures
    return offer(ep, policy.data, (first, Signature(second.keyid, second.sig[:63])))


# -- rollback ---------------------------------------------------------------------------


def lower_version(sim: PolicySimulator, ep: Endpoint) -> Attempt:
    in_force(sim, ep, 3)
    return offer_signed(ep, sim.policy(2))


def lower_version_after_restart(sim: PolicySimulator, ep: Endpoint) -> Attempt:
    in_force(sim, ep, 3)
    ep.restart()
    return offer_signed(ep, sim.policy(2))


def earlier_policy_replayed(sim: PolicySimulator, ep: Endpoint) -> Attempt:
    first = in_force(sim, ep, 1)
    in_force(sim, ep, 3)
    return offer_signed(ep, first)


def lower_version_after_active_expired(sim: PolicySimulator, ep: Endpoint) -> Attempt:
    in_force(sim, ep, 3)
    sim.clock.advance(40 * DAY)  # version 3 expired; version 2 is fresh
    ep.restart()
    assert ep.gate.status()["state"] == "expired"
    return offer_signed(ep, sim.policy(2))


def lower_version_signed_by_rotated_keys(sim: PolicySimulator, ep: Endpoint) -> Attempt:
    in_force(sim, ep, 3)
    sim.rotate([1, 2, sim.new_key()], 2)
    return offer_signed(ep, sim.policy(2, signers=[1, 4]))


# -- fork -------------------------------------------------------------------------------


def same_version_other_bytes(sim: PolicySimulator, ep: Endpoint) -> Attempt:
    in_force(sim, ep, 1)
    return offer_signed(ep, sim.policy(1, description="a second version 1"))


def same_version_other_bytes_after_restart(sim: PolicySimulator, ep: Endpoint) -> Attempt:
    in_force(sim, ep, 1)
    ep.restart()
    return offer_signed(ep, sim.policy(1, description="a second version 1"))


def same_version_reformatted(sim: PolicySimulator, ep: Endpoint) -> Attempt:
    """The same document, other bytes: still a fork (bytes are what is signed)."""
    policy = in_force(sim, ep, 1)
    return offer_signed(ep, sim.signed(policy.data.replace(b": ", b":  ")))


# -- freeze -----------------------------------------------------------------------------


def expired(sim: PolicySimulator, ep: Endpoint) -> Attempt:
    in_force(sim, ep)
    return offer_signed(ep, sim.policy(2, issued=-40 * DAY))


def expiring_this_instant(sim: PolicySimulator, ep: Endpoint) -> Attempt:
    in_force(sim, ep)
    return offer_signed(ep, sim.policy(2, issued=-30 * DAY))


def clock_set_back(sim: PolicySimulator, ep: Endpoint) -> Attempt:
    """A withheld, never seen version 2 that expired; the host clock is set back to revive it.

    The endpoint saw a policy issued on day 35 (refused: expired), so its clock never
    reads earlier than that again, and version 2 (expired on day 31) stays expired.
    """
    in_force(sim, ep, 1)  # issued day 0, expires day 30
    withheld = sim.policy(2, issued=DAY)  # expires day 31
    sim.clock.advance(40 * DAY)
    seen = sim.policy(3, issued=-5 * DAY, lifetime=DAY)  # issued day 35, expired day 36
    with pytest.raises(PolicyRefused, match="version 3 expired"):
        ep.gate.activate(seen.data, seen.signatures, "v3.yaml")
    sim.clock.advance(-35 * DAY)  # the host clock now reads day 5
    ep.restart()
    return offer_signed(ep, withheld)


# -- fast-forward -----------------------------------------------------------------------


def huge_version_below_threshold(sim: PolicySimulator, ep: Endpoint) -> Attempt:
    in_force(sim, ep)
    return offer_signed(ep, sim.policy(2**53, signers=[0]))


def huge_version_unsigned(sim: PolicySimulator, ep: Endpoint) -> Attempt:
    in_force(sim, ep)
    return offer(ep, sim.policy(2**53).data, ())


def version_above_schema_bound(sim: PolicySimulator, ep: Endpoint) -> Attempt:
    in_force(sim, ep)
    return offer_signed(ep, sim.policy(2**53 + 1))


def version_beyond_sqlite_integers(sim: PolicySimulator, ep: Endpoint) -> Attempt:
    in_force(sim, ep)
    return offer_signed(ep, sim.policy(2**64))


def version_zero(sim: PolicySimulator, ep: Endpoint) -> Attempt:
    return offer_signed(ep, sim.policy(0))


# -- key rotation -----------------------------------------------------------------------


def removed_key_and_a_remaining_key(sim: PolicySimulator, ep: Endpoint) -> Attempt:
    in_force(sim, ep)
    sim.rotate([1, 2, sim.new_key()], 2)  # key 0 is removed (lost, or its admin left)
    return offer_signed(ep, sim.policy(2, signers=[0, 1]))


def removed_keys_only(sim: PolicySimulator, ep: Endpoint) -> Attempt:
    in_force(sim, ep)
    sim.rotate([2, sim.new_key(), sim.new_key()], 2)  # keys 0 and 1 are removed
    return offer_signed(ep, sim.policy(2, signers=[0, 1]))


def threshold_raised_by_rotation(sim: PolicySimulator, ep: Endpoint) -> Attempt:
    in_force(sim, ep)
    sim.rotate([0, 1, 2], 3)
    return offer_signed(ep, sim.policy(2, signers=[0, 1]))


# -- hostile content, properly signed ---------------------------------------------------

BASE = b"version: 2\nname: acme-fleet\nissued_at: 2026-12-01T09:00:00Z\nexpires: 2026-12-31T09:00:00Z\n"
LAUGHS = b"".join(
    b"l%d: &l%d [%s]\n" % (i, i, b",".join([b"*l%d" % (i - 1) if i else b"lol"] * 10))
    for i in range(9)
)


def hostile(data: bytes) -> Callable[[PolicySimulator, Endpoint], Attempt]:
    def attack(sim: PolicySimulator, ep: Endpoint) -> Attempt:
        in_force(sim, ep)
        return offer_signed(ep, sim.signed(data))

    return attack


def hostile_document(**overrides: object) -> Callable[[PolicySimulator, Endpoint], Attempt]:
    def attack(sim: PolicySimulator, ep: Endpoint) -> Attempt:
        in_force(sim, ep)
        return offer_signed(ep, sim.policy(**{"version": 2, **overrides}))  # type: ignore[arg-type]

    return attack


# -- too large, no trust root -----------------------------------------------------------


def too_large_unsigned(sim: PolicySimulator, ep: Endpoint) -> Attempt:
    in_force(sim, ep)
    return offer(ep, b"#" * BIG, ())


def too_large_signed(sim: PolicySimulator, ep: Endpoint) -> Attempt:
    in_force(sim, ep)
    data = BASE + b"#" * (BIG - len(BASE))
    return offer_signed(ep, sim.signed(data))


# -- through files (activate_file) ------------------------------------------------------


def via_file(
    policy_bytes: bytes | None, sig_bytes: bytes | None
) -> Callable[[PolicySimulator, Endpoint], Attempt]:
    """``policy_bytes`` (None: no file) and its .sig (None: none), offered as files."""

    def attack(sim: PolicySimulator, ep: Endpoint) -> Attempt:
        in_force(sim, ep)
        incoming = ep.state_dir.parent / "incoming"
        incoming.mkdir()
        path = incoming / SOURCE
        if policy_bytes is not None:
            path.write_bytes(policy_bytes)
        if sig_bytes is not None:
            path.with_name(SOURCE + ".sig").write_bytes(sig_bytes)
        return lambda: ep.gate.activate_file(path)

    return attack


def file_is_a_directory(sim: PolicySimulator, ep: Endpoint) -> Attempt:
    in_force(sim, ep)
    path = ep.state_dir.parent / SOURCE
    path.mkdir()
    return lambda: ep.gate.activate_file(path)


def file_signed_for_another_policy(sim: PolicySimulator, ep: Endpoint) -> Attempt:
    in_force(sim, ep)
    genuine = sim.policy(2, description="signed")
    path = sim.policy(2, description="swapped").write(ep.state_dir.parent / SOURCE)
    path.with_name(SOURCE + ".sig").write_bytes(genuine.sig_document())
    return lambda: ep.gate.activate_file(path)


def file_with_trust_root_sig(sim: PolicySimulator, ep: Endpoint) -> Attempt:
    in_force(sim, ep)
    policy = sim.policy(2)
    path = policy.write(ep.state_dir.parent / SOURCE)
    entries = [s.as_dict() for s in sim.sign(policy.data, [0, 1], TRUST_ROOT_PAYLOAD_TYPE)]
    path.with_name(SOURCE + ".sig").write_bytes(json_sig(entries, TRUST_ROOT_PAYLOAD_TYPE))
    return lambda: ep.gate.activate_file(path)


def file_sig_not_canonical_base64(sim: PolicySimulator, ep: Endpoint) -> Attempt:
    in_force(sim, ep)
    policy = sim.policy(2)
    path = policy.write(ep.state_dir.parent / SOURCE)
    entries = [s.as_dict() for s in policy.signatures]
    entries[0]["sig"] = entries[0]["sig"].replace("=", "") + "\n"
    path.with_name(SOURCE + ".sig").write_bytes(json_sig(entries, POLICY_PAYLOAD_TYPE))
    return lambda: ep.gate.activate_file(path)


def file_sig_with_unknown_field(sim: PolicySimulator, ep: Endpoint) -> Attempt:
    in_force(sim, ep)
    policy = sim.policy(2)
    path = policy.write(ep.state_dir.parent / SOURCE)
    entries = [{**s.as_dict(), "threshold": "0"} for s in policy.signatures]
    path.with_name(SOURCE + ".sig").write_bytes(json_sig(entries, POLICY_PAYLOAD_TYPE))
    return lambda: ep.gate.activate_file(path)


@dataclass(frozen=True)
class Attack:
    id: str
    prepare: Callable[[PolicySimulator, Endpoint], Attempt]
    code: str
    reason: str  # a fragment of the recorded reason
    flagged: bool = False


def sig_refused(n: int, of: int = 2) -> str:
    return f"{SOURCE}: {n} of {of} required signatures from trusted keys"


ATTACKS = [
    # arbitrary installation
    Attack("unsigned", unsigned, "signatures", sig_refused(0)),
    Attack("signed-by-untrusted-key", signed_by_untrusted_key, "signatures", sig_refused(0)),
    Attack(
        "signed-by-two-untrusted-keys", signed_by_two_untrusted_keys, "signatures", sig_refused(0)
    ),
    Attack(
        "untrusted-key-claims-trusted-ids",
        untrusted_key_claims_trusted_ids,
        "signatures",
        sig_refused(0),
    ),
    Attack("trusted-plus-untrusted-key", trusted_plus_untrusted, "signatures", sig_refused(1)),
    Attack("mix-and-match-signatures", mix_and_match, "signatures", sig_refused(0)),
    Attack(
        "signed-bytes-with-more-appended",
        signed_bytes_with_more_appended,
        "signatures",
        sig_refused(0),
    ),
    # threshold tricks
    Attack("one-of-two", one_of_two, "signatures", sig_refused(1)),
    Attack("same-signature-twice", same_signature_twice, "signatures", sig_refused(1)),
    Attack("one-key-under-two-key-ids", one_key_under_two_key_ids, "signatures", sig_refused(1)),
    Attack(
        "signature-relabelled-as-other-trusted-key",
        signature_relabelled_as_other_trusted_key,
        "signatures",
        sig_refused(0),
    ),
    Attack("unknown-key-ids-padding", unknown_key_ids_padding, "signatures", sig_refused(1)),
    Attack("trust-root-payload-type", trust_root_signatures, "signatures", sig_refused(0)),
    Attack(
        "one-policy-one-trust-root-signature",
        one_policy_one_trust_root_signature,
        "signatures",
        sig_refused(1),
    ),
    Attack("signatures-without-dsse-pae", signatures_without_pae, "signatures", sig_refused(0)),
    Attack("truncated-signature", truncated_signature, "signatures", sig_refused(1)),
    # rollback
    Attack(
        "lower-version",
        lower_version,
        "rollback",
        "version 2 is older than version 3 already accepted",
    ),
    Attack(
        "lower-version-after-restart",
        lower_version_after_restart,
        "rollback",
        "version 2 is older than version 3 already accepted",
    ),
    Attack(
        "earlier-policy-replayed",
        earlier_policy_replayed,
        "rollback",
        "version 1 is older than version 3 already accepted",
    ),
    Attack(
        "lower-version-after-active-expired",
        lower_version_after_active_expired,
        "rollback",
        "version 2 is older than version 3 already accepted",
    ),
    Attack(
        "lower-version-signed-by-rotated-keys",
        lower_version_signed_by_rotated_keys,
        "rollback",
        "version 2 is older than version 3 already accepted",
    ),
    # fork
    Attack(
        "same-version-other-bytes",
        same_version_other_bytes,
        "fork",
        "version 1 is already in force with different contents",
        flagged=True,
    ),
    Attack(
        "same-version-other-bytes-after-restart",
        same_version_other_bytes_after_restart,
        "fork",
        "version 1 is already in force with different contents",
        flagged=True,
    ),
    Attack(
        "same-version-reformatted",
        same_version_reformatted,
        "fork",
        "version 1 is already in force with different contents",
        flagged=True,
    ),
    # freeze
    Attack("expired", expired, "expired", "version 2 expired at 2026-11-21T09:00:00Z"),
    Attack(
        "expiring-this-instant",
        expiring_this_instant,
        "expired",
        "version 2 expired at 2026-12-01T09:00:00Z",
    ),
    Attack(
        "clock-set-back-cannot-revive-expired",
        clock_set_back,
        "expired",
        "version 2 expired at 2027-01-01T09:00:00Z",
    ),
    # fast-forward
    Attack(
        "huge-version-below-threshold",
        huge_version_below_threshold,
        "signatures",
        sig_refused(1),
    ),
    Attack("huge-version-unsigned", huge_version_unsigned, "signatures", sig_refused(0)),
    Attack(
        "version-above-schema-bound",
        version_above_schema_bound,
        "invalid",
        "version: Input should be less than or equal to 9007199254740992",
    ),
    Attack(
        "version-beyond-sqlite-integers",
        version_beyond_sqlite_integers,
        "invalid",
        "version: Input should be less than or equal to 9007199254740992",
    ),
    Attack(
        "version-zero",
        version_zero,
        "invalid",
        "version: Input should be greater than or equal to 1",
    ),
    # key rotation
    Attack(
        "removed-key-and-a-remaining-key",
        removed_key_and_a_remaining_key,
        "signatures",
        sig_refused(1),
    ),
    Attack("removed-keys-only", removed_keys_only, "signatures", sig_refused(0)),
    Attack(
        "threshold-raised-by-rotation",
        threshold_raised_by_rotation,
        "signatures",
        sig_refused(2, of=3),
    ),
    # hostile content, properly signed
    Attack(
        "yaml-python-object-tag",
        hostile(BASE + b"description: !!python/object/apply:os.system ['touch /tmp/pwned']\n"),
        "invalid",
        "attack.yaml:5:14: description: tag tag:yaml.org,2002:python/object/apply:os.system is not allowed",
    ),
    Attack(
        "yaml-python-name-tag-as-key",
        hostile(BASE + b"? !!python/name:os.system\n: 1\n"),
        "invalid",
        "tag tag:yaml.org,2002:python/name:os.system is not allowed",
    ),
    Attack(
        "yaml-local-tag",
        hostile(BASE + b"description: !include /etc/shadow\n"),
        "invalid",
        "description: tag !include is not allowed",
    ),
    Attack(
        "yaml-binary-tag",
        hostile(BASE + b"description: !!binary aGVsbG8=\n"),
        "invalid",
        "tag tag:yaml.org,2002:binary is not allowed",
    ),
    Attack(
        "yaml-set-tag",
        hostile(BASE + b"rules: !!set {a, b}\n"),
        "invalid",
        "rules: tag tag:yaml.org,2002:set is not allowed",
    ),
    Attack(
        "yaml-tag-with-escaped-newline",
        hostile(BASE + b"description: !x%0Aattack.yaml:1:1:%20all%20fine x\n"),
        "invalid",
        "description: tag !x\\nattack.yaml:1:1: all fine is not allowed",
    ),
    Attack(
        "billion-laughs",
        hostile(BASE + b"description: x\n" + LAUGHS),
        "invalid",
        "document expands to more than 100000 values",
    ),
    Attack(
        "billion-laughs-in-a-field",
        hostile(
            BASE + b"windows:\n" + b"".join(b"  " + line + b"\n" for line in LAUGHS.splitlines())
        ),
        "invalid",
        "windows.l",
    ),
    Attack(
        "merge-key",
        hostile(BASE + b"x: &x {allowed: false}\nreboot:\n  <<: *x\n"),
        "invalid",
        "reboot: merge keys (<<) are not allowed",
    ),
    Attack(
        "duplicate-top-level-key",
        hostile(BASE + b"version: 3\n"),
        "invalid",
        "attack.yaml:5:1: version: duplicate key 'version'",
    ),
    Attack(
        "duplicate-nested-key",
        hostile(BASE + b"reboot: {allowed: true, allowed: false}\n"),
        "invalid",
        "reboot.allowed: duplicate key 'allowed'",
    ),
    Attack(
        "duplicate-key-quoted-and-plain",
        hostile(BASE + b'"expires": 2027-12-31T09:00:00Z\n'),
        "invalid",
        "expires: duplicate key 'expires'",
    ),
    Attack(
        "duplicate-key-spelt-apart",
        hostile(BASE + b"windows: {1: a, 0x1: b}\n"),
        "invalid",
        "duplicate key 1",
    ),
    Attack(
        "not-utf-8",
        hostile(BASE + b"description: caf\xe9\n"),
        "invalid",
        f"attack.yaml:0:0: (document): not UTF-8 (byte {len(BASE) + 16})",
    ),
    Attack(
        "utf-16",
        hostile(BASE.decode().encode("utf-16")),
        "invalid",
        "not UTF-8 (byte 0)",
    ),
    Attack(
        "nul-byte",
        hostile(BASE + b"description: a\x00b\n"),
        "invalid",
        "attack.yaml:5:15: (document): character #x0000 is not allowed",
    ),
    Attack(
        "nested-10k-flow-sequences",
        hostile(BASE + b"description: " + b"[" * 10_000 + b"]" * 10_000 + b"\n"),
        "invalid",
        "nested deeper than 32 levels",
    ),
    Attack(
        "nested-10k-flow-mappings",
        hostile(BASE + b"description: " + b"{a: " * 10_000 + b"x" + b"}" * 10_000 + b"\n"),
        "invalid",
        "nested deeper than 32 levels",
    ),
    Attack(
        "nested-10k-block-sequences",
        hostile(BASE + b"description:\n  " + b"- " * 10_000 + b"x\n"),
        "invalid",
        "nested deeper than 32 levels",
    ),
    Attack(
        "second-document",
        hostile(BASE + b"---\n" + BASE),
        "invalid",
        "attack.yaml:5:1: (document): but found another document",
    ),
    Attack(
        "document-is-a-list",
        hostile(b"- version: 2\n"),
        "invalid",
        "attack.yaml:1:1: (document): a policy is a mapping of fields",
    ),
    Attack(
        "empty-document",
        hostile(b""),
        "invalid",
        "attack.yaml:1:1: (document): a policy is a mapping of fields",
    ),
    Attack(
        "huge-integer",
        hostile(BASE.replace(b"version: 2", b"version: " + b"9" * 5000)),
        "invalid",
        "attack.yaml:1:10: (document): not a valid int",
    ),
    Attack(
        "version-as-text",
        hostile_document(version="3"),
        "invalid",
        "version: Input should be a valid integer",
    ),
    Attack(
        "version-as-boolean",
        hostile_document(version=True),
        "invalid",
        "version: Input should be a valid integer",
    ),
    Attack(
        "version-as-float",
        hostile_document(version=3.0),
        "invalid",
        "version: Input should be a valid integer",
    ),
    Attack(
        "name-as-list",
        hostile_document(name=["a", "b"]),
        "invalid",
        "name: Input should be a valid string",
    ),
    Attack(
        "issued-at-as-number",
        hostile_document(issued_at=1764579600),
        "invalid",
        "issued_at: must be an ISO 8601 time",
    ),
    Attack(
        "expires-without-zone",
        hostile_document(expires="2027-01-01T00:00:00"),
        "invalid",
        "expires: needs a time zone",
    ),
    Attack(
        "expires-missing",
        hostile_document(expires=DROP),
        "invalid",
        "expires: Field required",
    ),
    Attack(
        "expires-before-issued",
        hostile_document(lifetime=-DAY),
        "invalid",
        "expires: must be after issued_at",
    ),
    Attack(
        "time-out-of-range-after-offset",
        hostile_document(issued_at="0001-01-01T00:00:00+01:00"),
        "invalid",
        "issued_at: is outside the years 1 to 9999 in UTC",
    ),
    Attack(
        "blackout-out-of-range-after-offset",
        hostile_document(
            blackouts=[
                {
                    "name": "end-of-time",
                    "start": "9999-12-31T22:00",
                    "end": "9999-12-31T23:00",
                    "timezone": "America/New_York",
                }
            ]
        ),
        "invalid",
        OUT_OF_RANGE,
    ),
    Attack(
        "unknown-field",
        hostile_document(trust_everyone=True),
        "invalid",
        "trust_everyone: Extra inputs are not permitted",
    ),
    Attack(
        "key-forging-a-line",
        hostile_document(**{"x\nattack.yaml:1:1: version: all fine": 1}),
        "invalid",
        "x\\nattack.yaml:1:1: version: all fine: Extra inputs are not permitted",
    ),
    Attack(
        "window-with-bad-zone",
        hostile_document(
            windows={
                "w": {
                    "timezone": "../../../etc/passwd",
                    "weekly": {"days": ["mon"], "start": "01:00", "duration": "1h"},
                }
            }
        ),
        "invalid",
        "windows.w.timezone: unknown time zone '../../../etc/passwd'",
    ),
    # too large, before any signature work
    Attack(
        "too-large-unsigned",
        too_large_unsigned,
        "too-large",
        f"{SOURCE} is larger than 1048576 bytes",
    ),
    Attack(
        "too-large-signed", too_large_signed, "too-large", f"{SOURCE} is larger than 1048576 bytes"
    ),
    # through files
    Attack(
        "file-missing",
        via_file(None, None),
        "unreadable",
        f"{SOURCE}: cannot read: No such file or directory",
    ),
    Attack(
        "file-is-a-directory",
        file_is_a_directory,
        "unreadable",
        f"{SOURCE} is not a regular file",
    ),
    Attack(
        "file-too-large-without-sig",
        via_file(b"#" * BIG, None),
        "too-large",
        f"{SOURCE} is larger than 1048576 bytes",
    ),
    Attack(
        "sig-missing", via_file(BASE, None), "signatures", f"{SOURCE}.sig: no such signature file"
    ),
    Attack("sig-empty", via_file(BASE, b""), "signatures", f"{SOURCE}.sig: not valid JSON"),
    Attack(
        "sig-garbled",
        via_file(BASE, b"\x89PNG\r\n\x1a\n"),
        "signatures",
        f"{SOURCE}.sig: not UTF-8",
    ),
    Attack(
        "sig-not-an-object",
        via_file(BASE, b"[]"),
        "signatures",
        f"{SOURCE}.sig: must be a JSON object, not list",
    ),
    Attack(
        "sig-duplicate-field",
        via_file(BASE, b'{"payloadType": "x", "payloadType": "y", "signatures": []}'),
        "signatures",
        "duplicate JSON key 'payloadType'",
    ),
    Attack(
        "sig-too-large",
        via_file(BASE, b" " * BIG),
        "signatures",
        "larger than 1048576 bytes, too large for a signature",
    ),
    Attack("sig-of-another-policy", file_signed_for_another_policy, "signatures", sig_refused(0)),
    Attack(
        "sig-for-trust-root-payload-type",
        file_with_trust_root_sig,
        "signatures",
        "signatures are for 'application/vnd.patchd.trust-root+json', not 'application/vnd.patchd.policy+yaml'",
    ),
    Attack(
        "sig-not-canonical-base64",
        file_sig_not_canonical_base64,
        "signatures",
        "signatures[0].sig: not valid base64",
    ),
    Attack(
        "sig-with-unknown-field",
        file_sig_with_unknown_field,
        "signatures",
        "signatures[0]: fields unknown ['threshold']",
    ),
]


def check_refused(
    ep: Endpoint, attempt: Attempt, code: str, reason: str, *, flagged: bool = False
) -> PolicyRefused:
    """``attempt`` is refused with ``code`` and ``reason``, recorded, and changes nothing."""
    before = ep.snapshot()
    refused_before, flagged_before = len(ep.events("refused")), len(ep.events("flagged"))
    started = time.monotonic()
    with pytest.raises(PolicyRefused) as info:
        attempt()
    elapsed = time.monotonic() - started
    error = info.value
    assert (error.code, error.exit_code) == (code, ExitCode.CONFIG)
    assert reason in error.message
    assert error.message.startswith("policy refused: ")
    assert len(str(error).splitlines()) == 1, "one line, whatever the document holds"
    assert elapsed < HOSTILE_SECONDS
    assert ep.snapshot() == before
    refusal = ep.gate.status()["last_refusal"]
    assert refusal is not None
    assert refusal["code"] == code
    assert refusal["source"].endswith(SOURCE)
    assert reason in refusal["reason"]
    assert len(ep.events("refused")) == refused_before + 1
    flags = ep.events("flagged")
    assert len(flags) == flagged_before + (1 if flagged else 0)
    if flagged:
        assert flags[-1]["code"] == code
    return error


@pytest.mark.parametrize("attack", ATTACKS, ids=[a.id for a in ATTACKS])
def test_attack_is_refused(world: tuple[PolicySimulator, Endpoint], attack: Attack) -> None:
    sim, ep = world
    attempt = attack.prepare(sim, ep)
    check_refused(ep, attempt, attack.code, attack.reason, flagged=attack.flagged)


def test_no_trust_root(bare: tuple[PolicySimulator, Endpoint]) -> None:
    sim, ep = bare
    error = check_refused(
        ep,
        offer_signed(ep, sim.policy(1)),
        "no-trust-root",
        "no trust root is installed on this endpoint",
    )
    assert error.hint == "install one with `patchd policy activate FILE --trust ROOT`"
    assert ep.snapshot().active is None
    assert not (ep.state_dir / "trust").exists()


def test_too_large_is_refused_before_the_trust_root_is_read(
    bare: tuple[PolicySimulator, Endpoint],
) -> None:
    _, ep = bare
    check_refused(ep, offer(ep, b"#" * BIG, ()), "too-large", f"{SOURCE} is larger than")


def test_too_large_does_no_signature_work(
    world: tuple[PolicySimulator, Endpoint], monkeypatch: pytest.MonkeyPatch
) -> None:
    sim, ep = world
    in_force(sim, ep)
    data = BASE + b"#" * (BIG - len(BASE))
    policy = sim.signed(data)  # valid signatures: checking them would succeed
    calls: list[bytes] = []
    real_verify = PublicKey.verify
    policy_message = pae(POLICY_PAYLOAD_TYPE, b"").split(b" 0 ")[0]  # b"DSSEv1 34 application/..."

    def spy(self: PublicKey, signature: bytes, message: bytes) -> bool:
        calls.append(message)
        return real_verify(self, signature, message)

    monkeypatch.setattr(PublicKey, "verify", spy)
    check_refused(ep, offer_signed(ep, policy), "too-large", "is larger than 1048576 bytes")
    assert calls == []  # not even the trust root's signatures were checked
    in_force(sim, ep, 2)
    policy_calls = [m for m in calls if m.startswith(policy_message)]
    assert len(policy_calls) == 2, "the spy sees an ordinary policy's two verifications"


def test_fast_forward_attempt_leaves_the_next_version_acceptable(
    world: tuple[PolicySimulator, Endpoint],
) -> None:
    sim, ep = world
    in_force(sim, ep)
    check_refused(ep, huge_version_below_threshold(sim, ep), "signatures", sig_refused(1))
    assert ep.gate.status()["min_version"] == 1
    in_force(sim, ep, 2)
    assert ep.gate.status()["version"] == 2


def test_clock_set_back_keeps_an_expired_active_policy_expired(
    world: tuple[PolicySimulator, Endpoint],
) -> None:
    sim, ep = world
    in_force(sim, ep, 1)  # expires on day 30
    sim.clock.advance(40 * DAY)
    seen = sim.policy(3, issued=-5 * DAY, lifetime=DAY)  # issued on day 35, expired
    with pytest.raises(PolicyRefused, match="version 3 expired"):
        ep.gate.activate(seen.data, seen.signatures, "v3.yaml")
    sim.clock.advance(-35 * DAY)  # the host clock reads day 5: version 1 would be valid
    ep.restart()
    assert ep.gate.now() == sim.clock.now() + 30 * DAY
    assert ep.gate.status()["state"] == "expired"


def test_a_root_listing_one_key_twice_never_reaches_the_gate(
    world: tuple[PolicySimulator, Endpoint],
) -> None:
    """The gate counts distinct keys; a root cannot list one key under two ids either."""
    sim, ep = world
    in_force(sim, ep)
    before = ep.snapshot()
    key = sim.keys[0].public_key.as_dict()
    payload = canonical_json(
        {
            "_type": "patchd-trust-root",
            "version": 2,
            "threshold": 2,
            "keys": {sim.key_id(0): key, sim.key_id(1): key},
        }
    )
    envelope = Envelope(TRUST_ROOT_PAYLOAD_TYPE, payload, ())
    for i in (0, 1, 2):
        envelope = envelope.signed_with(sim.keys[i])
    with pytest.raises(TrustError, match="is not the SHA-256 of its key"):
        sim.trust.update(envelope.to_json(), "root.v2.json")
    assert ep.snapshot() == before
    single = sim.policy(2, signers=[0])
    doubled = (single.signatures[0], Signature(sim.key_id(1), single.signatures[0].sig))
    check_refused(ep, offer(ep, single.data, doubled), "signatures", sig_refused(1))


def test_a_damaged_trust_root_refuses_everything(world: tuple[PolicySimulator, Endpoint]) -> None:
    """Nothing is accepted without a sound trust root, and the refusal is recorded."""
    sim, ep = world
    in_force(sim, ep)
    root_path = ep.state_dir / "trust" / "root.json"
    root_path.write_bytes(root_path.read_bytes()[:-2])  # torn: not JSON any more
    active_before = ep.gate.active()
    policy = sim.policy(2)
    with pytest.raises(PolicyRefused) as info:
        ep.gate.activate(policy.data, policy.signatures, SOURCE)
    assert info.value.code == "no-trust-root"
    assert "the installed trust root is damaged" in info.value.message
    active_after = ep.gate.active()
    assert active_before is not None
    assert active_after is not None
    assert active_after.loaded.sha256 == active_before.loaded.sha256
    refusal = ep.gate.last_refusal()
    assert refusal is not None
    assert refusal.code == "no-trust-root"


# -- races between two processes --------------------------------------------------------


def second_process(ep: Endpoint) -> Endpoint:
    return Endpoint(ep.state_dir, ep.clock)


def interleave(monkeypatch: pytest.MonkeyPatch, meanwhile: Callable[[], object]) -> None:
    """Run ``meanwhile`` (another process's activation) after this one's checks passed,
    just before it installs: the first time the gate writes a kept file."""
    real_write = atomic_write_bytes
    pending = [meanwhile]

    def write(path: Path, data: bytes, *, mode: int = 0o600) -> None:
        if pending:
            pending.pop()()
        real_write(path, data, mode=mode)

    monkeypatch.setattr(gate_module, "atomic_write_bytes", write)


def test_a_concurrent_activation_cannot_be_rolled_back(
    world: tuple[PolicySimulator, Endpoint], monkeypatch: pytest.MonkeyPatch
) -> None:
    sim, ep = world
    in_force(sim, ep, 1)
    other = second_process(ep)
    newer, older = sim.policy(3), sim.policy(2)
    try:
        interleave(monkeypatch, lambda: other.gate.activate(newer.data, newer.signatures, "v3"))
        with pytest.raises(PolicyRefused) as info:
            ep.gate.activate(older.data, older.signatures, SOURCE)
        assert info.value.code == "rollback"
        assert "version 2 is older than version 3 already accepted" in info.value.message
        active = ep.gate.active()
        assert active is not None
        assert (active.loaded.policy.version, active.loaded.data) == (3, newer.data)
        assert ep.gate.status()["min_version"] == 3
        assert not any(name.startswith("v2-") for name in ep.policy_files())
    finally:
        other.close()


def test_a_concurrent_fork_is_refused_and_flagged(
    world: tuple[PolicySimulator, Endpoint], monkeypatch: pytest.MonkeyPatch
) -> None:
    sim, ep = world
    in_force(sim, ep, 1)
    other = second_process(ep)
    theirs, ours = sim.policy(2, description="theirs"), sim.policy(2, description="ours")
    try:
        interleave(monkeypatch, lambda: other.gate.activate(theirs.data, theirs.signatures, "v2"))
        with pytest.raises(PolicyRefused) as info:
            ep.gate.activate(ours.data, ours.signatures, SOURCE)
        assert info.value.code == "fork"
        active = ep.gate.active()
        assert active is not None
        assert active.loaded.data == theirs.data
        assert [e["code"] for e in ep.events("flagged")] == ["fork"]
    finally:
        other.close()


# -- the command line: a hostile signed policy is one line of error, no traceback -------


def test_cli_refuses_hostile_signed_policy_without_traceback(tmp_path: Path) -> None:
    sim = PolicySimulator(tmp_path / "admins", FrozenClock())
    root_path = tmp_path / "root.json"
    root_path.write_bytes(sim.root_envelope(1, (0, 1, 2), 2, signers=(0, 1, 2)).to_json())
    policy = sim.signed(BASE + b"description: !!python/object/apply:os.system ['true']\n")
    path = policy.write(tmp_path / "policy.yaml")
    config = tmp_path / "agent.yaml"
    config.write_text("{}\n")
    state_dir = tmp_path / "state"
    global_options = ["--state-dir", str(state_dir), "--config", str(config)]
    result = run_patchd(
        [*global_options, "policy", "activate", str(path), "--trust", str(root_path)]
    )
    assert result.returncode == ExitCode.CONFIG, result.stderr
    assert "Traceback" not in result.stderr
    assert "description: tag tag:yaml.org,2002:python/object/apply:os.system is not allowed" in (
        result.stderr
    )
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert not (state_dir / "policy").exists()


def test_a_signature_refusal_reads_as_one_plain_sentence(
    world: tuple[PolicySimulator, Endpoint],
) -> None:
    sim, ep = world
    policy = sim.policy(1, signers=[0])
    with pytest.raises(PolicyRefused) as info:
        ep.gate.activate(policy.data, policy.signatures, SOURCE)
    assert info.value.message == (
        "policy refused: attack.yaml: 1 of 2 required signatures from trusted keys"
    )
    assert info.value.hint == "have enough trusted administrators sign it (`patchd policy sign`)"
