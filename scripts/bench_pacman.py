"""The pacman scan benchmark: the agent's scan ÷ ``pacman -Qu`` on the same Arch root.

The root is the size of a real Arch desktop: 1,000 installed packages, repository
databases carrying 12,000 (like core and extra), 150 of the installed ones with a newer
version. Writing that many packages through pacman would take minutes, so the
databases are written directly in pacman's formats — the local database's
``NAME-VERSION/desc`` directories and a repository database's gzipped tar of ``desc``
entries, as ``repo-add`` writes them — which pacman then reads as it would on Arch. The
root is kept under ``.stamps/pacman-realistic-HASH/`` (the hash of this file).

The verdict (target ≤ 1.25) is on the agent's scan, measured as the agent runs it: a
forked worker with a fresh session per cycle (scripts/bench_scan.py), alternately with
``pacman -Qu``, warm, medians of N runs each. The same scan in one session kept across
runs, and ``patchd scan`` from the command line (Python's start-up and imports
included), are printed for information. patchd is installed as ``make bench`` installs it.
"""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import subprocess
import tarfile
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from bench import REPO, _install  # the same non-editable installation as `make bench`
from bench_scan import Row, measure_agent_scan, print_rows

INSTALLED = 1000
REPOSITORY = {"core": 1500, "extra": 10500}  # packages per repository database
UPDATES = 150
WARM_RUNS = 3
RUNS = 11
SCAN_TARGET = 1.25
ARCH_OS_RELEASE = 'NAME="Arch Linux"\nPRETTY_NAME="Arch Linux"\nID=arch\nBUILD_ID=rolling\n'


def _desc(fields: Sequence[tuple[str, str]]) -> str:
    return "".join(f"%{name}%\n{value}\n\n" for name, value in fields)


def _local_entry(local: Path, name: str, version: str) -> None:
    entry = local / f"{name}-{version}"
    entry.mkdir()
    (entry / "desc").write_text(
        _desc(
            [
                ("NAME", name),
                ("VERSION", version),
                ("BASE", name),
                ("DESC", f"{name}, a benchmark package"),
                ("URL", "https://patchd.invalid/"),
                ("ARCH", "x86_64"),
                ("BUILDDATE", "1767225600"),
                ("INSTALLDATE", "1767225600"),
                ("PACKAGER", "patchd bench"),
                ("SIZE", "1024"),
                ("REASON", "1"),
                ("LICENSE", "Apache-2.0"),
                ("VALIDATION", "sha256"),
                ("DEPENDS", "glibc"),
            ]
        )
    )
    (entry / "files").write_text(f"%FILES%\nusr/\nusr/share/\nusr/share/{name}/\n\n")


def _sync_db(path: Path, packages: Sequence[tuple[str, str]]) -> None:
    with tarfile.open(path, "w:gz") as tar:
        for name, version in packages:
            data = _desc(
                [
                    ("FILENAME", f"{name}-{version}-x86_64.pkg.tar.zst"),
                    ("NAME", name),
                    ("BASE", name),
                    ("VERSION", version),
                    ("DESC", f"{name}, a benchmark package"),
                    ("CSIZE", "4096"),
                    ("ISIZE", "16384"),
                    ("SHA256SUM", "0" * 64),
                    ("URL", "https://patchd.invalid/"),
                    ("LICENSE", "Apache-2.0"),
                    ("ARCH", "x86_64"),
                    ("BUILDDATE", "1767225600"),
                    ("PACKAGER", "patchd bench"),
                    ("DEPENDS", "glibc"),
                ]
            ).encode()
            directory = tarfile.TarInfo(f"{name}-{version}")
            directory.type = tarfile.DIRTYPE
            directory.mode = 0o755
            tar.addfile(directory)
            member = tarfile.TarInfo(f"{name}-{version}/desc")
            member.size = len(data)
            member.mode = 0o644
            tar.addfile(member, io.BytesIO(data))


