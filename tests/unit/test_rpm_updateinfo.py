"""updateinfo.xml as dnf and zypper read it: advisories, limits, hostile input, compression."""

from __future__ import annotations

import bz2
import gzip
import io
import lzma
import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from patchd.backends.rpm import updateinfo as ui
from patchd.backends.rpm.updateinfo import (
    UpdateinfoError,
    parse_updateinfo,
    read_updateinfo,
    updateinfo_location,
)
from tests.conftest import require
from tests.support.rpmcatalogue import ADVISORIES
from tests.support.rpmrepo import updateinfo_xml

# The libsolv parser's own example (ext/repo_updateinfoxml.c), a Fedora 8 advisory.
LIBSOLV_EXAMPLE = b"""<updates>
  <update from="rel-eng@fedoraproject.org" status="stable" type="security" version="1.4">
    <id>FEDORA-2007-4594</id>
    <title>imlib-1.9.15-6.fc8</title>
    <severity>Important</severity>
    <release>Fedora 8</release>
    <issued date="2007-12-28 16:42:30"/>
    <references>
      <reference href="https://bugzilla.redhat.com/show_bug.cgi?id=426091" id="426091" title="CVE-2007-3568 imlib: infinite loop DoS using crafted BMP image" type="bugzilla"/>
    </references>
    <pkglist>
      <collection short="F8">
        <name>Fedora 8</name>
        <package arch="ppc64" name="imlib-debuginfo" release="6.fc8" src="x.rpm" version="1.9.15">
          <filename>imlib-debuginfo-1.9.15-6.fc8.ppc64.rpm</filename>
          <reboot_suggested>True</reboot_suggested>
        </package>
      </collection>
    </pkglist>
  </update>
</updates>
"""


def test_the_test_repositories_advisories_read_back_exactly() -> None:
    parsed = {a.id: a for a in parse_updateinfo(io.BytesIO(updateinfo_xml(ADVISORIES).encode()))}
    assert set(parsed) == {a.id for a in ADVISORIES}
    hello = parsed["RLSA-2026:0001"]
    assert (hello.type, hello.severity) == ("security", "Important")
    assert hello.cves == ("CVE-2026-20001", "CVE-2026-20002")
    assert [(p.name, p.arch, p.evr, p.reboot_suggested) for p in hello.packages] == [
        ("hello", "noarch", "1.1-1", False)
    ]
    epochal = parsed["RLSA-2026:0002"].packages[0]
    assert (epochal.evr, epochal.reboot_suggested) == ("1:1.1-1", True)
    assert parsed["RLBA-2026:0003"].cves == ()  # a bugzilla reference is not a CVE


def test_libsolv_example_bugzilla_is_not_a_cve_and_reboot_is_per_package() -> None:
    (advisory,) = parse_updateinfo(io.BytesIO(LIBSOLV_EXAMPLE))
    assert advisory.id == "FEDORA-2007-4594"
    assert advisory.cves == ()
    assert advisory.packages[0].evr == "1.9.15-6.fc8"
    assert advisory.packages[0].reboot_suggested


def test_a_record_level_reboot_flag_covers_every_package() -> None:
    text = LIBSOLV_EXAMPLE.replace(
        b"<reboot_suggested>True</reboot_suggested>", b"<reboot_suggested/>"
    ).replace(b"<severity>", b"<reboot_suggested>True</reboot_suggested><severity>")
    (advisory,) = parse_updateinfo(io.BytesIO(text))
    assert advisory.packages[0].reboot_suggested


def test_an_empty_reboot_flag_is_false_as_in_libsolv() -> None:
    text = LIBSOLV_EXAMPLE.replace(
        b"<reboot_suggested>True</reboot_suggested>", b"<reboot_suggested/>"
    )
    (advisory,) = parse_updateinfo(io.BytesIO(text))
    assert not advisory.packages[0].reboot_suggested


def test_only_wanted_packages_are_kept() -> None:
    data = updateinfo_xml(ADVISORIES).encode()
    kept = parse_updateinfo(io.BytesIO(data), frozenset({"hello"}))
    assert [a.id for a in kept] == ["RLSA-2026:0001"]


@pytest.mark.parametrize(
    "hostile",
    [
        b'<!DOCTYPE u [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;">]><updates>&b;</updates>',
        b'<!DOCTYPE u [<!ENTITY x SYSTEM "file:///etc/passwd">]><updates>&x;</updates>',
        b"<updates><update><id>x</id>",
        b"not xml at all",
    ],
    ids=["entity-expansion", "external-entity", "truncated", "garbage"],
)
def test_hostile_or_broken_xml_is_refused(hostile: bytes) -> None:
    with pytest.raises(UpdateinfoError):
        parse_updateinfo(io.BytesIO(hostile))


