"""The reloader against a real gate, real files and real signatures: what it accepts, what it
refuses (and records), and that nothing makes it raise.

Every refusal is checked twice: the outcome and the recorded event say why, and the
endpoint's snapshot (policy in force, kept files, record, trust root) did not change.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import socket
import threading
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from patchd.config import PolicySettings
from patchd.policy.loader import MAX_POLICY_BYTES
from patchd.policy.reload import PolicyReloader, ReloadOutcome
from patchd.policy.watch import PolicyFileWatcher
from patchd.signing.dsse import (
    POLICY_PAYLOAD_TYPE,
    TRUST_ROOT_PAYLOAD_TYPE,
    add_detached_signature,
)
from tests.policy.simulator import (
    Endpoint,
    PolicySimulator,
    SignedPolicy,
    endpoint_with_simulator,
    json_sig,
)

WAIT_S = 10.0

Prepare = Callable[[PolicySimulator, Path], object]  # puts something hostile in place


@pytest.fixture
def world(tmp_path: Path) -> Iterator[tuple[PolicySimulator, Endpoint]]:
    yield from endpoint_with_simulator(tmp_path / "state")


@pytest.fixture
def bare(tmp_path: Path) -> Iterator[tuple[PolicySimulator, Endpoint]]:
    """A simulator and an endpoint with no trust root installed."""
    yield from endpoint_with_simulator(tmp_path / "state", root=False)


@pytest.fixture
def etc(tmp_path: Path) -> Path:
    directory = tmp_path / "etc"
    directory.mkdir()
    return directory


def reloader_for(ep: Endpoint, etc: Path, *urls: str) -> PolicyReloader:
    settings = PolicySettings(
        file=etc / "policy.yaml", trust_root=etc / "trust-root.json", urls=urls
    )
    return PolicyReloader(ep.gate, settings)


def refusal_codes(ep: Endpoint) -> list[str]:
    return [e["code"] for e in ep.events("refused")]


# --- the policy file ------------------------------------------------------------------


def test_file_flow_accept_refuse_tampered_then_accept_newer(
    world: tuple[PolicySimulator, Endpoint], etc: Path
) -> None:
    sim, ep = world
    reloader = reloader_for(ep, etc)
    path = sim.policy(1).write(etc / "policy.yaml")

    assert reloader.reload_file() == ReloadOutcome(str(path), True, 1, "version 1 accepted")
    good = ep.snapshot()

    path.write_bytes(path.read_bytes().replace(b"acme-fleet", b"evil-fleet"))
    tampered = reloader.reload_file()

    assert not tampered.accepted
    assert tampered.version is None
    assert tampered.reason.startswith("policy refused: ")
    assert "0 of 2 required signatures" in tampered.reason
    assert ep.snapshot() == good  # the last-known-good stays, byte for byte
    assert [(e["code"], e["source"]) for e in ep.events("refused")] == [("signatures", str(path))]

    sim.policy(2).write(path)
    assert reloader.reload_file() == ReloadOutcome(str(path), True, 2, "version 2 accepted")
    assert [e["version"] for e in ep.events("accepted")] == [1, 2]


def test_the_policy_in_force_reloaded_changes_nothing(
    world: tuple[PolicySimulator, Endpoint], etc: Path
) -> None:
    sim, ep = world
    reloader = reloader_for(ep, etc)
    policy = sim.policy(1).write(etc / "policy.yaml")
    reloader.reload_file()
    before = ep.snapshot()
    # The same bytes with signatures that no longer verify: nothing to judge, nothing changes.
    policy.with_name("policy.yaml.sig").write_bytes(json_sig([], "wrong/type"))

    outcome = reloader.reload_file()

    assert outcome == ReloadOutcome(str(policy), True, 1, "version 1 is already in force")
    assert ep.snapshot() == before
    assert len(ep.events("accepted")) == 1
    assert ep.events("refused") == []


def _missing(sim: PolicySimulator, path: Path) -> None:
    pass


def _unsigned(sim: PolicySimulator, path: Path) -> None:
    sim.policy(3).write(path)
    path.with_name("policy.yaml.sig").unlink()


def _directory(sim: PolicySimulator, path: Path) -> None:
    path.mkdir()


def _too_large(sim: PolicySimulator, path: Path) -> None:
    path.write_bytes(b"#" * (MAX_POLICY_BYTES + 1))


def _garbage_sig(sim: PolicySimulator, path: Path) -> None:
    sim.policy(3).write(path)
    path.with_name("policy.yaml.sig").write_bytes(b"\xff\xfe{not json")


def _signed_as_trust_root(sim: PolicySimulator, path: Path) -> None:
    data = sim.serialise(sim.document(3))
    SignedPolicy(data, sim.sign(data, [0, 1], TRUST_ROOT_PAYLOAD_TYPE)).write(path)


def _signed_nonsense(sim: PolicySimulator, path: Path) -> None:
    sim.signed(b"version: [this is not a policy\n").write(path)


def _rollback(sim: PolicySimulator, path: Path) -> None:
    sim.policy(1).write(path)


def _fork(sim: PolicySimulator, path: Path) -> None:
    sim.policy(2, description="the same version, other contents").write(path)


def _from_the_future(sim: PolicySimulator, path: Path) -> None:
    sim.policy(3, issued=timedelta(days=2)).write(path)


def _expired(sim: PolicySimulator, path: Path) -> None:
    sim.policy(3, issued=-timedelta(days=40), lifetime=timedelta(days=30)).write(path)


HOSTILE: dict[str, tuple[Prepare, str]] = {
    "missing-file": (_missing, "unreadable"),
    "missing-signatures": (_unsigned, "signatures"),
    "a-directory": (_directory, "unreadable"),
    "too-large": (_too_large, "too-large"),
    "garbage-signatures": (_garbage_sig, "signatures"),
    "signed-as-a-trust-root": (_signed_as_trust_root, "signatures"),
    "signed-nonsense": (_signed_nonsense, "invalid"),
    "rollback": (_rollback, "rollback"),
    "fork": (_fork, "fork"),
    "from-the-future": (_from_the_future, "future"),
    "expired": (_expired, "expired"),
}


@pytest.mark.parametrize(("prepare", "code"), HOSTILE.values(), ids=HOSTILE.keys())
def test_a_bad_policy_file_is_refused_recorded_and_changes_nothing(
    prepare: Prepare, code: str, world: tuple[PolicySimulator, Endpoint], etc: Path
) -> None:
    sim, ep = world
    reloader = reloader_for(ep, etc)
    path = etc / "policy.yaml"
    sim.policy(2).write(path)
    reloader.reload_file()
    before = ep.snapshot()
    path.unlink()
    path.with_name("policy.yaml.sig").unlink()
    prepare(sim, path)

    outcome = reloader.reload_file()

    assert outcome.source == str(path)
    assert not outcome.accepted
    assert outcome.version is None
    assert outcome.reason.startswith("policy refused: ")
    assert refusal_codes(ep) == [code]
    assert ep.snapshot() == before


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="FIFOs are POSIX")
def test_a_fifo_in_place_of_the_policy_does_not_block_the_reloader(
    world: tuple[PolicySimulator, Endpoint], etc: Path
) -> None:
    _, ep = world
    path = etc / "policy.yaml"
    os.mkfifo(path)
    returned, blocked = threading.Event(), threading.Event()

    def unblock() -> None:  # if the reloader hangs on the FIFO, release it after WAIT_S
        if not returned.wait(WAIT_S):
            blocked.set()
            os.close(os.open(path, os.O_WRONLY))

    safety = threading.Thread(target=unblock)
    safety.start()
    try:
        outcome = reloader_for(ep, etc).reload_file()
    finally:
        returned.set()
        safety.join()

    assert not blocked.is_set()
    assert not outcome.accepted
    assert outcome.reason == f"policy refused: {path} is not a regular file"
    assert refusal_codes(ep) == ["unreadable"]


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(policy=st.binary(max_size=4096), signatures=st.binary(max_size=4096))
def test_hostile_bytes_never_make_the_reloader_raise(
    policy: bytes, signatures: bytes, world: tuple[PolicySimulator, Endpoint], etc: Path
) -> None:
    sim, ep = world
    reloader = reloader_for(ep, etc)
    path = etc / "policy.yaml"
    if ep.gate.active() is None:
        sim.policy(1).write(path)
        assert reloader.reload_file().accepted
    before = ep.snapshot()
    path.write_bytes(policy)
    path.with_name("policy.yaml.sig").write_bytes(signatures)

    outcome = reloader.reload_file()

    assert not outcome.accepted
    assert ep.snapshot() == before


def test_without_sources_there_is_nothing_to_reload(
    world: tuple[PolicySimulator, Endpoint],
) -> None:
    _, ep = world
    reloader = PolicyReloader(ep.gate, PolicySettings())

    assert reloader.reload_file() == ReloadOutcome(
        "policy.file", False, None, "no policy file is configured"
    )
    assert reloader.fetch_all() == []
    reloader.install_trust_root()
    assert ep.events("refused") == []


def test_a_dead_url_gives_an_outcome_not_an_exception(
    world: tuple[PolicySimulator, Endpoint], etc: Path
) -> None:
    _, ep = world
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}/v1/policy"

    (outcome,) = reloader_for(ep, etc, url).fetch_all()

    assert outcome == ReloadOutcome(
        url,
        False,
        None,
        f"fetching the policy from {url} failed: cannot connect: Connection refused",
    )
    assert ep.events("refused") == []


def test_an_unexpected_fault_is_logged_not_raised(
    world: tuple[PolicySimulator, Endpoint], etc: Path, caplog: pytest.LogCaptureFixture
) -> None:
    sim, ep = world
    sim.policy(1).write(etc / "policy.yaml")
    (etc / "trust-root.json").write_bytes(b"<html>")  # a problem to record
    reloader = reloader_for(ep, etc)
    ep.store.close()  # a fault: the database is gone from under the agent

    outcome = reloader.reload_file()
    reloader.install_trust_root()

    assert outcome == ReloadOutcome(
        str(etc / "policy.yaml"), False, None, "internal error (ProgrammingError)"
    )
    logged = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert [r.getMessage() for r in logged] == [
        f"reloading the policy from {etc / 'policy.yaml'} failed unexpectedly",
        "recording the trust root problem failed",
    ]
    assert all(r.exc_info for r in logged)


def test_the_watcher_and_the_reloader_together(
    world: tuple[PolicySimulator, Endpoint], etc: Path
) -> None:
    """The agent's wiring: the watcher only signals; the thread owning the gate reloads."""
    sim, ep = world
    reloader = reloader_for(ep, etc)
    changes: queue.Queue[None] = queue.Queue(maxsize=100)
    path = etc / "policy.yaml"
    outcomes: list[ReloadOutcome] = []
    with PolicyFileWatcher(path, lambda: changes.put(None), debounce_s=0.2):
        sim.policy(1).write(path)  # the policy, then its signatures: one burst, or two
        for _ in range(3):
            changes.get(timeout=WAIT_S)
            outcomes.append(reloader.reload_file())
            if outcomes[-1].accepted:
                break

    assert outcomes[-1] == ReloadOutcome(str(path), True, 1, "version 1 accepted")


