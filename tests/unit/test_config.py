"""Tests for patchd.config: real files in a temporary directory, errors that point into them."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pytest

from patchd import config
from patchd.config import (
    AgentConfig,
    AptSettings,
    PolicySettings,
    RetentionSettings,
    load_config,
    parse_config,
)
from patchd.errors import ConfigError, ExitCode

EXAMPLE = Path(__file__).resolve().parents[2] / "config" / "agent.example.yaml"

FULL = """\
tags: [web, production, web, eu-west]
backends: [apt]
state_dir: /var/lib/patchd-test
log:
  format: json
apt:
  lock_timeout: 42.5
"""


@pytest.fixture(autouse=True)
def no_ambient_config(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Neither the host's /etc/patchd nor the caller's PATCHD_CONFIG may leak in."""
    monkeypatch.delenv(config.CONFIG_ENV, raising=False)
    monkeypatch.setattr(config, "DEFAULT_CONFIG_PATH", tmp_path / "etc" / "agent.yaml")


def write(tmp_path: Path, text: str, name: str = "agent.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def config_error(path: Path) -> ConfigError:
    before = path.read_bytes() if path.is_file() else None
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert caught.value.exit_code is ExitCode.CONFIG
    assert int(caught.value.exit_code) == 78
    assert (path.read_bytes() if path.is_file() else None) == before  # never rewritten
    return caught.value


# --- which file ---------------------------------------------------------------------------


def test_missing_default_file_means_defaults() -> None:
    assert not config.DEFAULT_CONFIG_PATH.exists()

    assert load_config(None) == AgentConfig()
    assert AgentConfig().apt == AptSettings(lock_timeout_s=300.0)
    assert AgentConfig().log_format == "text"


def test_an_existing_default_file_is_read() -> None:
    config.DEFAULT_CONFIG_PATH.parent.mkdir()
    config.DEFAULT_CONFIG_PATH.write_text("tags: [from-default]\n")

    loaded = load_config(None)

    assert loaded.tags == ("from-default",)
    assert loaded.source == config.DEFAULT_CONFIG_PATH


@pytest.mark.parametrize("how", ["argument", "environment"], ids=["argument", "environment"])
def test_missing_explicit_file_is_an_error(
    how: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    missing = tmp_path / "missing.yaml"
    if how == "environment":
        monkeypatch.setenv(config.CONFIG_ENV, str(missing))

    with pytest.raises(ConfigError) as caught:
        load_config(missing if how == "argument" else None)

    assert caught.value.exit_code is ExitCode.CONFIG
    assert caught.value.message == f"{missing}: no such configuration file"
    assert "PATCHD_CONFIG" in (caught.value.hint or "")
    assert not missing.exists()


def test_environment_names_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    chosen = write(tmp_path, "tags: [from-env]\n")
    monkeypatch.setenv(config.CONFIG_ENV, str(chosen))

    loaded = load_config(None)

    assert loaded.tags == ("from-env",)
    assert loaded.source == chosen


def test_argument_wins_over_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(config.CONFIG_ENV, str(write(tmp_path, "tags: [env]\n", "env.yaml")))

    assert load_config(write(tmp_path, "tags: [arg]\n", "arg.yaml")).tags == ("arg",)


def test_an_unreadable_path_is_an_error(tmp_path: Path) -> None:
    error = config_error(tmp_path)  # a directory

    assert error.message.startswith(f"{tmp_path}: cannot read")


# --- what a good file gives ---------------------------------------------------------------


def test_a_full_file_parses_to_the_right_config(tmp_path: Path) -> None:
    path = write(tmp_path, FULL)

    assert load_config(path) == AgentConfig(
        tags=("web", "production", "eu-west"),
        backends=("apt",),
        state_dir=Path("/var/lib/patchd-test"),
        log_format="json",
        apt=AptSettings(lock_timeout_s=42.5),
        source=path,
    )


def test_the_shipped_example_parses() -> None:
    loaded = parse_config(EXAMPLE.read_bytes(), EXAMPLE)

    assert loaded == AgentConfig(
        tags=("web", "production", "eu-west"),
        backends=("apt",),
        state_dir=Path("/var/lib/patchd"),
        log_format="text",
        apt=AptSettings(lock_timeout_s=300.0),
        policy=PolicySettings(
            file=Path("/etc/patchd/policy.yaml"),
            trust_root=Path("/etc/patchd/trust-root.json"),
            urls=("https://collector.example/v1/policy",),
            fetch_interval=timedelta(hours=1),
        ),
        source=EXAMPLE,
    )


@pytest.mark.parametrize(
    "text",
    ["", "# nothing set\n", "log:\napt:\n", "tags: []\nbackends: []\n"],
    ids=["empty", "comment-only", "empty-sections", "empty-lists"],
)
def test_settings_left_out_keep_their_defaults(text: str, tmp_path: Path) -> None:
    path = write(tmp_path, text)

    assert load_config(path) == AgentConfig(source=path)


def test_backend_settings_carry_the_apt_lock_timeout(tmp_path: Path) -> None:
    loaded = load_config(write(tmp_path, "apt:\n  lock_timeout: 7\n"))

    assert loaded.backend_settings("apt") == {"lock_timeout_s": 7.0}
    assert loaded.backend_settings("dnf") == {}


# --- what a bad file gives ----------------------------------------------------------------


@dataclass(frozen=True)
class Bad:
    text: str
    where: str  # LINE:COL: dotted.path, at the setting's key
    message: str  # a part of the message


BAD = {
    "unknown-top": Bad("tags: [a]\ncolour: red\n", "2:1: colour", "unknown setting"),
    "unknown-in-log": Bad("log:\n  format: text\n  colour: x\n", "3:3: log.colour", "unknown"),
    "unknown-in-apt": Bad("apt:\n  lock_timout: 5\n", "2:3: apt.lock_timout", "unknown"),
    "not-a-mapping": Bad("- tags\n", "1:1: (document)", "must be a mapping"),
    "scalar-document": Bad("hello\n", "1:1: (document)", "must be a mapping"),
    "log-not-a-mapping": Bad("log: [json]\n", "1:1: log", "must be a mapping"),
    "apt-not-a-mapping": Bad("apt: 300\n", "1:1: apt", "must be a mapping"),
    "tags-not-a-list": Bad("tags: web\n", "1:1: tags", "list of non-empty strings"),
    "tag-not-a-string": Bad("tags: [web, 3]\n", "1:1: tags", "list of non-empty strings"),
    "empty-tag": Bad("tags: [web, '']\n", "1:1: tags", "list of non-empty strings"),
    "backends-mapping": Bad("backends: {apt: yes}\n", "1:1: backends", "list of non-empty"),
    "log-format": Bad("log:\n  format: xml\n", "2:3: log.format", "one of text, json"),
    "log-format-list": Bad("log:\n  format: [json]\n", "2:3: log.format", "one of text, json"),
    "relative-state-dir": Bad("state_dir: var/lib\n", "1:1: state_dir", "absolute path"),
    "numeric-state-dir": Bad("state_dir: 5\n", "1:1: state_dir", "absolute path"),
    "empty-state-dir": Bad("state_dir: ''\n", "1:1: state_dir", "absolute path"),
    "timeout-as-string": Bad("apt:\n  lock_timeout: '5'\n", "2:3: apt.lock_timeout", "number"),
    "timeout-as-bool": Bad("apt:\n  lock_timeout: yes\n", "2:3: apt.lock_timeout", "number"),
    "timeout-null": Bad("apt:\n  lock_timeout:\n", "2:3: apt.lock_timeout", "number"),
    "yaml-syntax": Bad("tags: [a\nlog: x\n", "2:4:", "expected ','"),
    "yaml-tag": Bad("tags: !!python/object:os.system ls\n", "1:7:", "not allowed"),
    "duplicate-key": Bad("tags: [a]\ntags: [b]\n", "2:1:", "duplicate key 'tags'"),
}


@pytest.mark.parametrize("case", BAD.values(), ids=BAD.keys())
def test_a_bad_setting_is_named_with_file_line_and_column(case: Bad, tmp_path: Path) -> None:
    path = write(tmp_path, case.text)

    error = config_error(path)

    assert error.message.startswith(f"{path}:{case.where}")
    assert case.message in error.message
    assert error.hint is not None


@pytest.mark.parametrize(
    ("value", "accepted"),
    [
        ("0", 0.0),
        ("1", 1.0),
        ("0.5", 0.5),
        ("86400", 86400.0),
        ("-1", None),
        ("-0.001", None),
        ("86400.5", None),
        ("1.0e+9", None),
        (".inf", None),
        ("-.inf", None),
        (".nan", None),
    ],
    ids=[
        "zero",
        "one",
        "fraction",
        "a-day",
        "negative",
        "slightly-negative",
        "over-a-day",
        "huge",
        "infinite",
        "minus-infinite",
        "not-a-number",
    ],
)
def test_lock_timeout_bounds(value: str, accepted: float | None, tmp_path: Path) -> None:
    path = write(tmp_path, f"apt:\n  lock_timeout: {value}\n")

    if accepted is not None:
        assert load_config(path).apt.lock_timeout_s == accepted
    else:
        error = config_error(path)
        assert error.message == (
            f"{path}:2:3: apt.lock_timeout: must be between 0 and 86400 seconds"
        )


def test_tags_are_deduplicated_in_order(tmp_path: Path) -> None:
    loaded = load_config(write(tmp_path, "tags: [b, a, b, c, a]\n"))

    assert loaded.tags == ("b", "a", "c")


def tag_list(count: int, length: int = 3) -> str:
    return "tags: [" + ", ".join(f"t{i:0{length - 1}d}" for i in range(count)) + "]\n"


@pytest.mark.parametrize(
    ("text", "error"),
    [
        (tag_list(config.MAX_TAGS), None),
        (tag_list(config.MAX_TAGS + 1), "at most 256 entries"),
        ("tags: [" + "x" * config.MAX_TAG_CHARS + "]\n", None),
        ("tags: [" + "x" * (config.MAX_TAG_CHARS + 1) + "]\n", "at most 128 characters"),
        ("backends: [" + ", ".join(["apt"] * 33) + "]\n", "at most 32 entries"),
    ],
    ids=["256-tags", "257-tags", "128-chars", "129-chars", "33-backends"],
)
def test_list_limits(text: str, error: str | None, tmp_path: Path) -> None:
    path = write(tmp_path, text)

    if error is None:
        assert load_config(path).tags
    else:
        assert error in config_error(path).message


def test_an_oversized_file_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path, "# " + "x" * config.MAX_CONFIG_BYTES + "\n")

    assert "larger than" in config_error(path).message


def test_parse_config_reports_the_path_it_was_given() -> None:
    with pytest.raises(ConfigError, match=r"^/somewhere/agent\.yaml:1:1: colour: unknown"):
        parse_config(b"colour: red\n", Path("/somewhere/agent.yaml"))


# --- the policy section -------------------------------------------------------------------

POLICY = """\
policy:
  file: /etc/patchd/policy.yaml
  trust_root: /etc/patchd/trust-root.json
  urls:
    - https://collector.example/v1/policy?token=abc&site=eu
    - http://127.0.0.1:8080/v1/policy
    - https://collector.example/v1/policy?token=abc&site=eu
  fetch_interval: 4h30m
  file_recheck: 15
"""


def test_the_policy_section_parses(tmp_path: Path) -> None:
    assert load_config(write(tmp_path, POLICY)).policy == PolicySettings(
        file=Path("/etc/patchd/policy.yaml"),
        trust_root=Path("/etc/patchd/trust-root.json"),
        urls=(
            "https://collector.example/v1/policy?token=abc&site=eu",
            "http://127.0.0.1:8080/v1/policy",
        ),
        fetch_interval=timedelta(hours=4, minutes=30),
        file_recheck_s=15.0,
    )


@pytest.mark.parametrize(
    "text", ["", "policy:\n", "policy:\n  urls: []\n"], ids=["absent", "empty", "no-urls"]
)
def test_the_policy_section_defaults_to_no_sources_and_an_hour(text: str, tmp_path: Path) -> None:
    settings = load_config(write(tmp_path, text)).policy

    assert settings == PolicySettings()
    assert settings == PolicySettings(None, None, (), timedelta(hours=1), 60.0)
    assert AgentConfig().policy == settings


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1/v1/policy",
        "http://localhost:9000/policy",
        "http://[::1]:8080/p?token=x",
        "HTTPS://Collector.Example/v1/policy",
        "https://10.0.0.7:8443/v1/policy#fragment",
    ],
    ids=["ipv4-loopback", "localhost", "ipv6-loopback", "upper-case", "https-to-an-address"],
)
def test_acceptable_policy_urls(url: str, tmp_path: Path) -> None:
    path = write(tmp_path, f"policy:\n  urls: ['{url}']\n")

    assert load_config(path).policy.urls == (url,)


