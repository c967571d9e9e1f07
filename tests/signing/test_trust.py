"""Trust roots: TUF-style rotation, and the attacks an endpoint must refuse without a trace.

Every refusal asserts the exact reason *and* that the installed root did not change: same
version, same bytes on disk, same history. A :class:`RootSimulator` makes keys and signs
root versions on demand, like python-tuf's RepositorySimulator.
"""

from __future__ import annotations

import base64
import contextlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import patchd.signing.trust as trust_module
from patchd.errors import LockHeldError, TrustError
from patchd.signing.dsse import (
    MAX_ENVELOPE_BYTES,
    POLICY_PAYLOAD_TYPE,
    TRUST_ROOT_PAYLOAD_TYPE,
    Envelope,
    Signature,
    canonical_json,
    sign,
)
from patchd.signing.keys import PrivateKey
from patchd.signing.trust import (
    TrustStore,
    make_root,
    parse_root,
    verify_root_alone,
    verify_successor,
)

KEY_COUNT = 10
KEYS = [PrivateKey.generate() for _ in range(KEY_COUNT)]


class RootSimulator:
    """Admin keys by number, and trust root versions built and signed on demand."""

    def __init__(self, keys: Sequence[PrivateKey] = KEYS) -> None:
        self.keys = list(keys)

    def payload(self, version: int, keys: Sequence[int], threshold: int) -> bytes:
        return make_root(version, [self.keys[i].public_key for i in keys], threshold).payload

    def envelope(
        self,
        version: int,
        keys: Sequence[int],
        threshold: int,
        signers: Sequence[int] = (),
        *,
        payload: bytes | None = None,
    ) -> Envelope:
        envelope = Envelope(
            TRUST_ROOT_PAYLOAD_TYPE, payload or self.payload(version, keys, threshold), ()
        )
        for i in signers:
            envelope = envelope.signed_with(self.keys[i])
        return envelope

    def root(
        self, version: int, keys: Sequence[int], threshold: int, signers: Sequence[int] = ()
    ) -> bytes:
        return self.envelope(version, keys, threshold, signers).to_json()

    def raw_payload(self, keys: dict[str, int], threshold: object, version: object = 2) -> bytes:
        """A payload as an attacker writes it: key ids chosen freely, values unchecked."""
        listed = {key_id: self.keys[i].public_key.as_dict() for key_id, i in keys.items()}
        document = {"_type": "patchd-trust-root", "version": version, "threshold": threshold}
        return canonical_json({**document, "keys": listed})


SIM = RootSimulator()
V1 = SIM.root(1, [0, 1, 2], 2)  # installed by an admin: unsigned


@dataclass(frozen=True)
class Installed:
    store: TrustStore
    chain: list[bytes]

    def snapshot(self) -> tuple[int, bytes, list[str]]:
        current = self.store.current()
        assert current is not None
        history = sorted(p.name for p in self.store.history_dir.glob("*"))
        return current.version, self.store.root_path.read_bytes(), history


def install(tmp_path: Path, chain: Sequence[bytes]) -> Installed:
    store = TrustStore(tmp_path / "state")
    store.install_initial(chain[0], "v1.json")
    for data in chain[1:]:
        store.update(data, "next.json")
    return Installed(store, list(chain))


def _id(i: int) -> str:
    return KEYS[i].key_id


def _duplicated_signature() -> bytes:
    envelope = SIM.envelope(2, [0, 1, 2], 2, [0])
    return Envelope(envelope.payload_type, envelope.payload, envelope.signatures * 2).to_json()


def _mislabelled_signature() -> bytes:
    envelope = SIM.envelope(2, [0, 1, 2], 2, [0, 3])  # 3 is no admin: it claims to be 1
    forged = Signature(_id(1), envelope.signatures[1].sig)
    return Envelope(
        envelope.payload_type, envelope.payload, (envelope.signatures[0], forged)
    ).to_json()


def _padded_with_unknown_keyids() -> bytes:
    envelope = SIM.envelope(2, [0, 1, 2], 2, [0])
    junk = tuple(Signature(f"{i:064x}", bytes(64)) for i in range(50))
    return Envelope(envelope.payload_type, envelope.payload, envelope.signatures + junk).to_json()


