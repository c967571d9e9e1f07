"""Another dnf holding the lock: patchd waits a bounded time, names it, and changes nothing."""

from __future__ import annotations

from pathlib import Path

import pytest

from patchd.backends.base import BackendContext
from patchd.backends.dnf.backend import DnfBackend
from patchd.errors import LockHeldError
from patchd.models import PackageChange
from patchd.platforms import RHEL
from patchd.target import Target
from patchd.transcript import Transcript
from tests.support.rpmlocks import pid_lock_held
from tests.support.rpmroot import RpmRoot


@pytest.mark.parametrize("lock", ["var/lib/dnf/rpmdb_lock.pid", "var/cache/dnf/metadata_lock.pid"])
def test_a_held_dnf_lock_is_waited_for_then_reported(
    dnf_root: RpmRoot, tmp_path: Path, lock: str
) -> None:
    backend = DnfBackend(
        BackendContext(Target.at(dnf_root.path), RHEL, tmp_path / "work", {"lock_timeout_s": 1})
    )
    before = dnf_root.versions()
    change = PackageChange("dnf", "hello", "noarch", "1.0-1", "1.1-1")
    with pid_lock_held(dnf_root.path / lock) as pid, pytest.raises(LockHeldError) as caught:
        backend.apply([change], Transcript())
    assert caught.value.holder_pid == pid
    assert lock in caught.value.lock_path
    assert dnf_root.versions() == before
