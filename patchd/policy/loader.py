"""From policy bytes to a validated policy, with every problem located in the file.

Parsing is safe (:mod:`patchd.safeyaml`: no tags, bounded, duplicate keys refused,
UTF-8 only); the schema is strict (:mod:`patchd.policy.model`); maintenance windows and
cross-references are checked with the exact path of each value, so every error reads
``FILE:LINE:COL: path.to.field: message``. Loading does not judge signatures: callers
verify before they load (see :mod:`patchd.policy.acceptance`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import ValidationError

from patchd import safeyaml
from patchd.errors import PolicyError
from patchd.policy.model import Policy
from patchd.policy.window_spec import Schedule, WindowSpecError, parse_schedule

MAX_POLICY_BYTES = 1024 * 1024
OUT_OF_RANGE = "a time is out of range: years 1 to 9999, also once converted to UTC"

Path = tuple[str | int, ...]


@dataclass(frozen=True)
class Problem:
    """One thing wrong (or worth a warning) in a policy, with where it stands."""

    path: Path
    line: int
    column: int
    message: str
    level: Literal["error", "warning"] = "error"

    def format(self, source: str) -> str:
        """One line, whatever the document's keys and tags hold (they are shown escaped)."""
        dotted = ".".join(str(p) for p in self.path) or "(document)"
        prefix = "warning: " if self.level == "warning" else ""
        return _one_line(f"{source}:{self.line}:{self.column}: {dotted}: {prefix}{self.message}")


def _one_line(text: str) -> str:
    # A key such as "x\nFILE:1:1: all fine" must not forge a line of its own.
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode() for c in text)


class PolicyInvalid(PolicyError):
    """A policy that does not parse or validate; ``problems`` lists every error found."""

    def __init__(self, source: str, problems: Sequence[Problem]) -> None:
        first = problems[0].format(source)
        more = (
            f" (and {len(problems) - 1} more: run `patchd policy check`)"
            if len(problems) > 1
            else ""
        )
        super().__init__(f"{first}{more}")
        self.source = source
        self.problems = tuple(problems)


@dataclass(frozen=True)
class LoadedPolicy:
    """A validated policy, its schedule, and the exact bytes it came from."""

    policy: Policy
    schedule: Schedule
    data: bytes
    source: str
    locations: safeyaml.LoadedYaml

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()

    def problem(
        self, path: Path, message: str, level: Literal["error", "warning"] = "error"
    ) -> Problem:
        line, column = self.locations.where_value(path)
        return Problem(path, line, column, message, level)


def _schema_problems(error: ValidationError, loaded: safeyaml.LoadedYaml) -> list[Problem]:
    problems = []
    for item in error.errors(include_url=False):
        path = _data_path(loaded.data, item["loc"])
        # A wrong value is pointed at; a field that should not be there, at its name.
        unknown_field = item["type"] == "extra_forbidden"
        line, column = loaded.where(path) if unknown_field else loaded.where_value(path)
        message = str(item["msg"]).removeprefix("Value error, ")
        problems.append(Problem(path, line, column, message))
    return problems


_MISSING = object()


def _child(node: Any, part: str | int) -> Any:
    """``node[part]`` where ``node`` is a mapping or list that has it, else ``_MISSING``."""
    if isinstance(node, dict):
        return node.get(part, _MISSING)
    if isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
        return node[part]
    return _MISSING


def _data_path(data: Any, loc: Sequence[str | int]) -> Path:
    """The part of pydantic's error location that names real places in the document.

    pydantic adds its own tags (``function-after[...]``) to locations; those are skipped.
    A required field that is missing ends the path (it is located at its parent).
    """
    path: list[str | int] = []
    node = data
    for part in loc:
        child = _child(node, part)
        if child is not _MISSING:
            node = child
        elif isinstance(node, dict) and isinstance(part, str) and "[" not in part:
            path.append(part)
            break
        else:
            continue
        path.append(part)
    return tuple(path)


def _reference_problems(loaded: LoadedPolicy) -> list[Problem]:
    policy = loaded.policy
    problems = []
    if policy.expires <= policy.issued_at:
        problems.append(loaded.problem(("expires",), "must be after issued_at"))
    segments = {s.name for s in policy.segments}
    for i, ring in enumerate(policy.rings):
        for j, name in enumerate(ring.members.segments):
            if name not in segments:
                problems.append(
                    loaded.problem(
                        ("rings", i, "members", "segments", j), f"no segment named {name!r}"
                    )
                )
    for i, segment in enumerate(policy.segments):
        for j, name in enumerate(segment.windows):
            if name not in loaded.schedule.windows:
                problems.append(
                    loaded.problem(("segments", i, "windows", j), f"no window named {name!r}")
                )
    return problems


def load_policy(data: bytes, source: str) -> LoadedPolicy:
    """Parse and validate policy bytes; raise :class:`PolicyInvalid` listing every problem."""
    if len(data) > MAX_POLICY_BYTES:
        raise PolicyInvalid(source, [Problem((), 0, 0, f"larger than {MAX_POLICY_BYTES} bytes")])
    try:
        parsed = safeyaml.load(data, max_bytes=MAX_POLICY_BYTES)
    except safeyaml.YamlError as e:
        raise PolicyInvalid(source, [Problem(e.path, e.line, e.column, e.message)]) from None
    if not isinstance(parsed.data, dict):
        raise PolicyInvalid(source, [Problem((), 1, 1, "a policy is a mapping of fields")])
    try:
        policy = Policy.model_validate(parsed.data)
        schedule = parse_schedule(policy.windows, policy.blackouts, policy.splay)
    except ValidationError as e:
        raise PolicyInvalid(source, _schema_problems(e, parsed)) from None
    except WindowSpecError as e:
        line, column = parsed.where_value(e.path)
        raise PolicyInvalid(source, [Problem(e.path, line, column, e.message)]) from None
    except OverflowError:  # "0001-01-01T00:00+01:00": an offset moves it out of datetime's range
        raise PolicyInvalid(source, [Problem((), 1, 1, OUT_OF_RANGE)]) from None
    loaded = LoadedPolicy(
        policy=policy, schedule=schedule, data=data, source=source, locations=parsed
    )
    problems = _reference_problems(loaded)
    if problems:
        raise PolicyInvalid(source, problems)
    return loaded