def _signed_raw(payload: bytes, signers: Sequence[int] = (0, 1)) -> bytes:
    return SIM.envelope(0, [], 0, signers, payload=payload).to_json()


def _policy_signatures_on_a_root() -> bytes:
    payload = SIM.payload(2, [0, 1, 2], 2)
    signatures = tuple(sign(POLICY_PAYLOAD_TYPE, payload, KEYS[i]) for i in (0, 1))
    return Envelope(TRUST_ROOT_PAYLOAD_TYPE, payload, signatures).to_json()


def _root_as_a_policy_envelope() -> bytes:
    payload = SIM.payload(2, [0, 1, 2], 2)
    signatures = tuple(sign(POLICY_PAYLOAD_TYPE, payload, KEYS[i]) for i in (0, 1))
    return Envelope(POLICY_PAYLOAD_TYPE, payload, signatures).to_json()


def _with_bad_base64() -> bytes:
    document = json.loads(SIM.root(2, [0, 1, 2], 2, [0, 1]))
    document["signatures"][0]["sig"] = "not*base64"
    return json.dumps(document).encode()


def _with_duplicate_envelope_key() -> bytes:
    data = SIM.root(2, [0, 1, 2], 2, [0, 1])
    return data.replace(b'"payloadType":', b'"payloadType":"x","payloadType":', 1)


def _with_duplicate_payload_key() -> bytes:
    payload = SIM.payload(2, [0, 1, 2], 2).replace(b'"version":2', b'"version":2,"version":3')
    return _signed_raw(payload)


_SAME_KEYS = [0, 1, 2]


@dataclass(frozen=True)
class Attack:
    chain: Callable[[], list[bytes]]  # what the endpoint has installed, in order
    candidate: Callable[[], bytes]
    refusal: str


def _base() -> list[bytes]:
    return [V1]


def _to_v2() -> list[bytes]:
    return [V1, SIM.root(2, _SAME_KEYS, 2, [0, 1])]


def _to_v3() -> list[bytes]:
    return [*_to_v2(), SIM.root(3, _SAME_KEYS, 2, [0, 1])]


def _key_0_removed() -> list[bytes]:
    return [V1, SIM.root(2, [1, 2, 3], 2, [0, 1, 2, 3])]


