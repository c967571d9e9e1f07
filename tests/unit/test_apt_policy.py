"""Tests for patchd.backends.apt.policy: ``apt-cache policy`` and apt's list-file names.

The ground truth for :func:`list_prefix` is the name apt itself gave each list file: every
sample of ``apt-cache policy`` output comes with the listing of the lists directory it was
taken next to (tests/data/apt/README.md), and on a Debian host apt is asked directly.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from patchd.backends.apt.policy import CandidateOrigins, list_prefix, parse_policy

DATA = Path(__file__).resolve().parent.parent / "data" / "apt"
HOST_MAIN = "deb.debian.org_debian_dists_bookworm"
HOST_SECURITY = "deb.debian.org_debian-security_dists_bookworm-security"
X_Y = "_tmp_aptexp_repos_x%5fy_repo_."
TILDE = "_tmp_aptexp_repos_t%7ei%3dl%21d%40e+a,b:c_repo_."
# (policy sample, listing of the lists directory next to it)
SAMPLES = [
    ("apt-cache-policy.txt", "lists-host.txt"),
    ("apt-cache-policy-isolated-file.txt", "lists-isolated-file.txt"),
    ("apt-cache-policy-isolated-http.txt", "lists-isolated-http.txt"),
]


def sample(name: str) -> str:
    return (DATA / name).read_text(encoding="utf-8")


def source_lines(text: str) -> list[tuple[str, str]]:
    """(uri, dist) of every repository line, read independently of the parser under test."""
    found = []
    for line in text.splitlines():
        words = line.split()
        if len(words) >= 4 and words[-1] == "Packages" and words[0].lstrip("-").isdigit():
            found.append((words[1], words[2]))
    return found


# --- list_prefix against apt's own file names ----------------------------------------


@pytest.mark.parametrize(
    ("policy", "listing"), SAMPLES, ids=["host", "isolated-file", "isolated-http"]
)
def test_every_repository_line_names_an_existing_release_file(policy: str, listing: str) -> None:
    names = set(sample(listing).split())
    lines = source_lines(sample(policy))
    assert lines
    for uri, dist in lines:
        prefix = list_prefix(uri, dist)
        assert {f"{prefix}_InRelease", f"{prefix}_Release"} & names, (uri, dist, prefix)
        assert any(n.startswith(f"{prefix}_") and "Packages" in n for n in names), prefix


@pytest.mark.parametrize(
    ("policy", "listing"), SAMPLES, ids=["host", "isolated-file", "isolated-http"]
)
def test_every_release_file_is_named_by_some_repository_line(policy: str, listing: str) -> None:
    prefixes = {list_prefix(uri, dist) for uri, dist in source_lines(sample(policy))}
    release_files = [n for n in sample(listing).split() if n.endswith(("_InRelease", "_Release"))]
    assert {n.rsplit("_", 1)[0] for n in release_files} == prefixes


@pytest.mark.parametrize(
    ("uri", "dist", "expected"),
    [
        ("http://deb.debian.org/debian", "bookworm/main", HOST_MAIN),
        ("http://deb.debian.org/debian/", "bookworm/main", HOST_MAIN),
        ("http://deb.debian.org/debian-security", "bookworm-security/main", HOST_SECURITY),
        (
            "http://user:secret@127.0.0.1:8080/debian",
            "bookworm/main",
            "127.0.0.1:8080_debian_dists_bookworm",
        ),
        ("http://[::1]:8080/debian", "bookworm/main", "::1:8080_debian_dists_bookworm"),
        ("http://localhost:8080/a_b~c/ubuntu", "jammy-security/main", "localhost:8080_a%5fb%7ec_ubuntu_dists_jammy-security"),
        ("http://localhost:8080//double//slash", "jammy/main", "localhost:8080__double__slash_dists_jammy"),
        ("http://localhost:8080/flat", "sub/dir/", "localhost:8080_flat_sub_dir"),
        ("file:/tmp/aptexp/repos/x_y/repo", "./", X_Y),
        ("file:/tmp/aptexp/repos/t~i=l!d@e+a,b:c/repo", "./", TILDE),
        ("file:/tmp/aptexp/repos/dists_r", "buster/updates/main", "_tmp_aptexp_repos_dists%5fr_dists_buster_updates"),
        ("file:/tmp/aptexp/repos/é/repo", "./", "_tmp_aptexp_repos_%c3%a9_repo_."),
        ("file:/srv/repo", "./", "_srv_repo_."),
        ("file:///srv/repo", "./", "_srv_repo_."),
    ],
    ids=[
        "debian-main",
        "trailing-slash",
        "debian-security",
        "credentials-dropped",
        "ipv6-brackets-dropped",
        "underscore-and-tilde-quoted",
        "double-slashes-kept",
        "flat-subdirectory",
        "flat-underscore",
        "flat-quoted-punctuation",
        "dist-with-slash",
        "utf8-bytes-quoted",
        "flat-docstring-example",
        "file-triple-slash",
    ],
)  # fmt: skip
def test_list_prefix(uri: str, dist: str, expected: str) -> None:
    """Each expected value is a file name apt wrote (lists-*.txt), or follows from one."""
    assert list_prefix(uri, dist) == expected


def test_list_prefix_agrees_with_apt_on_this_host() -> None:
    """apt's own index targets: the Packages description and the file it keeps for it."""
    if shutil.which("apt-get") is None:
        pytest.skip("apt-get is not installed")
    out = subprocess.run(
        ["apt-get", "indextargets", "--format", "$(DESCRIPTION)\t$(FILENAME)", "Identifier: Packages"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
        env={"LC_ALL": "C", "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"},
    ).stdout  # fmt: skip
    targets = [line.split("\t") for line in out.splitlines() if "\t" in line]
    if not targets:
        pytest.skip("apt has no index targets on this host")
    for description, filename in targets:
        uri, dist = description.split()[:2]
        assert Path(filename).name.startswith(list_prefix(uri, dist) + "_"), description


# --- parse_policy ---------------------------------------------------------------------


def test_real_host_policy() -> None:
    assert parse_policy(sample("apt-cache-policy.txt")) == {
        "krb5-locales": CandidateOrigins("1.20.1-2+deb12u5", (HOST_MAIN, HOST_SECURITY), None),
        "jq": CandidateOrigins("1.6-2.1+deb12u3", (HOST_SECURITY,), None),
        "zlib1g": CandidateOrigins("1:1.2.13.dfsg-1+deb12u1", (HOST_SECURITY,), None),
        # The candidate only: older versions in -security and -updates are not its origins.
        "openssh-client": CandidateOrigins("1:9.2p1-2+deb12u10", (HOST_MAIN,), None),
        # Installed from a .deb: the only "repository" is dpkg's status file.
        "google-cloud-cli-cbt": CandidateOrigins("528.0.0-0", (), None),
        # mail-transport-agent is virtual: "Candidate: (none)", no version table.
    }


def test_real_isolated_policy_with_pins_phasing_and_odd_uris() -> None:
    assert parse_policy(sample("apt-cache-policy-isolated-file.txt")) == {
        # Priority 1001 (a pin) prints one space less; apt's own "(phased 30%)".
        "acme": CandidateOrigins("2.0", (X_Y, TILDE), 30),
        # NotAutomatic: priority 1, ten spaces.
        "beta": CandidateOrigins("2.0~rc1", ("_tmp_aptexp_repos_exp_dists_experimental",), None),
        "gamma": CandidateOrigins(
            "1.0", ("_tmp_aptexp_repos_dists%5fr_dists_buster_updates",), None
        ),
        "delta": CandidateOrigins("1:0.9", ("_tmp_aptexp_repos_%c3%a9_repo_.",), None),
        "libfoo1:i386": CandidateOrigins("1:2.0-1", (X_Y, TILDE), None),
    }


def test_real_isolated_http_policy() -> None:
    (origins,) = parse_policy(sample("apt-cache-policy-isolated-http.txt")).values()
    assert origins.list_prefixes == (
        "127.0.0.1:8080_debian_dists_bookworm",
        "::1:8080_debian_dists_bookworm",
        "localhost:8080_a%5fb%7ec_ubuntu_dists_jammy-security",
        "localhost:8080__double__slash_dists_jammy",
        "localhost:8080_flat_sub_dir",
    )


@pytest.mark.parametrize(
    ("version_line", "phased"),
    [
        ("     1.1 500 (phased 30%)", 30),
        ("     1.1 500 (phased 0%)", 0),
        ("     1.1 500", None),
        (" *** 1.1 500 (phased 100%)", 100),
    ],
    ids=["phased-30", "phased-0", "not-phased", "installed-and-phased"],
)
def test_phased_percentage(version_line: str, phased: int | None) -> None:
    # The documented format, as in the isolated sample's real "     2.0 1001 (phased 30%)".
    text = (
        "acme:\n  Installed: 1.0\n  Candidate: 1.1\n  Version table:\n"
        f"{version_line}\n        500 http://deb.example.com/debian stable/main amd64 Packages\n"
    )
    assert parse_policy(text)["acme"] == CandidateOrigins(
        "1.1", ("deb.example.com_debian_dists_stable",), phased
    )


@pytest.mark.parametrize(
    "priority_field",
    [
        "          1",
        "        100",
        "        500",
        "        990",
        "       1001",
        "        -10",
        "       -1000",
        "       32767",
    ],
    ids=["1", "100", "500", "990", "1001", "negative", "negative-four-digits", "five-digits"],
)
def test_every_priority_width_is_read(priority_field: str) -> None:
    # apt prints "       %4i %s": seven spaces, then the priority right-aligned in four.
    text = (
        "acme:\n  Installed: (none)\n  Candidate: 2.0\n  Version table:\n     2.0 500\n"
        f"{priority_field} http://deb.example.com/debian stable/main amd64 Packages\n"
    )
    assert parse_policy(text)["acme"].list_prefixes == ("deb.example.com_debian_dists_stable",)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "N: Unable to locate package nosuch\n",
        "mail-transport-agent:\n  Installed: (none)\n  Candidate: (none)\n  Version table:\n",
        "Package files:\n 100 /var/lib/dpkg/status\n     release a=now\nPinned packages:\n",
        "     2.0 500\n        500 http://deb.example.com/debian stable/main amd64 Packages\n",
    ],
    ids=["empty", "unknown-package", "no-candidate", "package-files-section", "no-package-header"],
)
def test_nothing_to_report(text: str) -> None:
    assert parse_policy(text) == {}
