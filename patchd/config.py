"""The agent's configuration file (``/etc/patchd/agent.yaml``).

A missing default file means built-in defaults; a file named explicitly must exist.
Unknown settings are refused (a typo must not silently change behaviour), and every
error names the file, line and setting.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import SplitResult, urlsplit

from patchd.errors import ConfigError
from patchd.policy.durations import format_duration, parse_duration

if TYPE_CHECKING:
    from patchd import safeyaml

MAX_CONFIG_BYTES = 1024 * 1024

DEFAULT_CONFIG_PATH = Path("/etc/patchd/agent.yaml")
CONFIG_ENV = "PATCHD_CONFIG"
MAX_TAGS = 256
MAX_TAG_CHARS = 128
LOG_FORMATS = ("text", "json")
MAX_POLICY_URLS = 8
MAX_URL_CHARS = 2048
MIN_FETCH_INTERVAL = timedelta(minutes=5)
MAX_FETCH_INTERVAL = timedelta(days=7)
DEFAULT_FETCH_INTERVAL = timedelta(hours=1)
DEFAULT_FILE_RECHECK_S = 60.0
MAX_FILE_RECHECK_S = 3600.0
MIN_SCAN_INTERVAL = timedelta(minutes=5)
MAX_SCAN_INTERVAL = timedelta(days=7)
MIN_HISTORY = timedelta(days=30)
MAX_HISTORY = timedelta(days=3653)  # ten years
MIN_ROLLBACK_FILES = timedelta(days=1)
MIN_ROLLBACK_BYTES = 64 * 1024 * 1024
MAX_ROLLBACK_BYTES = 1024**4  # 1 TiB
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})  # where plain http is allowed


@dataclass(frozen=True)
class AptSettings:
    """Settings of the apt backend."""

    lock_timeout_s: float = 300.0  # how long to wait for another package manager


@dataclass(frozen=True)
class ApkSettings:
    """Settings of the apk backend: local copies of Alpine's secdb (see docs/platforms-linux-extra.md)."""

    secdb: tuple[Path, ...] = ()


MAX_SECDB_FILES = 16


@dataclass(frozen=True)
class PacmanSettings:
    """Settings of the pacman backend (``pacman:``)."""

    lock_timeout_s: float = 300.0  # how long to wait for another pacman to release db.lck
    # A local copy of https://security.archlinux.org/all.json; patchd never fetches it.
    advisories: Path | None = None


@dataclass(frozen=True)
class PolicySettings:
    """Where the agent takes its policy from (``policy:``); all optional.

    ``file`` is watched, its signatures in ``file.sig``; ``trust_root`` is installed on first
    use and later versions applied as rotations; ``urls`` are fetched every
    ``fetch_interval``. Every source goes through the same gate: the signatures decide, so
    neither the file's permissions nor the transport are trusted.
    """

    file: Path | None = None
    trust_root: Path | None = None
    urls: tuple[str, ...] = ()
    fetch_interval: timedelta = DEFAULT_FETCH_INTERVAL
    # How often the file's and its signatures' metadata are compared with what was last
    # read, for changes no file event reported (a directory swapped by a rename, a
    # network file system): a changed file is then read as the watcher would have.
    file_recheck_s: float = DEFAULT_FILE_RECHECK_S


@dataclass(frozen=True)
class AgentSettings:
    """How the long-running agent paces itself (``agent:``)."""

    scan_interval: timedelta = timedelta(hours=1)  # between scans, with ±10 % jitter
    refresh: bool = True  # fetch repository metadata (apt-get update) before each scan


@dataclass(frozen=True)
class ReportingSettings:
    """How reports reach the collector this endpoint enrolled with (``reporting:``).

    The collector's URL and this endpoint's id come from ``patchd enroll`` and live in
    the local state, not here. TLS is always verified: ``ca_file`` adds a private CA.
    """

    ca_file: Path | None = None  # PEM bundle used instead of the system's CAs
    timeout_s: float = 30.0  # connecting, and waiting for each answer
    max_queued_reports: int = 1000  # the outbox's bound; the oldest are dropped (and counted)
    max_queued_bytes: int = 64 * 1024 * 1024


