"""Build patchd's Linux packages: a .deb and an .rpm that carry their own Python.

    python packaging/linux/build.py deb  [--version V] [--out DIR]
    python packaging/linux/build.py rpm  [--version V] [--out DIR]
    python packaging/linux/build.py deb rpm ...   # both, staged once
    python packaging/linux/build.py python        # only build (or find) the bundled CPython
    python packaging/linux/build.py lock          # re-pin the wheels (requirements-*.lock)

Each format gives two packages from one staged tree:

- ``patchd``: CPython under /opt/patchd/python (built here from source, see python.lock),
  patchd and the agent's libraries in its site-packages, the launcher /opt/patchd/bin/patchd
  (linked from /usr/bin/patchd), the agent's systemd unit, /etc/patchd/agent.yaml, man pages
  and shell completions.
- ``patchd-collector``: the collector's extra libraries (FastAPI, uvicorn, SQLAlchemy,
  psycopg, ...) in the same site-packages, and the collector's unit. An endpoint installs
  only ``patchd``; none of the collector's libraries are on it.

The interpreter is run isolated (``python3.13 -I``): no PYTHONPATH, no user site-packages,
nothing of the distribution's Python. Every wheel is pinned by version and SHA-256
(requirements-agent.lock, requirements-collector.lock) and installed binary-only.

The CPython build is cached in $PATCHD_BUILD_CACHE (default /var/cache/patchd-build),
keyed by its sources, so only the first build on a machine compiles it (a few minutes).
docs/install.md ("Building the packages") says more.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
PREFIX = "/opt/patchd"
PY_PREFIX = f"{PREFIX}/python"
PY_VERSION = "3.13"
PY_BIN = f"{PY_PREFIX}/bin/python{PY_VERSION}"
SITE = f"{PY_PREFIX}/lib/python{PY_VERSION}/site-packages"
MAINTAINER = "patchd maintainers <packaging@patchd.invalid>"
HOMEPAGE = "https://github.com/patchd/patchd"
AGENT_UNIT = "patchd-agent.service"
COLLECTOR_UNIT = "patchd-collector.service"
# Bumped whenever the way CPython is configured or trimmed changes: it is part of the cache key.
PYTHON_RECIPE = "3"  # 2: the build directory scrubbed from sysconfig's records; 3: and checked
# What the shipped sysconfig data says CPython's source tree was (the build's own temporary
# directory otherwise: never used by an installed interpreter, and it differs every build).
BUILD_DIR_PLACEHOLDER = "/build/cpython"
CONFIGURE = (
    f"--prefix={PY_PREFIX}",
    "--with-ensurepip=no",
    "--disable-test-modules",
    "--without-static-libpython",
    "--with-lto=no",
)
# Parts of the standard library an agent never uses and that only add surface.
# Extension modules built when the build machine happens to have their libraries, left out
# so the packages never depend on them (Tk).
STAGE_DROP = ("lib-dynload/_tkinter.*.so",)
STDLIB_DROP = ("idlelib", "tkinter", "turtledemo", "turtle.py", "ensurepip", "lib2to3", "test")


class BuildError(Exception):
    """A step of the build failed; the message says which and what to do."""


def log(message: str) -> None:
    print(f"build: {message}", file=sys.stderr, flush=True)


def run(
    argv: Sequence[str | os.PathLike[str]], cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """Run ``argv`` (never a shell string); a failure names the command and its last output."""
    words = [str(a) for a in argv]
    proc = subprocess.run(words, check=False, text=True, capture_output=True, cwd=cwd)
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-15:]
        raise BuildError(
            f"{words[0]} failed (exit {proc.returncode}): {' '.join(words[:6])} ...\n"
            + "\n".join(tail)
        )
    return proc


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def cache_dir() -> Path:
    return Path(os.environ.get("PATCHD_BUILD_CACHE", "/var/cache/patchd-build"))


# --- the version ------------------------------------------------------------------------------


# Both formats' payloads are xz (the .rpm's about 40 % smaller than rpmbuild's default here).
# Measured on the bundled CPython's 57 MB: level 6 44 s and 8.1 MB, level 1 10 s and 11.8 MB.
RELEASE_XZ_LEVEL = 6
FAST_XZ_LEVEL = 1
VERSION_RE = re.compile(r"^[0-9]+(\.[0-9]+){1,3}([~+][0-9A-Za-z.]+)?$")


def project_version() -> str:
    text = (REPO / "patchd" / "__init__.py").read_text()
    match = re.search(r'^__version__ = "([^"]+)"', text, re.M)
    if not match:
        raise BuildError("patchd/__init__.py has no __version__ line")
    return match.group(1)


def check_version(version: str) -> str:
    if not VERSION_RE.match(version):
        raise BuildError(
            f"version {version!r} is not of the form 1.2.3 (optionally +local or ~pre): pass another --version"
        )
    return version


def rpm_version(version: str) -> str:
    """An RPM Version has no '-'; '~' sorts before the release, as in Debian."""
    return version.replace("-", "_")


# --- the CPython source -----------------------------------------------------------------------


@dataclass(frozen=True)
class PythonLock:
    source_package: str
    suite: str
    upstream_version: str
    orig_sha256: str


def read_python_lock(path: Path = HERE / "python.lock") -> PythonLock:
    values: dict[str, str] = {}
    for number, raw in enumerate(path.read_text().splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        if not sep:
            raise BuildError(f"{path}:{number}: expected 'key = value'")
        values[key.strip()] = value.strip()
    try:
        return PythonLock(**values)
    except TypeError as e:
        raise BuildError(
            f"{path}: {e}: it needs source_package, suite, upstream_version, orig_sha256"
        ) from None


def archive_uris() -> list[tuple[str, str]]:
    """(URI, Signed-By) of the Debian archives this machine's apt already uses.

    The source lists are made from them, so the build uses the machine's own mirror and
    keyring; a machine with no Debian archive configured gets a clear error.
    """
    from debian.deb822 import Deb822

    found: list[tuple[str, str]] = []
    parts = Path("/etc/apt/sources.list.d")
    for path in sorted(parts.glob("*.sources")) if parts.is_dir() else []:
        for stanza in Deb822.iter_paragraphs(path.read_text()):
            if stanza.get("Enabled", "yes").lower() == "no":
                continue
            if "deb" not in stanza.get("Types", "").split():
                continue
            keyring = stanza.get("Signed-By", "").strip()
            for uri in stanza.get("URIs", "").split():
                if re.search(r"/debian/?$", uri) and "main" in stanza.get("Components", "").split():
                    found.append((uri, keyring))
    one_line = (
        [Path("/etc/apt/sources.list"), *sorted(parts.glob("*.list"))] if parts.is_dir() else []
    )
    for path in one_line if one_line else [Path("/etc/apt/sources.list")]:
        if not path.is_file():
            continue
        for line in path.read_text(errors="replace").splitlines():
            # deb [option=value ...] URI SUITE COMPONENT...
            fields = re.sub(r"\[[^]]*\]", " ", line.split("#", 1)[0]).split()
            if (
                len(fields) >= 4
                and fields[0] == "deb"
                and re.search(r"/debian/?$", fields[1])
                and "main" in fields[3:]
            ):
                found.append((fields[1], ""))
    if not found:
        raise BuildError(
            "no Debian archive in /etc/apt/sources.list(.d): the CPython source comes from one; add one"
        )
    return found


@dataclass(frozen=True)
class PythonSource:
    orig: Path
    debian_tar: Path
    debian_version: str


def fetch_python_source(lock: PythonLock, work: Path) -> PythonSource:
    """Download the CPython source package through apt, verified by the archive's signatures."""
    lists = work / "apt-lists"
    (lists / "partial").mkdir(parents=True, exist_ok=True)
    uri, keyring = archive_uris()[0]
    stanza = f"Types: deb-src\nURIs: {uri}\nSuites: {lock.suite}\nComponents: main\n"
    if keyring:
        stanza += f"Signed-By: {keyring}\n"
    sources = work / "sources.sources"
    sources.write_text(stanza)
    options = [
        "-o", f"Dir::Etc::SourceList={sources}", "-o", "Dir::Etc::SourceParts=/dev/null",
        "-o", f"Dir::State::Lists={lists}", "-o", "APT::Sandbox::User=root", "-q",
    ]  # fmt: skip
    log(f"fetching the {lock.source_package} source package ({lock.suite}) through apt")
    run(["apt-get", *options, "update"])
    downloads = work / "source"
    downloads.mkdir(exist_ok=True)
    run(["apt-get", *options, "source", "--download-only", lock.source_package], cwd=downloads)
    orig = downloads / f"{lock.source_package}_{lock.upstream_version}.orig.tar.xz"
    if not orig.is_file():
        offered = sorted(p.name for p in downloads.glob("*.orig.tar.*"))
        raise BuildError(
            f"the archive's {lock.source_package} is not upstream {lock.upstream_version} (it has {offered}): "
            "update packaging/linux/python.lock"
        )
    digest = sha256_file(orig)
    if digest != lock.orig_sha256:
        raise BuildError(
            f"{orig.name} has SHA-256 {digest}, python.lock pins {lock.orig_sha256}: refusing to build"
        )
    tars = sorted(downloads.glob(f"{lock.source_package}_{lock.upstream_version}-*.debian.tar.*"))
    if len(tars) != 1:
        raise BuildError(
            f"expected one Debian patch archive for {lock.source_package}, found {[t.name for t in tars]}"
        )
    version = tars[0].name.split("_", 1)[1].split(".debian.tar")[0]
    return PythonSource(orig, tars[0], version)


