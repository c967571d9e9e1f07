"""DSSE envelopes and detached signatures: strict parsing, distinct-key counting, domain separation."""

from __future__ import annotations

import base64
import contextlib
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from patchd.errors import TrustError
from patchd.signing.dsse import (
    MAX_ENVELOPE_BYTES,
    MAX_SIGNATURES,
    POLICY_PAYLOAD_TYPE,
    TRUST_ROOT_PAYLOAD_TYPE,
    Envelope,
    Signature,
    add_detached_signature,
    pae,
    read_detached,
    require_threshold,
    sign,
    verified_key_ids,
)
from patchd.signing.keys import PrivateKey, PublicKey

A, B, C = (PrivateKey.generate() for _ in range(3))
TRUSTED = {k.key_id: k.public_key for k in (A, B)}
PAYLOAD = b"rings: []\n"


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def test_pae_matches_the_dsse_specification_example() -> None:
    assert (
        pae("http://example.com/HelloWorld", b"hello world")
        == b"DSSEv1 29 http://example.com/HelloWorld 11 hello world"
    )
    assert pae("", b"") == b"DSSEv1 0  0 "


def test_an_envelope_round_trips_byte_for_byte() -> None:
    envelope = Envelope(POLICY_PAYLOAD_TYPE, PAYLOAD, (sign(POLICY_PAYLOAD_TYPE, PAYLOAD, A),))
    data = envelope.to_json()
    assert Envelope.from_json(data) == envelope
    assert Envelope.from_json(data).to_json() == data
    assert json.loads(data) == {
        "payload": b64(PAYLOAD),
        "payloadType": POLICY_PAYLOAD_TYPE,
        "signatures": [{"keyid": A.key_id, "sig": b64(envelope.signatures[0].sig)}],
    }


def test_signed_with_replaces_the_same_keys_signature() -> None:
    envelope = Envelope(POLICY_PAYLOAD_TYPE, PAYLOAD, ()).signed_with(A).signed_with(B)
    again = envelope.signed_with(A)
    assert [s.keyid for s in again.signatures] == [A.key_id, B.key_id]


def _valid() -> dict[str, Any]:
    envelope = Envelope(POLICY_PAYLOAD_TYPE, PAYLOAD, ()).signed_with(A)
    document: dict[str, Any] = json.loads(envelope.to_json())
    return document


def _with(**changes: object) -> bytes:
    document = _valid()
    document.update(changes)
    return json.dumps(document).encode()


_SIG = _valid()["signatures"][0]


@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        (b" " * (MAX_ENVELOPE_BYTES + 1), "more than the 1048576 allowed"),
        (b'{"payload": "\xff"}', "not UTF-8"),
        (
            b'{"payload": "", "payload": "", "payloadType": "x", "signatures": []}',
            "duplicate JSON key 'payload'",
        ),
        (json.dumps(_valid())[:-5].encode(), "not valid JSON"),
        (b"[" * 100_000 + b"]" * 100_000, "not acceptable JSON"),
        (b'{"payload": NaN}', "not acceptable JSON"),
        (b"[]", "must be a JSON object, not list"),
        (_with(extra=1), "unknown"),
        (json.dumps({"payload": "", "payloadType": "x"}).encode(), "missing ['signatures']"),
        (_with(payload="!!!!"), "payload: not valid base64"),
        (_with(payload=b64(PAYLOAD).replace("=", "")), "payload: not valid base64"),
        (_with(payloadType=7), "payloadType: must be text"),
        (_with(payloadType="a\nb"), "payloadType: must be printable ASCII"),
        (_with(signatures={}), "signatures must be a list"),
        (_with(signatures=[_SIG] * (MAX_SIGNATURES + 1)), "more than 256"),
        (_with(signatures=[{"keyid": "k"}]), "signatures[0]: fields missing ['sig']"),
        (_with(signatures=[{"keyid": "k", "sig": "-_-_"}]), "signatures[0].sig: not valid base64"),
        (_with(signatures=[{"keyid": 1, "sig": ""}]), "signatures[0].keyid: must be text"),
        (
            b'{"payload":"","payloadType":"x","signatures":[{"keyid":"k","keyid":"k","sig":""}]}',
            "duplicate JSON key 'keyid'",
        ),
    ],
    ids=[
        "oversized",
        "non-utf8",
        "duplicate-key",
        "truncated",
        "deep-nesting",
        "nan",
        "not-an-object",
        "unknown-field",
        "missing-field",
        "payload-base64",
        "payload-unpadded",
        "type-not-text",
        "type-control-char",
        "signatures-not-list",
        "too-many-signatures",
        "signature-missing-sig",
        "signature-urlsafe-base64",
        "keyid-not-text",
        "signature-duplicate-key",
    ],
)
def test_from_json_refuses(data: bytes, fragment: str) -> None:
    with pytest.raises(TrustError, match=None) as caught:
        Envelope.from_json(data, "in.json")
    assert fragment in str(caught.value)
    assert str(caught.value).startswith("in.json")
    assert "\n" not in str(caught.value)


@settings(max_examples=300)
@given(st.binary(max_size=2000))
def test_from_json_raises_only_trust_errors_on_arbitrary_bytes(data: bytes) -> None:
    with contextlib.suppress(TrustError):
        Envelope.from_json(data)


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4)
    ),
    max_leaves=20,
)


@settings(max_examples=300)
@given(
    payload=_JSON,
    payload_type=_JSON,
    signatures=st.lists(st.fixed_dictionaries({"keyid": _JSON, "sig": _JSON}), max_size=3) | _JSON,
)
def test_from_json_raises_only_trust_errors_on_envelope_shaped_json(
    payload: object, payload_type: object, signatures: object
) -> None:
    data = json.dumps({"payload": payload, "payloadType": payload_type, "signatures": signatures})
    with contextlib.suppress(TrustError):
        Envelope.from_json(data.encode())


