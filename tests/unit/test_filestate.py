"""patchd.filestate: a file's state as a change would show it."""

from __future__ import annotations

import os
from pathlib import Path

from patchd.filestate import file_state, signature, state_of


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


def test_the_status_change_time_can_be_left_out(tmp_path: Path) -> None:
    path = tmp_path / "rpmdb.sqlite-wal"
    path.write_bytes(b"")
    st = os.stat(path)
    assert file_state(st) == (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
    assert file_state(st, ctime=False) == file_state(st)[:4]
    assert signature("wal", st, ctime=False) == (
        f"wal:{st.st_dev}:{st.st_ino}:{st.st_size}:{st.st_mtime_ns}"
    )
