"""``patchd policy sign|verify|check|activate``: signed policies, from admin to endpoint."""

from __future__ import annotations

import sys
from pathlib import Path

from patchd.cli.main import Invocation
from patchd.errors import PolicyError, UsageError
from patchd.policy.lint import lint
from patchd.policy.loader import MAX_POLICY_BYTES, PolicyInvalid, load_policy
from patchd.signing.dsse import POLICY_PAYLOAD_TYPE, Envelope, add_detached_signature, read_detached
from patchd.signing.keys import load_private_key
from patchd.signing.trust import TrustRoot, TrustStore, parse_root
from patchd.timeutil import format_time, parse_time, utcnow


def _read(path: Path, what: str = "policy") -> bytes:
    try:
        with path.open("rb") as f:
            data = f.read(MAX_POLICY_BYTES + 1)
    except FileNotFoundError:
        raise UsageError(f"{path}: no such {what} file") from None
    except OSError as e:
        raise UsageError(f"{path}: cannot read: {e.strerror}") from None
    if len(data) > MAX_POLICY_BYTES:
        raise PolicyError(f"{path} is larger than {MAX_POLICY_BYTES} bytes")
    return data


def _sig_path(path: Path) -> Path:
    return path.with_name(path.name + ".sig")


def _root_file(path: Path) -> TrustRoot:
    return parse_root(Envelope.from_json(_read(path, "trust root"), source=str(path)))


def sign(invocation: Invocation) -> int:
    path = Path(invocation.args.file)
    load_policy(_read(path), str(path))  # never sign what an endpoint would refuse to parse
    key = load_private_key(Path(invocation.args.key))
    sig_path = add_detached_signature(path, key, POLICY_PAYLOAD_TYPE)
    count = len(read_detached(sig_path, POLICY_PAYLOAD_TYPE))
    print(f"signed {path} with key {key.key_id}; {sig_path} holds {count} signature(s)")
    return 0


def verify(invocation: Invocation) -> int:
    path = Path(invocation.args.file)
    data = _read(path)
    signatures = read_detached(_sig_path(path), POLICY_PAYLOAD_TYPE)
    if invocation.args.trust:
        root = _root_file(Path(invocation.args.trust))
    else:
        with invocation.session() as session:
            installed = TrustStore(session.state_dir).current()
        if installed is None:
            raise UsageError(
                "no trust root is installed on this endpoint", hint="pass --trust ROOT"
            )
        root = installed
    key_ids = root.verify_policy(data, signatures, what=str(path))
    policy = load_policy(data, str(path)).policy
    if policy.expires <= utcnow():
        raise PolicyError(
            f"{path}: version {policy.version} expired at {format_time(policy.expires)}"
        )
    print(
        f"{path}: valid: policy {policy.name} version {policy.version}, signed by {len(key_ids)} of "
        f"{root.threshold} required trusted keys, expires {format_time(policy.expires)}"
    )
    return 0


def check(invocation: Invocation) -> int:
    path = Path(invocation.args.file)
    at = parse_time(invocation.args.at) if invocation.args.at else utcnow()
    try:
        loaded = load_policy(_read(path), str(path))
    except PolicyInvalid as e:
        for problem in e.problems:
            print(problem.format(str(path)), file=sys.stderr)
        return int(e.exit_code)
    warnings = lint(loaded, at)
    for problem in warnings:
        print(problem.format(str(path)), file=sys.stderr)
    policy = loaded.policy
    print(
        f"{path}: policy {policy.name} version {policy.version}: no errors, {len(warnings)} warning(s)"
    )
    return 0


def activate(invocation: Invocation) -> int:
    path = Path(invocation.args.file)
    with invocation.session() as session:
        if invocation.args.trust:
            _install_trust(TrustStore(session.state_dir), Path(invocation.args.trust))
        active = session.policy_gate.activate_file(path)
    policy = active.loaded.policy
    print(
        f"policy {policy.name} version {policy.version} is in force "
        f"(sha256 {active.loaded.sha256[:16]}, signed by {len(active.key_ids)} key(s), "
        f"expires {format_time(policy.expires)})"
    )
    return 0


def _install_trust(store: TrustStore, root_path: Path) -> None:
    data = _read(root_path, "trust root")
    current = store.current()
    if current is None:
        store.install_initial(data, str(root_path))
    elif current.envelope.to_json() != Envelope.from_json(data, source=str(root_path)).to_json():
        store.update(data, str(root_path))
