"""Man pages, completions and the default configuration: committed as generated, and working."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from patchd.cli.docgen import BASH, FISH, MAN_PATCHD, MAN_POLICY, ZSH, generated, markdown_to_roff
from patchd.cli.parser import COMMANDS
from tests.conftest import require

REPO = Path(__file__).resolve().parents[2]
TOOL_TIMEOUT_S = 60
GENERATED = generated(REPO)


def run(argv: list[str], env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        argv, capture_output=True, text=True, timeout=TOOL_TIMEOUT_S, check=False, env=env
    )


@pytest.mark.parametrize("relative", sorted(GENERATED, key=str), ids=str)
def test_committed_file_is_what_the_generator_makes(relative: Path) -> None:
    committed = (REPO / relative).read_text("utf-8")
    assert committed == GENERATED[relative], f"{relative} is stale: run scripts/gen-docs.py"


@pytest.mark.parametrize("page", [MAN_PATCHD, MAN_POLICY], ids=str)
def test_man_page_renders_without_warnings(page: Path) -> None:
    require("groff", "man")
    groff = run(["groff", "-man", "-ww", "-z", str(REPO / page)])
    assert (groff.returncode, groff.stderr) == (0, "")
    rendered = run(
        ["man", "--warnings", "-l", str(REPO / page)],
        env={"MANWIDTH": "80", "PATH": "/usr/bin:/bin", "LC_ALL": "C.UTF-8", "MANPAGER": "cat"},
    )
    assert rendered.returncode == 0
    assert rendered.stderr == ""
    assert "NAME" in rendered.stdout


def test_man_page_warning_check_can_fail(tmp_path: Path) -> None:
    """A help text starting with a dot would be a roff request; groff -ww says so."""
    require("groff")
    bad = tmp_path / "bad.8"
    bad.write_text(".TH BAD 8\n.SH NAME\nbad\n... and this\n")
    assert run(["groff", "-man", "-ww", "-z", str(bad)]).stderr != ""


def test_every_command_is_in_the_man_page() -> None:
    page = GENERATED[MAN_PATCHD]
    for command in COMMANDS:
        assert f".SS patchd {command.replace('-', chr(92) + '-')}" in page, command


def test_markdown_leading_dot_and_inline_code_are_escaped() -> None:
    lines = markdown_to_roff("... and `--root` **now**\n")
    assert lines == ["\\&... and \\fB\\-\\-root\\fR \\fBnow\\fR"]


@pytest.mark.parametrize(
    ("words", "expected"),
    [
        (["patchd", "col"], "collector"),
        (["patchd", "service", ""], "install uninstall status"),
        (["patchd", "trust", ""], "init rotate sign verify update show"),
    ],
    ids=["command", "service", "trust"],
)
def test_bash_completion_completes(words: list[str], expected: str) -> None:
    require("bash")
    array = " ".join(f"'{w}'" for w in words)
    script = (
        f"source {REPO / BASH}; COMP_WORDS=({array}); COMP_CWORD={len(words) - 1}; "
        'COMP_LINE="${COMP_WORDS[*]}"; COMP_POINT=${#COMP_LINE}; _patchd; echo "${COMPREPLY[@]}"'
    )
    result = run(["bash", "-c", script])
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == expected


def test_bash_completion_offers_options() -> None:
    require("bash")
    script = (
        f"source {REPO / BASH}; COMP_WORDS=(patchd service install --); COMP_CWORD=3; "
        '_patchd; echo "${COMPREPLY[@]}"'
    )
    offered = run(["bash", "-c", script]).stdout.split()
    assert {"--collector", "--manager", "--json", "--root"} <= set(offered)


def test_zsh_completion_parses() -> None:
    require("zsh")
    result = run(["zsh", "-n", str(REPO / ZSH)])
    assert (result.returncode, result.stderr) == (0, "")


@pytest.mark.parametrize(
    ("line", "expected"),
    [("patchd col", {"collector"}), ("patchd service ", {"install", "uninstall", "status"})],
    ids=["command", "service"],
)
def test_fish_completion_completes(line: str, expected: set[str], tmp_path: Path) -> None:
    require("fish")
    home = {"HOME": str(tmp_path), "XDG_CONFIG_HOME": str(tmp_path), "PATH": "/usr/bin:/bin"}
    result = run(["fish", "-c", f'source {REPO / FISH}; complete -C "{line}"'], env=home)
    assert result.returncode == 0, result.stderr
    assert {row.split("\t")[0] for row in result.stdout.splitlines()} == expected