def test_the_decompressed_size_is_capped(tmp_path: Path) -> None:
    path = tmp_path / "updateinfo.xml.gz"
    path.write_bytes(gzip.compress(updateinfo_xml(ADVISORIES).encode()))
    with pytest.raises(UpdateinfoError, match="larger than"), ui.open_metadata(path, 100) as s:
        parse_updateinfo(s)


def test_the_number_of_advisories_is_capped(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ui, "MAX_ADVISORIES", 2)
    with pytest.raises(UpdateinfoError, match="more than 2"):
        parse_updateinfo(io.BytesIO(updateinfo_xml(ADVISORIES).encode()))


def zchunk(path: Path) -> Path:
    """``path`` compressed by zchunk's own tool, as ``path.zck``."""
    require("zck")
    out = path.with_name(path.name + ".zck")
    subprocess.run(["zck", "-o", str(out), str(path)], check=True, timeout=60, capture_output=True)
    return out


@pytest.mark.parametrize("suffix", [".gz", ".bz2", ".xz", ".zst", ".zck", ""])
def test_every_compression_repositories_use_is_read(tmp_path: Path, suffix: str) -> None:
    data = updateinfo_xml(ADVISORIES).encode()
    path = tmp_path / f"updateinfo.xml{suffix}"
    if suffix == ".zst":
        if shutil.which("zstd") is None:
            pytest.skip("zstd is not installed")
        (tmp_path / "updateinfo.xml").write_bytes(data)
        subprocess.run(["zstd", "-q", str(tmp_path / "updateinfo.xml")], check=True, timeout=60)
    elif suffix == ".zck":
        (tmp_path / "updateinfo.xml").write_bytes(data)
        zchunk(tmp_path / "updateinfo.xml")
    else:
        compressors: dict[str, Callable[[bytes], bytes]] = {
            ".gz": gzip.compress,
            ".bz2": bz2.compress,
            ".xz": lzma.compress,
            "": bytes,
        }
        path.write_bytes(compressors[suffix](data))
    assert len(read_updateinfo(path)) == len(ADVISORIES)


def test_an_unreadable_file_gives_no_advisories_rather_than_an_error(tmp_path: Path) -> None:
    path = tmp_path / "updateinfo.xml.gz"
    path.write_bytes(b"\x1f\x8b broken gzip")
    assert read_updateinfo(path) == []


def _repo(tmp_path: Path, href: str) -> Path:
    repodata = tmp_path / "repo" / "repodata"
    repodata.mkdir(parents=True)
    (repodata / "repomd.xml").write_text(
        '<?xml version="1.0"?><repomd xmlns="http://linux.duke.edu/metadata/repo">'
        f'<data type="primary"><location href="repodata/p.xml.gz"/></data>'
        f'<data type="updateinfo"><location href="{href}"/></data></repomd>'
    )
    return repodata


def test_the_location_comes_from_repomd(tmp_path: Path) -> None:
    repodata = _repo(tmp_path, "repodata/abc-updateinfo.xml.gz")
    (repodata / "abc-updateinfo.xml.gz").write_bytes(b"")
    assert updateinfo_location(repodata) == repodata / "abc-updateinfo.xml.gz"


def test_a_location_outside_the_repository_is_not_followed(tmp_path: Path) -> None:
    repodata = _repo(tmp_path, "../../outside-updateinfo.xml")
    (tmp_path / "outside-updateinfo.xml").write_bytes(b"<updates/>")
    assert updateinfo_location(repodata) is None


def test_a_real_createrepo_repository_is_located(tmp_path: Path) -> None:
    from tests.support.rpmrepo import RepoSpec, publish_repo

    require("createrepo_c", "modifyrepo_c")
    repo = publish_repo(RepoSpec("r", (), ADVISORIES), [], tmp_path)
    found = updateinfo_location(repo / "repodata")
    assert found is not None
    assert len(read_updateinfo(found)) == len(ADVISORIES)


# --- zchunk (Fedora's repositories; dnf fetches only this form with zchunk=True) ---------


def _zchunk_repo(tmp_path: Path) -> Path:
    from tests.support.rpmrepo import RepoSpec, publish_repo

    require("createrepo_c", "modifyrepo_c")
    return publish_repo(RepoSpec("r", (), ADVISORIES), [], tmp_path, zchunk=True) / "repodata"