@pytest.mark.parametrize(
    ("value", "accepted"),
    [
        ("5m", timedelta(minutes=5)),
        ("90m", timedelta(minutes=90)),
        ("7d", timedelta(days=7)),
        ("4m", None),
        ("7d1m", None),
        ("0m", None),
    ],
    ids=["five-minutes", "ninety-minutes", "a-week", "four-minutes", "over-a-week", "zero"],
)
def test_fetch_interval_bounds(value: str, accepted: timedelta | None, tmp_path: Path) -> None:
    path = write(tmp_path, f"policy:\n  fetch_interval: {value}\n")

    if accepted is not None:
        assert load_config(path).policy.fetch_interval == accepted
    else:
        message = config_error(path).message
        assert message.startswith(f"{path}:2:3: policy.fetch_interval: {value} is too ")


BAD_POLICY = {
    "unknown-setting": Bad("policy:\n  fiel: /etc/p.yaml\n", "2:3: policy.fiel", "unknown setting"),
    "not-a-mapping": Bad("policy: /etc/p.yaml\n", "1:1: policy", "must be a mapping"),
    "relative-file": Bad("policy:\n  file: p.yaml\n", "2:3: policy.file", "absolute path"),
    "numeric-file": Bad("policy:\n  file: 7\n", "2:3: policy.file", "absolute path"),
    "null-file": Bad("policy:\n  file:\n", "2:3: policy.file", "absolute path"),
    "relative-trust-root": Bad(
        "policy:\n  trust_root: root.json\n", "2:3: policy.trust_root", "absolute path"
    ),
    "urls-not-a-list": Bad(
        "policy:\n  urls: https://a.example/p\n", "2:3: policy.urls", "list of URLs"
    ),
    "url-not-a-string": Bad("policy:\n  urls: [443]\n", "2:10: policy.urls.0", "must be a URL"),
    "empty-url": Bad("policy:\n  urls: ['']\n", "2:10: policy.urls.0", "must be a URL"),
    "plain-http": Bad(
        "policy:\n  urls:\n    - https://a.example/p\n    - http://collector.example/p\n",
        "4:7: policy.urls.1",
        "must use https (plain http only to 127.0.0.1, localhost or ::1)",
    ),
    "http-to-a-lan-address": Bad(
        "policy:\n  urls: ['http://10.0.0.7/p']\n", "2:10: policy.urls.0", "must use https"
    ),
    "other-scheme": Bad(
        "policy:\n  urls: ['ftp://a.example/p']\n", "2:10: policy.urls.0", "https:// URL"
    ),
    "no-host": Bad("policy:\n  urls: ['https:///p']\n", "2:10: policy.urls.0", "with a host"),
    "credentials": Bad(
        "policy:\n  urls: ['https://me:pw@a.example/p']\n",
        "2:10: policy.urls.0",
        "must not carry credentials",
    ),
    "bad-port": Bad(
        "policy:\n  urls: ['https://a.example:99999/p']\n", "2:10: policy.urls.0", "not a valid URL"
    ),
    "a-space": Bad(
        "policy:\n  urls: ['https://a.example/a b']\n", "2:10: policy.urls.0", "without spaces"
    ),
    "too-long": Bad(
        f"policy:\n  urls: ['https://a.example/{'x' * 2048}']\n",
        "2:10: policy.urls.0",
        "at most 2048 characters",
    ),
    "nine-urls": Bad(
        "policy:\n  urls: [" + ", ".join(f"'https://a{i}.example/p'" for i in range(9)) + "]\n",
        "2:3: policy.urls",
        "at most 8 entries",
    ),
    "interval-a-number": Bad(
        "policy:\n  fetch_interval: 3600\n", "2:3: policy.fetch_interval", "must be a duration"
    ),
    "interval-in-seconds": Bad(
        "policy:\n  fetch_interval: 3600s\n", "2:3: policy.fetch_interval", "is not a duration"
    ),
    "recheck-zero": Bad(
        "policy:\n  file_recheck: 0\n", "2:3: policy.file_recheck", "between 1 and 3600 seconds"
    ),
    "recheck-over-an-hour": Bad(
        "policy:\n  file_recheck: 3601\n", "2:3: policy.file_recheck", "between 1 and 3600 seconds"
    ),
    "recheck-a-duration": Bad(
        "policy:\n  file_recheck: 1m\n", "2:3: policy.file_recheck", "must be a number of seconds"
    ),
}