ATTACKS = {
    "signed-only-by-old-keys": Attack(
        _base,
        lambda: SIM.root(2, [3, 4, 5], 2, [0, 1]),
        "version 2 signed by its own keys: 0 of 2 required signatures from trusted keys",
    ),
    "signed-only-by-new-keys": Attack(
        _base,
        lambda: SIM.root(2, [3, 4, 5], 2, [3, 4, 5]),
        "version 2 signed by version 1's keys: 0 of 2 required signatures",
    ),
    "below-threshold": Attack(
        _base,
        lambda: SIM.root(2, _SAME_KEYS, 2, [0]),
        "version 1's keys: 1 of 2 required signatures",
    ),
    "skips-a-version": Attack(
        _base, lambda: SIM.root(3, _SAME_KEYS, 2, [0, 1]), "version 3 skips version 2"
    ),
    "replays-an-older-version": Attack(
        _to_v3, lambda: _to_v3()[1], "version 2 is older than installed version 3"
    ),
    "replays-the-installed-version": Attack(
        _to_v2, lambda: _to_v2()[1], "version 2 is already installed"
    ),
    "same-version-other-bytes": Attack(
        _to_v2,
        lambda: SIM.root(2, [0, 1, 2, 3], 2, [0, 1]),
        "a different version 2 is already installed",
    ),
    "one-signature-duplicated": Attack(_base, _duplicated_signature, "1 of 2 required"),
    "claimed-keyid-mismatch": Attack(_base, _mislabelled_signature, "1 of 2 required"),
    "padded-with-unknown-keyids": Attack(_base, _padded_with_unknown_keyids, "1 of 2 required"),
    "one-key-under-two-ids": Attack(
        _base,
        lambda: _signed_raw(SIM.raw_payload({_id(0): 0, _id(1): 0}, 2)),
        f"key id '{_id(1)}' is not the SHA-256 of its key",
    ),
    "threshold-zero": Attack(
        _base,
        lambda: _signed_raw(SIM.raw_payload({_id(0): 0, _id(1): 1}, 0)),
        "threshold: must be a whole number from 1 to 2, got 0",
    ),
    "threshold-above-key-count": Attack(
        _base,
        lambda: _signed_raw(SIM.raw_payload({_id(0): 0, _id(1): 1}, 3)),
        "threshold: must be a whole number from 1 to 2, got 3",
    ),
    "threshold-true": Attack(
        _base,
        lambda: _signed_raw(SIM.raw_payload({_id(0): 0}, True)),
        "threshold: must be a whole number from 1 to 1, got True",
    ),
    "malformed-base64": Attack(_base, _with_bad_base64, "signatures[0].sig: not valid base64"),
    "policy-signatures-as-root-signatures": Attack(
        _base, _policy_signatures_on_a_root, "version 1's keys: 0 of 2 required"
    ),
    "policy-payload-type": Attack(
        _base,
        _root_as_a_policy_envelope,
        f"payload type '{POLICY_PAYLOAD_TYPE}' is not a trust root's",
    ),
    "oversized": Attack(
        _base,
        lambda: SIM.root(2, _SAME_KEYS, 2, [0, 1]) + b" " * MAX_ENVELOPE_BYTES,
        "more than the 1048576 allowed",
    ),
    "duplicate-envelope-key": Attack(
        _base, _with_duplicate_envelope_key, "duplicate JSON key 'payloadType'"
    ),
    "duplicate-payload-key": Attack(
        _base, _with_duplicate_payload_key, "payload: duplicate JSON key 'version'"
    ),
    "non-utf8": Attack(
        _base, lambda: b"\xff\xfe" + SIM.root(2, _SAME_KEYS, 2, [0, 1]), "not UTF-8"
    ),
    "truncated": Attack(
        _base, lambda: SIM.root(2, _SAME_KEYS, 2, [0, 1])[:-40], "next.json: not valid JSON"
    ),
    "removed-key-cannot-sign-the-next-version": Attack(
        _key_0_removed,
        lambda: SIM.root(3, [0, 1], 1, [0, 1]),
        "version 3 signed by version 2's keys: 1 of 2 required",
    ),
}


@pytest.mark.parametrize("attack", ATTACKS.values(), ids=ATTACKS.keys())
def test_an_attack_on_the_trust_root_is_refused_and_changes_nothing(
    tmp_path: Path, attack: Attack
) -> None:
    installed = install(tmp_path, attack.chain())
    before = installed.snapshot()
    with pytest.raises(TrustError) as caught:
        installed.store.update(attack.candidate(), "next.json")
    assert attack.refusal in str(caught.value)
    assert str(caught.value).startswith("next.json")
    assert "\n" not in str(caught.value)
    assert installed.snapshot() == before


def test_a_chain_of_rotations_applied_one_at_a_time_is_accepted(tmp_path: Path) -> None:
    chain = [
        V1,
        SIM.root(2, [1, 2, 3], 2, [0, 1, 3]),  # 0 out, 3 in
        SIM.root(3, [4, 5, 6], 2, [1, 3, 4, 5]),  # every key replaced, via an overlap version
        SIM.root(4, [4, 5, 6], 3, [4, 5, 6]),  # threshold raised
    ]
    installed = install(tmp_path, chain[:1])
    for version, data in enumerate(chain[1:], start=2):
        root = installed.store.update(data, f"v{version}.json")
        assert root.version == version
    current = installed.store.current()
    assert current is not None
    assert (current.version, current.threshold) == (4, 3)
    assert set(current.keys) == {_id(4), _id(5), _id(6)}
    assert installed.store.root_path.read_bytes() == chain[3]
    for version in (1, 2, 3):  # kept byte for byte
        assert (installed.store.history_dir / f"root.v{version}.json").read_bytes() == chain[
            version - 1
        ]


