"""Checking a report before anything of it is believed: size, envelope, signature, payload.

The order matters. The body is read only up to its limit; the envelope (a small JSON
document) is parsed; the signer is looked up by its key id and the Ed25519 signature is
checked over the DSSE pre-authentication encoding of the *exact* payload bytes — and only
then is the payload parsed. A payload is accepted with just ``schema_version``,
``endpoint_id``, ``seq``, ``created_at`` and ``hostname``; fields it does not know are
kept (the envelope is stored as received), never refused.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from patchd.signing.dsse import pae

try:
    import orjson as _orjson
except ImportError:  # optional: the standard library's parser gives the same result
    _orjson = None  # type: ignore[assignment]

REPORT_PAYLOAD_TYPE = "application/vnd.patchd.report+json"
MAX_REPORT_BYTES = 1024 * 1024  # the whole request body
MAX_SIGNATURES = 4
MAX_SEQ = 2**63 - 1
# How long a key stays cached. Never a security bound: the writer compares the key that
# verified a report with the pinned one under its lock (a replaced key is refused at once),
# and a key that fails is looked up again (an approved new key works at once).
KEY_CACHE_SECONDS = 3600.0
MAX_CACHED_KEYS = 200_000
_ENDPOINT_ID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")
_TIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:Z|[+-]\d{2}:\d{2})$")


class Rejected(Exception):
    """A report refused before storing; ``status`` is the HTTP answer."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


@dataclass(frozen=True)
class VerifiedReport:
    """A report whose signature checked out, with its payload parsed."""

    endpoint_id: str
    seq: int
    created_at: str
    hostname: str
    payload: dict[str, Any]
    sha256: str  # of the payload bytes
    envelope: bytes  # the request body, exactly
    public_key: str = ""  # the pinned key (base64) that verified it: rechecked when stored


KeyLookup = Callable[[str], str | None]  # endpoint id -> base64 raw public key, or None


