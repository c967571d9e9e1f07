"""Live reload: the policy from the watched file and from collector URLs, and the trust root.

Every policy still goes through :class:`~patchd.policy.gate.PolicyGate`, the one acceptance
path, which records each refusal and keeps the last-known-good policy in force. This module
gathers the bytes and turns every failure into a logged, not-accepted
:class:`ReloadOutcome`: the running agent must survive whatever a file, a collector or a
network does, so nothing here raises for a bad policy, a missing file or a dead URL.

A policy whose bytes are those already in force is reported as accepted without going
through the gate again: no signature check, no database write, no event (a watcher firing
on an unchanged file, or an hourly fetch of the same policy, changes nothing).

Not thread-safe: call it from the thread that opened the gate's state database (SQLite
connections belong to their thread). A :class:`~patchd.policy.watch.PolicyFileWatcher`
callback should only ask that thread to call :meth:`PolicyReloader.reload_file`.
"""

from __future__ import annotations

import hashlib
import logging
import os
import stat
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from patchd.config import PolicySettings, redact_url
from patchd.errors import PatchdError, PolicyError
from patchd.policy.fetch import fetch_policy
from patchd.policy.gate import ActivePolicy, PolicyGate, PolicyRefused
from patchd.policy.loader import MAX_POLICY_BYTES
from patchd.signing.dsse import MAX_ENVELOPE_BYTES, Envelope
from patchd.signing.keys import read_bounded_file
from patchd.signing.trust import parse_root

log = logging.getLogger(__name__)

TRUST_ROOT_REFUSED = "trust-root"  # the code of a recorded trust root problem


@dataclass(frozen=True)
class ReloadOutcome:
    """What one reload from one source did.

    ``accepted``: the source's policy is the one in force (just activated, or already);
    ``version`` is then its version, otherwise ``None``. ``reason`` says what happened, in
    words fit for a log line. ``source`` is a path, or a URL without its query string.
    """

    source: str
    accepted: bool
    version: int | None
    reason: str


