"""A policy simulator: admin keys, a trust root, and policies built and signed on demand.

Like python-tuf's ``RepositorySimulator``, it plays the administrators: it makes keys,
installs and rotates the endpoint's trust root, writes policy documents from a minimal
base with overrides, and signs any bytes with any keys (or with the wrong payload type).
An :class:`Endpoint` is the other side: a state directory, its database and a
:class:`~patchd.policy.gate.PolicyGate` reading a :class:`FrozenClock`; it restarts like a
process does and takes a :class:`Snapshot` of everything a refusal must leave alone.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import yaml

from patchd.policy.gate import PolicyGate
from patchd.signing.dsse import POLICY_PAYLOAD_TYPE, Envelope, Signature, canonical_json, sign
from patchd.signing.keys import PrivateKey
from patchd.signing.trust import TrustRoot, TrustStore, make_root
from patchd.state.store import StateStore
from patchd.timeutil import format_time

START = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
LIFETIME = timedelta(days=30)  # how long a simulated policy lasts unless told otherwise
DROP = object()  # an override that removes the field from the base document


class FrozenClock:
    """The host clock, stopped at ``start``; it moves only when a test moves it."""

    def __init__(self, start: datetime = START) -> None:
        self.current = start

    def now(self) -> datetime:
        return self.current

    def advance(self, delta: timedelta) -> None:
        """Move the clock by ``delta``; a negative one sets the host clock back."""
        self.current += delta


@dataclass(frozen=True)
class SignedPolicy:
    """Policy bytes and the signatures that travel with them."""

    data: bytes
    signatures: tuple[Signature, ...]

    def sig_document(self) -> bytes:
        """The ``.sig`` file ``patchd policy sign`` would write for these signatures."""
        document = {
            "payloadType": POLICY_PAYLOAD_TYPE,
            "signatures": [s.as_dict() for s in self.signatures],
        }
        return canonical_json(document) + b"\n"

    def write(self, path: Path) -> Path:
        """Write ``path`` and ``path.sig``; return ``path``."""
        path.write_bytes(self.data)
        path.with_name(path.name + ".sig").write_bytes(self.sig_document())
        return path


class PolicySimulator:
    """The admins: numbered keys, the trust root they maintain, and policies they sign.

    Keys ``0 .. keys - 1`` exist from the start; :meth:`install_root` trusts some of them.
    """

    def __init__(self, state_dir: Path, clock: FrozenClock, *, keys: int = 4) -> None:
        self.clock = clock
        self.trust = TrustStore(state_dir)
        self.keys = [PrivateKey.generate() for _ in range(keys)]
        self.root_version = 0
        self.trusted: tuple[int, ...] = ()
        self.threshold = 0

    def key_id(self, index: int) -> str:
        return self.keys[index].key_id

    def new_key(self) -> int:
        """Make another admin key; return its number."""
        self.keys.append(PrivateKey.generate())
        return len(self.keys) - 1

    # -- trust roots -------------------------------------------------------------------

    def root_envelope(
        self, version: int, trusted: Sequence[int], threshold: int, signers: Sequence[int] = ()
    ) -> Envelope:
        envelope = make_root(version, [self.keys[i].public_key for i in trusted], threshold)
        for i in signers:
            envelope = envelope.signed_with(self.keys[i])
        return envelope

    def install_root(self, trusted: Sequence[int] = (0, 1, 2), threshold: int = 2) -> TrustRoot:
        """Install version 1 on the endpoint, as an admin does by hand (self-signed)."""
        envelope = self.root_envelope(1, trusted, threshold, signers=trusted)
        root = self.trust.install_initial(envelope.to_json(), "root.v1.json")
        self.root_version, self.trusted, self.threshold = 1, tuple(trusted), threshold
        return root

    def rotate(self, trusted: Sequence[int], threshold: int) -> TrustRoot:
        """Install the next root version, signed by the current keys and the new ones."""
        version = self.root_version + 1
        signers = list(dict.fromkeys([*self.trusted, *trusted]))
        envelope = self.root_envelope(version, trusted, threshold, signers)
        root = self.trust.update(envelope.to_json(), f"root.v{version}.json")
        self.root_version, self.trusted, self.threshold = version, tuple(trusted), threshold
        return root

    # -- policies ----------------------------------------------------------------------

    def document(
        self,
        version: int = 1,
        *,
        issued: timedelta = timedelta(0),
        lifetime: timedelta = LIFETIME,
        **overrides: object,
    ) -> dict[str, Any]:
        """A minimal valid policy: issued ``issued`` from the clock's now, lasting ``lifetime``.

        ``overrides`` replace or add fields (``DROP`` removes one), valid or not.
        """
        issued_at = self.clock.now() + issued
        document: dict[str, Any] = {
            "version": version,
            "name": "acme-fleet",
            "issued_at": format_time(issued_at),
            "expires": format_time(issued_at + lifetime),
        }
        for name, value in overrides.items():
            if value is DROP:
                document.pop(name, None)
            else:
                document[name] = value
        return document

    @staticmethod
    def serialise(document: Mapping[str, Any]) -> bytes:
        return yaml.safe_dump(dict(document), sort_keys=False, allow_unicode=True).encode()

    def sign(
        self, data: bytes, signers: Sequence[int], payload_type: str = POLICY_PAYLOAD_TYPE
    ) -> tuple[Signature, ...]:
        """Each listed key's signature over ``data`` as ``payload_type``, in order."""
        return tuple(sign(payload_type, data, self.keys[i]) for i in signers)

    def signed(self, data: bytes, signers: Sequence[int] = (0, 1)) -> SignedPolicy:
        return SignedPolicy(data, self.sign(data, signers))

    def policy(
        self,
        version: int = 1,
        signers: Sequence[int] = (0, 1),
        *,
        issued: timedelta = timedelta(0),
        lifetime: timedelta = LIFETIME,
        **overrides: object,
    ) -> SignedPolicy:
        """:meth:`document`, serialised and signed by ``signers``."""
        document = self.document(version, issued=issued, lifetime=lifetime, **overrides)
        return self.signed(self.serialise(document), signers)


