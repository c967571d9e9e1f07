"""patchd's own Linux packages, built once per test session by packaging/linux/build.py.

The first build on a machine compiles CPython (minutes; cached in $PATCHD_BUILD_CACHE, by
default /var/cache/patchd-build); later ones only stage and pack (well under a minute).
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from types import ModuleType

REPO = Path(__file__).resolve().parent.parent.parent
BUILD = REPO / "packaging" / "linux" / "build.py"
BUILD_TIMEOUT_S = 3600
TOOLS = (
    "apt-get", "dpkg-deb", "dpkg-shlibdeps", "rpmbuild", "gcc", "make", "patch", "strip", "bsdtar",
    "unshare",
)  # fmt: skip

_built: dict[str, dict[str, dict[str, Path]]] = {}
_out = Path(tempfile.mkdtemp(prefix="patchd-test-packages."))


def package_test_version() -> str:
    """A version no release has, so a test can tell the package's patchd from any other."""
    import patchd

    return f"{patchd.__version__}+pkgtest"


def build_packages(kind: str, version: str) -> dict[str, Path]:
    """{package name: file} for ``kind`` ("deb" or "rpm") at ``version``.

    At :func:`package_test_version`, which tests/packaging and tests/e2e share, both formats
    are built together (staged once); any other version only in ``kind``. Once per session.
    """
    if version not in _built or kind not in _built[version]:
        formats = ["deb", "rpm"] if version == package_test_version() else [kind]
        out = _out / f"{version}-{'-'.join(formats)}"
        proc = subprocess.run(
            # --fast: xz level 1, packed about 4 times faster; what is packed is the same.
            [
                sys.executable,
                str(BUILD),
                *formats,
                "--fast",
                "--version",
                version,
                "--out",
                str(out),
            ],
            capture_output=True,
            text=True,
            timeout=BUILD_TIMEOUT_S,
            check=False,
            env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"},
        )
        assert proc.returncode == 0, f"build.py failed:\n{proc.stderr[-4000:]}"
        built: dict[str, dict[str, Path]] = {f: {} for f in formats}
        for line in proc.stdout.split():
            path = Path(line)
            if path.suffix == ".deb":
                built["deb"][path.name.split("_", 1)[0]] = path
            else:
                built["rpm"][path.name.rsplit("-", 2)[0]] = path
        _built.setdefault(version, {}).update(built)
    return _built[version][kind]


def build_module() -> ModuleType:
    """packaging/linux/build.py as a module (it is a script, not part of a package)."""
    name = "patchd_linux_build"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, BUILD)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module
