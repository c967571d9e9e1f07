"""Tests for patchd.backends.apt.stanzas: the hot-path deb822 reader.

python-debian's ``Deb822`` is the reference on generated well-formed stanzas and on a real
dpkg status sample; dpkg itself (``dpkg-query``) is the reference on what ends a line.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from debian.deb822 import Deb822
from hypothesis import given, settings
from hypothesis import strategies as st

from patchd.backends.apt.stanzas import MAX_STANZA_FIELDS, first_stanza, iter_stanzas

DATA = Path(__file__).resolve().parent.parent / "data" / "apt"


def reference(text: str) -> list[dict[str, str]]:
    """python-debian's reading, with continuation lines stripped as patchd keeps them."""
    return [
        {k: "\n".join(line.strip() for line in v.split("\n")) for k, v in para.items()}
        for para in Deb822.iter_paragraphs(text)
    ]


# --- the format -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", []),
        ("\n\n\n", []),
        ("# only a comment\n", []),
        ("A: 1\n", [{"A": "1"}]),
        ("A: 1", [{"A": "1"}]),
        ("A:1\nB :  2  \n", [{"A": "1", "B": "2"}]),
        ("A: 1\n\nB: 2\n", [{"A": "1"}, {"B": "2"}]),
        ("A: 1\n\n\n\nB: 2\n\n", [{"A": "1"}, {"B": "2"}]),
        ("A: 1\n \t \nB: 2\n", [{"A": "1"}, {"B": "2"}]),
        ("A: short\n long one\n .\n\tlast\n", [{"A": "short\nlong one\n.\nlast"}]),
        ("Conffiles:\n /etc/x 0123\n", [{"Conffiles": "\n/etc/x 0123"}]),
        ("# head\nA: 1\n# between\n more\nB: 2\n", [{"A": "1\nmore", "B": "2"}]),
        (" orphan continuation\nA: 1\n", [{"A": "1"}]),
        ("A: 1\nno colon here\nB: 2\n", [{"A": "1", "B": "2"}]),
        ("A: 1\nA: 2\n", [{"A": "2"}]),
        ("URL: http://x:80/y\n", [{"URL": "http://x:80/y"}]),
        ("A: 1\r\nB: 2\r\n\r\nC: 3\r\n", [{"A": "1", "B": "2"}, {"C": "3"}]),
        ("A: x\r\n y\r\n", [{"A": "x\ny"}]),
    ],
    ids=[
        "empty",
        "blank-lines-only",
        "comment-only",
        "one-field",
        "no-final-newline",
        "spacing-around-colon",
        "two-stanzas",
        "many-blank-lines",
        "whitespace-line-separates",
        "continuation-lines",
        "empty-first-line",
        "comments-skipped",
        "continuation-before-any-field",
        "line-without-colon",
        "repeated-field-last-wins",
        "colon-in-value",
        "crlf",
        "crlf-continuation",
    ],
)
def test_iter_stanzas(text: str, expected: list[dict[str, str]]) -> None:
    assert list(iter_stanzas(text)) == expected


@pytest.mark.parametrize(
    "separator", ["\u2028", "\u2029", "\x0c", "\x0b", "\x1c", "\x1d", "\x1e", "\x85", "\r"]
)
def test_only_newline_ends_a_line(separator: str) -> None:
    # str.splitlines() breaks at all of these; dpkg and apt only at "\n".
    text = (
        "Package: acme\nStatus: install ok installed\nVersion: 1.0\n"
        f"Description: short\n long {separator}Version: 99\n"
    )
    (stanza,) = iter_stanzas(text)
    assert stanza["Version"] == "1.0"
    assert stanza["Description"].startswith("short\nlong")