@dataclass(frozen=True)
class RetentionSettings:
    """How long this endpoint keeps its own history (``retention:``); see docs/runs.md.

    The signed reports already at the collector are not affected: this bounds the
    local database and the package files kept for rollbacks, which would otherwise
    grow with every scan and run for as long as the endpoint lives.
    """

    # Finished runs (their items, transcripts and journal), closed update sightings,
    # policy events, and quarantine entries of policies no longer in force.
    history: timedelta = timedelta(days=400)
    # The package files kept to roll a run back, by age and in all.
    rollback_files: timedelta = timedelta(days=90)
    rollback_files_max_bytes: int = 4 * 1024**3

    def as_dict(self) -> dict[str, Any]:
        """As ``patchd status --json`` and ``patchd prune --json`` show them."""
        return {
            "history": format_duration(self.history),
            "rollback_files": format_duration(self.rollback_files),
            "rollback_files_max_bytes": self.rollback_files_max_bytes,
        }


@dataclass(frozen=True)
class AgentConfig:
    """Everything the agent reads from its configuration file."""

    tags: tuple[str, ...] = ()
    backends: tuple[str, ...] = ()  # empty: detect from the operating system
    state_dir: Path | None = None
    log_format: str = "text"
    apt: AptSettings = field(default_factory=AptSettings)
    apk: ApkSettings = field(default_factory=ApkSettings)
    pacman: PacmanSettings = field(default_factory=PacmanSettings)
    policy: PolicySettings = field(default_factory=PolicySettings)
    agent: AgentSettings = field(default_factory=AgentSettings)
    reporting: ReportingSettings = field(default_factory=ReportingSettings)
    retention: RetentionSettings = field(default_factory=RetentionSettings)
    source: Path | None = None  # the file it came from, if any

    def backend_settings(self, name: str) -> Mapping[str, Any]:
        if name == "apt":
            return {"lock_timeout_s": self.apt.lock_timeout_s}
        if name == "apk":
            return {"secdb": [str(p) for p in self.apk.secdb]}
        if name == "pacman":
            return {
                "lock_timeout_s": self.pacman.lock_timeout_s,
                "advisories": str(self.pacman.advisories) if self.pacman.advisories else None,
            }
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

    def absolute_path(self, value: Any, where: safeyaml.Path) -> Path:
        if not (isinstance(value, str) and os.path.isabs(value)):
            raise self.fail(where, "must be an absolute path")
        return Path(value)

    def policy_urls(self, value: Any, where: safeyaml.Path) -> tuple[str, ...]:
        if value is None:
            return ()
        if not isinstance(value, list):
            raise self.fail(where, "must be a list of URLs")
        if len(value) > MAX_POLICY_URLS:
            raise self.fail(where, f"at most {MAX_POLICY_URLS} entries")
        for i, url in enumerate(value):
            # The URL itself is never echoed: its query string may carry a token.
            problem = policy_url_problem(url)
            if problem is not None:
                raise self.fail((*where, i), problem)
        return tuple(dict.fromkeys(value))

    def duration(
        self, value: Any, where: safeyaml.Path, low: timedelta, high: timedelta
    ) -> timedelta:
        try:
            return parse_duration(value, minimum=low, maximum=high)
        except ValueError as e:
            raise self.fail(where, str(e)) from None