@pytest.mark.parametrize("case", BAD_POLICY.values(), ids=BAD_POLICY.keys())
def test_a_bad_policy_setting_is_named_with_file_line_and_column(case: Bad, tmp_path: Path) -> None:
    path = write(tmp_path, case.text)

    error = config_error(path)

    assert error.message.startswith(f"{path}:{case.where}: ")
    assert case.message in error.message
    assert error.hint is not None


def test_a_refused_url_is_not_echoed(tmp_path: Path) -> None:
    """Its query string may carry a token: the error names the setting, not the URL."""
    path = write(tmp_path, "policy:\n  urls: ['http://collector.example/p?token=s3cret']\n")

    error = config_error(path)

    assert "s3cret" not in str(error)
    assert "collector.example" not in str(error)


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("https://c.example/v1/policy?token=s3cret#frag", "https://c.example/v1/policy"),
        ("https://me:pw@c.example:8443/p", "https://c.example:8443/p"),
        ("http://[::1]:8080/p?x=1", "http://[::1]:8080/p"),
        ("HTTPS://C.Example/P", "https://c.example/P"),
        ("https://[::1/p", "(not a URL)"),
    ],
    ids=["query-and-fragment", "credentials", "ipv6", "case", "invalid"],
)
def test_redact_url_keeps_scheme_host_port_and_path_only(url: str, shown: str) -> None:
    assert config.redact_url(url) == shown


