"""Tests for patchd.discovery.osinfo: os-release(5) parsing and the target's OS identity.

The os-release files are the distributions' own (Debian 12's is this machine's
/usr/lib/os-release); alternate roots are temporary directories.
"""

from __future__ import annotations

import os
import platform
import sys
from pathlib import Path

import pytest

from patchd.discovery.osinfo import OsInfo, parse_os_release, read_os_info
from patchd.target import Target

DEBIAN_12 = """\
PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"
NAME="Debian GNU/Linux"
VERSION_ID="12"
VERSION="12 (bookworm)"
VERSION_CODENAME=bookworm
ID=debian
HOME_URL="https://www.debian.org/"
SUPPORT_URL="https://www.debian.org/support"
BUG_REPORT_URL="https://bugs.debian.org/"
"""
UBUNTU_24_04 = """\
PRETTY_NAME="Ubuntu 24.04.1 LTS"
NAME="Ubuntu"
VERSION_ID="24.04"
VERSION="24.04.1 LTS (Noble Numbat)"
VERSION_CODENAME=noble
ID=ubuntu
ID_LIKE=debian
HOME_URL="https://www.ubuntu.com/"
SUPPORT_URL="https://help.ubuntu.com/"
BUG_REPORT_URL="https://bugs.launchpad.net/ubuntu/"
PRIVACY_POLICY_URL="https://www.ubuntu.com/legal/terms-and-policies/privacy-policy"
UBUNTU_CODENAME=noble
LOGO=ubuntu-logo
"""
ROCKY_9 = """\
NAME="Rocky Linux"
VERSION="9.4 (Blue Onyx)"
ID="rocky"
ID_LIKE="rhel centos fedora"
VERSION_ID="9.4"
PLATFORM_ID="platform:el9"
PRETTY_NAME="Rocky Linux 9.4 (Blue Onyx)"
ANSI_COLOR="0;32"
LOGO="fedora-logo-icon"
CPE_NAME="cpe:/o:rocky:rocky:9::baseos"
HOME_URL="https://rockylinux.org/"
BUG_REPORT_URL="https://bugs.rockylinux.org/"
SUPPORT_END="2032-05-31"
ROCKY_SUPPORT_PRODUCT="Rocky-Linux-9"
ROCKY_SUPPORT_PRODUCT_VERSION="9.4"
REDHAT_SUPPORT_PRODUCT="Rocky Linux"
REDHAT_SUPPORT_PRODUCT_VERSION="9.4"
"""
ALPINE_3_20 = """\
NAME="Alpine Linux"
ID=alpine
VERSION_ID=3.20.3
PRETTY_NAME="Alpine Linux v3.20"
HOME_URL="https://alpinelinux.org/"
BUG_REPORT_URL="https://gitlab.alpinelinux.org/alpine/aports/-/issues"
"""
NO_OS = OsInfo("linux", (), "Linux", "", "", "Linux", "")


# --- parse_os_release ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('NAME="Debian GNU/Linux"\n', {"NAME": "Debian GNU/Linux"}),
        ("NAME='Debian GNU/Linux'\n", {"NAME": "Debian GNU/Linux"}),
        ("ID=debian\n", {"ID": "debian"}),
        ("ID=\n", {"ID": ""}),
        ('ID=""\n', {"ID": ""}),
        ("# a comment\nID=debian\n  # indented comment\n", {"ID": "debian"}),
        ("\n\n   \nID=debian\n\n", {"ID": "debian"}),
        ("  ID=debian  \n", {"ID": "debian"}),
        ('PRETTY_NAME="say \\"hi\\""\n', {"PRETTY_NAME": 'say "hi"'}),
        ('PRETTY_NAME="back\\\\slash"\n', {"PRETTY_NAME": "back\\slash"}),
        ("PRETTY_NAME=It\\'s\n", {"PRETTY_NAME": "It's"}),
        ("PRETTY_NAME='a \"b\"'\n", {"PRETTY_NAME": 'a "b"'}),
        ('PRETTY_NAME="unterminated\nID=debian\n', {"ID": "debian"}),
        ("no equals sign\nID=debian\n", {"ID": "debian"}),
        ("ID=debian\nID=ubuntu\n", {"ID": "ubuntu"}),
        ("ID=debian\r\nVERSION_ID=12\r\n", {"ID": "debian", "VERSION_ID": "12"}),
        ('CPE_NAME="cpe:/o:rocky:rocky:9::baseos"\n', {"CPE_NAME": "cpe:/o:rocky:rocky:9::baseos"}),
        ("URL=https://x/?a=b\n", {"URL": "https://x/?a=b"}),
        ("", {}),
    ],
    ids=[
        "double-quotes",
        "single-quotes",
        "unquoted",
        "empty",
        "empty-quotes",
        "comments",
        "blank-lines",
        "surrounding-whitespace",
        "escaped-quote",
        "escaped-backslash",
        "escaped-quote-unquoted",
        "double-inside-single",
        "unterminated-quote-skipped",
        "line-without-equals",
        "last-assignment-wins",
        "crlf",
        "colons",
        "equals-in-value",
        "empty-file",
    ],
)
def test_parse_os_release(text: str, expected: dict[str, str]) -> None:
    assert parse_os_release(text) == expected