def policy_url_problem(url: object) -> str | None:
    """Why ``url`` may not be a policy source, or ``None`` if it may.

    https only; plain http only to this machine (127.0.0.1, localhost, ::1: tests and a
    local collector), where no network sits in between. No credentials before the host
    (a token goes in the query string, which patchd never logs). The transport is not
    trusted either way (the signatures decide); https keeps the token and the policy's
    contents private and makes withholding it harder.
    """
    if not isinstance(url, str) or not url:
        return "must be a URL"
    if len(url) > MAX_URL_CHARS:
        return f"must be at most {MAX_URL_CHARS} characters"
    if not (url.isascii() and url.isprintable()) or " " in url:
        return "must be printable ASCII without spaces (percent-encode the rest)"
    try:
        parts = urlsplit(url)
        port = parts.port  # a bad port raises here rather than at fetch time
    except ValueError:
        return "is not a valid URL"
    if port == 0:
        return "is not a valid URL (port 0)"
    return _url_parts_problem(parts)


def _url_parts_problem(parts: SplitResult) -> str | None:
    scheme, host = parts.scheme.lower(), (parts.hostname or "")
    if scheme not in ("https", "http") or not host:
        return "must be an https:// URL with a host"
    if parts.username is not None or parts.password is not None:
        return "must not carry credentials before the host (put a token in the query string)"
    if scheme == "http" and not _is_loopback(host):
        return "must use https (plain http only to 127.0.0.1, localhost or ::1)"
    return None


def _is_loopback(host: str) -> bool:
    import ipaddress  # only when a URL is checked: keeps the agent's start-up lean

    if host in LOOPBACK_HOSTS:
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    return any(address == ipaddress.ip_address(h) for h in ("127.0.0.1", "::1"))


def redact_url(url: str) -> str:
    """``scheme://host[:port]/path`` of ``url``: what logs, errors and records may show.

    The query string, fragment and any credentials are dropped: they may carry secrets.
    """
    try:
        parts = urlsplit(url)
        host, port = parts.hostname or "", parts.port
    except ValueError:
        return "(not a URL)"
    if ":" in host:
        host = f"[{host}]"
    netloc = f"{host}:{port}" if port is not None else host
    return f"{parts.scheme.lower()}://{netloc}{parts.path}"


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
    top = reader.mapping(
        loaded.data,
        (),
        {
            "tags",
            "backends",
            "state_dir",
            "log",
            "apt",
            "apk",
            "pacman",
            "policy",
            "agent",
            "reporting",
            "retention",
        },
    )
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
        apk=_apk_settings(reader, top.get("apk")),
        pacman=_pacman_settings(reader, top.get("pacman")),
        policy=_policy_settings(reader, top.get("policy")),
        agent=_agent_settings(reader, top.get("agent")),
        reporting=_reporting_settings(reader, top.get("reporting")),
        retention=_retention_settings(reader, top.get("retention")),
        source=path,
    )


def _apk_settings(reader: _Reader, value: Any) -> ApkSettings:
    section = reader.mapping(value, ("apk",), {"secdb"})
    files = reader.string_list(section.get("secdb"), ("apk", "secdb"), MAX_SECDB_FILES)
    return ApkSettings(
        tuple(reader.absolute_path(f, ("apk", "secdb", i)) for i, f in enumerate(files))
    )


def _pacman_settings(reader: _Reader, value: Any) -> PacmanSettings:
    section = reader.mapping(value, ("pacman",), {"lock_timeout", "advisories"})
    settings = PacmanSettings()
    lock_timeout = settings.lock_timeout_s
    if "lock_timeout" in section:
        lock_timeout = reader.seconds(section["lock_timeout"], ("pacman", "lock_timeout"), 0, 86400)
    advisories = None
    if "advisories" in section:
        advisories = reader.absolute_path(section["advisories"], ("pacman", "advisories"))
    return PacmanSettings(lock_timeout_s=lock_timeout, advisories=advisories)


def _agent_settings(reader: _Reader, value: Any) -> AgentSettings:
    section = reader.mapping(value, ("agent",), {"scan_interval", "refresh"})
    settings = AgentSettings()
    interval = settings.scan_interval
    if "scan_interval" in section:
        interval = reader.duration(
            section["scan_interval"],
            ("agent", "scan_interval"),
            MIN_SCAN_INTERVAL,
            MAX_SCAN_INTERVAL,
        )
    refresh = section.get("refresh", settings.refresh)
    if not isinstance(refresh, bool):
        raise reader.fail(("agent", "refresh"), "must be true or false")
    return AgentSettings(scan_interval=interval, refresh=refresh)