def security_patches(series: str) -> list[str]:
    """The patches of a Debian series from its first CVE-* entry on (comments and blanks skipped).

    Debian appends its security and crash fixes after its layout patches; only the former
    are wanted on an upstream build.
    """
    names = [
        line.split()[0]
        for line in series.splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]
    for index, name in enumerate(names):
        if name.startswith("CVE-"):
            return names[index:]
    return []


# --- building CPython ---------------------------------------------------------------------------


def python_cache_key(lock: PythonLock, source: PythonSource) -> str:
    digest = hashlib.sha256()
    for part in (
        lock.orig_sha256,
        sha256_file(source.debian_tar),
        PYTHON_RECIPE,
        *CONFIGURE,
        *STDLIB_DROP,
    ):
        digest.update(part.encode() + b"\0")
    return f"cpython-{lock.upstream_version}-{digest.hexdigest()[:16]}"


def build_python(work: Path) -> Path:
    """The bundled CPython's install tree (its root holds opt/patchd/python), built if not cached."""
    lock = read_python_lock()
    source = fetch_python_source(lock, work)
    key = python_cache_key(lock, source)
    cached = cache_dir() / key
    if (cached / "BUILD-INFO.json").is_file():
        log(
            f"CPython {lock.upstream_version} ({source.debian_version} fixes) from the cache: {cached}"
        )
        return cached / "root"
    src = work / "cpython"
    src.mkdir()
    with tarfile.open(source.orig) as tar:
        tar.extractall(src, filter="data")
    (top,) = list(src.iterdir())
    debian = work / "debian-patches"
    debian.mkdir()
    with tarfile.open(source.debian_tar) as tar:
        tar.extractall(debian, filter="data")
    patch_dir = debian / "debian" / "patches"
    patches = security_patches((patch_dir / "series").read_text())
    for name in patches:
        run(["patch", "-p1", "--batch", "--forward", "--silent", "-i", patch_dir / name], cwd=top)
    log(
        f"CPython {lock.upstream_version} + {len(patches)} fixes from {source.debian_version}: configuring and compiling"
    )
    run(["./configure", *CONFIGURE], cwd=top)
    run(["make", f"-j{os.cpu_count() or 1}"], cwd=top)
    staging = Path(tempfile.mkdtemp(prefix=f"{key}.", dir=_ensure(cache_dir())))
    run(["make", "install", f"DESTDIR={staging / 'root'}"], cwd=top)
    prefix = staging / "root" / PY_PREFIX.lstrip("/")
    _trim_python(prefix)
    _scrub_build_dir(prefix, top, prefix / "bin" / f"python{PY_VERSION}")
    info = {
        "cpython": lock.upstream_version,
        "source": f"{lock.source_package} {source.debian_version} ({lock.suite})",
        "orig_sha256": lock.orig_sha256,
        "patches": patches,
        "configure": list(CONFIGURE),
    }
    (staging / "BUILD-INFO.json").write_text(json.dumps(info, indent=2) + "\n")
    shutil.copy2(
        staging / "BUILD-INFO.json", staging / "root" / PY_PREFIX.lstrip("/") / "BUILD-INFO.json"
    )
    if cached.exists():
        shutil.rmtree(cached)
    staging.rename(cached)  # the cache entry appears whole or not at all
    return cached / "root"