@dataclass(frozen=True)
class Snapshot:
    """What a refused policy must leave exactly as it was."""

    active: tuple[int, str] | None  # version and sha256 of the policy in force
    files: Mapping[str, bytes]  # STATE/policy/, by name
    record: Mapping[str, Any]  # the policy state as `patchd status` shows it
    trust_root: bytes | None


@dataclass
class Endpoint:
    """One endpoint's state directory, database and policy gate, restartable."""

    state_dir: Path
    clock: FrozenClock
    store: StateStore = field(init=False)
    gate: PolicyGate = field(init=False)

    def __post_init__(self) -> None:
        self._open()

    def _open(self) -> None:
        self.store = StateStore.open(self.state_dir)
        self.gate = PolicyGate(self.state_dir, self.store, self.clock.now)

    def restart(self) -> None:
        """What a new process sees: the database reopened, a new gate."""
        self.store.close()
        self._open()

    def close(self) -> None:
        self.store.close()

    @property
    def policy_dir(self) -> Path:
        return self.state_dir / "policy"

    def policy_files(self) -> dict[str, bytes]:
        if not self.policy_dir.is_dir():
            return {}
        return {p.name: p.read_bytes() for p in sorted(self.policy_dir.iterdir())}

    def snapshot(self) -> Snapshot:
        active = self.gate.active()
        status = self.gate.status()
        record = {k: v for k, v in status.items() if k not in ("state", "last_refusal")}
        root = self.state_dir / "trust" / "root.json"
        return Snapshot(
            active=(active.loaded.policy.version, active.loaded.sha256) if active else None,
            files=self.policy_files(),
            record=record,
            trust_root=root.read_bytes() if root.exists() else None,
        )

    def events(self, kind: str) -> list[dict[str, Any]]:
        """The recorded events of ``kind`` (accepted, refused, flagged), oldest first."""
        names = ("at", "reason", "code", "source", "version", "sha256")
        rows = self.store.query(
            f"SELECT {', '.join(names)} FROM policy_events WHERE kind = ? ORDER BY id",
            (kind,),
        )
        return [dict(zip(names, row, strict=True)) for row in rows]


def endpoint_with_simulator(
    state_dir: Path, *, root: bool = True
) -> Iterator[tuple[PolicySimulator, Endpoint]]:
    """A simulator (with trust root version 1 of keys 0-2, threshold 2, unless ``root``
    is false) and its endpoint; closes the endpoint when done. For fixtures."""
    clock = FrozenClock()
    simulator = PolicySimulator(state_dir, clock)
    if root:
        simulator.install_root()
    endpoint = Endpoint(state_dir, clock)
    try:
        yield simulator, endpoint
    finally:
        endpoint.close()


def json_sig(signatures: Sequence[Mapping[str, object]], payload_type: str) -> bytes:
    """A ``.sig`` document with raw entries, as an attacker may write one."""
    return json.dumps({"payloadType": payload_type, "signatures": list(signatures)}).encode()