def _reporting_settings(reader: _Reader, value: Any) -> ReportingSettings:
    known = {"ca_file", "timeout", "max_queued_reports", "max_queued_bytes"}
    section = reader.mapping(value, ("reporting",), known)
    defaults = ReportingSettings()

    def count(name: str, low: int, high: int, default: int) -> int:
        found = section.get(name, default)
        if isinstance(found, bool) or not isinstance(found, int) or not low <= found <= high:
            raise reader.fail(("reporting", name), f"must be a whole number from {low} to {high}")
        return found

    ca_file = None
    if "ca_file" in section:
        ca_file = reader.absolute_path(section["ca_file"], ("reporting", "ca_file"))
    timeout = defaults.timeout_s
    if "timeout" in section:
        timeout = reader.seconds(section["timeout"], ("reporting", "timeout"), 1, 600)
    return ReportingSettings(
        ca_file=ca_file,
        timeout_s=timeout,
        max_queued_reports=count("max_queued_reports", 1, 100_000, defaults.max_queued_reports),
        max_queued_bytes=count(
            "max_queued_bytes", 1024 * 1024, 1024 * 1024 * 1024, defaults.max_queued_bytes
        ),
    )


def _retention_settings(reader: _Reader, value: Any) -> RetentionSettings:
    section = reader.mapping(
        value, ("retention",), {"history", "rollback_files", "rollback_files_max_bytes"}
    )
    defaults = RetentionSettings()
    history = defaults.history
    if "history" in section:
        history = reader.duration(
            section["history"], ("retention", "history"), MIN_HISTORY, MAX_HISTORY
        )
    files = min(defaults.rollback_files, history)
    if "rollback_files" in section:
        where = ("retention", "rollback_files")
        files = reader.duration(section["rollback_files"], where, MIN_ROLLBACK_FILES, MAX_HISTORY)
        if files > history:  # a run's files go with its record at the latest
            raise reader.fail(
                where, f"must not be longer than retention.history ({format_duration(history)})"
            )
    max_bytes = section.get("rollback_files_max_bytes", defaults.rollback_files_max_bytes)
    if (
        isinstance(max_bytes, bool)
        or not isinstance(max_bytes, int)
        or not MIN_ROLLBACK_BYTES <= max_bytes <= MAX_ROLLBACK_BYTES
    ):
        raise reader.fail(
            ("retention", "rollback_files_max_bytes"),
            f"must be a whole number of bytes from {MIN_ROLLBACK_BYTES} (64 MiB) "
            f"to {MAX_ROLLBACK_BYTES} (1 TiB)",
        )
    return RetentionSettings(
        history=history, rollback_files=files, rollback_files_max_bytes=max_bytes
    )


def _policy_settings(reader: _Reader, value: Any) -> PolicySettings:
    section = reader.mapping(
        value, ("policy",), {"file", "trust_root", "urls", "fetch_interval", "file_recheck"}
    )

    def path(name: str) -> Path | None:
        return reader.absolute_path(section[name], ("policy", name)) if name in section else None

    interval = DEFAULT_FETCH_INTERVAL
    if "fetch_interval" in section:
        interval = reader.duration(
            section["fetch_interval"],
            ("policy", "fetch_interval"),
            MIN_FETCH_INTERVAL,
            MAX_FETCH_INTERVAL,
        )
    recheck = DEFAULT_FILE_RECHECK_S
    if "file_recheck" in section:
        recheck = reader.seconds(
            section["file_recheck"], ("policy", "file_recheck"), 1, MAX_FILE_RECHECK_S
        )
    return PolicySettings(
        file=path("file"),
        trust_root=path("trust_root"),
        urls=reader.policy_urls(section.get("urls"), ("policy", "urls")),
        fetch_interval=interval,
        file_recheck_s=recheck,
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