def _updateinfo_files(repodata: Path) -> dict[str, Path]:
    return {p.name.rpartition(".")[2]: p for p in repodata.glob("*updateinfo.xml.*")}


def test_the_plain_updateinfo_is_preferred_to_its_zchunk_form(tmp_path: Path) -> None:
    repodata = _zchunk_repo(tmp_path)
    files = _updateinfo_files(repodata)
    assert "zck" in files
    assert len(files) == 2  # createrepo_c wrote both forms

    found = updateinfo_location(repodata)
    assert found is not None
    assert found.suffix != ".zck"


def test_a_cache_with_only_the_zchunk_form_is_read(tmp_path: Path) -> None:
    """What dnf keeps with zchunk=True: repomd.xml names both, only the .zck was fetched."""
    repodata = _zchunk_repo(tmp_path)
    for suffix, path in _updateinfo_files(repodata).items():
        if suffix != "zck":
            path.unlink()

    found = updateinfo_location(repodata)
    assert found is not None
    assert found.suffix == ".zck"
    advisories = read_updateinfo(found)
    expected = parse_updateinfo(io.BytesIO(updateinfo_xml(ADVISORIES).encode()))
    assert advisories == expected


def test_a_damaged_zchunk_file_gives_no_advisories(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / "updateinfo.xml").write_bytes(updateinfo_xml(ADVISORIES).encode())
    path = zchunk(tmp_path / "updateinfo.xml")
    data = bytearray(path.read_bytes())
    data[-20] ^= 0xFF  # in the last chunk: its digest no longer matches
    path.write_bytes(bytes(data))

    assert read_updateinfo(path) == []
    assert "zchunk data unreadable" in caplog.text
    assert path.read_bytes() == bytes(data)


def test_a_zchunk_file_is_capped_like_the_others(tmp_path: Path) -> None:
    (tmp_path / "updateinfo.xml").write_bytes(updateinfo_xml(ADVISORIES).encode())
    path = zchunk(tmp_path / "updateinfo.xml")
    with ui.open_metadata(path, 100) as f:
        assert f.read(64) == updateinfo_xml(ADVISORIES).encode()[:64]  # decompressed
        with pytest.raises(UpdateinfoError, match="larger than 100 bytes"):
            f.read(64)


def test_without_libzck_a_zchunk_file_is_skipped_with_the_reason(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / "updateinfo.xml").write_bytes(updateinfo_xml(ADVISORIES).encode())
    path = zchunk(tmp_path / "updateinfo.xml")
    monkeypatch.setattr(ui, "ZCK_LIBRARY", "libzck-not-here.so.0")
    ui._libzck.cache_clear()
    try:
        assert read_updateinfo(path) == []
    finally:
        ui._libzck.cache_clear()
    assert "libzck-not-here.so.0 (zchunk-libs) is not installed" in caplog.text


def _open_fds() -> set[str]:
    return set(os.listdir("/proc/self/fd"))


@pytest.mark.parametrize(
    "content", [b"", b"<updates/>", b"\x00ZCK1" + b"\xff" * 64], ids=["empty", "xml", "garbage"]
)
def test_a_file_that_is_not_zchunk_gives_no_advisories_and_keeps_no_descriptor(
    tmp_path: Path, content: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "updateinfo.xml.zck"
    path.write_bytes(content)
    before = _open_fds()

    assert read_updateinfo(path) == []

    assert "not a readable zchunk file" in caplog.text
    assert _open_fds() == before


def test_a_zchunk_file_over_the_bound_is_not_opened_by_libzck(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / "updateinfo.xml").write_bytes(updateinfo_xml(ADVISORIES).encode())
    path = zchunk(tmp_path / "updateinfo.xml")
    monkeypatch.setattr(ui, "MAX_ZCK_BYTES", path.stat().st_size - 1)
    before = _open_fds()

    assert read_updateinfo(path) == []

    assert f"larger than {path.stat().st_size - 1} bytes" in caplog.text
    assert _open_fds() == before


def test_a_zchunk_reader_closes_once(tmp_path: Path) -> None:
    (tmp_path / "updateinfo.xml").write_bytes(updateinfo_xml(ADVISORIES).encode())
    reader = ui._Zchunk(zchunk(tmp_path / "updateinfo.xml"))
    before = _open_fds()
    reader.close()
    after = _open_fds()
    reader.close()  # a second close must not close whatever took the descriptor's number
    assert len(before - after) == 1
    assert _open_fds() == after
