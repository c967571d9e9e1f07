"""``patchd key`` and ``patchd trust`` as an admin and an endpoint run them: the real command.

Exit codes are the contract: 0 done, 2 a bad command line (nothing written), 78 a key,
signature or trust root refused (the installed root stays in force). Errors are one line.
"""

from __future__ import annotations

import re
import stat
from dataclasses import dataclass
from pathlib import Path

import pytest

from patchd.signing.trust import TrustStore
from tests.conftest import CliResult, run_patchd


@dataclass(frozen=True)
class Admin:
    """A workspace of key and root files, and one endpoint's state directory."""

    work: Path
    state_dir: Path
    config: Path

    def __call__(self, *args: str) -> CliResult:
        return run_patchd(["--config", str(self.config), "--state-dir", str(self.state_dir), *args])

    def path(self, name: str) -> str:
        return str(self.work / name)

    def key(self, name: str) -> str:
        """Make the key pair ``name`` and return its key id."""
        result = self("key", "generate", "--out", self.path(name))
        assert result.returncode == 0, result.stderr
        return result.stdout.splitlines()[2].removeprefix("key id: ")


@pytest.fixture
def admin(tmp_path: Path) -> Admin:
    config = tmp_path / "agent.yaml"
    config.write_text("{}\n")
    (tmp_path / "work").mkdir()
    return Admin(tmp_path / "work", tmp_path / "state", config)


def assert_refused(result: CliResult, code: int, fragment: str) -> None:
    assert result.returncode == code, (result.stdout, result.stderr)
    assert result.stderr.startswith("patchd: error: ")
    assert fragment in result.stderr
    assert len(result.stderr.splitlines()) == 1
    assert "Traceback" not in result.stderr
    assert result.stdout == ""


def test_key_generate_writes_the_pair_and_prints_the_key_id(admin: Admin) -> None:
    result = admin("key", "generate", "--out", admin.path("alice"))
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[:2] == [admin.path("alice.key"), admin.path("alice.pub")]
    assert re.fullmatch(r"key id: [0-9a-f]{64}", lines[2])
    assert stat.S_IMODE((admin.work / "alice.key").stat().st_mode) == 0o600
    assert stat.S_IMODE((admin.work / "alice.pub").stat().st_mode) == 0o644


def test_key_generate_refuses_to_overwrite(admin: Admin) -> None:
    admin.key("alice")
    before = (admin.work / "alice.key").read_bytes()
    assert_refused(admin("key", "generate", "--out", admin.path("alice")), 2, "already exists")
    assert (admin.work / "alice.key").read_bytes() == before


def test_trust_init_writes_an_unsigned_version_1_and_refuses_to_overwrite(admin: Admin) -> None:
    admin.key("alice")
    admin.key("bob")
    args = ["--key", admin.path("alice.pub"), "--key", admin.path("bob.pub")]
    result = admin("trust", "init", *args, "--threshold", "2", "--out", admin.path("root.json"))
    assert result.returncode == 0, result.stderr
    assert "trust root version 1, 2 of 2 keys" in result.stdout
    verified = admin("trust", "verify", admin.path("root.json"))
    assert verified.returncode == 0, verified.stderr
    assert "unsigned" in verified.stdout
    again = admin("trust", "init", *args, "--threshold", "1", "--out", admin.path("root.json"))
    assert_refused(again, 2, "root.json already exists")


@pytest.mark.parametrize(
    ("extra", "code", "fragment"),
    [
        (["--threshold", "3"], 2, "--threshold 3: must be from 1 to the number of keys (2)"),
        (["--threshold", "0"], 2, "--threshold 0: must be from 1"),
        (["--threshold", "1", "--key", "alice.pub"], 2, "the same key is given twice"),
        (["--threshold", "1", "--key", "alice.key"], 78, "is a private key, not a public key"),
        (["--threshold", "1", "--key", "nobody.pub"], 78, "no such public key file"),
    ],
    ids=["threshold-above-keys", "threshold-zero", "duplicate-key", "private-key", "missing-key"],
)
def test_trust_init_refusals(admin: Admin, extra: list[str], code: int, fragment: str) -> None:
    admin.key("alice")
    admin.key("bob")
    extra = [admin.path(a) if a.endswith((".pub", ".key")) else a for a in extra]
    args = ["--key", admin.path("alice.pub"), "--key", admin.path("bob.pub"), *extra]
    assert_refused(admin("trust", "init", *args, "--out", admin.path("root.json")), code, fragment)
    assert not (admin.work / "root.json").exists()


