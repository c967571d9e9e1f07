"""Bounded reads of files: the bound holds, whatever the file's size."""

from __future__ import annotations

from pathlib import Path

import pytest

from patchd.boundedread import READ_CHUNK_BYTES, read_bounded


def test_a_file_is_read_up_to_its_bound_and_no_further(tmp_path: Path) -> None:
    big = tmp_path / "desc"
    data = bytes(range(256)) * (3 * READ_CHUNK_BYTES // 256 + 7)
    big.write_bytes(data)
    assert read_bounded(big, 2 * READ_CHUNK_BYTES + 5) == data[: 2 * READ_CHUNK_BYTES + 5]
    assert read_bounded(str(big), len(data) * 2) == data
    assert read_bounded(big, 0) == b""
    (tmp_path / "empty").write_bytes(b"")
    assert read_bounded(tmp_path / "empty", 10) == b""


def test_a_missing_file_raises_as_open_does(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        read_bounded(tmp_path / "missing", 10)


def test_proc_files_read_whole_within_the_bound() -> None:
    maps = Path("/proc/self/maps")
    if not maps.exists():
        pytest.skip("no /proc here (not Linux)")
    text = read_bounded(maps, 1024 * 1024).decode()
    assert "[stack]" in text