# --- the trust root -------------------------------------------------------------------


def installed(ep: Endpoint) -> bytes | None:
    root = ep.state_dir / "trust" / "root.json"
    return root.read_bytes() if root.exists() else None


def test_the_trust_root_is_installed_on_first_use(
    bare: tuple[PolicySimulator, Endpoint], etc: Path
) -> None:
    sim, ep = bare
    root = sim.root_envelope(1, [0, 1, 2], 2, signers=[0, 1, 2]).to_json()
    (etc / "trust-root.json").write_bytes(root)
    reloader = reloader_for(ep, etc)
    sim.policy(1).write(etc / "policy.yaml")
    assert not reloader.reload_file().accepted
    assert refusal_codes(ep) == ["no-trust-root"]

    reloader.install_trust_root()
    reloader.install_trust_root()  # the same again: nothing to do

    assert installed(ep) == root
    assert reloader.reload_file().accepted
    assert refusal_codes(ep) == ["no-trust-root"]  # nothing new


def test_a_newer_trust_root_is_applied_as_a_rotation(
    world: tuple[PolicySimulator, Endpoint], etc: Path
) -> None:
    sim, ep = world  # version 1: keys 0-2, threshold 2
    v2 = sim.root_envelope(2, [1, 2, 3], 2, signers=[0, 1, 2, 3]).to_json()
    (etc / "trust-root.json").write_bytes(v2)
    reloader = reloader_for(ep, etc)

    reloader.install_trust_root()

    assert installed(ep) == v2
    assert (ep.state_dir / "trust" / "history" / "root.v1.json").exists()
    sim.policy(1, signers=[3, 2]).write(etc / "policy.yaml")  # key 3 is trusted now
    assert reloader.reload_file().accepted
    assert ep.events("refused") == []