class KeyCache:
    """Endpoint public keys, loaded on first use and kept for :data:`KEY_CACHE_SECONDS`.

    Unknown endpoints are not cached (one may enrol on another collector at any moment).
    """

    def __init__(self, lookup: KeyLookup, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._lookup = lookup
        self._clock = clock
        self._keys: dict[str, tuple[float, Ed25519PublicKey, str]] = {}
        self._lock = threading.Lock()

    def get(self, endpoint_id: str, *, fresh: bool = False) -> tuple[Ed25519PublicKey, str] | None:
        """The endpoint's pinned key and its base64 form; ``fresh`` skips the cache."""
        now = self._clock()
        with self._lock:
            cached = self._keys.get(endpoint_id)
        if not fresh and cached is not None and now - cached[0] < KEY_CACHE_SECONDS:
            return cached[1], cached[2]
        encoded = self._lookup(endpoint_id)
        if encoded is None:
            self.forget(endpoint_id)
            return None
        key = Ed25519PublicKey.from_public_bytes(base64.b64decode(encoded))
        with self._lock:
            if len(self._keys) >= MAX_CACHED_KEYS:
                self._keys.clear()
            self._keys[endpoint_id] = (now, key, encoded)
        return key, encoded

    def preload(self, pairs: Iterable[tuple[str, str]]) -> int:
        """Cache ``(endpoint id, base64 key)`` pairs at once; how many were cached.

        A collector that has just started then checks its first burst of reports
        without a database read per endpoint.
        """
        now = self._clock()
        loaded: dict[str, tuple[float, Ed25519PublicKey, str]] = {}
        for endpoint_id, encoded in pairs:
            if len(loaded) >= MAX_CACHED_KEYS:
                break
            try:
                key = Ed25519PublicKey.from_public_bytes(base64.b64decode(encoded))
            except ValueError:
                continue  # looked up (and refused) when it is used
            loaded[endpoint_id] = (now, key, encoded)
        with self._lock:
            self._keys.update(loaded)
        return len(loaded)

    def forget(self, endpoint_id: str) -> None:
        with self._lock:
            self._keys.pop(endpoint_id, None)


def parse_json(data: bytes) -> Any:
    """``json.loads(data)``, in a fraction of the time when orjson is installed.

    What orjson refuses (NaN, lone surrogates) is parsed again by :mod:`json`, so the
    same documents parse. One difference remains: orjson reads an integer beyond 64 bits
    as a float. No report is accepted or refused differently for it (``seq`` must fit in
    63 bits either way), and :mod:`patchd.collector.extract` ignores such a value where
    :mod:`json`'s would not fit the database's integer columns; the envelope is kept as
    received.
    """
    if _orjson is not None:
        try:
            return _orjson.loads(data)
        except ValueError:
            pass
    return json.loads(data)


def dump_json(value: Any) -> bytes | None:
    """``value`` as compact JSON with sorted keys (orjson if installed); None if it cannot be.

    Used for digests: the same parsed document always gives the same bytes.
    """
    if _orjson is not None:
        try:
            return _orjson.dumps(value, option=_orjson.OPT_SORT_KEYS)
        except TypeError:  # e.g. an integer beyond 64 bits, which json parsed
            pass
    try:
        return json.dumps(value, sort_keys=True, separators=(",", ":"), allow_nan=False).encode()
    except ValueError:
        return None


def _b64(value: object, what: str) -> bytes:
    if not isinstance(value, str):
        raise Rejected(400, f"{what} must be a base64 string")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise Rejected(400, f"{what} is not valid base64") from None


def verify_report(body: bytes, keys: KeyCache) -> VerifiedReport:
    """Check ``body`` (a DSSE envelope) and return the report; :class:`Rejected` if not."""
    if len(body) > MAX_REPORT_BYTES:
        raise Rejected(413, f"the report is larger than {MAX_REPORT_BYTES} bytes")
    try:
        envelope = parse_json(body)
    except (ValueError, UnicodeDecodeError):
        raise Rejected(400, "the body is not a JSON document") from None
    if not isinstance(envelope, dict):
        raise Rejected(400, "the envelope must be a JSON object")
    if envelope.get("payloadType") != REPORT_PAYLOAD_TYPE:
        raise Rejected(400, f"payloadType must be {REPORT_PAYLOAD_TYPE}")
    payload = _b64(envelope.get("payload"), "payload")
    signatures = envelope.get("signatures")
    if not isinstance(signatures, list) or not 1 <= len(signatures) <= MAX_SIGNATURES:
        raise Rejected(400, f"signatures must be a list of 1 to {MAX_SIGNATURES} entries")
    message = pae(REPORT_PAYLOAD_TYPE, payload)
    for entry in signatures:
        if not isinstance(entry, dict) or not isinstance(entry.get("keyid"), str):
            raise Rejected(400, "each signature needs a keyid and a sig")
        keyid = entry["keyid"]
        if not _ENDPOINT_ID.match(keyid):
            raise Rejected(400, "a signature's keyid is not an endpoint id")
        sig = _b64(entry.get("sig"), "sig")
        # A cached key that fails is looked up again: an approved new key works at once.
        for fresh in (False, True):
            found = keys.get(keyid, fresh=fresh)
            if found is None:
                break
            try:
                found[0].verify(sig, message)
            except InvalidSignature:
                continue
            return _parsed(payload, keyid, body, found[1])
    raise Rejected(401, "no signature by an enrolled endpoint's key verifies")


def _parsed(payload: bytes, signed_by: str, body: bytes, public_key: str) -> VerifiedReport:
    try:
        document = parse_json(payload)
    except (ValueError, UnicodeDecodeError):
        raise Rejected(422, "the payload is not a JSON document") from None
    if not isinstance(document, dict):
        raise Rejected(422, "the payload must be a JSON object")
    if document.get("schema_version") != 1:
        raise Rejected(422, "schema_version must be 1")
    if document.get("endpoint_id") != signed_by:
        raise Rejected(422, "endpoint_id is not the signer's")
    seq = document.get("seq")
    if isinstance(seq, bool) or not isinstance(seq, int) or not 0 <= seq <= MAX_SEQ:
        raise Rejected(422, "seq must be a non-negative integer")
    created_at = document.get("created_at")
    if not isinstance(created_at, str) or not _TIME.match(created_at):
        raise Rejected(422, "created_at must be an RFC 3339 time")
    hostname = document.get("hostname")
    if not isinstance(hostname, str) or not 0 < len(hostname) <= 255:
        raise Rejected(422, "hostname must be a non-empty string of at most 255 characters")
    return VerifiedReport(
        endpoint_id=signed_by,
        seq=seq,
        created_at=created_at,
        hostname=hostname,
        payload=document,
        sha256=hashlib.sha256(payload).hexdigest(),
        envelope=body,
        public_key=public_key,
    )
