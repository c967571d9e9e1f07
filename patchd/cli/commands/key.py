"""``patchd key generate``: make an administrator's Ed25519 key pair."""

from __future__ import annotations

from pathlib import Path

from patchd.cli.main import Invocation
from patchd.signing.keys import generate_key_pair, key_pair_paths


def generate(invocation: Invocation) -> int:
    prefix = Path(invocation.args.out)
    public_key = generate_key_pair(prefix)
    private_path, public_path = key_pair_paths(prefix)
    print(private_path)
    print(public_path)
    print(f"key id: {public_key.key_id}")
    return 0