@pytest.mark.parametrize("version", [1, 2], ids=["older", "equal"])
def test_an_older_or_equal_trust_root_is_ignored(
    version: int, world: tuple[PolicySimulator, Endpoint], etc: Path
) -> None:
    sim, ep = world
    sim.rotate([1, 2, 3], 2)  # the endpoint is at version 2
    before = ep.snapshot()
    other = sim.root_envelope(version, [0, 3], 1, signers=[0, 3])  # not what it holds
    (etc / "trust-root.json").write_bytes(other.to_json())

    reloader_for(ep, etc).install_trust_root()

    assert ep.snapshot() == before
    assert ep.events("refused") == []


def _write_root(sim: PolicySimulator, etc: Path, version: int, signers: list[int]) -> None:
    envelope = sim.root_envelope(version, [1, 2, 3], 2, signers=signers)
    (etc / "trust-root.json").write_bytes(envelope.to_json())


BAD_ROOTS: dict[str, tuple[Prepare, str]] = {
    "skips-a-version": (
        lambda sim, etc: _write_root(sim, etc, 3, [0, 1, 2, 3]),
        "version 3 skips version 2",
    ),
    "not-signed-by-the-installed-keys": (
        lambda sim, etc: _write_root(sim, etc, 2, [3]),
        "version 2 signed by version 1's keys: 0 of 2 required signatures",
    ),
    "not-signed-by-its-own-keys": (
        lambda sim, etc: _write_root(sim, etc, 2, [0, 1]),
        "version 2 signed by its own keys: 1 of 2 required signatures",
    ),
    "not-json": (
        lambda sim, etc: (etc / "trust-root.json").write_bytes(b"<html>"),
        "not valid JSON",
    ),
    "a-policy-envelope": (
        lambda sim, etc: (etc / "trust-root.json").write_bytes(
            json.dumps({"payload": "", "payloadType": "x", "signatures": []}).encode()
        ),
        "payload type 'x' is not a trust root's",
    ),
    "missing": (lambda sim, etc: None, "trust-root.json: no such trust root file"),
}