@dataclass(frozen=True)
class Version:
    keys: list[int]
    threshold: int
    signers: list[int]


# From python-tuf's tests/test_updater_key_rotations.py; the last version is the one judged.
ROTATIONS: dict[str, tuple[list[Version], str | None]] = {
    "1-of-1 rotation": ([Version([1], 1, [1]), Version([2], 1, [2, 1])], None),
    "1-of-1 rotation, unused signatures": (
        [Version([1], 1, [1]), Version([2], 1, [3, 2, 1, 4])],
        None,
    ),
    "1-of-1 rotation fails: not signed by the old key": (
        [Version([1], 1, [1]), Version([2], 1, [2, 3, 4])],
        "version 1's keys: 0 of 1",
    ),
    "1-of-1 rotation fails: not signed by the new key": (
        [Version([1], 1, [1]), Version([2], 1, [1, 3, 4])],
        "its own keys: 0 of 1",
    ),
    "3-of-5, one key rotated": (
        [Version([0, 1, 2, 3, 4], 3, [0, 2, 4]), Version([0, 1, 3, 4, 5], 3, [0, 4, 1])],
        None,
    ),
    "3-of-5 fails: not signed by 3 new keys": (
        [Version([0, 1, 2, 3, 4], 3, [0, 2, 4]), Version([0, 1, 3, 4, 5], 3, [0, 2, 4])],
        "its own keys: 2 of 3",
    ),
    "3-of-5 fails: not signed by 3 old keys": (
        [Version([0, 1, 2, 3, 4], 3, [0, 2, 4]), Version([0, 1, 3, 4, 5], 3, [0, 4, 5])],
        "version 1's keys: 2 of 3",
    ),
    "1-of-3 raised to 2-of-3": ([Version([1, 2, 3], 1, [1]), Version([1, 2, 3], 2, [1, 2])], None),
    "1-of-3 raised to 2-of-3 fails: new threshold not met": (
        [Version([1, 2, 3], 1, [1]), Version([1, 2, 3], 2, [2])],
        "its own keys: 1 of 2",
    ),
    "2-of-3 lowered to 1-of-3 fails: old threshold not met": (
        [Version([1, 2, 3], 2, [1, 2]), Version([1, 2, 3], 1, [1])],
        "version 1's keys: 1 of 2",
    ),
}


@pytest.mark.parametrize(("versions", "refusal"), ROTATIONS.values(), ids=ROTATIONS.keys())
def test_rotation_rules(tmp_path: Path, versions: list[Version], refusal: str | None) -> None:
    chain = [SIM.root(n, v.keys, v.threshold, v.signers) for n, v in enumerate(versions, start=1)]
    installed = install(tmp_path, chain[:-1])
    if refusal is None:
        assert installed.store.update(chain[-1], "next.json").version == len(chain)
        assert installed.store.root_path.read_bytes() == chain[-1]
        return
    before = installed.snapshot()
    with pytest.raises(TrustError, match=refusal):
        installed.store.update(chain[-1], "next.json")
    assert installed.snapshot() == before


def test_history_keeps_the_last_32_versions(tmp_path: Path) -> None:
    chain = [SIM.root(n, [0], 1, [0]) for n in range(1, 41)]
    installed = install(tmp_path, chain)
    names = sorted(p.name for p in installed.store.history_dir.iterdir())
    assert names == sorted(f"root.v{n}.json" for n in range(8, 40))


def test_update_without_an_installed_root_refuses_and_creates_nothing(tmp_path: Path) -> None:
    store = TrustStore(tmp_path / "state")
    with pytest.raises(TrustError, match="no trust root is installed") as caught:
        store.update(SIM.root(2, _SAME_KEYS, 2, [0, 1]), "next.json")
    assert "patchd policy activate FILE --trust ROOT" in str(caught.value)
    assert store.current() is None
    assert not (tmp_path / "state").exists()