@pytest.mark.parametrize(
    "text",
    [DEBIAN_12, UBUNTU_24_04, ROCKY_9, ALPINE_3_20],
    ids=["debian", "ubuntu", "rocky", "alpine"],
)
def test_real_files_give_every_assignment(text: str) -> None:
    # None of these files escapes anything: each value is the text between its quotes.
    expected = {k: v.strip("\"'") for k, v in (line.split("=", 1) for line in text.splitlines())}
    assert parse_os_release(text) == expected


# --- read_os_info on alternate roots ---------------------------------------------------------


def root_with(tmp_path: Path, files: dict[str, str]) -> Target:
    for path, text in files.items():
        target = tmp_path / path.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")
    return Target.at(tmp_path)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            DEBIAN_12,
            OsInfo("debian", (), "Debian GNU/Linux", "12", "bookworm", "Debian GNU/Linux 12 (bookworm)", ""),
        ),
        (
            UBUNTU_24_04,
            OsInfo("ubuntu", ("debian",), "Ubuntu", "24.04", "noble", "Ubuntu 24.04.1 LTS", ""),
        ),
        (
            ROCKY_9,
            OsInfo("rocky", ("rhel", "centos", "fedora"), "Rocky Linux", "9.4", "", "Rocky Linux 9.4 (Blue Onyx)", ""),
        ),
        (
            ALPINE_3_20,
            OsInfo("alpine", (), "Alpine Linux", "3.20.3", "", "Alpine Linux v3.20", ""),
        ),
    ],
    ids=["debian-12", "ubuntu-24.04", "rocky-9", "alpine-3.20"],
)  # fmt: skip
def test_read_os_info(tmp_path: Path, text: str, expected: OsInfo) -> None:
    assert read_os_info(root_with(tmp_path, {"/etc/os-release": text})) == expected


def test_debian_layout_with_a_relative_link(tmp_path: Path) -> None:
    target = root_with(tmp_path, {"/usr/lib/os-release": DEBIAN_12})
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc" / "os-release").symlink_to("../usr/lib/os-release")
    assert read_os_info(target).codename == "bookworm"


def test_usr_lib_is_the_fallback(tmp_path: Path) -> None:
    assert read_os_info(root_with(tmp_path, {"/usr/lib/os-release": ALPINE_3_20})).id == "alpine"


def test_etc_wins_over_usr_lib(tmp_path: Path) -> None:
    files = {"/etc/os-release": UBUNTU_24_04, "/usr/lib/os-release": DEBIAN_12}
    assert read_os_info(root_with(tmp_path, files)).id == "ubuntu"


def test_unreadable_etc_falls_back(tmp_path: Path) -> None:
    target = root_with(tmp_path, {"/usr/lib/os-release": ROCKY_9})
    (tmp_path / "etc" / "os-release").mkdir(parents=True)  # a directory: reading it fails
    assert read_os_info(target).id == "rocky"


def test_no_os_release_at_all(tmp_path: Path) -> None:
    assert read_os_info(Target.at(tmp_path)) == NO_OS


def test_id_and_id_like_are_lower_cased(tmp_path: Path) -> None:
    info = read_os_info(root_with(tmp_path, {"/etc/os-release": "ID=Debian\nID_LIKE='Foo  BAR'\n"}))
    assert (info.id, info.id_like, info.name, info.pretty_name) == (
        "debian",
        ("foo", "bar"),
        "Linux",
        "Linux",
    )


def test_ubuntu_codename_is_the_fallback(tmp_path: Path) -> None:
    info = read_os_info(root_with(tmp_path, {"/etc/os-release": "ID=pop\nUBUNTU_CODENAME=jammy\n"}))
    assert info.codename == "jammy"


def test_as_dict(tmp_path: Path) -> None:
    info = read_os_info(root_with(tmp_path, {"/etc/os-release": UBUNTU_24_04}))
    assert info.as_dict() == {
        "id": "ubuntu",
        "id_like": ["debian"],
        "name": "Ubuntu",
        "version": "24.04",
        "codename": "noble",
        "pretty_name": "Ubuntu 24.04.1 LTS",
        "kernel": "",
    }


@pytest.mark.skipif(sys.platform != "linux", reason="os-release is Linux's")
def test_host_agrees_with_the_standard_library() -> None:
    try:
        expected = platform.freedesktop_os_release()
    except OSError:
        pytest.skip("this host has no os-release")
    info = read_os_info(Target())
    assert (info.id, info.version, info.pretty_name) == (
        expected["ID"],
        expected.get("VERSION_ID", ""),
        expected["PRETTY_NAME"],
    )
    assert info.kernel == os.uname().release


def test_absolute_os_release_link_resolves_inside_the_root(tmp_path: Path) -> None:
    # As on most systems, /etc/os-release links to /usr/lib/os-release: in a root, the
    # link must not lead to the host's file.
    (tmp_path / "usr/lib").mkdir(parents=True)
    (tmp_path / "usr/lib/os-release").write_text(
        'ID=alpine\nVERSION_ID=3.19.1\nNAME="Alpine Linux"\n'
    )
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc/os-release").symlink_to("/usr/lib/os-release")
    info = read_os_info(Target.at(tmp_path))
    assert (info.id, info.version) == ("alpine", "3.19.1")
