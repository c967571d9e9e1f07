"""Dead Simple Signing Envelope v1: signatures over a payload *and its type*.

A signature covers ``PAE(payloadType, payload)``, so a policy signature can never pass
for a trust-root signature or the reverse (domain separation), and the payload is
verified as the exact bytes received, never re-serialised. Everything read here is
bounded and parsed strictly; any defect is a :class:`TrustError`.
See https://github.com/secure-systems-lab/dsse/blob/master/protocol.md.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from patchd.atomicfile import atomic_write_bytes
from patchd.errors import TrustError
from patchd.signing.keys import (
    PUBLIC_FILE_MODE,
    PrivateKey,
    PublicKey,
    b64decode_strict,
    quoted,
    read_bounded_file,
)

POLICY_PAYLOAD_TYPE = "application/vnd.patchd.policy+yaml"
TRUST_ROOT_PAYLOAD_TYPE = "application/vnd.patchd.trust-root+json"
REPORT_PAYLOAD_TYPE = "application/vnd.patchd.report+json"
MAX_ENVELOPE_BYTES = 1024 * 1024
MAX_SIGNED_FILE_BYTES = 1024 * 1024  # a detached-signed file (a policy)
MAX_SIGNATURES = 256  # per envelope: a rotation carries old and new keys' signatures
MAX_PAYLOAD_TYPE_CHARS = 256
MAX_KEYID_CHARS = 256

_SIGN_HINTS = {
    POLICY_PAYLOAD_TYPE: "more admins sign it: `patchd policy sign FILE --key KEY`",
    TRUST_ROOT_PAYLOAD_TYPE: "more admins sign it: `patchd trust sign ROOT --key KEY`",
}


def pae(payload_type: str, payload: bytes) -> bytes:
    """DSSE's pre-authentication encoding: what a signature actually covers."""
    type_bytes = payload_type.encode("utf-8")
    return b"DSSEv1 %d %b %d %b" % (len(type_bytes), type_bytes, len(payload), payload)


def canonical_json(document: object) -> bytes:
    """The one serialisation patchd signs: sorted keys, no spaces, ASCII."""
    return json.dumps(document, sort_keys=True, separators=(",", ":")).encode("ascii")


class _DuplicateKeyError(ValueError):
    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


def _unique_keys(pairs: list[tuple[str, object]]) -> dict[str, object]:
    # Two readers could otherwise pick different values of a repeated key.
    document: dict[str, object] = {}
    for key, value in pairs:
        if key in document:
            raise _DuplicateKeyError(key)
        document[key] = value
    return document


def _refuse_constant(name: str) -> object:
    raise ValueError(f"{name} is not JSON")


def parse_json(data: bytes, source: str, *, max_bytes: int = MAX_ENVELOPE_BYTES) -> object:
    """Parse untrusted JSON: bounded, UTF-8, no duplicate keys, no NaN or Infinity.

    Raises :class:`TrustError` naming ``source`` for any defect.
    """
    if len(data) > max_bytes:
        raise TrustError(f"{source}: {len(data)} bytes, more than the {max_bytes} allowed")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise TrustError(f"{source}: not UTF-8 (byte {e.start})") from None
    try:
        return json.loads(text, object_pairs_hook=_unique_keys, parse_constant=_refuse_constant)
    except _DuplicateKeyError as e:
        raise TrustError(f"{source}: duplicate JSON key {quoted(e.key)}") from None
    except json.JSONDecodeError as e:
        raise TrustError(
            f"{source}: not valid JSON: {e.msg} at line {e.lineno} column {e.colno}"
        ) from None
    except (ValueError, RecursionError) as e:  # huge integers, deep nesting
        raise TrustError(f"{source}: not acceptable JSON ({type(e).__name__})") from None