def _ensure(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


def _trim_python(prefix: Path) -> None:
    lib = prefix / "lib" / f"python{PY_VERSION}"
    for name in STDLIB_DROP:
        target = lib / name
        if target.is_dir():
            shutil.rmtree(target)
        elif target.exists():
            target.unlink()
    for tool in (
        "idle3",
        f"idle{PY_VERSION}",
        "pydoc3",
        f"pydoc{PY_VERSION}",
        "2to3",
        f"2to3-{PY_VERSION}",
    ):
        (prefix / "bin" / tool).unlink(missing_ok=True)
    elves = [p for p in prefix.rglob("*") if p.is_file() and not p.is_symlink() and _is_elf(p)]
    run(["strip", "--strip-unneeded", *elves])


_RECOMPILE = """
import compileall, sys
installed, *files = sys.argv[1:]
for name in files:
    for level in (0, 1, 2):  # as `make install` compiled them
        if not compileall.compile_file(name, ddir=installed, force=True, quiet=1, optimize=level):
            sys.exit(f"cannot compile {name}")
"""


def _scrub_build_dir(prefix: Path, build_dir: Path, python: Path) -> None:
    """Replace the build directory where CPython's install records it, and recompile.

    sysconfig keeps the source tree's path (``abs_srcdir``, ``abs_builddir`` and paths
    under them) in ``_sysconfigdata_*.py`` and ``config-*/Makefile``. ``python`` (the
    interpreter just built) compiles the changed module again, at each optimisation level,
    under its installed name.
    """
    lib = prefix / "lib" / f"python{PY_VERSION}"
    sysconfigdata = sorted(lib.glob("_sysconfigdata_*.py"))
    # configure records the directory as `pwd` says it: the physical path, when the
    # temporary directory is reached through a symlink.
    needles = {str(build_dir).encode(), str(build_dir.resolve()).encode()}
    for path in [*sysconfigdata, *lib.glob("config-*/Makefile")]:
        data = path.read_bytes()
        for needle in needles:
            data = data.replace(needle, BUILD_DIR_PLACEHOLDER.encode())
        path.write_bytes(data)
    installed = f"{PY_PREFIX}/lib/python{PY_VERSION}"
    run([python, "-I", "-c", _RECOMPILE, installed, *map(str, sysconfigdata)])
    for path in prefix.rglob("*"):  # a file a later CPython writes would be missed: say so
        if path.is_file() and not path.is_symlink():
            data = path.read_bytes()
            if any(needle in data for needle in needles):
                raise BuildError(
                    f"{path.relative_to(prefix)} still names the build directory {build_dir}: "
                    "add it to _scrub_build_dir"
                )


def _is_elf(path: Path) -> bool:
    with path.open("rb") as f:
        return f.read(4) == b"\x7fELF"


# --- staging the packages' trees --------------------------------------------------------------


@dataclass(frozen=True)
class Staged:
    agent: Path  # root of the patchd package's files
    collector: Path  # root of the patchd-collector package's files
    version: str
    python_info: dict[str, object]


def pip(python: Path, *args: str | os.PathLike[str]) -> subprocess.CompletedProcess[str]:
    """This build's own pip, running under the bundled interpreter (pip --python)."""
    return run(
        [sys.executable, "-m", "pip", "--python", python, "--disable-pip-version-check", *args]
    )


def build_wheel(version: str, work: Path) -> Path:
    """A wheel of the working tree with its version set to ``version``."""
    src = work / "src"
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info")
    shutil.copytree(REPO / "patchd", src / "patchd", ignore=ignore)
    for name in ("setup.cfg", "pyproject.toml", "README.md", "LICENSE"):
        shutil.copy2(REPO / name, src / name)
    init = src / "patchd" / "__init__.py"
    init.write_text(
        re.sub(
            r'^__version__ = "[^"]+"', f'__version__ = "{version}"', init.read_text(), flags=re.M
        )
    )
    out = work / "wheel"
    run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", out, src])
    (wheel,) = list(out.glob("patchd-*.whl"))
    return wheel


def stage(version: str, work: Path) -> Staged:
    python_root = build_python(work)
    python_info = json.loads((python_root / PY_PREFIX.lstrip("/") / "BUILD-INFO.json").read_text())
    agent = work / "stage-agent"
    shutil.copytree(python_root, agent, symlinks=True)
    lib = agent / PY_PREFIX.lstrip("/") / "lib" / f"python{PY_VERSION}"
    for pattern in STAGE_DROP:
        for path in lib.glob(pattern):
            path.unlink()
    python = agent / PY_BIN.lstrip("/")
    site = agent / SITE.lstrip("/")
    bin_before = set(os.listdir(python.parent))
    wheel = build_wheel(version, work)
    common = [
        "install",
        "--quiet",
        "--no-compile",
        "--no-deps",
        "--only-binary=:all:",
        "--no-warn-script-location",
    ]
    log("installing the agent's pinned wheels")
    pip(python, *common, "--require-hashes", "-r", HERE / "requirements-agent.lock")
    pip(python, *common, wheel)
    # Scripts that wheels install point at the staging path and are not used: the launcher is ours.
    for name in set(os.listdir(python.parent)) - bin_before:
        (python.parent / name).unlink()
    for direct_url in site.glob("*.dist-info/direct_url.json"):
        direct_url.unlink()  # it records this build's temporary paths
    _compile(python, agent, site)
    before = _snapshot(agent)
    log("installing the collector's pinned wheels")
    pip(python, *common, "--require-hashes", "-r", HERE / "requirements-collector.lock")
    for name in set(os.listdir(python.parent)) - bin_before:
        (python.parent / name).unlink()
    _compile(python, agent, site)
    after = _snapshot(agent)
    changed = sorted(p for p in before if after.get(p) != before[p])
    if changed:
        raise BuildError(
            f"the collector's wheels change the agent's files ({changed[:3]}...): make the locks agree"
        )
    collector = work / "stage-collector"
    for relative in sorted(set(after) - set(before)):
        target = collector / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        (agent / relative).rename(target)
    _prune_empty_dirs(agent / SITE.lstrip("/"))
    _lay_agent_files(agent, version, python_info)
    _lay_collector_files(collector)
    _check_no_build_paths(agent, work)
    _check_no_build_paths(collector, work)
    return Staged(agent, collector, version, python_info)


def _compile(python: Path, root: Path, site: Path) -> None:
    """Byte-compile site-packages with the paths the files will have once installed."""
    run([python, "-I", "-m", "compileall", "-q", "-j0", "-s", root, "-p", "/", site])


def _snapshot(root: Path) -> dict[str, str]:
    files = {}
    for path in root.rglob("*"):
        if path.is_file() and not path.is_symlink():
            files[str(path.relative_to(root))] = sha256_file(path)
    return files


def _prune_empty_dirs(top: Path) -> None:
    for path in sorted(top.rglob("*"), key=lambda p: len(p.parts), reverse=True):
        if path.is_dir() and not any(path.iterdir()):
            path.rmdir()


LAUNCHER = f"""#!{PY_BIN} -I
# patchd, run by the Python it ships with: isolated (-I), so no PYTHONPATH, user
# site-packages or distribution Python library is ever imported.
import sys

from patchd.cli.main import main

sys.exit(main())
"""


def _put(root: Path, path: str, data: bytes, mode: int = 0o644) -> None:
    target = root / path.lstrip("/")
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(data)
    target.chmod(mode)


def _gzip(data: bytes) -> bytes:
    return gzip.compress(data, compresslevel=9, mtime=0)


def _lay_agent_files(root: Path, version: str, python_info: dict[str, object]) -> None:
    service_files = REPO / "patchd" / "service" / "files"
    _put(root, f"{PREFIX}/bin/patchd", LAUNCHER.encode(), 0o755)
    link = root / "usr/bin/patchd"
    link.parent.mkdir(parents=True, exist_ok=True)
    link.symlink_to(f"{PREFIX}/bin/patchd")
    _put(root, f"/usr/lib/systemd/system/{AGENT_UNIT}", (service_files / AGENT_UNIT).read_bytes())
    _put(root, "/etc/patchd/agent.yaml", (service_files / "agent.yaml").read_bytes())
    man = REPO / "packaging" / "man"
    _put(root, "/usr/share/man/man8/patchd.8.gz", _gzip((man / "patchd.8").read_bytes()))
    _put(
        root,
        "/usr/share/man/man5/patchd-policy.5.gz",
        _gzip((man / "patchd-policy.5").read_bytes()),
    )
    completions = REPO / "packaging" / "completions"
    _put(
        root,
        "/usr/share/bash-completion/completions/patchd",
        (completions / "patchd.bash").read_bytes(),
    )
    _put(root, "/usr/share/zsh/vendor-completions/_patchd", (completions / "_patchd").read_bytes())
    _put(
        root,
        "/usr/share/fish/vendor_completions.d/patchd.fish",
        (completions / "patchd.fish").read_bytes(),
    )
    _put(root, "/usr/share/doc/patchd/copyright", _copyright(python_info).encode())
    _put(root, f"{PREFIX}/VERSION", f"{version}\n".encode())


def _lay_collector_files(root: Path) -> None:
    service_files = REPO / "patchd" / "service" / "files"
    _put(
        root,
        f"/usr/lib/systemd/system/{COLLECTOR_UNIT}",
        (service_files / COLLECTOR_UNIT).read_bytes(),
    )
    _put(root, "/usr/share/doc/patchd-collector/copyright", _copyright({}).encode())


def _copyright(python_info: dict[str, object]) -> str:
    text = (
        "Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\n"
        f"Upstream-Name: patchd\nSource: {HOMEPAGE}\n\n"
        "Files: *\nCopyright: patchd contributors\nLicense: Apache-2.0\n"
        " On Debian systems the full text is in /usr/share/common-licenses/Apache-2.0.\n"
    )
    if python_info:
        text += (
            f"\nFiles: {PY_PREFIX}/*\nCopyright: Python Software Foundation and the authors of each library\n"
            f"License: PSF-2.0 and the licenses in each {SITE}/*.dist-info\n"
            f" CPython {python_info['cpython']}, built from {python_info['source']};\n"
            f" its licence is {PY_PREFIX}/lib/python{PY_VERSION}/LICENSE.txt.\n"
        )
    return text


def _check_no_build_paths(root: Path, work: Path) -> None:
    """No shipped text file may name this build's temporary directory."""
    needle = str(work).encode()
    for path in root.rglob("*"):
        if path.is_file() and not path.is_symlink() and needle in path.read_bytes():
            raise BuildError(
                f"{path.relative_to(root)} names the build directory {work}: it would not work installed"
            )


def _linked(staged: Staged, kind: str) -> Staged:
    """A copy of the staged trees made of hard links, for one format to add its own files to."""
    trees = []
    for tree in (staged.agent, staged.collector):
        copy = tree.with_name(f"{tree.name}-{kind}")
        shutil.copytree(tree, copy, symlinks=True, copy_function=os.link)
        trees.append(copy)
    return Staged(trees[0], trees[1], staged.version, staged.python_info)


# --- .deb ---------------------------------------------------------------------------------------


AGENT_DESCRIPTION = """patch management that runs itself on every endpoint and can prove it
 The patchd agent scans this machine's package managers, applies the updates an
 administrator-signed policy approves inside maintenance windows after a
 snapshot, checks health, rolls back by itself on failure, and sends signed
 reports to a collector.
 .
 It carries its own Python under /opt/patchd: it uses none of the
 distribution's Python libraries."""

COLLECTOR_DESCRIPTION = """patchd's collector: signed reports, compliance, dashboard and exports
 Verifies and stores the endpoints' signed reports (SQLite or PostgreSQL),
 computes compliance, and serves a dashboard, exports and Prometheus metrics.
 Adds the collector's libraries to patchd's own Python under /opt/patchd."""

DEB_POSTINST = f"""#!/bin/sh
# patchd's postinst. On an upgrade the agent is restarted with --no-block: this script may
# be run by the agent's own package transaction (patchd upgrading itself), and a blocking
# restart would wait for the agent, which waits for this transaction to finish.
set -e
UNIT={AGENT_UNIT}
case "$1" in
configure|abort-upgrade|abort-deconfigure|abort-remove)
    install -d -m 0755 -o root -g root /etc/patchd
    install -d -m 0700 -o root -g root /var/lib/patchd /var/lib/patchd/keys
    install -d -m 0750 -o root -g root /var/log/patchd
    if command -v deb-systemd-helper >/dev/null 2>&1; then
        deb-systemd-helper unmask "$UNIT" >/dev/null || true
        if deb-systemd-helper --quiet was-enabled "$UNIT"; then
            deb-systemd-helper enable "$UNIT" >/dev/null || true
        else
            deb-systemd-helper update-state "$UNIT" >/dev/null || true
        fi
    fi
    if [ -d /run/systemd/system ]; then
        systemctl --system daemon-reload >/dev/null || true
        if [ -n "$2" ]; then
            systemctl --no-block try-restart "$UNIT" >/dev/null || true
        elif command -v deb-systemd-invoke >/dev/null 2>&1; then
            deb-systemd-invoke start "$UNIT" >/dev/null || true
        else
            systemctl --no-block start "$UNIT" >/dev/null || true
        fi
    fi
    ;;
esac
exit 0
"""

# Only a removal stops the agent; an upgrade leaves it running until the postinst's
# --no-block try-restart (stopping it here could deadlock a self-upgrade).
DEB_PRERM = f"""#!/bin/sh
set -e
if [ "$1" = remove ] && [ -d /run/systemd/system ]; then
    deb-systemd-invoke stop {AGENT_UNIT} >/dev/null 2>&1 || systemctl stop {AGENT_UNIT} || true
fi
exit 0
"""

DEB_POSTRM = f"""#!/bin/sh
set -e
if [ -d /run/systemd/system ]; then
    systemctl --system daemon-reload >/dev/null || true
fi
if [ "$1" = remove ] && command -v deb-systemd-helper >/dev/null 2>&1; then
    deb-systemd-helper mask {AGENT_UNIT} >/dev/null || true
fi
if [ "$1" = purge ]; then
    if command -v deb-systemd-helper >/dev/null 2>&1; then
        deb-systemd-helper purge {AGENT_UNIT} >/dev/null || true
        deb-systemd-helper unmask {AGENT_UNIT} >/dev/null || true
    fi
    # The endpoint's key, state database, kept packages and logs go with a purge.
    rm -rf /var/lib/patchd /var/log/patchd
fi
exit 0
"""

# The collector is not started on install: it needs its admin token
# (/etc/patchd-collector/admin-token) first. An upgrade restarts a running one.
DEB_COLLECTOR_POSTINST = f"""#!/bin/sh
set -e
case "$1" in
configure)
    install -d -m 0755 -o root -g root /etc/patchd-collector
    if [ -d /run/systemd/system ]; then
        systemctl --system daemon-reload >/dev/null || true
        if [ -n "$2" ]; then
            systemctl --no-block try-restart {COLLECTOR_UNIT} >/dev/null || true
        fi
    fi
    ;;
esac
exit 0
"""

DEB_COLLECTOR_PRERM = f"""#!/bin/sh
set -e
if [ "$1" = remove ] && [ -d /run/systemd/system ]; then
    systemctl stop {COLLECTOR_UNIT} || true
fi
exit 0
"""

DEB_COLLECTOR_POSTRM = """#!/bin/sh
set -e
if [ -d /run/systemd/system ]; then
    systemctl --system daemon-reload >/dev/null || true
fi
exit 0
"""


def shlib_depends(root: Path, work: Path) -> str:
    """The shared-library dependencies of the tree's ELF files, as dpkg-shlibdeps finds them."""
    elves = [p for p in root.rglob("*") if p.is_file() and not p.is_symlink() and _is_elf(p)]
    if not elves:
        return ""
    control = work / "shlibdeps" / "debian" / "control"
    control.parent.mkdir(parents=True, exist_ok=True)
    control.write_text("Source: patchd\n\nPackage: patchd\nArchitecture: any\n")
    # Libraries that wheels bundle (auditwheel's *.libs directories) are found beside them.
    private = sorted({str(p.parent) for p in elves if p.parent.name.endswith(".libs")})
    argv = [
        "dpkg-shlibdeps",
        "-O",
        "--ignore-missing-info",
        *(f"-l{d}" for d in private),
        *(f"-e{p}" for p in elves),
    ]
    out = run(argv, cwd=control.parent.parent).stdout
    for line in out.splitlines():
        if line.startswith("shlibs:Depends="):
            return line.split("=", 1)[1].strip()
    return ""


def installed_size_kib(root: Path) -> int:
    total = sum(p.lstat().st_size for p in root.rglob("*") if p.is_file() or p.is_symlink())
    return (total + 1023) // 1024


def build_deb(
    root: Path,
    *,
    name: str,
    version: str,
    depends: str,
    description: str,
    scripts: dict[str, str],
    conffiles: Iterable[str],
    out: Path,
    xz_level: int,
    extra: dict[str, str] | None = None,
) -> Path:
    control_dir = root / "DEBIAN"
    control_dir.mkdir()
    fields = {
        "Package": name,
        "Version": version,
        "Architecture": "amd64",
        "Maintainer": MAINTAINER,
        "Installed-Size": str(installed_size_kib(root)),
        **({"Depends": depends} if depends else {}),
        **(extra or {}),
        "Section": "admin",
        "Priority": "optional",
        "Homepage": HOMEPAGE,
        "Description": description,
    }
    (control_dir / "control").write_text("".join(f"{k}: {v}\n" for k, v in fields.items()))
    sums = []
    for path in sorted(root.rglob("*")):
        if path.is_file() and not path.is_symlink() and control_dir not in path.parents:
            sums.append(f"{hashlib.md5(path.read_bytes()).hexdigest()}  {path.relative_to(root)}\n")  # noqa: S324 (dpkg's format)
    (control_dir / "md5sums").write_text("".join(sums))
    conffiles = list(conffiles)
    if conffiles:
        (control_dir / "conffiles").write_text("".join(f"{c}\n" for c in conffiles))
    for script, text in scripts.items():
        (control_dir / script).write_text(text)
        (control_dir / script).chmod(0o755)
    for path in root.rglob("*"):
        if not path.is_symlink():
            path.chmod(
                path.stat().st_mode & ~0o022
            )  # no group- or world-writable file in a package
    out.mkdir(parents=True, exist_ok=True)
    target = out / f"{name}_{version}_amd64.deb"
    run(["dpkg-deb", "--root-owner-group", "-Zxz", f"-z{xz_level}", "--build", root, target])
    return target


def make_debs(
    staged: Staged, out: Path, work: Path, xz_level: int = RELEASE_XZ_LEVEL
) -> list[Path]:
    version = staged.version
    agent_deps = shlib_depends(staged.agent, work)
    collector_deps = shlib_depends(staged.collector, work)
    agent = build_deb(
        staged.agent,
        name="patchd",
        version=version,
        depends=agent_deps,
        description=AGENT_DESCRIPTION,
        scripts={"postinst": DEB_POSTINST, "prerm": DEB_PRERM, "postrm": DEB_POSTRM},
        conffiles=["/etc/patchd/agent.yaml"],
        out=out,
        xz_level=xz_level,
    )
    requires = ", ".join(filter(None, [f"patchd (= {version})", collector_deps]))
    collector = build_deb(
        staged.collector,
        name="patchd-collector",
        version=version,
        depends=requires,
        description=COLLECTOR_DESCRIPTION,
        scripts={
            "postinst": DEB_COLLECTOR_POSTINST,
            "prerm": DEB_COLLECTOR_PRERM,
            "postrm": DEB_COLLECTOR_POSTRM,
        },
        conffiles=[],
        out=out,
        xz_level=xz_level,
    )
    return [agent, collector]


# --- .rpm ---------------------------------------------------------------------------------------

# RPM scriptlets get the count of this package's versions installed after the step: 1 on a
# first install, 2 during an upgrade, 0 on the last removal. Same no-block rule as the .deb.
RPM_POST = f"""install -d -m 0700 /var/lib/patchd /var/lib/patchd/keys
install -d -m 0750 /var/log/patchd
if [ -d /run/systemd/system ]; then
    systemctl --system daemon-reload >/dev/null 2>&1 || :
    if [ "$1" -eq 1 ]; then
        systemctl --no-reload preset {AGENT_UNIT} >/dev/null 2>&1 || :
    fi
fi
"""

RPM_PREUN = f"""if [ "$1" -eq 0 ] && [ -d /run/systemd/system ]; then
    systemctl --no-reload disable --now {AGENT_UNIT} >/dev/null 2>&1 || :
fi
"""

RPM_POSTUN = f"""if [ -d /run/systemd/system ]; then
    systemctl --system daemon-reload >/dev/null 2>&1 || :
    if [ "$1" -ge 1 ]; then
        systemctl --no-block try-restart {AGENT_UNIT} >/dev/null 2>&1 || :
    fi
fi
"""

RPM_COLLECTOR_POSTUN = f"""if [ -d /run/systemd/system ]; then
    systemctl --system daemon-reload >/dev/null 2>&1 || :
    if [ "$1" -ge 1 ]; then
        systemctl --no-block try-restart {COLLECTOR_UNIT} >/dev/null 2>&1 || :
    fi
fi
"""

RPM_COLLECTOR_PREUN = f"""if [ "$1" -eq 0 ] && [ -d /run/systemd/system ]; then
    systemctl --no-reload disable --now {COLLECTOR_UNIT} >/dev/null 2>&1 || :
fi
"""


def _rpm_files(root: Path, owned_dirs: Sequence[str], config: Sequence[str]) -> str:
    lines = [f"%dir {d}" for d in owned_dirs]
    for path in sorted(root.rglob("*")):
        if path.is_dir() and not path.is_symlink():
            relative = "/" + str(path.relative_to(root))
            if any(relative == d or relative.startswith(d + "/") for d in owned_dirs):
                lines.append(f"%dir {_rpm_quote(relative)}")
            continue
        relative = "/" + str(path.relative_to(root))
        if relative in config:
            lines.append(f"%config(noreplace) {relative}")
        elif relative.startswith("/usr/share/man/"):
            lines.append(f"%doc {relative}")
        else:
            lines.append(_rpm_quote(relative))
    return "\n".join(dict.fromkeys(lines)) + "\n"


def _rpm_quote(path: str) -> str:
    """%files entries are globs: quote the characters that would make one match others."""
    return re.sub(r"([\[\]\*\?\{\}])", r"\\\1", path) if re.search(r"[\[\]*?{} ]", path) else path


def build_rpm(
    root: Path,
    *,
    name: str,
    version: str,
    summary: str,
    description: str,
    requires: Sequence[str],
    scripts: dict[str, str],
    files: str,
    out: Path,
    work: Path,
    xz_level: int,
) -> Path:
    top = work / f"rpmbuild-{name}"
    for sub in ("SPECS", "BUILD", "BUILDROOT", "RPMS"):
        (top / sub).mkdir(parents=True, exist_ok=True)
    spec = [
        f"Name: {name}",
        f"Version: {rpm_version(version)}",
        "Release: 1",
        f"Summary: {summary}",
        "License: Apache-2.0 AND PSF-2.0",
        f"URL: {HOMEPAGE}",
        "BuildArch: x86_64",
        # Shared-library requirements are found automatically; nothing is provided to
        # other packages (the bundled libraries are patchd's own).
        "AutoReq: yes",
        "AutoProv: no",
        "%global __requires_exclude_from ^/opt/patchd/python/lib/.*\\.py$",
        # Shebangs of library files (e.g. "#!/usr/bin/python3" in a wheel's helper) are not
        # requirements: patchd runs only its own interpreter.
        "%global __requires_exclude ^(/opt/patchd/|/usr/bin/python|python\\(abi\\)|python3)",
        f"%global _binary_payload w{xz_level}.xzdio",  # xz, as the .deb
        "%global debug_package %{nil}",
        "%global __os_install_post %{nil}",
        "%global _build_id_links none",
        *(f"Requires: {r}" for r in requires),
        "",
        "%description",
        description,
        "",
        "%install",
        f"cp -a {root}/. %{{buildroot}}/",
        "",
        *(f"%{script}\n{text}" for script, text in scripts.items()),
        "%files",
        files,
    ]
    spec_path = top / "SPECS" / f"{name}.spec"
    spec_path.write_text("\n".join(spec))
    run([
        "rpmbuild", "-bb", "--quiet", "--define", f"_topdir {top}", "--define", "_source_date_epoch_from_changelog 0",
        "--buildroot", top / "BUILDROOT" / name, spec_path,
    ])  # fmt: skip
    (built,) = list((top / "RPMS").rglob("*.rpm"))
    out.mkdir(parents=True, exist_ok=True)
    target = out / built.name
    shutil.move(built, target)
    return target


def make_rpms(
    staged: Staged, out: Path, work: Path, xz_level: int = RELEASE_XZ_LEVEL
) -> list[Path]:
    version = staged.version
    agent_files = _rpm_files(
        staged.agent, [PREFIX, "/etc/patchd", "/usr/share/doc/patchd"], ["/etc/patchd/agent.yaml"]
    )
    agent_files += "%dir %attr(0700,root,root) /var/lib/patchd\n%dir %attr(0700,root,root) /var/lib/patchd/keys\n"
    agent_files += "%dir %attr(0750,root,root) /var/log/patchd\n"
    for d in ("var/lib/patchd/keys", "var/log/patchd"):
        (staged.agent / d).mkdir(parents=True, exist_ok=True)
    agent = build_rpm(
        staged.agent,
        name="patchd",
        version=version,
        summary="Patch management that runs itself on every endpoint and can prove it",
        description=AGENT_DESCRIPTION.split("\n", 1)[1]
        .replace("\n .\n", "\n\n")
        .replace("\n ", "\n")
        .strip(),
        requires=[],
        scripts={"post": RPM_POST, "preun": RPM_PREUN, "postun": RPM_POSTUN},
        files=agent_files,
        out=out,
        work=work,
        xz_level=xz_level,
    )
    collector = build_rpm(
        staged.collector,
        name="patchd-collector",
        version=version,
        summary="patchd's collector: signed reports, compliance, dashboard and exports",
        description=COLLECTOR_DESCRIPTION.split("\n", 1)[1].replace("\n ", "\n").strip(),
        requires=[f"patchd = {rpm_version(version)}-1"],
        scripts={"preun": RPM_COLLECTOR_PREUN, "postun": RPM_COLLECTOR_POSTUN},
        files=_rpm_files(staged.collector, ["/usr/share/doc/patchd-collector"], []),
        out=out,
        work=work,
        xz_level=xz_level,
    )
    return [agent, collector]


# --- the wheel locks ------------------------------------------------------------------------------


def lock_wheels(work: Path) -> None:
    """Resolve the agent's and the collector's wheels for the bundled Python; pin them by hash."""
    python = build_python(work) / PY_BIN.lstrip("/")
    agent = _resolve(python, f"{REPO}", None, work / "agent.json")
    _write_lock(
        HERE / "requirements-agent.lock", agent, "the agent's libraries (patchd's install_requires)"
    )
    constraints = work / "constraints.txt"
    constraints.write_text("".join(f"{n}=={v}\n" for n, (v, _) in agent.items()))
    full = _resolve(python, f"{REPO}[collector,postgres]", constraints, work / "full.json")
    extra = {n: pin for n, pin in full.items() if n not in agent}
    _write_lock(
        HERE / "requirements-collector.lock", extra, "the collector's libraries beyond the agent's"
    )


def _resolve(
    python: Path, requirement: str, constraints: Path | None, report: Path
) -> dict[str, tuple[str, str]]:
    args: list[str | os.PathLike[str]] = [
        "install",
        "--dry-run",
        "--ignore-installed",
        "--only-binary=:all:",
        "--quiet",
        "--report",
        report,
    ]
    if constraints:
        args += ["-c", constraints]
    pip(python, *args, requirement)
    pins = {}
    for item in json.loads(report.read_text())["install"]:
        name = item["metadata"]["name"].lower().replace("_", "-")
        if name == "patchd":
            continue
        hashes = item["download_info"].get("archive_info", {}).get("hashes", {})
        if "sha256" not in hashes:
            raise BuildError(f"pip gave no SHA-256 for {name}: cannot pin it")
        pins[name] = (item["metadata"]["version"], hashes["sha256"])
    return dict(sorted(pins.items()))


def _write_lock(path: Path, pins: dict[str, tuple[str, str]], what: str) -> None:
    lines = [
        f"# {what}, for the Python bundled in the Linux packages",
        f"# (CPython {PY_VERSION}, x86_64 manylinux wheels). Generated by",
        "# `python packaging/linux/build.py lock`: do not edit by hand.",
    ]
    lines += [
        f"{name}=={version} --hash=sha256:{digest}" for name, (version, digest) in pins.items()
    ]
    path.write_text("\n".join(lines) + "\n")


# --- the command ----------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="build.py", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "what",
        nargs="+",
        choices=("deb", "rpm", "python", "lock"),
        help="deb and/or rpm (staged once for both), or python, or lock",
    )
    parser.add_argument("--version", help="the packages' version (default: patchd.__version__)")
    parser.add_argument(
        "--out", type=Path, default=REPO / "dist", help="where packages go (default: dist/)"
    )
    parser.add_argument(
        "--fast",
        action="store_true",
        help=f"xz level {FAST_XZ_LEVEL} instead of {RELEASE_XZ_LEVEL}: packages about 45 %% larger, "
        "packed about 4 times faster (the tests; never a release)",
    )
    args = parser.parse_args(argv)
    try:
        version = check_version(args.version or project_version())
        with tempfile.TemporaryDirectory(prefix="patchd-build.") as tmp:
            work = Path(tmp)
            what = list(dict.fromkeys(args.what))
            if ("python" in what or "lock" in what) and len(what) > 1:
                raise BuildError("python and lock are steps of their own: give them alone")
            if what == ["python"]:
                print(build_python(work) / PY_BIN.lstrip("/"))
                return 0
            if what == ["lock"]:
                lock_wheels(work)
                return 0
            staged = stage(version, work)
            for kind in what:
                made = (make_debs if kind == "deb" else make_rpms)(
                    _linked(staged, kind),
                    args.out,
                    work,
                    FAST_XZ_LEVEL if args.fast else RELEASE_XZ_LEVEL,
                )
                for path in made:
                    print(path)
        return 0
    except BuildError as e:
        print(f"build: error: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
