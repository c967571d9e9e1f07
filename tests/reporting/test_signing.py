"""Report envelopes: the contract's shape, verification, and tampering caught."""

from __future__ import annotations

import base64
import json

import pytest

from patchd.errors import TrustError
from patchd.reporting.envelope import sign_report, verify_report
from patchd.signing.dsse import REPORT_PAYLOAD_TYPE, pae
from patchd.signing.keys import PrivateKey
from tests.support import fakecollector

PAYLOAD = b'{"created_at":"2026-12-04T12:00:00Z","endpoint_id":"ep-1","hostname":"h","schema_version":1,"seq":1}'


def test_envelope_shape_of_the_contract() -> None:
    key = PrivateKey.generate()
    data = sign_report(PAYLOAD, key, "ep-1").to_json()
    envelope = json.loads(data)
    assert set(envelope) == {"payloadType", "payload", "signatures"}
    assert envelope["payloadType"] == "application/vnd.patchd.report+json" == REPORT_PAYLOAD_TYPE
    assert base64.b64decode(envelope["payload"]) == PAYLOAD
    (signature,) = envelope["signatures"]
    assert set(signature) == {"keyid", "sig"}
    assert signature["keyid"] == "ep-1"
    # An Ed25519 signature over DSSE's PAE, as the collector computes it on its own.
    assert pae(REPORT_PAYLOAD_TYPE, PAYLOAD) == fakecollector.pae(REPORT_PAYLOAD_TYPE, PAYLOAD)
    assert key.public_key.verify(
        base64.b64decode(signature["sig"]), pae(REPORT_PAYLOAD_TYPE, PAYLOAD)
    )
    assert verify_report(data, key.public_key, "ep-1") == PAYLOAD


def _tamper_payload(envelope: dict[str, object]) -> None:
    payload = bytearray(base64.b64decode(str(envelope["payload"])))
    payload[payload.index(b"1}")] = ord("2")  # seq 1 → 2
    envelope["payload"] = base64.b64encode(bytes(payload)).decode()


def _tamper_signature(envelope: dict[str, object]) -> None:
    signatures = envelope["signatures"]
    assert isinstance(signatures, list)
    sig = bytearray(base64.b64decode(signatures[0]["sig"]))
    sig[0] ^= 1
    signatures[0]["sig"] = base64.b64encode(bytes(sig)).decode()


def _retype(envelope: dict[str, object]) -> None:
    envelope["payloadType"] = "application/vnd.patchd.policy+yaml"


@pytest.mark.parametrize("tamper", [_tamper_payload, _tamper_signature, _retype],
                         ids=["payload-byte", "signature-bit", "payload-type"])  # fmt: skip
def test_tampering_fails_verification(tamper: object) -> None:
    key = PrivateKey.generate()
    envelope = json.loads(sign_report(PAYLOAD, key, "ep-1").to_json())
    assert callable(tamper)
    tamper(envelope)
    with pytest.raises(TrustError):
        verify_report(json.dumps(envelope).encode(), key.public_key, "ep-1")


def test_other_key_or_endpoint_fails() -> None:
    key, other = PrivateKey.generate(), PrivateKey.generate()
    data = sign_report(PAYLOAD, key, "ep-1").to_json()
    with pytest.raises(TrustError, match="no valid signature"):
        verify_report(data, other.public_key, "ep-1")
    with pytest.raises(TrustError, match="no valid signature"):
        verify_report(data, key.public_key, "ep-2")
