"""The policy document's schema: what admins write, validated strictly at the trust boundary.

pydantic models, frozen, with unknown fields refused and no type coercion (``"5"`` is
not a number). Durations (``3d``, ``12h``) and instants (ISO 8601 with a zone) are
parsed here; maintenance windows are validated by :mod:`patchd.policy.window_spec`
through the loader, which knows where each value stands in the file. Every list and
string is bounded. docs/policy.md describes each field for admins.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, time, timedelta
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    Strict,
    StringConstraints,
    model_validator,
)

from patchd.models import Classification, Severity
from patchd.policy.durations import parse_duration

MAX_ITEMS = 256  # segments, rings, rules, health checks, globs per selector
MAX_EXCEPTIONS = 1024
MAX_APPROVALS = 10_000
MAX_TEXT = 1024  # reasons, descriptions
MAX_DEFERRAL = timedelta(days=365)

Name = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")]
Glob = Annotated[str, StringConstraints(min_length=1, max_length=256)]
Tag = Annotated[str, StringConstraints(min_length=1, max_length=128)]
Text = Annotated[str, StringConstraints(max_length=MAX_TEXT)]
Cve = Annotated[str, StringConstraints(pattern=r"^CVE-\d{4}-\d{4,7}$")]


def _duration(value: object) -> timedelta:
    if not isinstance(value, str):
        raise ValueError("must be a duration such as 12h, 3d or 0d")
    delta = parse_duration(value, minimum=timedelta(0))
    if delta > MAX_DEFERRAL:
        raise ValueError(f"at most {MAX_DEFERRAL.days}d")
    return delta


def _instant(value: object) -> datetime:
    """An ISO 8601 time with a zone (``2026-12-01T09:00:00Z``); a bare date means its midnight UTC."""
    if not isinstance(value, str):
        raise ValueError("must be an ISO 8601 time, e.g. 2026-12-01T09:00:00Z")
    text = value.strip()
    try:
        if re.fullmatch(r"\d{4}-\d{2}-\d{2}", text):
            return datetime.combine(date.fromisoformat(text), time(0), tzinfo=UTC)
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError("must be an ISO 8601 time, e.g. 2026-12-01T09:00:00Z") from None
    if moment.tzinfo is None:
        raise ValueError("needs a time zone (e.g. Z or +01:00)")
    try:
        return moment.astimezone(UTC)
    except OverflowError:  # 0001-01-01T00:00+01:00 is before year 1 in UTC
        raise ValueError("is outside the years 1 to 9999 in UTC") from None


Duration = Annotated[timedelta, BeforeValidator(_duration)]
# Enum values arrive as strings; strict mode would want enum instances.
ClassificationName = Annotated[Classification, Strict(False)]
SeverityName = Annotated[Severity, Strict(False)]
Instant = Annotated[datetime, BeforeValidator(_instant)]


_CONSTRAINT = re.compile(r"^\s*(>=|<=|==|!=|>|<)\s*([0-9][0-9A-Za-z.]*)\s*$")


def parse_version_range(text: str) -> list[tuple[str, tuple[int | str, ...]]]:
    """``">=11, <14"`` → ``[(">=", (11,)), ("<", (14,))]``; ValueError if malformed."""
    constraints = []
    for part in text.split(","):
        match = _CONSTRAINT.match(part)
        if match is None:
            raise ValueError(f"{part.strip()!r} is not a constraint like >=11 or <14.2")
        constraints.append((match[1], version_key(match[2])))
    return constraints


def version_key(version: str) -> tuple[int | str, ...]:
    """Dotted versions compared part by part, numerically where numeric: 9.10 > 9.9."""
    return tuple(int(p) if p.isdigit() else p for p in re.split(r"[.]", version) if p)


def _range(text: str) -> str:
    parse_version_range(text)
    return text


def _unique(values: list[str]) -> list[str]:
    if len(set(values)) != len(values):
        raise ValueError("names must be unique")
    return values


def _named(items: list[Any]) -> list[Any]:
    _unique([item.name for item in items])
    return items


class _Model(BaseModel):
    # Schemas are built on first validation: an agent that never parses a policy stays small.
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, defer_build=True)


class SegmentMatch(_Model):
    """Which endpoints belong to a segment. Every given condition must hold; a list means any of."""

    os_family: list[Name] | None = Field(default=None, max_length=MAX_ITEMS)
    os_id: list[Name] | None = Field(default=None, max_length=MAX_ITEMS)
    os_version: Annotated[str, StringConstraints(max_length=128), AfterValidator(_range)] | None = (
        None
    )
    machine_type: (
        list[Literal["server", "laptop", "desktop", "virtual-machine", "container"]] | None
    ) = Field(default=None, max_length=5)
    hostname: list[Glob] | None = Field(default=None, max_length=MAX_ITEMS)
    tags_all: list[Tag] = Field(default_factory=list, max_length=MAX_ITEMS)
    tags_any: list[Tag] = Field(default_factory=list, max_length=MAX_ITEMS)
    tags_none: list[Tag] = Field(default_factory=list, max_length=MAX_ITEMS)


class Segment(_Model):
    """A named group of endpoints and the maintenance windows that apply to them."""

    name: Name
    match: SegmentMatch = SegmentMatch()
    windows: list[Name] = Field(default_factory=list, max_length=MAX_ITEMS)


class RingMembers(_Model):
    """Who is in a ring: endpoints of these segments, with these tags, or in this share of the fleet."""

    segments: list[Name] = Field(default_factory=list, max_length=MAX_ITEMS)
    tags: list[Tag] = Field(default_factory=list, max_length=MAX_ITEMS)
    percentage: Annotated[float, Field(ge=0, le=100)] | None = None


class Deferrals(_Model):
    """How long a ring waits after an update first appears, by severity, else classification."""

    default: Duration = timedelta(0)
    security: Duration | None = None
    bugfix: Duration | None = None
    enhancement: Duration | None = None
    other: Duration | None = None
    critical: Duration | None = None
    important: Duration | None = None
    moderate: Duration | None = None
    low: Duration | None = None
    unknown: Duration | None = None

    def for_update(self, classification: Classification, severity: Severity) -> timedelta:
        """A severity's entry wins over a classification's, which wins over ``default``."""
        by_severity: timedelta | None = getattr(self, severity.value)
        if by_severity is not None:
            return by_severity
        by_class: timedelta | None = getattr(self, classification.value)
        return by_class if by_class is not None else self.default


class Ring(_Model):
    """A rollout stage: its members, and how long they defer updates."""

    name: Name
    members: RingMembers = RingMembers()
    deferrals: Deferrals = Deferrals()


class RuleMatch(_Model):
    classification: list[ClassificationName] | None = Field(default=None, max_length=4)
    severity: list[SeverityName] | None = Field(default=None, max_length=5)
    packages: list[Glob] | None = Field(default=None, max_length=MAX_ITEMS)
    backends: list[Name] | None = Field(default=None, max_length=32)


class Rule(_Model):
    """What to do with matching updates: install automatically, after approval, or never."""

    match: RuleMatch = RuleMatch()
    action: Literal["auto", "approval", "never"]
    approved: list[Annotated[str, StringConstraints(min_length=1, max_length=512)]] = Field(
        default_factory=list, max_length=MAX_APPROVALS
    )


class Deadlines(_Model):
    """Time after an update first appears by which it must be installed, whatever the ring."""

    critical: Duration | None = None
    important: Duration | None = None
    moderate: Duration | None = None
    low: Duration | None = None
    unknown: Duration | None = None
    grace: Duration = timedelta(0)

    def for_severity(self, severity: Severity) -> timedelta | None:
        value: timedelta | None = getattr(self, severity.value)
        return value


class PolicyException(_Model):
    """Updates held back on purpose, with who decided, why, and until when."""

    name: Name
    packages: list[Glob] = Field(default_factory=list, max_length=MAX_ITEMS)
    updates: list[Annotated[str, StringConstraints(min_length=1, max_length=512)]] = Field(
        default_factory=list, max_length=MAX_ITEMS
    )
    reason: Annotated[str, StringConstraints(min_length=1, max_length=MAX_TEXT)]
    owner: Annotated[str, StringConstraints(min_length=1, max_length=256)]
    expires: Instant

    @model_validator(mode="after")
    def _selects_something(self) -> PolicyException:
        if not self.packages and not self.updates:
            raise ValueError("an exception needs packages or updates")
        return self


class EmergencyPackage(_Model):
    name: Glob
    version: Annotated[
        str, StringConstraints(min_length=1, max_length=256)
    ]  # at least this version


class Emergency(_Model):
    """Install at once, overriding deferrals and windows (still with snapshots and health checks)."""

    name: Name
    cves: list[Cve] = Field(default_factory=list, max_length=MAX_ITEMS)
    packages: list[EmergencyPackage] = Field(default_factory=list, max_length=MAX_ITEMS)
    reason: Text = ""

    @model_validator(mode="after")
    def _selects_something(self) -> Emergency:
        if not self.cves and not self.packages:
            raise ValueError("an emergency needs cves or packages")
        return self


class RebootSettings(_Model):
    allowed: bool = True
    only_in_window: bool = True
    warn_users_minutes: Annotated[int, Field(ge=0, le=1440)] = 10


class SnapshotSettings(_Model):
    mode: Literal["required", "preferred", "off"] = "preferred"
    providers: list[
        Literal["btrfs", "snapper", "zfs", "lvm", "windows-restore-point", "apfs", "package-state"]
    ] = Field(default_factory=list, max_length=8)
    keep: Annotated[int, Field(ge=1, le=100)] = 3


class HealthCheck(_Model):
    """One check after patching; exactly one of the kinds is given."""

    name: Name
    systemd_unit: Annotated[str, StringConstraints(max_length=256)] | None = None
    tcp: Annotated[str, StringConstraints(pattern=r"^[^\s:]+:\d{1,5}$")] | None = None  # host:port
    http: Annotated[str, StringConstraints(pattern=r"^https?://\S+$", max_length=2048)] | None = (
        None
    )
    status: Annotated[int, Field(ge=100, le=599)] = 200
    command: list[Annotated[str, StringConstraints(max_length=4096)]] | None = Field(
        default=None, min_length=1, max_length=64
    )
    exit_code: Annotated[int, Field(ge=0, le=255)] = 0
    process: Annotated[str, StringConstraints(max_length=256)] | None = None
    retries: Annotated[int, Field(ge=0, le=20)] = 3
    interval: Duration = timedelta(seconds=10)
    timeout: Duration = timedelta(seconds=30)

    @model_validator(mode="after")
    def _one_kind(self) -> HealthCheck:
        kinds = [
            k for k in ("systemd_unit", "tcp", "http", "command", "process") if getattr(self, k)
        ]
        if len(kinds) != 1:
            raise ValueError("give exactly one of systemd_unit, tcp, http, command, process")
        return self


class ReportingSettings(_Model):
    interval: Duration = timedelta(hours=1)


class Policy(_Model):
    """A whole policy document."""

    version: Annotated[int, Field(ge=1, le=2**53)]
    name: Name
    description: Text = ""
    issued_at: Instant
    expires: Instant
    segments: Annotated[list[Segment], AfterValidator(_named)] = Field(
        default_factory=list, max_length=MAX_ITEMS
    )
    rings: Annotated[list[Ring], AfterValidator(_named)] = Field(
        default_factory=list, max_length=MAX_ITEMS
    )
    rules: list[Rule] = Field(default_factory=list, max_length=MAX_ITEMS)
    deadlines: Deadlines = Deadlines()
    # Validated by window_spec.parse_schedule in the loader, which reports exact locations.
    windows: dict[str, Any] = Field(default_factory=dict, max_length=MAX_ITEMS)
    blackouts: list[Any] = Field(default_factory=list, max_length=MAX_ITEMS)
    splay: Any = None
    exceptions: Annotated[list[PolicyException], AfterValidator(_named)] = Field(
        default_factory=list, max_length=MAX_EXCEPTIONS
    )
    emergency: Annotated[list[Emergency], AfterValidator(_named)] = Field(
        default_factory=list, max_length=MAX_ITEMS
    )
    reboot: RebootSettings = RebootSettings()
    snapshots: SnapshotSettings = SnapshotSettings()
    health_checks: Annotated[list[HealthCheck], AfterValidator(_named)] = Field(
        default_factory=list, max_length=MAX_ITEMS
    )
    reporting: ReportingSettings = ReportingSettings()
