"""The dnf backend where ``dnf`` is dnf 5 (Fedora 41 and later): dnf 4's flow, dnf 5's dialect.

A scan runs ``dnf check-upgrade`` and ``dnf advisory info --json --updates`` side by
side on cached metadata (``--cacheonly``), while patchd reads the rpm database and the
repositories' cached updateinfo.xml. The advisories' type, severity, CVE ids and
packages come from dnf 5's own JSON; dnf 5 does not print reboot suggestions, so those
come from the updateinfo.xml files it keeps in ``/var/cache/libdnf5/ID-HASH/repodata``
(where dnf 4 keeps them in ``/var/cache/dnf``), which also stand in for the JSON if dnf 5
cannot give it. Applying and rolling back are dnf 4's (``upgrade``/``downgrade`` of exact
versions, judged from the rpm database); the old packages are kept with ``dnf download``.
dnf 5 does not wait for its transaction lock: patchd waits, bounded, on the ``fcntl``
lock of ``/run/dnf/rpmtransaction.lock`` and rpm's, naming the holder.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import replace
from functools import cached_property
from pathlib import Path

from patchd import process
from patchd.backends.base import BackendContext
from patchd.backends.dnf.backend import LIST_TIMEOUT_S, DnfBackend, cached_updateinfo
from patchd.backends.dnf.dnf5 import DNF5, Dnf5Environment, dnf5_version
from patchd.backends.dnf.dnf5_output import (
    MAX_JSON_BYTES,
    AdvisoryOutputError,
    parse_advisory_info,
    parse_check_upgrade,
)
from patchd.backends.dnf.listing import CheckUpdateEntry
from patchd.backends.dnf.repos import dnf_repodata_dirs, enabled_repo_ids
from patchd.backends.rpm.locks import wait_for_rpm_locks
from patchd.backends.rpm.updateinfo import RepoAdvisory
from patchd.errors import PatchdError

log = logging.getLogger(__name__)

# "Transaction failed: Failed to obtain rpm transaction lock. Another transaction is in
# progress." (dnf5#2435). It names no holder; patchd's own wait does (/proc/locks).
_LOCKED = re.compile(r"Failed to obtain rpm transaction lock")


class Dnf5Backend(DnfBackend):
    """dnf 5 and rpm, on the host or in an alternate root (``--installroot``)."""

    flavour = DNF5
    _locked_by = _LOCKED

    def __init__(self, context: BackendContext) -> None:
        super().__init__(context)
        self._advisory_listing: process.RunningCommand | None = None

    @cached_property
    def env(self) -> Dnf5Environment:
        work = self.context.work_dir / self.name
        return Dnf5Environment(self.context.target, self.flavour, self.rpmdb, work)

    def _tool_version(self) -> str | None:
        return dnf5_version(self.context.work_dir / self.name / "dnf5-version")

    # -- scan ------------------------------------------------------------------------

    def _listing_argv(self) -> list[str]:
        return self.env.argv(
            "--cacheonly", "-q", "--setopt=skip_if_unavailable=True", "check-upgrade"
        )

    def _advisory_argv(self) -> list[str]:
        return self.env.argv(
            "--cacheonly",
            "-q",
            "--setopt=skip_if_unavailable=True",
            "advisory",
            "info",
            "--json",
            "--updates",
        )

    def _parse_listing(self, stdout: str) -> tuple[list[CheckUpdateEntry], list[str]]:
        return parse_check_upgrade(stdout)

    def _start_listing(self) -> None:
        if self._listing is None:
            super()._start_listing()
            self._stop_advisory_listing()
            self._advisory_listing = process.start(
                self._advisory_argv(),
                env=self.env.env,
                timeout_s=LIST_TIMEOUT_S,
                max_output_bytes=MAX_JSON_BYTES,  # more would be elided: then the XML serves
            )

    def _repo_advisories(self, wanted: frozenset[str], warnings: list[str]) -> list[RepoAdvisory]:
        cached = self._cached_advisories(wanted, warnings)
        running, self._advisory_listing = self._advisory_listing, None
        if running is None:
            return cached
        try:
            own = parse_advisory_info(running.wait().stdout, wanted)
        except (PatchdError, AdvisoryOutputError) as e:
            warnings.append(
                f"dnf advisory info gave no advisories ({e}); using the cached updateinfo"
            )
            return cached
        return merge_reboot_flags(own, cached)

    def _cached_advisories(self, wanted: frozenset[str], warnings: list[str]) -> list[RepoAdvisory]:
        """The advisories of the updateinfo.xml files dnf 5 keeps for enabled repositories."""
        repo_ids = list(dict.fromkeys(i for d in self.env.reposdirs for i in enabled_repo_ids(d)))
        dirs = dnf_repodata_dirs(self.env.cachedir, repo_ids)
        return cached_updateinfo(
            "dnf", self.env.cachedir, repo_ids, dirs, wanted=wanted, warnings=warnings
        )

    # -- change ----------------------------------------------------------------------

    def _stop_listing(self) -> None:
        self._stop_advisory_listing()
        super()._stop_listing()

    def _forget_prefetched(self) -> None:
        self._stop_advisory_listing()
        super()._forget_prefetched()

    def _download_argv(self, specs: Sequence[str], keep_dir: Path) -> list[str]:
        """dnf 5's ``download`` of the installed versions."""
        return self.env.argv("download", f"--destdir={keep_dir}", "--skip-unavailable", *specs)

    def _wait_for_locks(self) -> None:
        wait_for_rpm_locks(
            [], [self.rpmdb.lock_file(), *self.env.fcntl_lock_files()], self._lock_wait_s
        )

    def _lock_name(self) -> str:
        return str(self.env.fcntl_lock_files()[0])

    def _stop_advisory_listing(self) -> None:
        process.stop_all(self._advisory_listing)
        self._advisory_listing = None


def merge_reboot_flags(own: list[RepoAdvisory], cached: list[RepoAdvisory]) -> list[RepoAdvisory]:
    """dnf 5's advisories, with the reboot suggestions of the same advisories' XML, plus
    the cached advisories dnf 5 did not report (pure)."""
    rebooting = {
        (a.id, p.name, p.arch, p.evr) for a in cached for p in a.packages if p.reboot_suggested
    }
    merged = [
        replace(
            a,
            packages=tuple(
                replace(p, reboot_suggested=(a.id, p.name, p.arch, p.evr) in rebooting)
                for p in a.packages
            ),
        )
        for a in own
    ]
    reported = {a.id for a in own}
    return merged + [a for a in cached if a.id not in reported]
