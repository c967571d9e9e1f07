"""Tests for patchd.discovery.reboot: reboot markers and installed kernels, on temporary roots.

The running-kernel rule applies to the host only (an alternate root's kernel is not the one
running), and the host's /lib/modules cannot be written: the rule's parts,
``installed_kernels`` and ``kernel_sort_key``, are tested directly instead.
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from patchd.discovery.reboot import (
    RebootState,
    installed_kernels,
    kernel_flavour,
    kernel_sort_key,
    reboot_state,
)
from patchd.platforms import DEBIAN, RHEL, UBUNTU
from patchd.target import Target


def write(root: Path, path: str, text: str = "") -> None:
    target = root / path.lstrip("/")
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(text)


def add_kernel(root: Path, release: str, layout: str = "modules.dep") -> None:
    if layout == "modules.dep":
        write(root, f"/lib/modules/{release}/modules.dep", "kernel/fs/ext4/ext4.ko:\n")
    else:
        (root / "lib" / "modules" / release / "kernel").mkdir(parents=True)


# --- markers ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("files", "reasons"),
    [
        ({}, ()),
        ({"/run/reboot-required": "*** System restart required ***\n"}, ("/run/reboot-required exists",)),
        (
            {
                "/run/reboot-required": "",
                "/run/reboot-required.pkgs": "linux-image-6.8.0-49-generic\nlibc6\nlibc6\n\n",
            },
            ("/run/reboot-required exists (for libc6, linux-image-6.8.0-49-generic)",),
        ),
        ({"/run/reboot-required": "", "/run/reboot-required.pkgs": "\n"}, ("/run/reboot-required exists",)),
        ({"/var/run/reboot-required": ""}, ("/var/run/reboot-required exists",)),
        (
            {"/run/reboot-required": "", "/var/run/reboot-required": ""},
            ("/run/reboot-required exists",),
        ),
        ({"/run/reboot-required.pkgs": "libc6\n"}, ()),
    ],
    ids=[
        "no-marker",
        "marker",
        "marker-with-packages",
        "marker-with-empty-packages",
        "var-run-marker",
        "both-markers-one-reason",
        "packages-without-marker",
    ],
)  # fmt: skip
def test_markers(tmp_path: Path, files: dict[str, str], reasons: tuple[str, ...]) -> None:
    for path, text in files.items():
        write(tmp_path, path, text)
    assert reboot_state(Target.at(tmp_path), UBUNTU, running_kernel="") == RebootState(
        bool(reasons), reasons
    )


def test_a_profile_without_markers_ignores_them(tmp_path: Path) -> None:
    write(tmp_path, "/run/reboot-required")
    assert reboot_state(Target.at(tmp_path), RHEL, running_kernel="").required is False


def test_as_dict() -> None:
    state = RebootState(True, ("/run/reboot-required exists",))
    assert state.as_dict() == {"required": True, "reasons": ["/run/reboot-required exists"]}


# --- kernel order ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("older", "newer"),
    [
        ("6.1.0-9-amd64", "6.1.0-10-amd64"),
        ("5.10.0-28-amd64", "6.1.0-9-amd64"),
        ("6.1.0-28-amd64", "6.12.12-amd64"),
        ("5.15.0-91-generic", "5.15.0-101-generic"),
        ("6.8.0-9-generic", "6.8.0-49-generic"),
        ("5.14.0-427.42.1.el9_4.x86_64", "5.14.0-503.11.1.el9_5.x86_64"),
        ("6.9.0-rc3", "6.9.0"),
        ("6.9.0-rc3", "6.9.0-rc10"),
        ("6.9.0-rc7", "6.9.1"),
        ("6.9.0", "6.9.1-rc1"),
        ("6.13-rc7-amd64", "6.13.2-amd64"),
        ("6.9.0-060900rc3-generic", "6.9.0-060900-generic"),
    ],
    ids=[
        "debian-abi-9-10",
        "major",
        "debian-trixie-naming",
        "ubuntu-abi",
        "ubuntu-single-digit",
        "rhel",
        "rc-before-release",
        "rc3-before-rc10",
        "rc-before-next-release",
        "release-before-next-rc",
        "debian-experimental-rc",
        "ubuntu-mainline-rc",
    ],
)
def test_kernel_order(older: str, newer: str) -> None:
    assert kernel_sort_key(older) < kernel_sort_key(newer)
    assert kernel_sort_key(newer) > kernel_sort_key(older)


def test_same_release_is_equal() -> None:
    assert kernel_sort_key("6.1.0-10-amd64") == kernel_sort_key("6.1.0-10-amd64")


def test_sorting_a_shuffled_list() -> None:
    ordered = [
        "5.10.0-28-amd64",
        "6.1.0-9-amd64",
        "6.1.0-10-amd64",
        "6.9.0-rc3",
        "6.9.0-rc10",
        "6.9.0",
        "6.12.12-amd64",
    ]
    shuffled = ordered[:]
    random.Random(4).shuffle(shuffled)
    assert sorted(shuffled, key=kernel_sort_key) == ordered


# --- installed kernels ----------------------------------------------------------------------


def test_installed_kernels_oldest_first(tmp_path: Path) -> None:
    add_kernel(tmp_path, "6.1.0-10-amd64")
    add_kernel(tmp_path, "6.1.0-9-amd64", layout="kernel-dir")
    add_kernel(tmp_path, "5.10.0-28-amd64")
    (tmp_path / "lib" / "modules" / "6.1.0-8-amd64").mkdir()  # left behind: no modules
    write(tmp_path, "/lib/modules/README")
    assert installed_kernels(Target.at(tmp_path)) == [
        "5.10.0-28-amd64",
        "6.1.0-9-amd64",
        "6.1.0-10-amd64",
    ]


def test_no_modules_directory(tmp_path: Path) -> None:
    assert installed_kernels(Target.at(tmp_path)) == []


@pytest.mark.parametrize(
    ("installed", "running", "older"),
    [
        (["6.1.0-9-amd64", "6.1.0-10-amd64"], "6.1.0-9-amd64", True),
        (["6.1.0-9-amd64", "6.1.0-10-amd64"], "6.1.0-10-amd64", False),
        (["6.9.0-rc3", "6.9.0"], "6.9.0-rc3", True),
        (["6.9.0-rc3", "6.9.0"], "6.9.0", False),
    ],
    ids=[
        "abi-bump-pending",
        "newest-running",
        "rc-running-release-installed",
        "release-running-rc-left",
    ],
)
def test_running_kernel_older_than_newest_installed(
    tmp_path: Path, installed: list[str], running: str, older: bool
) -> None:
    """The comparison the host rule makes, on a root whose /lib/modules can be written."""
    for release in installed:
        add_kernel(tmp_path, release)
    newest = installed_kernels(Target.at(tmp_path))[-1]
    assert (kernel_sort_key(newest) > kernel_sort_key(running)) is older


def test_kernel_rule_is_off_for_an_alternate_root(tmp_path: Path) -> None:
    add_kernel(tmp_path, "6.1.0-9-amd64")
    add_kernel(tmp_path, "6.1.0-10-amd64")
    state = reboot_state(Target.at(tmp_path), DEBIAN, running_kernel="6.1.0-9-amd64")
    assert state == RebootState(False, ())


@pytest.mark.parametrize(
    ("release", "flavour"),
    [
        ("6.1.0-26-amd64", "amd64"),
        ("6.1.0-26-cloud-amd64", "cloud-amd64"),
        ("6.8.0-45-generic", "generic"),
        ("5.15.0-1051-azure", "azure"),
        ("6.9.0-060900rc3-generic", "generic"),
        ("6.18.44-fc-v1252", ""),
    ],
    ids=[
        "debian",
        "debian-cloud",
        "ubuntu-generic",
        "ubuntu-azure",
        "ubuntu-mainline-rc",
        "custom",
    ],
)
def test_kernel_flavour(release: str, flavour: str) -> None:
    assert kernel_flavour(release) == flavour


def test_a_newer_kernel_of_another_flavour_does_not_ask_for_a_reboot() -> None:
    # Flavours are different packages: only a newer kernel of the running flavour counts.
    running = "6.1.0-26-amd64"
    installed = ["6.1.0-26-amd64", "6.1.0-28-cloud-amd64"]
    same = [k for k in installed if kernel_flavour(k) == kernel_flavour(running)]
    assert max(same, key=kernel_sort_key) == running