def test_a_value_cannot_smuggle_a_field_past_dpkg(tmp_path: Path) -> None:
    """What dpkg itself reads from a status file is what patchd reads."""
    if shutil.which("dpkg-query") is None:
        pytest.skip("dpkg-query is not installed")
    status = (
        "Package: acme\nStatus: install ok installed\nMaintainer: x <x@x.invalid>\n"
        "Architecture: amd64\nVersion: 1.0\n"
        "Description: short\n long \u2028Version: 99 \x0cStatus: hold ok installed\n more\n"
    )
    (tmp_path / "updates").mkdir()
    (tmp_path / "status").write_text(status, encoding="utf-8")
    dpkg = subprocess.run(
        ["dpkg-query", f"--admindir={tmp_path}", "-W", "-f", "${Version}|${Status}"],
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    ).stdout
    (stanza,) = iter_stanzas(status)
    assert f"{stanza['Version']}|{stanza['Status']}" == dpkg == "1.0|install ok installed"


def test_field_cap_drops_extra_fields_with_their_continuation_lines() -> None:
    names = [f"F{i}" for i in range(MAX_STANZA_FIELDS + 1)]
    text = "".join(f"{n}: v{n}\n" for n in names) + " continued\n\nNext: 1\n"
    first, second = iter_stanzas(text)
    assert list(first) == names[:MAX_STANZA_FIELDS]
    assert first[names[MAX_STANZA_FIELDS - 1]] == f"v{names[MAX_STANZA_FIELDS - 1]}"
    assert second == {"Next": "1"}


@pytest.mark.parametrize(
    ("text", "expected"),
    [("", {}), ("\n\n", {}), ("A: 1\n\nB: 2\n", {"A": "1"}), ("\n\nB: 2\n", {"B": "2"})],
    ids=["empty", "blank", "two-stanzas", "leading-blank-lines"],
)
def test_first_stanza(text: str, expected: dict[str, str]) -> None:
    assert first_stanza(text) == expected


def test_real_dpkg_status_sample_reads_as_python_debian_reads_it() -> None:
    text = (DATA / "dpkg-status.txt").read_text(encoding="utf-8")
    ours = list(iter_stanzas(text))
    assert ours == reference(text)
    assert [s["Package"] for s in ours] == [
        "google-cloud-cli-cbt",
        "libcap2",
        "libgdk-pixbuf2.0-common",
        "openssh-client",
        "zlib1g",
    ]
    ssh = ours[3]
    assert ssh["Conffiles"] == "\n/etc/ssh/ssh_config 8a5bddc82befb71d8ef34cc903d3d077"


# --- against python-debian, on generated well-formed stanzas ---------------------------

_LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_FIELD_NAME = st.tuples(
    st.sampled_from(_LETTERS), st.text(_LETTERS + "0123456789-", max_size=12)
).map("".join)
# Text without line breaks of any kind (python-debian splits str input with splitlines()).
_TEXT = st.text(
    st.characters(blacklist_categories=("Cs", "Cc", "Zl", "Zp")), min_size=0, max_size=30
).map(str.strip)
_CONTINUATION = st.tuples(st.sampled_from([" ", "  ", "\t"]), _TEXT, st.sampled_from("x.é")).map(
    "".join
)


# (comment before it?, name, space after the colon, first line, continuation lines)
_FIELD = st.tuples(
    st.booleans(),
    _FIELD_NAME,
    st.sampled_from(["", " "]),
    _TEXT,
    st.lists(_CONTINUATION, max_size=3),
)
_STANZA = st.lists(_FIELD, min_size=1, max_size=5, unique_by=lambda f: f[1].lower())


def _render(stanzas: list[tuple[list[tuple[bool, str, str, str, list[str]]], str]]) -> str:
    text = ""
    for fields, separator in stanzas:
        lines = []
        for comment, name, space, value, continuation in fields:
            lines.extend(["# a comment"] if comment else [])
            lines.append(f"{name}:{space}{value}")
            lines.extend(continuation)
        text += "\n".join(lines) + separator
    return text


_DOCUMENT = st.lists(st.tuples(_STANZA, st.sampled_from(["\n\n", "\n\n\n"])), max_size=3)


@settings(max_examples=100, deadline=None)
@given(_DOCUMENT.map(_render))
def test_generated_stanzas_read_as_python_debian_reads_them(text: str) -> None:
    assert list(iter_stanzas(text)) == reference(text)
