"""Steps of packaging/linux/build.py tested on their own, without building CPython."""

from __future__ import annotations

import importlib.util
import marshal
import py_compile
import sys
from pathlib import Path

import pytest

from tests.support.linuxpkg import build_module


def test_the_build_directory_is_scrubbed_from_sysconfigs_records(tmp_path: Path) -> None:
    """The install of a fresh build names its temporary directory (abs_builddir and the
    paths under it); the packages must not, and the compiled module must match."""
    build = build_module()
    work = tmp_path / "patchd-build.x1y2z3" / "cpython" / "Python-3.13.5"
    prefix = tmp_path / "root" / build.PY_PREFIX.lstrip("/")
    lib = prefix / "lib" / f"python{build.PY_VERSION}"
    (lib / "config-3.13-x86_64-linux-gnu").mkdir(parents=True)
    module = lib / "_sysconfigdata__linux_x86_64-linux-gnu.py"
    module.write_text(
        f"build_time_vars = {{'abs_builddir': '{work}', 'COVERAGE_INFO': '{work}/coverage.info',"
        " 'prefix': '/opt/patchd/python'}\n"
    )
    makefile = lib / "config-3.13-x86_64-linux-gnu" / "Makefile"
    makefile.write_text(f"abs_srcdir=\t{work}\nabs_builddir=\t{work}\n")
    # `make install` compiled the module before the scrub: those files must be replaced.
    for level in (0, 1, 2):
        py_compile.compile(str(module), optimize=level, dfile=str(module))
    # The interpreter given compiles (the one just built, in the real build).
    used = tmp_path / "python-used"
    python = tmp_path / "python"
    python.write_text(f'#!/bin/sh\ntouch "{used}"\nexec "{sys.executable}" "$@"\n')
    python.chmod(0o755)

    build._scrub_build_dir(prefix, work, python)

    assert used.exists()

    for path in (tmp_path / "root").rglob("*"):
        if path.is_file():
            assert str(work).encode() not in path.read_bytes(), path
    assert f"'abs_builddir': '{build.BUILD_DIR_PLACEHOLDER}'" in module.read_text()
    assert "'prefix': '/opt/patchd/python'" in module.read_text()  # nothing else touched
    assert makefile.read_text() == (
        f"abs_srcdir=\t{build.BUILD_DIR_PLACEHOLDER}\nabs_builddir=\t{build.BUILD_DIR_PLACEHOLDER}\n"
    )
    installed = f"{build.PY_PREFIX}/lib/python{build.PY_VERSION}/{module.name}"
    for optimization in ("", 1, 2):
        compiled = Path(importlib.util.cache_from_source(str(module), optimization=optimization))
        code = marshal.loads(compiled.read_bytes()[16:])
        assert code.co_filename == installed
        namespace: dict[str, object] = {}
        exec(code, namespace)
        assert namespace["build_time_vars"] == {
            "abs_builddir": build.BUILD_DIR_PLACEHOLDER,
            "COVERAGE_INFO": f"{build.BUILD_DIR_PLACEHOLDER}/coverage.info",
            "prefix": "/opt/patchd/python",
        }


def test_a_file_the_scrub_does_not_know_stops_the_build(tmp_path: Path) -> None:
    build = build_module()
    work = tmp_path / "patchd-build.x1y2z3" / "cpython" / "Python-3.13.5"
    prefix = tmp_path / "root" / build.PY_PREFIX.lstrip("/")
    lib = prefix / "lib" / f"python{build.PY_VERSION}"
    lib.mkdir(parents=True)
    (lib / "build-details.json").write_text(f'{{"source": "{work}"}}\n')

    with pytest.raises(build.BuildError, match=r"build-details\.json still names the build dir"):
        build._scrub_build_dir(prefix, work, Path(sys.executable))


def test_the_physical_path_of_a_symlinked_build_directory_is_scrubbed_too(
    tmp_path: Path,
) -> None:
    build = build_module()
    real = tmp_path / "real-tmp" / "patchd-build.q" / "Python-3.13.5"
    real.mkdir(parents=True)
    (tmp_path / "tmp").symlink_to(tmp_path / "real-tmp")
    work = tmp_path / "tmp" / "patchd-build.q" / "Python-3.13.5"  # as the build names it
    prefix = tmp_path / "root" / build.PY_PREFIX.lstrip("/")
    lib = prefix / "lib" / f"python{build.PY_VERSION}"
    lib.mkdir(parents=True)
    module = lib / "_sysconfigdata__linux_x86_64-linux-gnu.py"
    module.write_text(f"build_time_vars = {{'abs_builddir': '{real}'}}\n")  # as `pwd` said

    build._scrub_build_dir(prefix, work, Path(sys.executable))

    assert (
        module.read_text()
        == f"build_time_vars = {{'abs_builddir': '{build.BUILD_DIR_PLACEHOLDER}'}}\n"
    )
