"""Man pages, shell completions and the default configuration, generated from their sources.

``scripts/gen-docs.py`` writes them; a test checks that the committed files equal what
this module makes now, so they never drift from the CLI parser, ``docs/policy.md`` or
``config/agent.example.yaml``. Completions come from ``shtab`` (a build-time dependency,
the ``packaging`` extra, imported only here); the man pages are plain roff written here,
since argparse-manpage's output (an empty ``.SH``, unescaped leading dots in help text, a
"Generated Python Manual" title) does not pass ``groff -ww`` cleanly.
Nothing in the agent imports this module.
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from patchd import __version__
from patchd.cli.parser import DESCRIPTION, build_parser
from patchd.errors import EXIT_CODE_HELP

# The generated files, relative to the repository, and what makes each.
MAN_PATCHD = Path("packaging/man/patchd.8")
MAN_POLICY = Path("packaging/man/patchd-policy.5")
BASH = Path("packaging/completions/patchd.bash")
ZSH = Path("packaging/completions/_patchd")
FISH = Path("packaging/completions/patchd.fish")
DEFAULT_CONFIG = Path("patchd/service/files/agent.yaml")
POLICY_DOC = Path("docs/policy.md")
CONFIG_EXAMPLE = Path("config/agent.example.yaml")

# The name the completion function answers to, as bash's `complete -F` expects it.
BASH_FUNCTION_ALIAS = '_patchd() { _shtab_patchd "$@"; }\n'


# ---- roff ------------------------------------------------------------------------------


def _escape(text: str) -> str:
    """Backslashes, hyphens (as minus signs) and non-ASCII characters (as ``\\[uXXXX]``)."""
    text = text.replace("\\", "\\e").replace("-", "\\-")
    return "".join(c if ord(c) < 128 else f"\\[u{ord(c):04X}]" for c in text)


def _line_start(line: str) -> str:
    """A line must not start with a dot or quote, or roff reads it as a request."""
    return "\\&" + line if line.startswith((".", "'")) else line


def roff_text(text: str) -> str:
    """Escape a line of plain text for roff."""
    return _line_start(_escape(text))


def _inline(text: str) -> str:
    """Markdown inline markup to roff: `code` and **bold** to bold, [text](link) to text."""
    text = re.sub(r"\[([^\]]+)\]\([^)]+\)", r"\1", text)
    out = []
    for part in re.split(r"(`[^`]+`|\*\*[^*]+\*\*)", text):
        if len(part) > 1 and part.startswith("`") and part.endswith("`"):
            out.append("\\fB" + _escape(part[1:-1]) + "\\fR")
        elif len(part) > 3 and part.startswith("**") and part.endswith("**"):
            out.append("\\fB" + _escape(part[2:-2]) + "\\fR")
        else:
            out.append(_escape(part))
    return _line_start("".join(out))


# Each page's one-line summary, for its NAME section.
_NAMES = {
    "patchd": "patch management agent: scan, apply and roll back updates under a signed policy",
    "patchd-policy": "the signed policy that decides which updates an endpoint installs, and when",
}


def _header(name: str, section: int, title: str) -> list[str]:
    return [
        f'.TH {name.upper()} {section} "" "patchd {__version__}" "{title}"',
        ".SH NAME",
        f"{roff_text(name)} \\- {roff_text(_NAMES[name])}",
    ]


# ---- patchd(8) from the parser ------------------------------------------------------------


@dataclass(frozen=True)
class CommandDoc:
    """One leaf command of the parser: its words, help and parser."""

    words: tuple[str, ...]
    help: str
    parser: argparse.ArgumentParser


def _subparsers(
    parser: argparse.ArgumentParser,
) -> argparse._SubParsersAction[argparse.ArgumentParser] | None:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return action
    return None


def walk_commands(
    parser: argparse.ArgumentParser, words: tuple[str, ...] = ()
) -> Iterator[CommandDoc]:
    """Every leaf command under ``parser``, in the order the parser defines them."""
    subs = _subparsers(parser)
    if subs is None:
        yield CommandDoc(words, parser.description or "", parser)
        return
    for choice in subs._choices_actions:
        yield from walk_commands(subs.choices[choice.dest], (*words, choice.dest))


_GLOBAL = {"--config", "--state-dir", "--root", "--debug", "-h", "--help", "--version"}


def _option_lines(parser: argparse.ArgumentParser, *, skip_global: bool) -> list[str]:
    lines: list[str] = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction | argparse._HelpAction):
            continue
        if skip_global and set(action.option_strings) & _GLOBAL:
            continue
        metavar = action.metavar or (action.dest.upper() if action.nargs != 0 else None)
        if action.option_strings:
            names = ", ".join(f"\\fB{roff_text(o)}\\fR" for o in action.option_strings)
            term = f"{names} \\fI{roff_text(str(metavar))}\\fR" if action.nargs != 0 else names
        else:
            term = f"\\fI{roff_text(str(metavar))}\\fR"
        help_text = action.help or ""
        if action.choices and not isinstance(action.choices, dict):
            help_text += f" (one of: {', '.join(map(str, action.choices))})"
        lines += [".TP", term, _inline(help_text) if help_text else "\\&"]
    return lines


def _usage(command: CommandDoc) -> str:
    usage = command.parser.format_usage().strip().removeprefix("usage: ")
    usage = re.sub(
        r"\[--config FILE\] \[--state-dir DIR\] \[--root DIR\]\s*\[--debug\]\s*", "", usage
    )
    usage = re.sub(r"\[-h\]\s*", "", usage)
    return " ".join(usage.split())


def manpage_patchd() -> str:
    """``patchd(8)``: every command with its options, generated from :func:`build_parser`."""
    parser = build_parser()
    lines = _header("patchd", 8, "System Administration")
    lines += [
        ".SH SYNOPSIS",
        "\\fBpatchd\\fR [\\fIGLOBAL OPTIONS\\fR] \\fICOMMAND\\fR [\\fIARGS\\fR]",
    ]
    lines += [".SH DESCRIPTION", *(roff_text(line) for line in DESCRIPTION.split("\n"))]
    lines += [".SH GLOBAL OPTIONS", "Accepted before or after the command."]
    lines += _option_lines(parser, skip_global=False)
    lines.append(".SH COMMANDS")
    for command in walk_commands(parser):
        lines += [".SS " + roff_text(_usage(command)), _inline(command.help)]
        lines += _option_lines(command.parser, skip_global=True)
    lines += [".SH EXIT STATUS", *_exit_rows()]
    lines += [
        ".SH ENVIRONMENT",
        ".TP",
        "\\fBPATCHD_CONFIG\\fR",
        "the agent configuration file, when \\fB\\-\\-config\\fR is not given",
        ".TP",
        "\\fBNO_COLOR\\fR",
        "no colour in terminal output",
        ".SH FILES",
        *_files(),
        ".SH SEE ALSO",
        "\\fBpatchd\\-policy\\fR(5), \\fBsystemctl\\fR(1), \\fBjournalctl\\fR(1)",
    ]
    return "\n".join(lines) + "\n"


def _exit_rows() -> list[str]:
    rows: list[str] = []
    for line in EXIT_CODE_HELP.splitlines()[1:]:
        code, _, text = line.strip().partition(" ")
        if code.isdigit():
            rows += [".TP", f"\\fB{code}\\fR", roff_text(text.strip())]
        else:  # a continued description
            rows[-1] += " " + roff_text(line.strip())
    return rows


def _files() -> list[str]:
    files = [
        ("/etc/patchd/agent.yaml", "the agent configuration"),
        ("/etc/patchd/policy.yaml", "the signed policy (signatures in policy.yaml.sig)"),
        ("/etc/patchd/trust-root.json", "the trust root policies are verified against"),
        ("/var/lib/patchd", "state: runs, transcripts, kept packages, the endpoint key"),
        ("/etc/systemd/system/patchd-agent.service", "the agent service"),
    ]
    lines: list[str] = []
    for path, what in files:
        lines += [".TP", f"\\fI{roff_text(path)}\\fR", roff_text(what)]
    return lines


# ---- patchd-policy(5) from docs/policy.md ----------------------------------------------


def _table_rows(block: list[str]) -> list[str]:
    """A markdown table as tagged paragraphs: the first cell is the tag."""
    lines: list[str] = []
    for row in block[2:]:  # the header and its rule are dropped
        cells = [c.strip() for c in row.strip().strip("|").split("|")]
        lines += [".TP", _inline(cells[0]), _inline(" \u2014 ".join(c for c in cells[1:] if c))]
    return lines


def _starts_block(line: str) -> bool:
    return line.startswith(("```", "    ", "|", "#", "- ", "* ")) or bool(re.match(r"\d+\. ", line))


_Block = tuple[list[str], int]  # roff lines, and the index of the next source line


def _code(lines: list[str]) -> list[str]:
    return [".PP", ".RS 4", ".nf", *(roff_text(s) for s in lines), ".fi", ".RE", ".PP"]


def _fence(source: list[str], i: int) -> _Block:
    end = source.index("```", i + 1)
    return _code(source[i + 1 : end]), end + 1


def _indented(source: list[str], i: int) -> _Block:
    block = []
    while i < len(source) and (source[i].startswith("    ") or not source[i]):
        block.append(source[i][4:])
        i += 1
    while block and not block[-1]:
        block.pop()
    return _code(block), i


def _table(source: list[str], i: int) -> _Block:
    block = []
    while i < len(source) and source[i].startswith("|"):
        block.append(source[i])
        i += 1
    return _table_rows(block), i


def _paragraph(source: list[str], i: int) -> _Block:
    """Joined first, so inline markup may span its lines."""
    paragraph = []
    while i < len(source) and source[i].strip() and not _starts_block(source[i]):
        paragraph.append(source[i].strip())
        i += 1
    return [_inline(" ".join(paragraph))], i


def _single(line: str) -> list[str]:
    if line.startswith("## "):
        return [".SH " + roff_text(line[3:].upper().replace("`", ""))]
    if line.startswith("# "):
        return []  # the page's title is the man page's NAME
    if line.startswith(("- ", "* ")):
        return [".IP \\(bu 2", _inline(line[2:])]
    number, _, rest = line.partition(". ")
    return [f".IP {number}. 4", _inline(rest)]


def markdown_to_roff(markdown: str) -> list[str]:
    """The subset of Markdown the docs use: headings, paragraphs, lists, tables, code."""
    lines: list[str] = []
    source = markdown.splitlines()
    i = 0
    while i < len(source):
        line = source[i]
        if not line.strip():
            block, i = [".PP"], i + 1
        elif line.startswith("```"):
            block, i = _fence(source, i)
        elif line.startswith("    "):
            block, i = _indented(source, i)
        elif line.startswith("|"):
            block, i = _table(source, i)
        elif _starts_block(line):
            block, i = _single(line), i + 1
        else:
            block, i = _paragraph(source, i)
        lines += block
    return _tidy(lines)


def _tidy(lines: list[str]) -> list[str]:
    """No paragraph break right after a heading or another break (groff would warn)."""
    out: list[str] = []
    for line in lines:
        if line == ".PP" and (not out or out[-1].startswith((".SH", ".PP", ".TP", ".IP"))):
            continue
        out.append(line)
    while out and out[-1] == ".PP":
        out.pop()
    return out


def manpage_policy(policy_doc: str) -> str:
    """``patchd-policy(5)``: the policy reference of docs/policy.md, as a man page."""
    lines = _header("patchd-policy", 5, "File Formats")
    lines += [".SH DESCRIPTION", *markdown_to_roff(policy_doc)]
    lines += [".SH SEE ALSO", "\\fBpatchd\\fR(8)"]
    return "\n".join(_tidy(lines)) + "\n"


# ---- completions and the default configuration -----------------------------------------


def completion(shell: str) -> str:
    """bash, zsh or fish completion for ``patchd``, from the parser (shtab)."""
    import shtab

    script: str = shtab.complete(build_parser(), shell=shell)
    script = script.rstrip("\n") + "\n"
    return script + BASH_FUNCTION_ALIAS if shell == "bash" else script


def default_config(example: str) -> str:
    """The installed ``agent.yaml``: the example with every setting commented out.

    The example names a collector and tags that are only examples; the installed file
    means "built-in defaults" until an administrator uncomments what they want.
    """
    out = [
        "# patchd agent configuration. Every setting below is commented out: patchd uses its",
        "# built-in defaults until you uncomment and set one. See docs/configuration.md.",
    ]
    for line in example.splitlines()[1:]:
        out.append(line if not line.strip() or line.lstrip().startswith("#") else "# " + line)
    return "\n".join(out) + "\n"


def generated(repo: Path) -> dict[Path, str]:
    """Every generated file (relative path → content), from the sources in ``repo``."""
    return {
        MAN_PATCHD: manpage_patchd(),
        MAN_POLICY: manpage_policy((repo / POLICY_DOC).read_text("utf-8")),
        BASH: completion("bash"),
        ZSH: completion("zsh"),
        FISH: completion("fish"),
        DEFAULT_CONFIG: default_config((repo / CONFIG_EXAMPLE).read_text("utf-8")),
    }
