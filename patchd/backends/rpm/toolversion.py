"""The version of a Python-written package manager (dnf, yum), without starting it.

``dnf --version`` costs half a second of Python start-up, more than patchd may spend
probing; the version is a constant in the tool's own module, so patchd reads it there.
"""

from __future__ import annotations

import glob
import os
import re
from collections.abc import Callable
from pathlib import Path

from patchd import process
from patchd.atomicfile import atomic_write_text

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


def remembered_version(program: str, cache_file: Path, ask: Callable[[], str | None]) -> str | None:
    """``ask()`` for ``program``'s version once per installed binary, then remember it.

    A C++ tool (zypper) must be started to tell its version; that costs a process on
    every probe. The answer is kept beside patchd's work files, keyed by the program's
    path, size and modification time, so an upgrade of the tool is noticed.
    """
    import shutil

    found = shutil.which(program, path=process.base_environment()["PATH"])
    if found is None:
        return None
    try:
        st = os.stat(found)
    except OSError:
        return ask()
    key = f"{found}:{st.st_size}:{st.st_mtime_ns}"
    try:
        remembered_key, _, remembered = cache_file.read_text(encoding="utf-8").partition("\n")
        if remembered_key == key and remembered.strip():
            return remembered.strip()
    except OSError:
        pass
    answer = ask()
    if answer:
        try:
            cache_file.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_text(cache_file, f"{key}\n{answer}\n", mode=0o644)
        except OSError:
            pass  # a read-only state directory: asked again next time, no harm
    return answer