@pytest.mark.parametrize(
    ("text", "where"),
    [
        ("agent:\n  scan_interval: 1m\n", ":2:3: agent.scan_interval:"),
        ("agent:\n  scan_interval: 8d\n", ":2:3: agent.scan_interval:"),
        ("agent:\n  refresh: yes please\n", ":2:3: agent.refresh: must be true or false"),
        ("agent:\n  pace: fast\n", ":2:3: agent.pace: unknown setting"),
    ],
    ids=["interval-too-short", "interval-too-long", "refresh-not-boolean", "unknown-agent-setting"],
)
def test_agent_section_errors_are_located(tmp_path: Path, text: str, where: str) -> None:
    path = tmp_path / "agent.yaml"
    with pytest.raises(ConfigError) as raised:
        parse_config(text.encode(), path)
    assert where in raised.value.message


def test_agent_section_values() -> None:
    config = parse_config(b"agent:\n  scan_interval: 6h\n  refresh: false\n", Path("a.yaml"))
    assert config.agent.scan_interval == timedelta(hours=6)
    assert config.agent.refresh is False


# --- retention ----------------------------------------------------------------------------


def test_retention_defaults_keep_a_year_and_more_of_history() -> None:
    retention = parse_config(b"{}", Path("a.yaml")).retention
    assert retention.history == timedelta(days=400)
    assert retention.rollback_files == timedelta(days=90)
    assert retention.rollback_files_max_bytes == 4 * 1024**3