def test_install_initial_is_idempotent_and_refuses_a_different_root(tmp_path: Path) -> None:
    store = TrustStore(tmp_path / "state")
    assert store.install_initial(V1, "v1.json").version == 1
    assert store.install_initial(V1, "v1.json").version == 1
    other = SIM.root(1, [3, 4], 1)
    with pytest.raises(
        TrustError, match=r"a different trust root \(version 1\) is already installed"
    ):
        store.install_initial(other, "other.json")
    assert store.root_path.read_bytes() == V1
    assert store.root_path.stat().st_mode & 0o777 == 0o644


@pytest.mark.parametrize(
    ("data", "refusal"),
    [
        (SIM.root(1, [0, 1], 2, [0]), "version 1 signed by its own keys: 1 of 2"),
        (_padded_with_unknown_keyids(), "version 2 signed by its own keys: 1 of 2"),
        (b"{}", "fields missing"),
    ],
    ids=["signed-below-its-threshold", "padded-below-its-threshold", "malformed"],
)
def test_install_initial_refuses(tmp_path: Path, data: bytes, refusal: str) -> None:
    store = TrustStore(tmp_path / "state")
    with pytest.raises(TrustError, match=refusal):
        store.install_initial(data, "root.json")
    assert store.current() is None


def test_a_damaged_installed_root_is_reported_not_ignored(tmp_path: Path) -> None:
    installed = install(tmp_path, [V1])
    installed.store.root_path.write_bytes(V1[:-3])
    with pytest.raises(TrustError, match=r"the installed trust root is damaged: .*not valid JSON"):
        installed.store.current()
    with pytest.raises(TrustError, match="damaged"):
        installed.store.update(SIM.root(2, _SAME_KEYS, 2, [0, 1]), "next.json")
    with pytest.raises(TrustError, match="damaged"):
        installed.store.install_initial(V1, "v1.json")


