"""The agent configuration's ``reporting:`` section."""

from __future__ import annotations

from pathlib import Path

import pytest

from patchd.config import ReportingSettings, load_config, parse_config
from patchd.errors import ConfigError

EXAMPLE = Path(__file__).parents[2] / "config" / "agent.example.yaml"


def test_defaults_and_the_example() -> None:
    assert parse_config(b"tags: [a]\n", Path("agent.yaml")).reporting == ReportingSettings()
    example = load_config(EXAMPLE).reporting
    assert (example.timeout_s, example.max_queued_reports) == (30.0, 1000)


def test_every_setting() -> None:
    text = b"reporting:\n  ca_file: /etc/ca.pem\n  timeout: 5\n  max_queued_reports: 10\n  max_queued_bytes: 2097152\n"
    settings = parse_config(text, Path("agent.yaml")).reporting
    assert settings == ReportingSettings(Path("/etc/ca.pem"), 5.0, 10, 2 * 1024 * 1024)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        pytest.param(
            "ca_file: ca.pem", "reporting.ca_file: must be an absolute path", id="relative-ca"
        ),
        pytest.param(
            "timeout: 0", "reporting.timeout: must be between 1 and 600", id="timeout-zero"
        ),
        pytest.param("max_queued_reports: 0", "from 1 to 100000", id="no-room"),
        pytest.param("max_queued_reports: true", "must be a whole number", id="bool"),
        pytest.param("max_queued_bytes: 10", "from 1048576", id="tiny"),
        pytest.param("verify: false", "reporting.verify: unknown setting", id="no-tls-switch"),
    ],
)
def test_bad_settings_are_refused_with_their_place(text: str, message: str) -> None:
    with pytest.raises(ConfigError) as error:
        parse_config(f"reporting:\n  {text}\n".encode(), Path("agent.yaml"))
    assert message in str(error.value)
    assert str(error.value).startswith("agent.yaml:2:")