def test_retention_values() -> None:
    text = b"retention:\n  history: 2000d\n  rollback_files: 30d\n  rollback_files_max_bytes: 67108864\n"
    retention = parse_config(text, Path("a.yaml")).retention
    assert retention == RetentionSettings(timedelta(days=2000), timedelta(days=30), 64 * 1024**2)


def test_a_short_history_shortens_the_default_for_kept_packages() -> None:
    retention = parse_config(b"retention: {history: 60d}\n", Path("a.yaml")).retention
    assert (retention.history, retention.rollback_files) == (timedelta(days=60), timedelta(days=60))


@pytest.mark.parametrize(
    ("text", "where"),
    [
        ("retention:\n  history: 29d\n", ":2:3: retention.history: 29d is too short: at least 30d"),
        ("retention:\n  history: 3654d\n", ":2:3: retention.history:"),
        ("retention:\n  history: 1y\n", ":2:3: retention.history: '1y' is not a duration"),
        ("retention:\n  rollback_files: 12h\n", ":2:3: retention.rollback_files:"),
        (
            "retention:\n  history: 60d\n  rollback_files: 61d\n",
            ":3:3: retention.rollback_files: must not be longer than retention.history (60d)",
        ),
        (
            "retention:\n  rollback_files_max_bytes: 1000\n",
            ":2:3: retention.rollback_files_max_bytes: must be a whole number of bytes from",
        ),
        ("retention:\n  rollback_files_max_bytes: true\n", ":2:3: retention.rollback_files_max"),
        ("retention:\n  forever: true\n", ":2:3: retention.forever: unknown setting"),
        ("retention: 400d\n", ":1:1: retention: must be a mapping"),
    ],
    ids=[
        "history-short",
        "history-long",
        "history-not-duration",
        "files-short",
        "files-beyond-history",
        "bytes-small",
        "bytes-boolean",
        "unknown",
        "not-mapping",
    ],
)
def test_retention_errors_are_located_and_change_nothing(
    tmp_path: Path, text: str, where: str
) -> None:
    error = config_error(write(tmp_path, text))
    assert where in error.message
