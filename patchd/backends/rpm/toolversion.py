"""The version of a Python-written package manager (dnf, yum), without starting it.

``dnf --version`` costs half a second of Python start-up, more than patchd may spend
probing; the version is a constant in the tool's own module, so patchd reads it there.
"""

from __future__ import annotations

import glob
import re

MAX_MODULE_BYTES = 256 * 1024
_VERSION = re.compile(r"""^(?:VERSION|__version__)\s*=\s*['"]([^'"]+)['"]""", re.MULTILINE)

MODULE_PATTERNS = {
    "dnf": (
        "/usr/lib/python3*/site-packages/dnf/const.py",
        "/usr/lib/python3/dist-packages/dnf/const.py",
        "/usr/lib64/python3*/site-packages/dnf/const.py",
    ),
    "yum": ("/usr/lib/python2*/site-packages/yum/__init__.py",),
}


def module_version(tool: str) -> str | None:
    """The version constant of ``tool``'s Python module, if the module is found."""
    for pattern in MODULE_PATTERNS.get(tool, ()):
        for path in sorted(glob.glob(pattern)):
            try:
                with open(path, "rb") as f:
                    text = f.read(MAX_MODULE_BYTES).decode("utf-8", "replace")
            except OSError:
                continue
            match = _VERSION.search(text)
            if match:
                return match[1]
    return None
