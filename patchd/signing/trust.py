"""Trust roots: which admin keys sign policies, how many must, and how that changes.

A trust root is a versioned DSSE envelope listing keys and a threshold. The first version
an endpoint holds is trusted because an admin installed it; every later one only as the
direct successor of the installed one, signed by a threshold of the installed version's
keys *and* of its own (TUF's root rotation: the old keys vouch for the change, the new
keys prove they are held). So nothing between admin and endpoint can forge, replay or
skip a version. :class:`TrustStore` persists only what :func:`verify_successor` accepted."""

from __future__ import annotations

import contextlib
import os
import re
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType

from patchd.atomicfile import atomic_write_bytes
from patchd.errors import LockHeldError, TrustError
from patchd.signing.dsse import (
    MAX_ENVELOPE_BYTES,
    POLICY_PAYLOAD_TYPE,
    TRUST_ROOT_PAYLOAD_TYPE,
    Envelope,
    Signature,
    canonical_json,
    exact_fields,
    parse_json,
    require_threshold,
)
from patchd.signing.keys import PUBLIC_FILE_MODE, PublicKey, quoted, read_bounded_file

ROOT_TYPE = "patchd-trust-root"
MAX_ROOT_KEYS = 64
MAX_ROOT_VERSION = 2**31 - 1
HISTORY_VERSIONS = 32  # previous roots kept in STATE_DIR/trust/history/
LOCK_WAIT_S = 10.0
LOCK_POLL_S = 0.05
_HISTORY_NAME = re.compile(r"root\.v([0-9]{1,10})\.json")


@dataclass(frozen=True)
class TrustRoot:
    """A parsed trust root. Only this module's checks construct one from outside data."""

    version: int
    threshold: int
    keys: Mapping[str, PublicKey]  # key_id -> key
    envelope: Envelope  # as received: envelope.payload are the exact bytes signed

    def verify_policy(
        self, policy_bytes: bytes, signatures: Sequence[Signature], *, what: str = "policy"
    ) -> frozenset[str]:
        """The ids of the trusted keys that signed ``policy_bytes`` (at least the threshold).

        Raises :class:`TrustError` if fewer than :attr:`threshold` distinct keys did.
        """
        return require_threshold(
            POLICY_PAYLOAD_TYPE, policy_bytes, signatures, self.keys, self.threshold, what
        )


def _bounded_int(value: object, where: str, low: int, high: int) -> int:
    # bool is an int to Python, not to a JSON schema.
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise TrustError(
            f"{where}: must be a whole number from {low} to {high}, got {quoted(value)}"
        )
    return value


def make_root(version: int, keys: Sequence[PublicKey], threshold: int) -> Envelope:
    """An unsigned trust root envelope with a canonical JSON payload.

    Raises :class:`TrustError` unless there are 1 to ``MAX_ROOT_KEYS`` distinct keys,
    ``1 <= threshold <= len(keys)`` and the version is in range.
    """
    _bounded_int(version, "trust root version", 1, MAX_ROOT_VERSION)
    if not 1 <= len(keys) <= MAX_ROOT_KEYS:
        raise TrustError(f"a trust root lists 1 to {MAX_ROOT_KEYS} keys, not {len(keys)}")
    listed = {key.key_id: key.as_dict() for key in keys}
    if len(listed) != len(keys):
        raise TrustError("a trust root lists each key once")
    _bounded_int(threshold, "trust root threshold", 1, len(keys))
    payload = {"_type": ROOT_TYPE, "version": version, "threshold": threshold, "keys": listed}
    envelope = Envelope(TRUST_ROOT_PAYLOAD_TYPE, canonical_json(payload), ())
    parse_root(envelope)  # what is written must be what endpoints accept
    return envelope