def test_a_held_lock_is_waited_for_a_bounded_time(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import fcntl

    installed = install(tmp_path, [V1])
    monkeypatch.setattr(trust_module, "LOCK_WAIT_S", 0.2)
    with (installed.store.directory / ".lock").open("w") as holder:
        fcntl.flock(holder, fcntl.LOCK_EX)
        with pytest.raises(LockHeldError, match="waited"):
            installed.store.update(SIM.root(2, _SAME_KEYS, 2, [0, 1]), "next.json")
    assert installed.store.update(SIM.root(2, _SAME_KEYS, 2, [0, 1]), "next.json").version == 2


def test_verify_policy_needs_the_threshold_of_policy_signatures() -> None:
    root = parse_root(SIM.envelope(1, [0, 1, 2], 2))
    policy = b"rings: []\n"
    signatures = [sign(POLICY_PAYLOAD_TYPE, policy, KEYS[i]) for i in (0, 2, 5)]
    assert root.verify_policy(policy, signatures) == {_id(0), _id(2)}
    root_signatures = [sign(TRUST_ROOT_PAYLOAD_TYPE, policy, KEYS[i]) for i in (0, 1)]
    with pytest.raises(TrustError) as caught:
        root.verify_policy(policy, root_signatures)
    assert caught.value.message == "policy: 0 of 2 required signatures from trusted keys"


def test_verify_successor_does_not_touch_disk_and_returns_the_new_root() -> None:
    current = verify_root_alone(Envelope.from_json(V1))
    new = verify_successor(current, SIM.envelope(2, [2, 3], 1, [0, 1, 3]))
    assert (new.version, new.threshold, set(new.keys)) == (2, 1, {_id(2), _id(3)})


def test_make_root_writes_canonical_json() -> None:
    envelope = make_root(1, [KEYS[1].public_key, KEYS[0].public_key], 1)
    payload = json.loads(envelope.payload)
    assert envelope.payload == canonical_json(payload)
    assert payload == {
        "_type": "patchd-trust-root",
        "version": 1,
        "threshold": 1,
        "keys": {_id(i): KEYS[i].public_key.as_dict() for i in (0, 1)},
    }
    assert envelope.signatures == ()


@pytest.mark.parametrize(
    ("version", "keys", "threshold", "refusal"),
    [
        (1, [0, 1], 0, "threshold: must be a whole number from 1 to 2, got 0"),
        (1, [0, 1], 3, "threshold: must be a whole number from 1 to 2, got 3"),
        (1, [0, 0], 1, "each key once"),
        (1, [], 1, "1 to 64 keys, not 0"),
        (0, [0], 1, "version: must be a whole number from 1"),
    ],
    ids=["threshold-zero", "threshold-above-keys", "duplicate-key", "no-keys", "version-zero"],
)
def test_make_root_refuses(version: int, keys: list[int], threshold: int, refusal: str) -> None:
    with pytest.raises(TrustError, match=refusal):
        make_root(version, [KEYS[i].public_key for i in keys], threshold)


def test_parse_root_bounds_the_key_count() -> None:
    many = [PrivateKey.generate().public_key for _ in range(65)]
    payload = canonical_json(
        {
            "_type": "patchd-trust-root",
            "version": 1,
            "threshold": 1,
            "keys": {k.key_id: k.as_dict() for k in many},
        }
    )
    with pytest.raises(TrustError, match="keys must map 1 to 64 key ids"):
        parse_root(Envelope(TRUST_ROOT_PAYLOAD_TYPE, payload, ()))


@pytest.mark.parametrize(
    ("change", "refusal"),
    [
        ({"_type": "patchd-policy"}, "_type 'patchd-policy' is not 'patchd-trust-root'"),
        ({"version": "2"}, "version: must be a whole number"),
        ({"version": 2.0}, "version: must be a whole number"),
        ({"expires": "never"}, "unknown ['expires']"),
        ({"keys": []}, "keys must map 1 to 64"),
        ({"keys": {}}, "keys must map 1 to 64"),
    ],
    ids=["wrong-type", "version-text", "version-float", "unknown-field", "keys-list", "no-keys"],
)
def test_parse_root_refuses(change: dict[str, object], refusal: str) -> None:
    document = json.loads(SIM.payload(1, [0, 1], 1))
    document.update(change)
    envelope = Envelope(TRUST_ROOT_PAYLOAD_TYPE, json.dumps(document).encode(), ())
    with pytest.raises(TrustError) as caught:
        parse_root(envelope, source="root.json")
    assert refusal in str(caught.value)
    assert str(caught.value).startswith("root.json: payload")


@settings(max_examples=300)
@given(st.binary(max_size=2000))
def test_parse_root_raises_only_trust_errors_on_arbitrary_bytes(payload: bytes) -> None:
    with contextlib.suppress(TrustError):
        parse_root(Envelope(TRUST_ROOT_PAYLOAD_TYPE, payload, ()))


_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=50),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=70), inner, max_size=3)
    ),
    max_leaves=12,
)
_KEY_ENTRY = st.fixed_dictionaries(
    {"keytype": st.sampled_from(["ed25519", "rsa"]) | _VALUES, "public": _VALUES}
) | st.just(KEYS[0].public_key.as_dict())


@settings(max_examples=300)
@given(
    document=st.fixed_dictionaries(
        {
            "_type": st.just("patchd-trust-root") | _VALUES,
            "version": st.integers(-3, 2**40) | _VALUES,
            "threshold": st.integers(-3, 5) | _VALUES,
            "keys": st.dictionaries(st.just(_id(0)) | st.text(max_size=70), _KEY_ENTRY, max_size=3)
            | _VALUES,
        }
    )
)
def test_parse_root_raises_only_trust_errors_on_root_shaped_json(document: object) -> None:
    payload = json.dumps(document).encode()
    try:
        root = parse_root(Envelope(TRUST_ROOT_PAYLOAD_TYPE, payload, ()))
    except TrustError:
        return
    assert all(key.key_id == key_id for key_id, key in root.keys.items())
    assert 1 <= root.threshold <= len(root.keys)


def test_an_attacker_supplied_base64_key_is_checked_against_its_id() -> None:
    document = json.loads(SIM.payload(1, [0], 1))
    document["keys"][_id(0)]["public"] = base64.b64encode(KEYS[1].public_key.raw).decode()
    with pytest.raises(TrustError, match="is not the SHA-256 of its key"):
        parse_root(Envelope(TRUST_ROOT_PAYLOAD_TYPE, json.dumps(document).encode(), ()))
