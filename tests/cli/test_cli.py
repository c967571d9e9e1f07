"""The command-line contract: version, help, exit codes, errors, JSON and colour."""

from __future__ import annotations

import os
import pty
import subprocess
import sys
from pathlib import Path

import pytest

from patchd import __version__
from tests.conftest import Patchd, run_patchd


def test_version_prints_name_and_version() -> None:
    result = run_patchd(["--version"])
    assert result.returncode == 0
    assert result.stdout == f"patchd {__version__}\n"


@pytest.mark.parametrize(
    "args", [["--help"], ["scan", "--help"], ["apply", "--help"]], ids=["top", "scan", "apply"]
)
def test_help_documents_the_exit_codes(args: list[str]) -> None:
    result = run_patchd(args)
    assert result.returncode == 0
    for code in ("0 ", "1 ", "2 ", "75", "78"):
        assert f"\n  {code}" in result.stdout


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        ([], 2, "required: COMMAND"),
        (["frobnicate"], 2, "invalid choice"),
        (
            ["--root", "/nonexistent/root", "status"],
            2,
            "--root /nonexistent/root: no such directory",
        ),
        (["--config", "/nonexistent/agent.yaml", "status"], 78, "no such configuration file"),
        (["rollback"], 2, "RUN_ID"),
    ],
    ids=["no-command", "unknown-command", "missing-root", "missing-config", "missing-run-id"],
)
def test_usage_errors_are_one_line_with_a_documented_code(
    args: list[str], code: int, message: str
) -> None:
    result = run_patchd(args)
    assert result.returncode == code
    assert message in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("content", "where"),
    [
        ("tags: [a, b\n", ":2:1:"),
        ("tags: [web]\nbogus: 1\n", ":2:1: bogus: unknown setting"),
        ("apt:\n  lock_timeout: -5\n", ":2:3: apt.lock_timeout: must be between"),
        ("log:\n  format: xml\n", ":2:3: log.format: must be one of text, json"),
        ("tags: !!python/object:os.system {}\n", "is not allowed"),
    ],
    ids=["syntax", "unknown-key", "out-of-range", "bad-choice", "unsafe-tag"],
)
def test_bad_configuration_exits_78_naming_file_line_and_setting(
    tmp_path: Path, content: str, where: str
) -> None:
    config = tmp_path / "agent.yaml"
    config.write_text(content)
    result = run_patchd(["--config", str(config), "--state-dir", str(tmp_path / "s"), "status"])
    assert result.returncode == 78
    assert result.stderr.startswith(f"patchd: error: {config}")
    assert where in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "s").exists()


def test_configuration_file_can_come_from_the_environment(tmp_path: Path) -> None:
    config = tmp_path / "agent.yaml"
    config.write_text("bogus: 1\n")
    result = run_patchd(
        ["--state-dir", str(tmp_path / "s"), "status"], env={"PATCHD_CONFIG": str(config)}
    )
    assert result.returncode == 78
    assert str(config) in result.stderr


def test_status_json_on_a_new_state_dir(tmp_path: Path) -> None:
    config = tmp_path / "agent.yaml"
    config.write_text("{}\n")
    result = run_patchd(
        ["--config", str(config), "--state-dir", str(tmp_path / "s"), "status", "--json"]
    )
    assert result.returncode == 0, result.stderr
    document = result.json()
    assert document["schema_version"] == 1
    assert document["runs"] == []
    assert document["last_scan"] is None
    assert document["retention"] == {"history": "400d", "rollback_files": "90d",
                                     "rollback_files_max_bytes": 4 * 1024**3,
                                     "last_pruned_at": None}  # fmt: skip
    assert (tmp_path / "s").stat().st_mode & 0o777 == 0o700


def test_global_options_may_follow_the_command(patchd: Patchd) -> None:
    result = run_patchd(
        [
            "scan",
            "--json",
            "--root",
            str(patchd.root),
            "--state-dir",
            str(patchd.state_dir),
            "--config",
            str(patchd.config),
        ]
    )
    assert result.returncode == 0, result.stderr
    assert result.json()["inventory"]["root"] == str(patchd.root)


def test_json_goes_to_stdout_and_logs_to_stderr(patchd: Patchd) -> None:
    result = patchd("--debug", "scan", "--json")
    assert result.returncode == 0
    result.json()  # stdout is exactly one JSON document
    assert "patchd: debug:" in result.stderr


def _on_a_terminal(patchd: Patchd, env: dict[str, str]) -> str:
    """Run ``patchd scan`` with its standard output on a pseudo-terminal; return what it wrote."""
    controller, terminal = pty.openpty()
    full_env = {k: v for k, v in os.environ.items() if k not in ("NO_COLOR", "TERM")}
    full_env.update(env)
    proc = subprocess.Popen(
        [sys.executable, "-m", "patchd", "--root", str(patchd.root), "--state-dir", str(patchd.state_dir),
         "--config", str(patchd.config), "scan"],
        stdout=terminal, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL, env=full_env,
    )  # fmt: skip
    os.close(terminal)
    chunks = []
    while True:
        try:
            chunk = os.read(controller, 65536)
        except OSError:  # the terminal closes when patchd exits
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(controller)
    assert proc.wait(timeout=120) == 0
    return b"".join(chunks).decode()


def test_colour_only_on_a_terminal_and_never_with_no_color(patchd: Patchd) -> None:
    assert "\x1b[" in _on_a_terminal(patchd, {"TERM": "xterm"})
    assert "\x1b[" not in _on_a_terminal(patchd, {"TERM": "xterm", "NO_COLOR": "1"})
    assert "\x1b[" not in patchd("scan").stdout
