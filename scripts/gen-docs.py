#!/usr/bin/env python3
"""Write the generated man pages, shell completions and default configuration.

    .venv/bin/python scripts/gen-docs.py          # rewrite what changed
    .venv/bin/python scripts/gen-docs.py --check  # exit 1 if a committed file is stale

Run it after changing the CLI parser, docs/policy.md or config/agent.example.yaml, and
commit the result (tests/service/test_docgen.py fails while a file is stale).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from patchd.cli.docgen import generated  # noqa: E402 - after the path is set


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--check", action="store_true", help="only report stale files")
    args = parser.parse_args()
    stale = []
    for relative, content in generated(REPO).items():
        path = REPO / relative
        if path.is_file() and path.read_text("utf-8") == content:
            continue
        stale.append(relative)
        if not args.check:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(content, "utf-8")
            print(f"wrote {relative}")
    if args.check and stale:
        print(
            "stale: " + ", ".join(map(str, stale)) + " (run scripts/gen-docs.py)", file=sys.stderr
        )
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
