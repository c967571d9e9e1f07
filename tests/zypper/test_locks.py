"""Another zypper holding the lock: patchd waits a bounded time, names it, and changes nothing."""

from __future__ import annotations

from pathlib import Path

import pytest

from patchd.backends.base import BackendContext
from patchd.backends.zypper.backend import ZypperBackend
from patchd.errors import LockHeldError
from patchd.models import PackageChange
from patchd.platforms import SUSE
from patchd.target import Target
from patchd.transcript import Transcript
from tests.support.rpmlocks import pid_lock_held
from tests.support.rpmroot import RpmRoot


@pytest.mark.parametrize("lock", ["run/zypp.pid"])
def test_a_held_zypp_lock_is_waited_for_then_reported(
    zypper_root: RpmRoot, tmp_path: Path, lock: str
) -> None:
    backend = ZypperBackend(
        BackendContext(Target.at(zypper_root.path), SUSE, tmp_path / "work", {"lock_timeout_s": 1})
    )
    before = zypper_root.versions()
    change = PackageChange("zypper", "hello", "noarch", "1.0-1", "1.1-1")
    with pid_lock_held(zypper_root.path / lock) as pid, pytest.raises(LockHeldError) as caught:
        backend.apply([change], Transcript())
    assert caught.value.holder_pid == pid
    assert lock in caught.value.lock_path
    assert zypper_root.versions() == before