def parse_root(envelope: Envelope, *, source: str = "trust root") -> TrustRoot:
    """Parse and validate a trust root's payload. Does NOT judge its signatures.

    Raises :class:`TrustError` if the payload type is not a trust root's, the payload is
    not strict JSON of the schema, a key id is not the SHA-256 of its key, or the key
    count or threshold are out of range.
    """
    if envelope.payload_type != TRUST_ROOT_PAYLOAD_TYPE:
        raise TrustError(
            f"{source}: payload type {quoted(envelope.payload_type)} is not a trust root's"
        )
    where = f"{source}: payload"
    document = exact_fields(
        parse_json(envelope.payload, where), {"_type", "version", "threshold", "keys"}, where
    )
    if document["_type"] != ROOT_TYPE:
        raise TrustError(f"{where}: _type {quoted(document['_type'])} is not {ROOT_TYPE!r}")
    version = _bounded_int(document["version"], f"{where}: version", 1, MAX_ROOT_VERSION)
    listed = document["keys"]
    if not isinstance(listed, dict) or not 1 <= len(listed) <= MAX_ROOT_KEYS:
        raise TrustError(f"{where}: keys must map 1 to {MAX_ROOT_KEYS} key ids to keys")
    keys: dict[str, PublicKey] = {}
    for key_id, value in listed.items():
        key = PublicKey.from_dict(value, f"{where}: keys[{quoted(key_id)}]")
        if key.key_id != key_id:
            # Otherwise one key could be listed under several ids and count several times.
            raise TrustError(f"{where}: key id {quoted(key_id)} is not the SHA-256 of its key")
        keys[key_id] = key
    threshold = _bounded_int(document["threshold"], f"{where}: threshold", 1, len(keys))
    return TrustRoot(version, threshold, MappingProxyType(keys), envelope)


def verify_root_alone(envelope: Envelope, *, source: str = "trust root") -> TrustRoot:
    """A root judged on its own, as a first installation is: it must parse, and if it
    carries any signatures, a threshold of its own keys must have signed it.

    Raises :class:`TrustError` otherwise.
    """
    root = parse_root(envelope, source=source)
    if envelope.signatures:
        require_threshold(
            TRUST_ROOT_PAYLOAD_TYPE,
            envelope.payload,
            envelope.signatures,
            root.keys,
            root.threshold,
            f"{source}: version {root.version} signed by its own keys",
        )
    return root


def verify_successor(
    current: TrustRoot, candidate: Envelope, *, source: str = "trust root"
) -> TrustRoot:
    """Accept ``candidate`` as the version after ``current`` (TUF's root update), or raise.

    In this order: it parses; a threshold of ``current``'s keys signed it; its version
    is exactly ``current.version + 1``; a threshold of its own keys signed it. Raises
    :class:`TrustError` naming the first check that failed.
    """
    new = parse_root(candidate, source=source)
    require_threshold(
        TRUST_ROOT_PAYLOAD_TYPE,
        candidate.payload,
        candidate.signatures,
        current.keys,
        current.threshold,
        f"{source}: version {new.version} signed by version {current.version}'s keys",
    )
    if new.version <= current.version:
        if new.version < current.version:
            problem = f"version {new.version} is older than installed version {current.version}"
        elif candidate.payload == current.envelope.payload:
            problem = f"version {new.version} is already installed"
        else:
            problem = f"a different version {new.version} is already installed"
        raise TrustError(f"{source}: {problem}", hint="a trust root version is installed once")
    if new.version != current.version + 1:
        raise TrustError(
            f"{source}: version {new.version} skips version {current.version + 1}",
            hint=f"install version {current.version + 1} first: every version in turn",
        )
    require_threshold(
        TRUST_ROOT_PAYLOAD_TYPE,
        candidate.payload,
        candidate.signatures,
        new.keys,
        new.threshold,
        f"{source}: version {new.version} signed by its own keys",
    )
    return new