def _sigs(*keys: PrivateKey, payload_type: str = POLICY_PAYLOAD_TYPE) -> list[Signature]:
    return [sign(payload_type, PAYLOAD, k) for k in keys]


@pytest.mark.parametrize(
    ("signatures", "keys", "expected"),
    [
        (_sigs(A, B), TRUSTED, {A.key_id, B.key_id}),
        (_sigs(A, A, A), TRUSTED, {A.key_id}),
        (_sigs(A, C), TRUSTED, {A.key_id}),
        ([Signature(B.key_id, A.sign(pae(POLICY_PAYLOAD_TYPE, PAYLOAD)))], TRUSTED, set()),
        ([Signature("", s.sig) for s in _sigs(A)], TRUSTED, set()),
        (_sigs(A, B, payload_type=TRUST_ROOT_PAYLOAD_TYPE), TRUSTED, set()),
        (_sigs(A), {A.key_id: A.public_key, "alias": A.public_key}, {A.key_id}),
        (
            [*_sigs(A), Signature("alias", _sigs(A)[0].sig)],
            {A.key_id: A.public_key, "alias": A.public_key},
            {A.key_id},
        ),
        ([Signature(A.key_id, b"\0" * 64), Signature(A.key_id, b"")], TRUSTED, set()),
    ],
    ids=[
        "two-keys",
        "one-key-thrice",
        "untrusted-key-ignored",
        "claimed-keyid-mismatch",
        "keyid-missing",
        "root-signature-is-not-a-policy-signature",
        "key-under-two-ids",
        "key-under-two-ids-signing-twice",
        "garbage-signatures",
    ],
)
def test_verified_key_ids_counts_distinct_trusted_keys(
    signatures: list[Signature], keys: dict[str, PublicKey], expected: set[str]
) -> None:
    assert verified_key_ids(POLICY_PAYLOAD_TYPE, PAYLOAD, signatures, keys) == expected


def test_require_threshold_says_how_many_of_how_many() -> None:
    found = require_threshold(POLICY_PAYLOAD_TYPE, PAYLOAD, _sigs(A, B), TRUSTED, 2, "policy")
    assert found == {A.key_id, B.key_id}
    with pytest.raises(TrustError) as caught:
        require_threshold(POLICY_PAYLOAD_TYPE, PAYLOAD, _sigs(A, A), TRUSTED, 2, "policy")
    assert caught.value.message == "policy: 1 of 2 required signatures from trusted keys"
    assert "patchd policy sign" in str(caught.value)


def test_require_threshold_never_accepts_a_threshold_below_one() -> None:
    with pytest.raises(TrustError, match="threshold 0 is below 1"):
        require_threshold(POLICY_PAYLOAD_TYPE, PAYLOAD, [], TRUSTED, 0, "policy")


def test_detached_signatures_collect_one_entry_per_admin(tmp_path: Path) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_bytes(PAYLOAD)
    sig_path = add_detached_signature(policy, A, POLICY_PAYLOAD_TYPE)
    assert sig_path == tmp_path / "policy.yaml.sig"
    assert sig_path.stat().st_mode & 0o777 == 0o644
    add_detached_signature(policy, B, POLICY_PAYLOAD_TYPE)
    add_detached_signature(policy, A, POLICY_PAYLOAD_TYPE)  # A signs again: replaced, not added
    signatures = read_detached(sig_path, POLICY_PAYLOAD_TYPE)
    assert [s.keyid for s in signatures] == [A.key_id, B.key_id]
    assert verified_key_ids(POLICY_PAYLOAD_TYPE, PAYLOAD, signatures, TRUSTED) == set(TRUSTED)
    policy.write_bytes(PAYLOAD + b"# one more line\n")  # the file changed after signing
    assert verified_key_ids(POLICY_PAYLOAD_TYPE, policy.read_bytes(), signatures, TRUSTED) == set()


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        (None, "no such signature file"),
        (b"{", "not valid JSON"),
        (b'{"payloadType": "x", "signatures": [], "payload": ""}', "unknown ['payload']"),
        (
            json.dumps({"payloadType": TRUST_ROOT_PAYLOAD_TYPE, "signatures": []}).encode(),
            f"signatures are for '{TRUST_ROOT_PAYLOAD_TYPE}', not '{POLICY_PAYLOAD_TYPE}'",
        ),
        (b" " * (MAX_ENVELOPE_BYTES + 1), "too large for a signature"),
    ],
    ids=["missing", "malformed", "an-envelope-not-a-sig-file", "wrong-payload-type", "oversized"],
)
def test_read_detached_refuses(tmp_path: Path, content: bytes | None, fragment: str) -> None:
    sig_path = tmp_path / "policy.yaml.sig"
    if content is not None:
        sig_path.write_bytes(content)
    with pytest.raises(TrustError) as caught:
        read_detached(sig_path, POLICY_PAYLOAD_TYPE)
    assert fragment in str(caught.value)


def test_adding_to_a_malformed_sig_file_refuses_and_leaves_it(tmp_path: Path) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_bytes(PAYLOAD)
    (tmp_path / "policy.yaml.sig").write_bytes(b"garbage")
    with pytest.raises(TrustError, match="not valid JSON"):
        add_detached_signature(policy, A, POLICY_PAYLOAD_TYPE)
    assert (tmp_path / "policy.yaml.sig").read_bytes() == b"garbage"
