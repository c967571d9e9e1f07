"""The agent's configuration file (``/etc/patchd/agent.yaml``).

A missing default file means built-in defaults; a file named explicitly must exist.
Unknown settings are refused (a typo must not silently change behaviour), and every
error names the file, line and setting.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from patchd.errors import ConfigError

if TYPE_CHECKING:
    from patchd import safeyaml

MAX_CONFIG_BYTES = 1024 * 1024

DEFAULT_CONFIG_PATH = Path("/etc/patchd/agent.yaml")
CONFIG_ENV = "PATCHD_CONFIG"
MAX_TAGS = 256
MAX_TAG_CHARS = 128
LOG_FORMATS = ("text", "json")


@dataclass(frozen=True)
class AptSettings:
    """Settings of the apt backend."""

    lock_timeout_s: float = 300.0  # how long to wait for another package manager


@dataclass(frozen=True)
class AgentConfig:
    """Everything the agent reads from its configuration file."""

    tags: tuple[str, ...] = ()
    backends: tuple[str, ...] = ()  # empty: detect from the operating system
    state_dir: Path | None = None
    log_format: str = "text"
    apt: AptSettings = field(default_factory=AptSettings)
    source: Path | None = None  # the file it came from, if any

    def backend_settings(self, name: str) -> Mapping[str, Any]:
        if name == "apt":
            return {"lock_timeout_s": self.apt.lock_timeout_s}
        return {}


class _Reader:
    """Validates one loaded document, raising errors that point into the file."""

    def __init__(self, path: Path, loaded: safeyaml.LoadedYaml) -> None:
        self.path = path
        self.loaded = loaded

    def fail(self, where: safeyaml.Path, message: str) -> ConfigError:
        line, column = self.loaded.where(where)
        dotted = ".".join(str(p) for p in where) or "(document)"
        return ConfigError(
            f"{self.path}:{line}:{column}: {dotted}: {message}",
            hint="fix the agent configuration (see config/agent.example.yaml)",
        )

    def mapping(self, value: Any, where: safeyaml.Path, known: set[str]) -> dict[str, Any]:
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise self.fail(where, "must be a mapping")
        for key in value:
            if key not in known:
                raise self.fail(
                    (*where, key), f"unknown setting (known: {', '.join(sorted(known))})"
                )
        return value

    def string_list(self, value: Any, where: safeyaml.Path, limit: int) -> tuple[str, ...]:
        if value is None:
            return ()
        if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
            raise self.fail(where, "must be a list of non-empty strings")
        if len(value) > limit:
            raise self.fail(where, f"at most {limit} entries")
        too_long = [v for v in value if len(v) > MAX_TAG_CHARS]
        if too_long:
            raise self.fail(where, f"entries are at most {MAX_TAG_CHARS} characters")
        return tuple(dict.fromkeys(value))

    def seconds(self, value: Any, where: safeyaml.Path, low: float, high: float) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self.fail(where, "must be a number of seconds")
        if not low <= value <= high:
            raise self.fail(where, f"must be between {low:g} and {high:g} seconds")
        return float(value)


def parse_config(data: bytes, path: Path) -> AgentConfig:
    """Build an :class:`AgentConfig` from the bytes of a configuration file."""
    from patchd import safeyaml  # PyYAML costs ~15 ms to import: only when a file exists

    try:
        loaded = safeyaml.load(data)
    except safeyaml.YamlError as e:
        raise ConfigError(
            f"{path}:{e.line}:{e.column}: {e.message}",
            hint="fix the YAML syntax of the agent configuration",
        ) from None
    reader = _Reader(path, loaded)
    top = reader.mapping(loaded.data, (), {"tags", "backends", "state_dir", "log", "apt"})
    log = reader.mapping(top.get("log"), ("log",), {"format"})
    apt = reader.mapping(top.get("apt"), ("apt",), {"lock_timeout"})
    log_format = log.get("format", "text")
    if log_format not in LOG_FORMATS:
        raise reader.fail(("log", "format"), f"must be one of {', '.join(LOG_FORMATS)}")
    state_dir = top.get("state_dir")
    if state_dir is not None and not (isinstance(state_dir, str) and os.path.isabs(state_dir)):
        raise reader.fail(("state_dir",), "must be an absolute path")
    settings = AptSettings()
    if "lock_timeout" in apt:
        settings = AptSettings(
            reader.seconds(apt["lock_timeout"], ("apt", "lock_timeout"), 0, 86400)
        )
    return AgentConfig(
        tags=reader.string_list(top.get("tags"), ("tags",), MAX_TAGS),
        backends=reader.string_list(top.get("backends"), ("backends",), 32),
        state_dir=Path(state_dir) if state_dir else None,
        log_format=log_format,
        apt=settings,
        source=path,
    )


def load_config(path: Path | None) -> AgentConfig:
    """Load the configuration: ``path`` if given (it must exist), else the default file if present."""
    explicit = path is not None
    if path is None:
        env = os.environ.get(CONFIG_ENV)
        path, explicit = (Path(env), True) if env else (DEFAULT_CONFIG_PATH, False)
    try:
        with path.open("rb") as f:
            data = f.read(MAX_CONFIG_BYTES + 1)
    except FileNotFoundError:
        if explicit:
            raise ConfigError(
                f"{path}: no such configuration file",
                hint="give an existing file with --config or PATCHD_CONFIG",
            ) from None
        return AgentConfig()
    except OSError as e:
        raise ConfigError(f"{path}: cannot read: {e.strerror}") from None
    return parse_config(data, path)