def test_a_rotation_from_key_generation_to_installation(admin: Admin) -> None:
    alice, bob = admin.key("alice"), admin.key("bob")
    carol = admin.key("carol")
    v1, v2 = admin.path("root.v1.json"), admin.path("root.v2.json")
    keys = ["--key", admin.path("alice.pub"), "--key", admin.path("bob.pub")]
    assert admin("trust", "init", *keys, "--threshold", "2", "--out", v1).returncode == 0
    TrustStore(admin.state_dir).install_initial(
        Path(v1).read_bytes(), v1
    )  # as policy activate does

    shown = admin("trust", "show", "--json")
    assert shown.returncode == 0, shown.stderr
    assert shown.json()["trust_root"]["version"] == 1
    assert shown.json()["trust_root"]["keys"] == sorted([alice, bob])

    rotated = admin(
        "trust", "rotate", "--trust", v1, "--remove-key", alice,
        "--add-key", admin.path("carol.pub"), "--out", v2,
    )  # fmt: skip
    assert rotated.returncode == 0, rotated.stderr
    assert "trust root version 2, 2 of 2 keys" in rotated.stdout
    assert_refused(admin("trust", "verify", v2, "--trust", v1), 78, "version 1's keys: 0 of 2")
    assert_refused(admin("trust", "update", v2), 78, "version 1's keys: 0 of 2")

    # The old keys vouch for the change: alice's counts only for version 1's threshold.
    signed = admin("trust", "sign", v2, "--key", admin.path("alice.key"))
    assert signed.returncode == 0, signed.stderr
    assert "not one of its own keys" in signed.stdout
    signed = admin("trust", "sign", v2, "--key", admin.path("bob.key"))
    assert f"signed with key {bob} (one of its own keys); 2 signature(s)" in signed.stdout
    assert_refused(admin("trust", "verify", v2, "--trust", v1), 78, "its own keys: 1 of 2")
    signed = admin(
        "trust", "sign", v2, "--key", admin.path("carol.key")
    )  # the new key proves itself
    assert "3 signature(s)" in signed.stdout

    verified = admin("trust", "verify", v2, "--trust", v1)
    assert verified.returncode == 0, verified.stderr
    assert "version 2 follows" in verified.stdout
    assert "2 of 2 required previous keys and 2 of 2 required own keys" in verified.stdout

    updated = admin("trust", "update", v2)
    assert updated.returncode == 0, updated.stderr
    assert "installed trust root version 2" in updated.stdout
    assert (admin.state_dir / "trust" / "root.json").read_bytes() == Path(v2).read_bytes()
    assert admin("trust", "show", "--json").json()["trust_root"]["keys"] == sorted([bob, carol])
    text = admin("trust", "show").stdout.splitlines()
    assert text[0].startswith("Trust root: version 2 (")
    assert text[1:] == [
        "Threshold:  2 of 2 keys",
        "Keys:",
        *(f"  {k}" for k in sorted([bob, carol])),
    ]

    assert_refused(admin("trust", "update", v2), 78, "version 2 is already installed")
    assert_refused(admin("trust", "update", v1), 78, "version 2's keys")
    assert (admin.state_dir / "trust" / "root.json").read_bytes() == Path(v2).read_bytes()


def test_trust_rotate_refusals(admin: Admin) -> None:
    admin.key("alice")
    bob = admin.key("bob")
    v1 = admin.path("root.json")
    keys = ["--key", admin.path("alice.pub"), "--key", admin.path("bob.pub")]
    admin("trust", "init", *keys, "--threshold", "2", "--out", v1)
    rotate = ["trust", "rotate", "--trust", v1, "--out", admin.path("next.json")]
    assert_refused(admin(*rotate, "--remove-key", "ab" * 32), 2, "not a key of")
    assert_refused(admin(*rotate, "--add-key", admin.path("alice.pub")), 2, "is already listed")
    assert_refused(
        admin(*rotate, "--remove-key", bob),
        2,
        "the current threshold 2: must be from 1 to the number of keys (1)",
    )
    assert not (admin.work / "next.json").exists()
    assert admin(*rotate, "--remove-key", bob, "--threshold", "1").returncode == 0


def test_trust_show_and_update_without_an_installed_root(admin: Admin) -> None:
    shown = admin("trust", "show", "--json")
    assert shown.returncode == 0, shown.stderr
    assert shown.json() == {"schema_version": 1, "trust_root": None}
    admin.key("alice")
    v1 = admin.path("root.json")
    admin("trust", "init", "--key", admin.path("alice.pub"), "--threshold", "1", "--out", v1)
    assert_refused(
        admin("trust", "update", v1),
        78,
        "no trust root is installed in",
    )
    assert "patchd policy activate FILE --trust ROOT" in admin("trust", "update", v1).stderr
    assert not (admin.state_dir / "trust").exists()


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        (None, "no such trust root file"),
        (b'{"payload": "", "payload": ""}', "duplicate JSON key 'payload'"),
        (b"\xff\xfe", "not UTF-8"),
    ],
    ids=["missing", "duplicate-key", "non-utf8"],
)
def test_trust_verify_refuses_a_bad_file_in_one_line(
    admin: Admin, content: bytes | None, fragment: str
) -> None:
    path = admin.work / "root.json"
    if content is not None:
        path.write_bytes(content)
    assert_refused(admin("trust", "verify", str(path)), 78, fragment)


def test_trust_sign_with_an_exposed_key_warns_and_still_signs(admin: Admin) -> None:
    admin.key("alice")
    v1 = admin.path("root.json")
    admin("trust", "init", "--key", admin.path("alice.pub"), "--threshold", "1", "--out", v1)
    (admin.work / "alice.key").chmod(0o644)
    result = admin("trust", "sign", v1, "--key", admin.path("alice.key"))
    assert result.returncode == 0
    assert result.stderr.startswith("patchd: warning: ")
    assert "chmod 600" in result.stderr
    assert "BEGIN" not in result.stderr
    verified = admin("trust", "verify", v1)
    assert "signed by 1 of 1 required keys" in verified.stdout


def test_trust_sign_refuses_a_policy_signature_file(admin: Admin) -> None:
    admin.key("alice")
    sig = admin.work / "policy.yaml.sig"
    sig.write_text('{"payloadType": "application/vnd.patchd.policy+yaml", "signatures": []}')
    result = admin("trust", "sign", str(sig), "--key", admin.path("alice.key"))
    assert_refused(result, 78, "fields missing ['payload']")