def exact_fields(document: object, fields: set[str], where: str) -> dict[str, object]:
    """``document`` as a JSON object with exactly ``fields``; :class:`TrustError` otherwise."""
    if not isinstance(document, dict):
        raise TrustError(f"{where}: must be a JSON object, not {type(document).__name__}")
    missing, unknown = fields - set(document), set(document) - fields
    if missing or unknown:
        problem = f"missing {sorted(missing)}" if missing else f"unknown {quoted(sorted(unknown))}"
        raise TrustError(f"{where}: fields {problem} (expected {sorted(fields)})")
    return document


def _printable_ascii(value: object, where: str, max_chars: int) -> str:
    if not isinstance(value, str) or len(value) > max_chars:
        raise TrustError(f"{where}: must be text of at most {max_chars} characters")
    if not (value.isascii() and value.isprintable()):
        raise TrustError(f"{where}: must be printable ASCII, got {quoted(value)}")
    return value


@dataclass(frozen=True)
class Signature:
    """One signature: ``keyid`` is the signer's claim (a hint), ``sig`` the 64 bytes."""

    keyid: str
    sig: bytes

    def as_dict(self) -> dict[str, str]:
        return {"keyid": self.keyid, "sig": base64.b64encode(self.sig).decode("ascii")}


def sign(payload_type: str, payload: bytes, key: PrivateKey) -> Signature:
    """``key``'s signature over ``PAE(payload_type, payload)``."""
    return Signature(key.key_id, key.sign(pae(payload_type, payload)))


def _with_signature(signatures: Sequence[Signature], new: Signature) -> tuple[Signature, ...]:
    """``signatures`` with ``new`` in place of the same key's entry, or appended."""
    result: list[Signature] = []
    placed = False
    for signature in signatures:
        if signature.keyid != new.keyid:
            result.append(signature)
        elif not placed:
            result.append(new)
            placed = True
    if not placed:
        result.append(new)
    if len(result) > MAX_SIGNATURES:
        raise TrustError(f"more than {MAX_SIGNATURES} signatures")
    return tuple(result)


def _parse_signatures(value: object, where: str) -> tuple[Signature, ...]:
    if not isinstance(value, list):
        raise TrustError(f"{where}: signatures must be a list")
    if len(value) > MAX_SIGNATURES:
        raise TrustError(f"{where}: {len(value)} signatures, more than {MAX_SIGNATURES}")
    signatures = []
    for i, item in enumerate(value):
        entry = exact_fields(item, {"keyid", "sig"}, f"{where}: signatures[{i}]")
        keyid = _printable_ascii(entry["keyid"], f"{where}: signatures[{i}].keyid", MAX_KEYID_CHARS)
        signatures.append(
            Signature(keyid, b64decode_strict(entry["sig"], f"{where}: signatures[{i}].sig"))
        )
    return tuple(signatures)


@dataclass(frozen=True)
class Envelope:
    """A DSSE envelope: a typed payload (exact bytes) and the signatures over it."""

    payload_type: str
    payload: bytes
    signatures: tuple[Signature, ...]

    def to_json(self) -> bytes:
        """The envelope as canonical JSON; the payload travels base64, byte for byte."""
        return canonical_json(
            {
                "payload": base64.b64encode(self.payload).decode("ascii"),
                "payloadType": self.payload_type,
                "signatures": [s.as_dict() for s in self.signatures],
            }
        )

    @classmethod
    def from_json(cls, data: bytes, source: str = "envelope") -> Envelope:
        """Parse an envelope strictly (bounded, UTF-8, strict JSON and base64, exact fields).

        Does not judge signatures. Raises :class:`TrustError` naming ``source``.
        """
        document = exact_fields(
            parse_json(data, source), {"payload", "payloadType", "signatures"}, source
        )
        return cls(
            payload_type=_printable_ascii(
                document["payloadType"], f"{source}: payloadType", MAX_PAYLOAD_TYPE_CHARS
            ),
            payload=b64decode_strict(document["payload"], f"{source}: payload"),
            signatures=_parse_signatures(document["signatures"], source),
        )

    def signed_with(self, key: PrivateKey) -> Envelope:
        """A copy with ``key``'s signature added, replacing any earlier one by that key."""
        new = sign(self.payload_type, self.payload, key)
        return Envelope(self.payload_type, self.payload, _with_signature(self.signatures, new))