@pytest.mark.parametrize(("prepare", "message"), BAD_ROOTS.values(), ids=BAD_ROOTS.keys())
def test_a_bad_trust_root_is_logged_recorded_and_changes_nothing(
    prepare: Prepare,
    message: str,
    world: tuple[PolicySimulator, Endpoint],
    etc: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    sim, ep = world
    before = ep.snapshot()
    prepare(sim, etc)

    reloader_for(ep, etc).install_trust_root()

    assert ep.snapshot() == before
    (event,) = ep.events("refused")
    assert event["code"] == "trust-root"
    assert event["source"] == str(etc / "trust-root.json")
    assert message in event["reason"]
    (warning,) = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert message in warning.getMessage()


def test_a_first_trust_root_short_of_its_own_threshold_is_not_installed(
    bare: tuple[PolicySimulator, Endpoint], etc: Path
) -> None:
    sim, ep = bare
    (etc / "trust-root.json").write_bytes(sim.root_envelope(1, [0, 1, 2], 2, [0]).to_json())

    reloader_for(ep, etc).install_trust_root()

    assert installed(ep) is None
    (event,) = ep.events("refused")
    assert "1 of 2 required signatures" in event["reason"]


def test_a_damaged_installed_trust_root_is_recorded(
    world: tuple[PolicySimulator, Endpoint], etc: Path
) -> None:
    sim, ep = world
    _write_root(sim, etc, 2, [0, 1, 2, 3])
    (ep.state_dir / "trust" / "root.json").write_bytes(b"{}")

    reloader_for(ep, etc).install_trust_root()

    assert installed(ep) == b"{}"
    (event,) = ep.events("refused")
    assert event["reason"].startswith("the installed trust root is damaged")


def test_detached_signatures_written_by_admins_are_accepted(
    world: tuple[PolicySimulator, Endpoint], etc: Path
) -> None:
    sim, ep = world
    path = etc / "policy.yaml"
    path.write_bytes(sim.serialise(sim.document(1)))
    for admin in (0, 2):
        add_detached_signature(path, sim.keys[admin], POLICY_PAYLOAD_TYPE)

    outcome = reloader_for(ep, etc).reload_file()

    assert outcome == ReloadOutcome(str(path), True, 1, "version 1 accepted")
