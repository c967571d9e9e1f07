"""The command line's grammar, built only for the command that runs.

``patchd scan`` must not pay for building every other command's options; what it
accepts, its help and its errors must stay exactly what the full grammar gives.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

import pytest

from patchd.cli.parser import COMMANDS, build_parser, command_in, command_name


def _commands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def _helps(parser: argparse.ArgumentParser, prefix: str = "") -> dict[str, str]:
    found = {prefix: parser.format_help()}
    for name, sub in _commands(parser).items():
        found.update(_helps(sub, f"{prefix} {name}".strip()))
    return found


def test_each_commands_own_grammar_is_the_full_grammars() -> None:
    full = build_parser()
    every = _helps(full)
    top_level = list(_commands(full))
    assert top_level[0] == "scan"
    assert "collector" in top_level
    for name in top_level:
        alone = build_parser(name)
        assert list(_commands(alone)) == [name]
        assert _helps(_commands(alone)[name], name) == {
            k: v for k, v in every.items() if k == name or k.startswith(f"{name} ")
        }
    assert {c.split()[0] for c in COMMANDS} == set(top_level)


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        pytest.param(["scan", "--json"], "scan", id="command-first"),
        pytest.param(["--root", "/srv/img", "scan"], "scan", id="option-value"),
        pytest.param(["--root=/srv/img", "--debug", "status"], "status", id="option-equals"),
        pytest.param(["--ro", "/srv/img", "scan"], "scan", id="abbreviated-option"),
        pytest.param(["--config", "scan", "plan"], "plan", id="value-looks-like-a-command"),
        pytest.param(["--state-dir", "s", "trust", "show"], "trust", id="group"),
        pytest.param(["-h"], None, id="help"),
        pytest.param(["--version"], None, id="version"),
        pytest.param([], None, id="nothing"),
        pytest.param(["scna"], None, id="unknown-command"),
        pytest.param(["--", "scan"], None, id="double-dash"),
        pytest.param(["-x", "scan"], None, id="unknown-short-option"),
        pytest.param(["--r", "/x", "scan"], "scan", id="shortest-abbreviation"),
        pytest.param(["--colour", "scan"], None, id="unknown-long-option"),
    ],
)
def test_the_command_is_found_only_where_argparse_would_find_it(
    argv: Sequence[str], expected: str | None
) -> None:
    assert command_in(argv) == expected
    if expected is not None:  # and argparse reads the same command there
        assert command_name(build_parser().parse_args(argv)).split()[0] == expected


def test_a_bad_command_line_fails_the_same_with_either_grammar(
    capsys: pytest.CaptureFixture[str],
) -> None:
    messages = []
    for parser in (build_parser(), build_parser("scan")):
        with pytest.raises(SystemExit) as stopped:
            parser.parse_args(["scan", "--no-such-option"])
        assert stopped.value.code == 2
        messages.append(capsys.readouterr().err)
    assert messages[0] == messages[1]
    assert "unrecognized arguments: --no-such-option" in messages[0]
