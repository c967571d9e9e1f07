"""A report as the collector receives it: a DSSE envelope signed by the endpoint's key.

The signature covers DSSE's ``PAE(payloadType, payload)`` over the exact payload bytes,
so it cannot be replayed as a policy or trust-root signature, and its ``keyid`` is the
endpoint id the collector gave at enrolment (not the key's hash, as administrators' keys
use): the collector finds the pinned key by it. :func:`verify_report` is the check a
collector (or an auditor) makes — before it parses a byte of the payload.
"""

from __future__ import annotations

from patchd.errors import TrustError
from patchd.signing.dsse import REPORT_PAYLOAD_TYPE, Envelope, Signature, pae
from patchd.signing.keys import PrivateKey, PublicKey


def sign_report(payload: bytes, key: PrivateKey, endpoint_id: str) -> Envelope:
    """The envelope of ``payload`` with the endpoint's one signature, ``keyid`` its id."""
    signature = Signature(endpoint_id, key.sign(pae(REPORT_PAYLOAD_TYPE, payload)))
    return Envelope(REPORT_PAYLOAD_TYPE, payload, (signature,))


def verify_report(data: bytes, key: PublicKey, endpoint_id: str) -> bytes:
    """The payload bytes of a report envelope that ``key`` signed as ``endpoint_id``.

    Parses only the envelope (strictly, bounded); the payload is returned unparsed.
    Raises :class:`TrustError` for a malformed envelope, another payload type, or no
    valid signature by ``key`` under ``endpoint_id``.
    """
    envelope = Envelope.from_json(data, "report")
    if envelope.payload_type != REPORT_PAYLOAD_TYPE:
        raise TrustError(f"report: payload type {envelope.payload_type!r} is not a report")
    message = pae(envelope.payload_type, envelope.payload)
    if not any(s.keyid == endpoint_id and key.verify(s.sig, message) for s in envelope.signatures):
        raise TrustError(f"report: no valid signature by endpoint {endpoint_id!r}")
    return envelope.payload
