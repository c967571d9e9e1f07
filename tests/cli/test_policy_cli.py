"""Signed policies end to end through the real ``patchd`` command: sign, verify, check,
activate, plan, windows, status, and ``apply`` following the plan on a real apt root."""

from __future__ import annotations

import copy
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import Patchd, run_patchd
from tests.support.aptroot import AptRoot

NOW = datetime.now(UTC).replace(microsecond=0)


def _stamp(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def policy_document(version: int = 1, **changes: Any) -> dict[str, Any]:
    document: dict[str, Any] = {
        "version": version,
        "name": "cli-test",
        "issued_at": _stamp(NOW - timedelta(hours=1)),
        "expires": _stamp(NOW + timedelta(days=30)),
        "segments": [{"name": "everyone"}],
        "rings": [{"name": "all", "members": {"percentage": 100}, "deferrals": {"default": "0d", "bugfix": "30d"}}],
        "rules": [
            {"match": {"packages": ["gadget"]}, "action": "never"},
            {"action": "auto"},
        ],
        "exceptions": [{"name": "keep-world", "packages": ["world"], "reason": "testing", "owner": "ops",
                        "expires": _stamp(NOW + timedelta(days=10))}],
    }  # fmt: skip
    document.update(changes)
    return document


@dataclass(frozen=True)
class Admins:
    directory: Path
    root: Path

    def write(
        self,
        document: dict[str, Any],
        name: str = "policy.yaml",
        signers: tuple[str, ...] = ("alice", "bob"),
    ) -> Path:
        path = self.directory / name
        path.write_text(yaml.safe_dump(document, sort_keys=False))
        path.with_name(name + ".sig").unlink(missing_ok=True)
        for signer in signers:
            result = run_patchd(
                ["policy", "sign", str(path), "--key", str(self.directory / f"{signer}.key")]
            )
            assert result.returncode == 0, result.stderr
        return path


@pytest.fixture
def admins(tmp_path: Path) -> Admins:
    directory = tmp_path / "admins"
    directory.mkdir()
    for name in ("alice", "bob", "mallory"):
        assert run_patchd(["key", "generate", "--out", str(directory / name)]).returncode == 0
    root = directory / "root.json"
    result = run_patchd(["trust", "init", "--key", str(directory / "alice.pub"), "--key",
                         str(directory / "bob.pub"), "--threshold", "2", "--out", str(root)])  # fmt: skip
    assert result.returncode == 0, result.stderr
    return Admins(directory, root)


def test_check_verify_and_activate_a_signed_policy(patchd: Patchd, admins: Admins) -> None:
    path = admins.write(policy_document())
    assert run_patchd(["policy", "check", str(path)]).returncode == 0
    verified = run_patchd(["policy", "verify", str(path), "--trust", str(admins.root)])
    assert verified.returncode == 0, verified.stderr
    assert "signed by 2 of 2 required trusted keys" in verified.stdout
    activated = patchd("policy", "activate", str(path), "--trust", str(admins.root))
    assert activated.returncode == 0, activated.stderr
    status = patchd("status", "--json").json()
    assert status["policy"]["state"] == "active"
    assert (status["policy"]["name"], status["policy"]["version"]) == ("cli-test", 1)
    assert status["policy"]["last_refusal"] is None
    assert status["trust_root"]["threshold"] == 2


def test_a_refused_policy_leaves_the_last_known_good_in_force(
    patchd: Patchd, admins: Admins
) -> None:
    good = admins.write(policy_document(version=2))
    assert patchd("policy", "activate", str(good), "--trust", str(admins.root)).returncode == 0
    for document, signers, fragment in [
        (policy_document(version=3), ("alice",), "1 of 2 required signatures"),
        (policy_document(version=3), ("alice", "mallory"), "1 of 2 required signatures"),
        (policy_document(version=1), ("alice", "bob"), "older than version 2"),
        (policy_document(version=2, name="other"), ("alice", "bob"), "already in force with different contents"),
        (policy_document(version=4, expires=_stamp(NOW - timedelta(minutes=1)),
                         issued_at=_stamp(NOW - timedelta(days=2))), ("alice", "bob"), "expired"),
    ]:  # fmt: skip
        path = admins.write(document, name="candidate.yaml", signers=signers)
        result = patchd("policy", "activate", str(path))
        assert result.returncode == 78, result.stdout
        assert fragment in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1
        status = patchd("status", "--json").json()["policy"]
        assert (status["version"], status["name"], status["state"]) == (2, "cli-test", "active")
        assert fragment in status["last_refusal"]["reason"]


def test_check_reports_located_errors_and_exits_78(admins: Admins) -> None:
    document = policy_document()
    document["rings"][0]["deferrals"]["default"] = "soon"
    path = admins.directory / "bad.yaml"
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    result = run_patchd(["policy", "check", str(path)])
    assert result.returncode == 78
    assert f"{path}:" in result.stderr
    assert "rings.0.deferrals.default: 'soon' is not a duration" in result.stderr


def test_signing_an_invalid_policy_is_refused(admins: Admins) -> None:
    path = admins.directory / "bad.yaml"
    path.write_text("version: one\n")
    result = run_patchd(["policy", "sign", str(path), "--key", str(admins.directory / "alice.key")])
    assert result.returncode == 78
    assert not path.with_name("bad.yaml.sig").exists()


def test_plan_explains_every_update_and_apply_follows_it(
    patchd: Patchd, admins: Admins, apt_root: AptRoot
) -> None:
    path = admins.write(policy_document())
    assert patchd("policy", "activate", str(path), "--trust", str(admins.root)).returncode == 0
    plan = patchd("plan", "--json").json()
    decisions = {d["name"]: d for d in plan["decisions"]}
    assert decisions["gadget"]["decision"] == "never"
    assert decisions["world"]["decision"] == "held-by-exception"
    assert decisions["world"]["reason"].startswith("held by exception keep-world until")
    assert decisions["phasey"]["decision"] == "phased"
    assert decisions["acme-agent"]["decision"] == "install-now"  # "other": no deferral, no window
    assert decisions["hello"]["reason"] == "no maintenance window restricts this endpoint: now"
    human = patchd("plan")
    assert "held by exception keep-world" in human.stdout
    refused = patchd("apply", "--yes", "gadget")
    assert refused.returncode == 2
    assert "gadget is not due under the policy in force: never installed (rule 1)" in refused.stderr
    before = apt_root.versions()
    result = patchd("apply", "--yes", "--json")
    assert result.returncode == 1  # fragile's install fails: a partial run
    changed = {n for n, v in apt_root.versions().items() if v != before[n]}
    due = {name for name, d in decisions.items() if d["decision"] == "install-now"}
    assert changed == due  # fragile is left half-configured at its new version
    assert {"gadget", "world", "phasey"}.isdisjoint(changed)


def test_an_expired_policy_changes_nothing(
    patchd: Patchd, admins: Admins, apt_root: AptRoot
) -> None:
    path = admins.write(policy_document())
    assert patchd("policy", "activate", str(path), "--trust", str(admins.root)).returncode == 0
    later = _stamp(NOW + timedelta(days=31))
    plan = patchd("plan", "--json", "--at", later).json()
    assert {d["decision"] for d in plan["decisions"]} <= {"blocked", "held-by-package-manager"}


def test_windows_shows_the_next_openings(patchd: Patchd, admins: Admins) -> None:
    document = copy.deepcopy(policy_document())
    document["segments"][0]["windows"] = ["nightly"]
    document["windows"] = {"nightly": {"timezone": "Europe/Berlin",
                                       "weekly": {"days": ["mon", "tue", "wed", "thu", "fri", "sat", "sun"],
                                                  "start": "02:00", "duration": "2h"}}}  # fmt: skip
    path = admins.write(document)
    assert patchd("policy", "activate", str(path), "--trust", str(admins.root)).returncode == 0
    result = patchd("windows", "--json", "--next", "3", "--at", "2027-03-27T12:00:00Z")
    assert result.returncode == 0, result.stderr
    openings = result.json()["openings"]
    # Europe/Berlin moves to summer time on 2027-03-28: 02:00 does not exist that night.
    assert [o["start"] for o in openings] == [
        "2027-03-28T01:00:00Z",
        "2027-03-29T00:00:00Z",
        "2027-03-30T00:00:00Z",
    ]
    human = patchd("windows", "--at", "2027-03-27T12:00:00Z")
    assert "nightly" in human.stdout


def test_required_snapshots_without_a_provider_abort_the_run_before_any_change(
    patchd: Patchd, admins: Admins, apt_root: AptRoot
) -> None:
    # The isolated root lives on the test machine's ordinary filesystem: no btrfs, ZFS or LVM.
    document = policy_document(snapshots={"mode": "required", "providers": ["btrfs", "zfs"]})
    path = admins.write(document)
    assert patchd("policy", "activate", str(path), "--trust", str(admins.root)).returncode == 0
    before = apt_root.versions()
    status_before = apt_root.status_bytes()
    result = patchd("apply", "--yes", "hello")
    assert result.returncode == 1
    errors = [line for line in result.stderr.splitlines() if line.startswith("patchd: error:")]
    assert len(errors) == 1, result.stderr
    assert "requires a filesystem snapshot" in errors[0]
    assert errors[0].endswith("nothing was changed")
    assert "Traceback" not in result.stderr
    assert apt_root.versions() == before
    assert apt_root.status_bytes() == status_before
    (run,) = patchd("status", "--json").json()["runs"]
    assert run["status"] == "aborted"
    assert any("no change was made" in note for note in run["notes"])
