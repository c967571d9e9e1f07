"""The one acceptance path for policies: ``patchd policy activate`` and the agent alike.

In this order, stopping at the first failure:

1. a byte cap;
2. a threshold of valid signatures from distinct keys of the endpoint's trust root,
   over the exact bytes (nothing is parsed before this);
3. safe parsing and the schema (:func:`patchd.policy.loader.load_policy`);
4. version rules: lower than the highest ever accepted is refused (rollback); the same
   version with other bytes is refused and flagged (a fork, or a signing mistake);
5. ``issued_at`` at most a day ahead of the clock, and expiry against a clock that never
   runs behind the newest signed ``issued_at`` seen (a host clock set back before that
   time cannot revive an expired policy);
6. atomic activation: the exact bytes and signatures become the last-known-good.

A refusal leaves the last-known-good policy in force and is recorded with its reason.
The highest version and the clock floor survive restarts and expiry.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import os
import re
import stat
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from patchd.atomicfile import atomic_write_bytes
from patchd.errors import PolicyError, TrustError
from patchd.policy.durations import format_duration
from patchd.policy.loader import MAX_POLICY_BYTES, LoadedPolicy, PolicyInvalid, load_policy
from patchd.signing.dsse import POLICY_PAYLOAD_TYPE, Signature, read_detached
from patchd.signing.trust import TrustStore
from patchd.state.store import StateStore
from patchd.timeutil import format_time, parse_time

log = logging.getLogger(__name__)

KEPT_VERSIONS = 5
MAX_SIGNATURES = 256  # a policy has a handful; thousands would only cost verification time
MAX_CLOCK_SKEW = timedelta(
    hours=24
)  # how far ahead of this endpoint a policy's issued_at may be  # policy files kept on disk besides the active one
_KEPT_NAME = re.compile(r"v([0-9]{1,20})-[0-9a-f]{12}\.yaml")


class PolicyRefused(PolicyError):
    """This endpoint refused a policy; the last-known-good stays in force.

    ``code`` names the check that failed: ``unreadable``, ``too-large``,
    ``no-trust-root``, ``signatures``, ``invalid``, ``rollback``, ``fork``, ``expired``.
    """

    def __init__(self, code: str, message: str, *, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.code = code


@dataclass(frozen=True)
class ActivePolicy:
    """The policy in force on this endpoint, re-read from its kept bytes."""

    loaded: LoadedPolicy
    activated_at: datetime
    key_ids: tuple[str, ...]


@dataclass(frozen=True)
class Refusal:
    reason: str
    code: str
    at: datetime
    source: str

    def as_dict(self) -> dict[str, str]:
        return {
            "reason": self.reason,
            "code": self.code,
            "at": format_time(self.at),
            "source": self.source,
        }


class PolicyGate:
    """Accepts or refuses policies for one endpoint, and knows the one in force."""

    def __init__(self, state_dir: Path, store: StateStore, clock: Callable[[], datetime]) -> None:
        self.state_dir = state_dir
        self.store = store
        self.clock = clock
        self.trust = TrustStore(state_dir)

    # -- reading ---------------------------------------------------------------------

    def _row(self) -> dict[str, Any]:
        names = ("name", "version", "sha256", "policy_path", "issued_at", "expires", "activated_at",
                 "key_ids", "min_version", "clock_floor")  # fmt: skip
        (row,) = self.store.query(f"SELECT {', '.join(names)} FROM policy_state WHERE id = 1")  # noqa: S608
        return dict(zip(names, row, strict=True))

    def now(self) -> datetime:
        """The time used for expiry: the clock, never earlier than the newest signed issued_at seen."""
        floor = self._row()["clock_floor"]
        now = self.clock()
        return max(now, parse_time(floor)) if floor else now

    def active(self) -> ActivePolicy | None:
        """The last-known-good policy, or ``None``. Its bytes are checked against the record."""
        row = self._row()
        if not row["policy_path"]:
            return None
        path = Path(row["policy_path"])
        try:
            data = path.read_bytes()
        except OSError as e:
            raise PolicyError(
                f"the active policy {path} is unreadable: {e.strerror}",
                hint="activate the policy again with `patchd policy activate`",
            ) from None
        if hashlib.sha256(data).hexdigest() != row["sha256"]:  # verify, then parse
            raise PolicyError(
                f"the active policy {path} was changed on disk (sha256 mismatch)",
                hint="activate a signed policy again with `patchd policy activate`",
            )
        loaded = load_policy(data, str(path))
        return ActivePolicy(
            loaded, parse_time(row["activated_at"]), tuple(json.loads(row["key_ids"]))
        )

    def last_refusal(self) -> Refusal | None:
        rows = self.store.query(
            "SELECT reason, code, at, source FROM policy_events WHERE kind = 'refused' ORDER BY id DESC LIMIT 1"
        )
        if not rows:
            return None
        reason, code, at, source = rows[0]
        return Refusal(reason, code, parse_time(at), source)

    def status(self) -> dict[str, Any]:
        """The ``policy`` object of ``patchd status --json``."""
        row = self._row()
        refusal = self.last_refusal()
        state = "none"
        if row["policy_path"]:
            state = "expired" if self.now() >= parse_time(row["expires"]) else "active"
        return {
            "name": row["name"],
            "version": row["version"],
            "sha256": row["sha256"],
            "issued_at": row["issued_at"],
            "expires": row["expires"],
            "activated_at": row["activated_at"],
            "signed_by": json.loads(row["key_ids"]),
            "state": state,
            "min_version": row["min_version"],
            "last_refusal": refusal.as_dict() if refusal else None,
        }

    # -- accepting -------------------------------------------------------------------

    def _event(
        self, kind: str, code: str, reason: str, source: str, loaded: LoadedPolicy | None
    ) -> None:
        version = loaded.policy.version if loaded else None
        with self.store.transaction() as db:
            db.execute(
                "INSERT INTO policy_events (at, kind, reason, code, source, version, sha256)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    format_time(self.clock()),
                    kind,
                    reason,
                    code,
                    source,
                    version,
                    loaded.sha256 if loaded else None,
                ),
            )

    def _refuse(
        self,
        code: str,
        message: str,
        source: str,
        loaded: LoadedPolicy | None = None,
        hint: str | None = None,
    ) -> PolicyRefused:
        self._event("refused", code, message, source, loaded)
        log.debug("policy from %s refused: %s", source, message)
        return PolicyRefused(code, f"policy refused: {message}", hint=hint)

    def record_refusal(self, code: str, message: str, source: str) -> None:
        """Record a refusal decided outside the gate (a trust root file the agent rejected)."""
        self._event("refused", code, message, source, None)

    def _too_large(self, source: str) -> PolicyRefused:
        return self._refuse(
            "too-large", f"{source} is larger than {MAX_POLICY_BYTES} bytes", source
        )

    def _refuse_conflict(
        self, conflict: tuple[str, str], source: str, loaded: LoadedPolicy
    ) -> PolicyRefused:
        code, message = conflict
        if code != "fork":
            return self._refuse(code, message, source, loaded)
        self._event(
            "flagged",
            "fork",
            f"version {loaded.policy.version} signed twice with different contents",
            source,
            loaded,
        )
        return self._refuse(
            code, message, source, loaded, hint="publish changes under a new version"
        )

    def activate_file(self, path: Path) -> ActivePolicy:
        """Accept the policy in ``path``, signed in ``path.sig`` (see :meth:`activate`)."""
        source = str(path)
        try:
            data = _read_regular_file(path, MAX_POLICY_BYTES + 1)
        except OSError as e:
            raise self._refuse(
                "unreadable", f"{source}: cannot read: {e.strerror}", source
            ) from None
        if data is None:  # a FIFO or device would block the agent, or never end
            raise self._refuse("unreadable", f"{source} is not a regular file", source)
        if len(data) > MAX_POLICY_BYTES:
            raise self._too_large(source)
        try:
            signatures = read_detached(path.with_name(path.name + ".sig"), POLICY_PAYLOAD_TYPE)
        except TrustError as e:
            raise self._refuse(
                "signatures", e.message, source, hint="sign it with `patchd policy sign`"
            ) from None
        return self.activate(data, signatures, source)

    def activate(self, data: bytes, signatures: Sequence[Signature], source: str) -> ActivePolicy:
        """Accept ``data`` (a policy's exact bytes) and make it the one in force, or refuse it.

        Raises :class:`PolicyRefused` (exit status 78) after recording why; the policy in
        force does not change.
        """
        if len(data) > MAX_POLICY_BYTES:
            raise self._too_large(source)
        if len(signatures) > MAX_SIGNATURES:
            raise self._refuse(
                "signatures", f"{source} carries more than {MAX_SIGNATURES} signatures", source
            )
        try:
            root = self.trust.current()
        except TrustError as e:
            raise self._refuse(
                "no-trust-root",
                e.message,
                source,
                hint="reinstall the trust root with `patchd policy activate FILE --trust ROOT`",
            ) from None
        if root is None:
            raise self._refuse(
                "no-trust-root",
                "no trust root is installed on this endpoint",
                source,
                hint="install one with `patchd policy activate FILE --trust ROOT`",
            )
        try:
            key_ids = root.verify_policy(data, signatures, what=source)
        except TrustError as e:
            raise self._refuse(
                "signatures",
                e.message,
                source,
                hint="have enough trusted administrators sign it (`patchd policy sign`)",
            ) from None
        try:
            loaded = load_policy(data, source)
        except PolicyInvalid as e:
            raise self._refuse(
                "invalid", e.message, source, hint="run `patchd policy check`"
            ) from None
        policy = loaded.policy
        row = self._row()
        if policy.issued_at > self.clock() + MAX_CLOCK_SKEW:
            # Accepting it would move the clock floor into the future and expire every
            # policy until then: a signing mistake must not freeze the fleet.
            raise self._refuse(
                "future",
                f"version {policy.version} is issued at {format_time(policy.issued_at)}, "
                f"more than {format_duration(MAX_CLOCK_SKEW)} ahead of this endpoint's clock",
                source,
                loaded,
                hint="check the issuing machine's clock and this endpoint's",
            )
        self._raise_floor(policy.issued_at)  # signed by admins: a trustworthy lower bound on time
        if row["version"] == policy.version and row["sha256"] == loaded.sha256:
            try:
                active = self.active()
            except PolicyError:  # its kept copy is gone or changed: install these bytes again
                active = None
            if active is not None:
                return active  # already in force
        conflict = _version_conflict(row, loaded)
        if conflict is not None:
            raise self._refuse_conflict(conflict, source, loaded)
        now = self.now()
        if policy.expires <= now:
            raise self._refuse(
                "expired",
                f"version {policy.version} expired at {format_time(policy.expires)}",
                source,
                loaded,
            )
        self._install(loaded, signatures, key_ids, now, source)
        self._event(
            "accepted",
            "accepted",
            f"version {policy.version} accepted",
            source,
            loaded,
        )
        active = self.active()
        assert active is not None
        return active

    def _raise_floor(self, issued_at: datetime) -> None:
        with self.store.transaction() as db:
            (floor,) = db.execute("SELECT clock_floor FROM policy_state WHERE id = 1").fetchone()
            if floor is None or parse_time(floor) < issued_at:
                db.execute(
                    "UPDATE policy_state SET clock_floor = ? WHERE id = 1",
                    (format_time(issued_at),),
                )

    def _install(
        self,
        loaded: LoadedPolicy,
        signatures: Sequence[Signature],
        key_ids: frozenset[str],
        now: datetime,
        source: str,
    ) -> None:
        policy = loaded.policy
        directory = self.state_dir / "policy"
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        path = directory / f"v{policy.version}-{loaded.sha256[:12]}.yaml"
        existed = path.exists()
        atomic_write_bytes(path, loaded.data, mode=0o600)
        signature_doc = {
            "payloadType": POLICY_PAYLOAD_TYPE,
            "signatures": [
                {"keyid": s.keyid, "sig": base64.b64encode(s.sig).decode()} for s in signatures
            ],
        }
        atomic_write_bytes(
            path.with_suffix(".yaml.sig"), json.dumps(signature_doc).encode(), mode=0o600
        )
        with self.store.transaction() as db:
            # Another process may have activated a policy since the checks: check again, atomically.
            row = self._row()
            conflict = _version_conflict(row, loaded)
            if conflict is None:
                db.execute(
                    """UPDATE policy_state SET name = ?, version = ?, sha256 = ?, policy_path = ?,
                           issued_at = ?, expires = ?, activated_at = ?, key_ids = ?,
                           min_version = MAX(min_version, ?) WHERE id = 1""",
                    (
                        policy.name,
                        policy.version,
                        loaded.sha256,
                        str(path),
                        format_time(policy.issued_at),
                        format_time(policy.expires),
                        format_time(now),
                        json.dumps(sorted(key_ids)),
                        policy.version,
                    ),
                )
        if conflict is not None:
            if not existed:
                path.unlink(missing_ok=True)
                path.with_suffix(".yaml.sig").unlink(missing_ok=True)
            raise self._refuse_conflict(conflict, source, loaded)
        self._prune(directory, keep=path)

    @staticmethod
    def _prune(directory: Path, keep: Path) -> None:
        """Keep the ``KEPT_VERSIONS`` highest versions besides ``keep``.

        By version, not modification time: a host clock set back would reorder those.
        """
        kept = ((_KEPT_NAME.fullmatch(p.name), p) for p in directory.glob("v*.yaml") if p != keep)
        files = [p for _, p in sorted((int(m.group(1)), p) for m, p in kept if m)]
        for old in files[:-KEPT_VERSIONS] if len(files) > KEPT_VERSIONS else []:
            old.unlink(missing_ok=True)
            old.with_suffix(".yaml.sig").unlink(missing_ok=True)


def _version_conflict(row: dict[str, Any], loaded: LoadedPolicy) -> tuple[str, str] | None:
    """``(code, message)`` if the policy state ``row`` forbids ``loaded``: a rollback or a fork."""
    version = loaded.policy.version
    if version < row["min_version"]:
        return "rollback", (
            f"version {version} is older than version {row['min_version']} already accepted"
        )
    if version == row["version"] and loaded.sha256 != row["sha256"]:
        return "fork", f"version {version} is already in force with different contents"
    return None


def _read_regular_file(path: Path, max_bytes: int) -> bytes | None:
    """At most ``max_bytes`` of ``path``, or ``None`` if it is not a regular file.

    Opened without blocking and checked on the open descriptor, so a FIFO swapped in
    after a check cannot hang the reader.
    """
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        with os.fdopen(fd, "rb", closefd=False) as f:
            return f.read(max_bytes)
    finally:
        os.close(fd)