def verified_key_ids(
    payload_type: str,
    payload: bytes,
    signatures: Sequence[Signature],
    keys: Mapping[str, PublicKey],
) -> frozenset[str]:
    """The distinct trusted keys that validly signed ``PAE(payload_type, payload)``.

    A key counts by the id derived from the key itself, so one key signing twice, or
    listed under two ids, counts once. A signature naming an unknown key, or one that
    does not verify, is ignored: it cannot help, and it cannot hurt.
    """
    message = pae(payload_type, payload)
    found: set[str] = set()
    for signature in signatures:
        key = keys.get(signature.keyid)
        if key is not None and key.key_id not in found and key.verify(signature.sig, message):
            found.add(key.key_id)
    return frozenset(found)


def require_threshold(  # noqa: PLR0917 (the interface the policy layer codes against)
    payload_type: str,
    payload: bytes,
    signatures: Sequence[Signature],
    keys: Mapping[str, PublicKey],
    threshold: int,
    what: str,
) -> frozenset[str]:
    """:func:`verified_key_ids`, or :class:`TrustError` if fewer than ``threshold`` keys signed.

    A threshold below 1 is refused outright: it would accept unsigned data.
    """
    if threshold < 1:
        raise TrustError(f"{what}: threshold {threshold} is below 1")
    found = verified_key_ids(payload_type, payload, signatures, keys)
    if len(found) < threshold:
        raise TrustError(
            f"{what}: {len(found)} of {threshold} required signatures from trusted keys",
            hint=_SIGN_HINTS.get(payload_type),
        )
    return found


def detached_signature_path(file_path: Path) -> Path:
    """Where ``FILE``'s detached signatures live: ``FILE.sig``."""
    return file_path.with_name(file_path.name + ".sig")


def read_detached(sig_path: Path, payload_type: str) -> tuple[Signature, ...]:
    """The signatures in a detached signature file, which must be for ``payload_type``.

    Raises :class:`TrustError` if the file is missing, too large, malformed or for
    another payload type.
    """
    hint = "sign it with `patchd policy sign FILE --key KEY`"
    data = read_bounded_file(sig_path, MAX_ENVELOPE_BYTES, "signature", hint=hint)
    source = str(sig_path)
    document = exact_fields(parse_json(data, source), {"payloadType", "signatures"}, source)
    found_type = _printable_ascii(
        document["payloadType"], f"{source}: payloadType", MAX_PAYLOAD_TYPE_CHARS
    )
    if found_type != payload_type:
        raise TrustError(f"{source}: signatures are for {found_type!r}, not {payload_type!r}")
    return _parse_signatures(document["signatures"], source)


def add_detached_signature(file_path: Path, key: PrivateKey, payload_type: str) -> Path:
    """Sign ``file_path``'s exact bytes and record the signature in ``FILE.sig``.

    Adds ``key``'s entry, or replaces its earlier one, keeping other admins' entries;
    the file is replaced atomically. Returns the ``.sig`` path. Raises
    :class:`TrustError` if either file is unreadable or the ``.sig`` is malformed.
    """
    payload = read_bounded_file(file_path, MAX_SIGNED_FILE_BYTES, "file to sign")
    sig_path = detached_signature_path(file_path)
    existing = read_detached(sig_path, payload_type) if sig_path.exists() else ()
    signatures = _with_signature(existing, sign(payload_type, payload, key))
    document = {"payloadType": payload_type, "signatures": [s.as_dict() for s in signatures]}
    atomic_write_bytes(sig_path, canonical_json(document) + b"\n", mode=PUBLIC_FILE_MODE)
    return sig_path