class PolicyReloader:
    """Reloads the policy from the sources in ``settings`` through ``gate``; never raises."""

    def __init__(self, gate: PolicyGate, settings: PolicySettings) -> None:
        self.gate = gate
        self.settings = settings

    # -- policies --------------------------------------------------------------------

    def reload_file(self) -> ReloadOutcome:
        """Offer ``settings.file`` (signed in ``file.sig``) to the gate.

        What SIGHUP and the file watcher call. A missing, unreadable, unsigned or refused
        file leaves the policy in force and gives a not-accepted outcome.
        """
        path = self.settings.file
        if path is None:
            return ReloadOutcome("policy.file", False, None, "no policy file is configured")
        return self._guarded(str(path), lambda: self._reload_file(path))

    def fetch_all(self) -> list[ReloadOutcome]:
        """Fetch each of ``settings.urls`` in turn and offer its policy to the gate.

        One outcome per URL, in order. Each fetch takes at most about twice
        ``patchd.policy.fetch.DEFAULT_TIMEOUT_S``.
        """
        return [self._fetch_one(url) for url in self.settings.urls]

    def _reload_file(self, path: Path) -> ReloadOutcome:
        source = str(path)
        unchanged = self._unchanged(source, _read_prefix(path))
        if unchanged is not None:
            return unchanged
        return self._accepted(source, self.gate.activate_file(path))

    def _fetch_one(self, url: str) -> ReloadOutcome:
        source = redact_url(url)  # the gate records its source: never the query's token
        return self._guarded(source, lambda: self._fetch(url, source))

    def _fetch(self, url: str, source: str) -> ReloadOutcome:
        envelope = fetch_policy(url)
        unchanged = self._unchanged(source, envelope.payload)
        if unchanged is not None:
            return unchanged
        return self._accepted(
            source, self.gate.activate(envelope.payload, envelope.signatures, source)
        )

    def _unchanged(self, source: str, data: bytes | None) -> ReloadOutcome | None:
        """An accepted outcome if ``data`` are the exact bytes in force, else ``None``."""
        if data is None:
            return None
        try:
            active = self.gate.active()
        except PolicyError:  # its kept copy is damaged: let the gate install these bytes again
            return None
        if active is None or active.loaded.sha256 != hashlib.sha256(data).hexdigest():
            return None
        version = active.loaded.policy.version
        log.debug("the policy from %s is version %d, already in force", source, version)
        return ReloadOutcome(source, True, version, f"version {version} is already in force")

    @staticmethod
    def _accepted(source: str, active: ActivePolicy) -> ReloadOutcome:
        version = active.loaded.policy.version
        log.info("policy version %d from %s is in force", version, source)
        return ReloadOutcome(source, True, version, f"version {version} accepted")

    @staticmethod
    def _guarded(source: str, reload: Callable[[], ReloadOutcome]) -> ReloadOutcome:
        """``reload()``, or a not-accepted outcome for anything it raises."""
        try:
            return reload()
        except PolicyRefused as e:  # the gate has recorded it
            log.warning("policy from %s refused: %s", source, e.message)
            return ReloadOutcome(source, False, None, e.message)
        except PatchdError as e:  # a dead URL, a malformed envelope, a damaged state
            log.warning("%s", e.message)
            return ReloadOutcome(source, False, None, e.message)
        except Exception as e:  # a bug must not stop the agent: say so loudly, carry on
            log.exception("reloading the policy from %s failed unexpectedly", source)
            return ReloadOutcome(source, False, None, f"internal error ({type(e).__name__})")

    # -- the trust root --------------------------------------------------------------

    def install_trust_root(self) -> None:
        """Install ``settings.trust_root`` if no root is installed, or rotate to it if newer.

        A version older than or equal to the installed one is ignored. A rotation must be
        the installed version's direct successor, signed as
        :func:`patchd.signing.trust.verify_successor` requires. Problems (a missing or
        malformed file, a refused rotation, a damaged installed root) are logged and
        recorded as refusals with code ``trust-root``, never raised.
        """
        path = self.settings.trust_root
        if path is None:
            return
        source = str(path)
        try:
            self._install_trust_root(path, source)
        except PatchdError as e:
            log.warning("trust root not installed: %s", e.message)  # names the file
            self._record_trust_problem(source, e.message)
        except Exception as e:
            log.exception("installing the trust root from %s failed unexpectedly", source)
            self._record_trust_problem(source, f"internal error ({type(e).__name__})")

    def _install_trust_root(self, path: Path, source: str) -> None:
        store = self.gate.trust
        data = read_bounded_file(path, MAX_ENVELOPE_BYTES, "trust root")
        current = store.current()
        if current is None:
            root = store.install_initial(data, source)
            log.info("trust root version %d installed from %s", root.version, source)
            return
        # Parsed before its signatures are judged only to choose what to do:
        # update() verifies everything before it changes anything.
        candidate = parse_root(Envelope.from_json(data, source), source=source)
        if candidate.version > current.version:
            root = store.update(data, source)
            log.info("trust root rotated to version %d from %s", root.version, source)
        elif (
            candidate.version == current.version
            and candidate.envelope.payload != current.envelope.payload
        ):
            log.warning(
                "%s holds another trust root version %d than the one installed; ignored",
                source,
                candidate.version,
            )
        else:
            log.debug(
                "%s holds trust root version %d: not newer, ignored", source, candidate.version
            )

    def _record_trust_problem(self, source: str, message: str) -> None:
        try:
            # The gate's event log is where an endpoint's refusals are kept and reported.
            self.gate.record_refusal(TRUST_ROOT_REFUSED, message, source)
        except Exception:
            log.exception("recording the trust root problem failed")


def _read_prefix(path: Path) -> bytes | None:
    """Up to ``MAX_POLICY_BYTES + 1`` bytes of ``path`` if it is a regular file, else ``None``
    (the gate then reads it, and records why it cannot).

    Opened without blocking and checked after opening: a FIFO put in the file's place must
    not hang the agent, and a swap between a check and the open must not either.
    """
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except OSError:
        return None
    try:
        with os.fdopen(fd, "rb", closefd=False) as f:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                return None
            return f.read(MAX_POLICY_BYTES + 1)
    except OSError:
        return None
    finally:
        os.close(fd)
