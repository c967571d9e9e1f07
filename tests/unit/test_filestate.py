"""patchd.filestate: a file's state as a change would show it."""

from __future__ import annotations

import hashlib
import os
import shutil
import time
from pathlib import Path

from patchd.backends.installedmemo import settled_fingerprint
from patchd.backends.rpm.rpmdb import database_fingerprint
from patchd.filestate import FileState, stat_line, state_of
from patchd.process import base_environment
from tests.conftest import require


def test_a_rewrite_a_rename_or_a_removal_changes_the_state(tmp_path: Path) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text("version: 1\n")
    first = state_of(path)
    assert first is not None
    assert state_of(path) == first  # nothing changed, nothing shows

    os.utime(path, ns=(1, 2))
    assert state_of(path) != first  # same size and inode, another time
    other = tmp_path / "new.yaml"
    other.write_text("version: 1\n")
    os.replace(other, path)
    assert state_of(path) not in (first, None)  # another inode
    path.unlink()
    assert state_of(path) is None


def test_a_symlink_is_followed(tmp_path: Path) -> None:
    (tmp_path / "a").write_text("a")
    (tmp_path / "b").write_text("bb")
    link = tmp_path / "link"
    link.symlink_to(tmp_path / "a")
    assert state_of(link) == state_of(tmp_path / "a")
    link.unlink()
    link.symlink_to(tmp_path / "b")  # a ..data swap: the link's target changes
    assert state_of(link) == state_of(tmp_path / "b") != state_of(tmp_path / "a")


def test_the_state_is_the_files_identity_size_and_times(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_bytes(b"abc")
    st = os.stat(path)
    assert (
        state_of(path)
        == FileState(st.st_dev, st.st_ino, 3, st.st_mtime_ns, st.st_ctime_ns)
        == FileState.of(st)
    )


# The installed-set memos kept on endpoints are keyed by digests of these lines: the
# format is pinned to the one they were written with, or every memo would go stale.


def test_the_line_of_a_file_is_the_format_memos_were_keyed_with(tmp_path: Path) -> None:
    path = tmp_path / "rpmdb.sqlite-wal"
    path.write_bytes(b"")
    st = os.stat(path)
    written = f"{st.st_dev}:{st.st_ino}:{st.st_size}:{st.st_mtime_ns}"
    assert stat_line("db", st) == f"db:{written}:{st.st_ctime_ns}"
    assert stat_line("wal", st, ctime=False) == f"wal:{written}"


def test_fingerprints_are_digests_of_those_lines(tmp_path: Path) -> None:
    require("rpm")
    db = tmp_path / "rpm"
    db.mkdir()
    (db / "rpmdb.sqlite").write_bytes(b"x")
    (db / "rpmdb.sqlite-wal").write_bytes(b"")
    (db / "rpmdb.sqlite-shm").write_bytes(b"")  # a reader's: not part of the state
    rpm = shutil.which("rpm", path=base_environment()["PATH"])
    assert rpm is not None
    files = [(rpm, os.stat(rpm))] + [
        (str(f), os.stat(f)) for f in sorted(db.iterdir()) if not f.name.endswith("-shm")
    ]

    def digest(lines: list[str]) -> str:
        return hashlib.sha256("\n".join(lines).encode()).hexdigest()

    with_ctime = [
        f"{name}:{st.st_dev}:{st.st_ino}:{st.st_size}:{st.st_mtime_ns}:{st.st_ctime_ns}"
        for name, st in files
    ]
    later = time.time() + 3600.0  # long after the files last changed: settled
    assert settled_fingerprint(files, now=later) == digest(with_ctime)
    assert database_fingerprint(db) == digest([line.rpartition(":")[0] for line in with_ctime])
