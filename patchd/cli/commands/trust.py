"""``patchd trust``: write, rotate, sign and check trust roots; install and show this endpoint's.

``init``, ``rotate``, ``sign`` and ``verify`` work on files an admin holds and touch no
endpoint state; ``update`` and ``show`` work on this endpoint's installed root.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from patchd.atomicfile import atomic_write_bytes
from patchd.cli.main import Invocation
from patchd.cli.output import write_json
from patchd.errors import UsageError
from patchd.signing.dsse import (
    MAX_ENVELOPE_BYTES,
    TRUST_ROOT_PAYLOAD_TYPE,
    Envelope,
    verified_key_ids,
)
from patchd.signing.keys import (
    PUBLIC_FILE_MODE,
    PublicKey,
    load_private_key,
    load_public_key,
    read_bounded_file,
    write_new_file,
)
from patchd.signing.trust import (
    MAX_ROOT_KEYS,
    TrustRoot,
    TrustStore,
    make_root,
    parse_root,
    verify_root_alone,
    verify_successor,
)

SHOW_SCHEMA_VERSION = 1


def _read_envelope(name: str) -> tuple[Path, Envelope]:
    path = Path(name)
    data = read_bounded_file(path, MAX_ENVELOPE_BYTES, "trust root")
    return path, Envelope.from_json(data, str(path))


def _signers(root: TrustRoot, envelope: Envelope) -> int:
    """How many of ``root``'s keys validly signed ``envelope``."""
    payload, signatures = envelope.payload, envelope.signatures
    return len(verified_key_ids(TRUST_ROOT_PAYLOAD_TYPE, payload, signatures, root.keys))


def _check_keys(keys: Sequence[PublicKey], threshold: int, option: str) -> None:
    """Refuse, as a usage error, what :func:`make_root` would refuse."""
    if not keys:
        raise UsageError("no keys would be left", hint="a trust root needs at least one key")
    if len(keys) > MAX_ROOT_KEYS:
        raise UsageError(f"{len(keys)} keys: a trust root lists at most {MAX_ROOT_KEYS}")
    if len({k.key_id for k in keys}) != len(keys):
        raise UsageError("the same key is given twice")
    if not 1 <= threshold <= len(keys):
        raise UsageError(
            f"{option} {threshold}: must be from 1 to the number of keys ({len(keys)})"
        )


def _write_root(out: str, envelope: Envelope, previous: TrustRoot | None) -> None:
    root = parse_root(envelope)
    path = Path(out)
    write_new_file(path, envelope.to_json() + b"\n", mode=PUBLIC_FILE_MODE)
    print(f"{path}: trust root version {root.version}, {root.threshold} of {len(root.keys)} keys")
    if previous is not None:
        print(
            f"next: {previous.threshold} of version {previous.version}'s keys and "
            f"{root.threshold} of the new version's keys sign it: "
            f"`patchd trust sign {path} --key KEY`"
        )


def init(invocation: Invocation) -> int:
    args = invocation.args
    keys = [load_public_key(Path(name)) for name in args.keys]
    _check_keys(keys, args.threshold, "--threshold")
    _write_root(args.out, make_root(1, keys, args.threshold), None)
    return 0


def rotate(invocation: Invocation) -> int:
    args = invocation.args
    path, envelope = _read_envelope(args.trust)
    current = parse_root(envelope, source=str(path))
    keys = dict(current.keys)
    for key_id in args.remove_key:
        if keys.pop(key_id, None) is None:
            raise UsageError(
                f"--remove-key {key_id}: not a key of {path} (version {current.version})",
                hint="`patchd trust verify` and `patchd trust show` list key ids",
            )
    for name in args.add_key:
        key = load_public_key(Path(name))
        if key.key_id in keys:
            raise UsageError(f"--add-key {name}: key {key.key_id} is already listed")
        keys[key.key_id] = key
    threshold = current.threshold if args.threshold is None else args.threshold
    option = "--threshold" if args.threshold is not None else "the current threshold"
    _check_keys(list(keys.values()), threshold, option)
    _write_root(args.out, make_root(current.version + 1, list(keys.values()), threshold), current)
    return 0


def sign(invocation: Invocation) -> int:
    args = invocation.args
    path, envelope = _read_envelope(args.file)
    root = parse_root(envelope, source=str(path))
    key = load_private_key(Path(args.key))
    signed = envelope.signed_with(key)
    atomic_write_bytes(path, signed.to_json() + b"\n", mode=PUBLIC_FILE_MODE)
    role = (
        "one of its own keys"
        if key.key_id in root.keys
        else "not one of its own keys: it counts for the previous version's threshold"
    )
    print(f"{path}: signed with key {key.key_id} ({role}); {len(signed.signatures)} signature(s)")
    return 0


def verify(invocation: Invocation) -> int:
    args = invocation.args
    path, envelope = _read_envelope(args.file)
    if args.trust is None:
        root = verify_root_alone(envelope, source=str(path))
        if envelope.signatures:
            state = f"signed by {_signers(root, envelope)} of {root.threshold} required keys"
        else:
            state = "unsigned: trusted only where an admin installs it"
        print(
            f"{path}: trust root version {root.version}, "
            f"{root.threshold} of {len(root.keys)} keys, {state}"
        )
        return 0
    current_path, current_envelope = _read_envelope(args.trust)
    current = verify_root_alone(current_envelope, source=str(current_path))
    new = verify_successor(current, envelope, source=str(path))
    print(
        f"{path}: version {new.version} follows {current_path} version {current.version}: "
        f"signed by {_signers(current, envelope)} of {current.threshold} required previous keys "
        f"and {_signers(new, envelope)} of {new.threshold} required own keys"
    )
    return 0


def update(invocation: Invocation) -> int:
    path = Path(invocation.args.file)
    data = read_bounded_file(path, MAX_ENVELOPE_BYTES, "trust root")
    with invocation.session() as session:
        root = TrustStore(session.state_dir).update(data, str(path))
    print(f"installed trust root version {root.version}: {root.threshold} of {len(root.keys)} keys")
    return 0


def show(invocation: Invocation) -> int:
    with invocation.session() as session:
        store = TrustStore(session.state_dir)
        root = store.current()
    described: dict[str, Any] | None = None
    if root is not None:
        described = {
            "path": str(store.root_path),
            "version": root.version,
            "threshold": root.threshold,
            "keys": sorted(root.keys),
            "payload_sha256": hashlib.sha256(root.envelope.payload).hexdigest(),
        }
    if invocation.args.json:
        write_json({"schema_version": SHOW_SCHEMA_VERSION, "trust_root": described})
        return 0
    if described is None:
        print(
            "Trust root: none installed (install one with `patchd policy activate FILE --trust ROOT`)"
        )
        return 0
    print(f"Trust root: version {described['version']} ({described['path']})")
    print(f"Threshold:  {described['threshold']} of {len(described['keys'])} keys")
    print("Keys:")
    for key_id in described["keys"]:
        print(f"  {key_id}")
    return 0