class TrustStore:
    """The endpoint's accepted trust root, in STATE_DIR/trust/root.json (exact bytes, atomic).

    The last ``HISTORY_VERSIONS`` previous versions stay in ``STATE_DIR/trust/history/``.
    """

    def __init__(self, state_dir: Path) -> None:
        self.directory = state_dir / "trust"
        self.root_path = self.directory / "root.json"
        self.history_dir = self.directory / "history"

    def _installed_bytes(self) -> bytes | None:
        if not os.path.lexists(self.root_path):
            return None
        return read_bounded_file(self.root_path, MAX_ENVELOPE_BYTES, "trust root")

    def _parse_installed(self, data: bytes) -> TrustRoot:
        source = str(self.root_path)
        try:
            return verify_root_alone(Envelope.from_json(data, source), source=source)
        except TrustError as e:
            raise TrustError(
                f"the installed trust root is damaged: {e.message}",
                hint=f"restore it from {self.history_dir} or the admins' copy",
            ) from None

    def current(self) -> TrustRoot | None:
        """The installed trust root, or ``None``; :class:`TrustError` if it is damaged."""
        data = self._installed_bytes()
        return None if data is None else self._parse_installed(data)

    def install_initial(self, data: bytes, source: str) -> TrustRoot:
        """Install the first trust root (trusted because an admin installs it).

        Installing the very same bytes again is a no-op. Raises :class:`TrustError` if
        the root is malformed, carries signatures that fall short of its own threshold,
        or a different root is already installed (rotations go through :meth:`update`).
        """
        root = verify_root_alone(Envelope.from_json(data, source), source=source)
        with self._locked():
            installed = self._installed_bytes()
            if installed == data:
                return root
            if installed is not None:
                version = self._parse_installed(installed).version
                raise TrustError(
                    f"{source}: a different trust root (version {version}) is already installed in {self.directory}",
                    hint="install a new version with `patchd trust update ROOT`",
                )
            atomic_write_bytes(self.root_path, data, mode=PUBLIC_FILE_MODE)
        return root

    def update(self, data: bytes, source: str) -> TrustRoot:
        """Install the version after the installed one, if :func:`verify_successor` accepts it.

        Raises :class:`TrustError` if no root is installed or the candidate is refused;
        the installed root is then unchanged.
        """
        candidate = Envelope.from_json(data, source)
        if not self.directory.is_dir():  # checked first so a refusal creates nothing
            raise self._none_installed()
        with self._locked():
            installed = self._installed_bytes()
            if installed is None:
                raise self._none_installed()
            current = self._parse_installed(installed)
            new = verify_successor(current, candidate, source=source)
            self.history_dir.mkdir(exist_ok=True)
            history_path = self.history_dir / f"root.v{current.version}.json"
            atomic_write_bytes(history_path, installed, mode=PUBLIC_FILE_MODE)
            atomic_write_bytes(self.root_path, data, mode=PUBLIC_FILE_MODE)
            self._prune_history()
        return new

    def _none_installed(self) -> TrustError:
        return TrustError(
            f"no trust root is installed in {self.directory}",
            hint="install one with `patchd policy activate FILE --trust ROOT`",
        )

    def _prune_history(self) -> None:
        matches = (_HISTORY_NAME.fullmatch(p.name) for p in self.history_dir.iterdir())
        versions = sorted(int(m.group(1)) for m in matches if m)
        for version in versions[:-HISTORY_VERSIONS]:
            (self.history_dir / f"root.v{version}.json").unlink(missing_ok=True)

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """Hold the store's lock (bounded wait) so two installers cannot interleave."""
        self.directory.mkdir(parents=True, exist_ok=True)
        try:
            import fcntl
        except ImportError:  # Windows: one agent per machine, no concurrent installers
            yield
            return
        lock_path = self.directory / ".lock"
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            deadline = time.monotonic() + LOCK_WAIT_S
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() >= deadline:
                        raise LockHeldError(
                            str(lock_path), holder_pid=None, holder_name=None, waited_s=LOCK_WAIT_S
                        ) from None
                    time.sleep(LOCK_POLL_S)
            yield
        finally:
            os.close(fd)