def build_root(root: Path) -> None:
    """An Arch root of realistic size: installed packages and synced repository databases."""
    local = root / "var/lib/pacman/local"
    local.mkdir(parents=True)
    (local / "ALPM_DB_VERSION").write_text("9\n")
    for name in ("var/lib/pacman/sync", "var/cache/pacman/pkg", "var/log", "etc/pacman.d/hooks"):
        (root / name).mkdir(parents=True, exist_ok=True)
    (root / "etc/os-release").write_text(ARCH_OS_RELEASE)
    (root / "etc/pacman.conf").write_text(
        "[options]\nArchitecture = auto\nSigLevel = Never\n\n"
        + "".join(f"[{repo}]\nServer = file:///nonexistent/{repo}\n\n" for repo in REPOSITORY)
    )
    number = 0
    for repo, count in REPOSITORY.items():
        packages = []
        for _ in range(count):
            name = f"bench-{repo}-{number:05d}"
            installed = number < INSTALLED
            newer = installed and (number * UPDATES) % INSTALLED < UPDATES  # evenly spread
            if installed:
                _local_entry(local, name, "1.0.0-1")
            packages.append((name, "1.0.1-1" if newer else "1.0.0-1"))
            number += 1
        _sync_db(root / f"var/lib/pacman/sync/{repo}.db", packages)


def cached_root(stamps: Path) -> Path:
    """The root under ``stamps``, built once per version of this file (~5 s otherwise)."""
    key = hashlib.sha256(Path(__file__).read_bytes()).hexdigest()[:16]
    base = stamps.resolve() / f"pacman-realistic-{key}"
    if not (base / "complete").is_file():
        for old in stamps.glob("pacman-realistic-*"):
            shutil.rmtree(old)
        build_root(base / "root")
        (base / "complete").write_text("")
    return base / "root"


def _time(argv: Sequence[str], env: dict[str, str]) -> float:
    started = time.perf_counter()
    subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False, env=env)
    return time.perf_counter() - started


def main() -> int:
    if shutil.which("pacman") is None:
        print("bench_pacman: pacman is not installed (Debian: pacman-package-manager)")
        return 1
    bindir = _install()
    env = {**os.environ, "LC_ALL": "C"}
    with tempfile.TemporaryDirectory() as tmp:
        root = cached_root(REPO / ".stamps")
        config = Path(tmp) / "agent.yaml"
        config.write_text("{}\n")
        r = str(root)
        listing = [
            "pacman", "--root", r, "--dbpath", f"{r}/var/lib/pacman",
            "--config", f"{r}/etc/pacman.conf", "--cachedir", f"{r}/var/cache/pacman/pkg",
            "--logfile", f"{r}/var/log/pacman.log", "--hookdir", f"{r}/etc/pacman.d/hooks",
            "--gpgdir", f"{r}/etc/pacman.d/gnupg", "--color", "never", "-Qu",
        ]  # fmt: skip
        found = subprocess.run(listing, capture_output=True, text=True, env=env, check=False)
        if len(found.stdout.splitlines()) != UPDATES:
            print(f"bench_pacman: pacman -Qu found {len(found.stdout.splitlines())} updates, "
                  f"expected {UPDATES}: {found.stderr.strip()}")  # fmt: skip
            return 1
        agent = measure_agent_scan(
            bindir / "python", root=root, config=config, state_dir=Path(tmp) / "agent-state",
            listing=listing, env=env, expect=UPDATES,
        )  # fmt: skip
        scan = [str(bindir / "patchd"), "--root", r, "--config", str(config),
                "--state-dir", f"{tmp}/state", "scan", "--json"]  # fmt: skip
        for _ in range(WARM_RUNS):
            _time(scan, env)
            _time(listing, env)
        scan_s, list_s = [], []
        for _ in range(RUNS):
            scan_s.append(_time(scan, env))
            list_s.append(_time(listing, env))
    rows = [*agent.rows("pacman -Qu"), Row("patchd scan (CLI) vs pacman -Qu", scan_s, list_s)]
    ok = print_rows(rows, SCAN_TARGET)
    print(
        f"(medians of {RUNS} alternating warm runs on a root with {INSTALLED} installed "
        f"packages, {sum(REPOSITORY.values())} in the repositories, {UPDATES} updates; "
        + "; ".join(row.runs() for row in rows)
        + ")"
    )
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
