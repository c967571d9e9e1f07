"""Properties of :func:`patchd.policy.loader.load_policy`, the parser behind the signature check.

Whatever the bytes, loading either returns a policy or raises :class:`PolicyInvalid`
whose every problem is located (line and column ≥ 0) and formats as one line; and every
policy the simulator writes within the schema loads back with the same fields.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from patchd.policy.loader import PolicyInvalid, load_policy
from patchd.policy.model import MAX_TEXT, Policy
from patchd.timeutil import format_time
from tests.policy.simulator import FrozenClock, PolicySimulator

PROPERTY = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
SOURCE = "prop.yaml"
FIELDS = sorted(Policy.model_fields)
SIM = PolicySimulator(Path("/nonexistent"), FrozenClock(), keys=0)  # writes documents only


def check_refusal(error: PolicyInvalid) -> None:
    assert error.problems
    assert error.source == SOURCE
    for problem in error.problems:
        assert problem.line >= 0
        assert problem.column >= 0
        text = problem.format(SOURCE)
        assert len(text.splitlines()) == 1, text
        assert text.startswith(f"{SOURCE}:{problem.line}:{problem.column}: ")
    assert len(error.message.splitlines()) == 1
    assert error.message.startswith(error.problems[0].format(SOURCE))


def load_or_refuse(data: bytes) -> None:
    """Load ``data``: a policy, or PolicyInvalid with well-formed problems; nothing else."""
    try:
        loaded = load_policy(data, SOURCE)
    except PolicyInvalid as e:
        check_refusal(e)
    else:
        assert loaded.data == data


# -- arbitrary input ---------------------------------------------------------------------

YAML_PIECES = st.sampled_from(
    [
        "version: ", "name: ", "issued_at: ", "expires: ", "windows:", "rings:", "- ", "? ",
        ": ", "\n", "  ", "[", "]", "{", "}", ",", "&a ", "*a", "!!str ", "!!python/none ",
        "!x ", "<<: ", "---\n", "...\n", "'", '"', "#", "|\n", ">-\n", "%YAML 1.1\n",
        "%TAG ! tag:x,2000:\n", "0x1f", "1e400", ".nan", "~", "2026-12-01T09:00:00Z",
        "\t", "\x85", "\u2028", "\ufeff", "\\u0000", "é", "1_000", "0o17", "-", "=",
    ]
)  # fmt: skip


@PROPERTY
@given(st.binary(max_size=512))
def test_arbitrary_bytes_are_loaded_or_refused(data: bytes) -> None:
    load_or_refuse(data)


@PROPERTY
@given(st.text(max_size=512))
def test_arbitrary_text_is_loaded_or_refused(text: str) -> None:
    load_or_refuse(text.encode("utf-8", "surrogatepass"))


@PROPERTY
@given(st.lists(YAML_PIECES, max_size=60))
def test_yaml_token_soup_is_loaded_or_refused(pieces: list[str]) -> None:
    load_or_refuse("".join(pieces).encode())


# -- random structures, serialised as YAML ----------------------------------------------

TEXT = st.text(st.characters(exclude_categories=["Cs"]), max_size=24)
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    TEXT,
    st.sampled_from(
        ["1h", "0d", "02:00", "mon", "local", "UTC", "auto", "2026-12-01", "CVE-2024-6387"]
    ),
    st.datetimes(timezones=st.just(UTC)).map(format_time),
    st.datetimes(
        timezones=st.builds(timezone, st.timedeltas(-timedelta(hours=23), timedelta(hours=23)))
    ).map(datetime.isoformat),
)
KEYS = st.one_of(TEXT, st.sampled_from(FIELDS), st.integers(), st.booleans(), st.none())
STRUCTURES = st.recursive(
    SCALARS,
    lambda children: st.one_of(
        st.lists(children, max_size=4), st.dictionaries(KEYS, children, max_size=4)
    ),
    max_leaves=20,
)


def dump(document: object) -> bytes:
    return yaml.safe_dump(document, allow_unicode=True).encode()


@PROPERTY
@given(STRUCTURES)
def test_random_documents_are_loaded_or_refused(document: object) -> None:
    load_or_refuse(dump(document))


@PROPERTY
@given(st.dictionaries(st.sampled_from(FIELDS), STRUCTURES, max_size=4))
def test_policies_with_random_fields_are_loaded_or_refused(fields: dict[str, object]) -> None:
    load_or_refuse(dump({**SIM.document(1), **fields}))


NESTED: dict[str, Callable[[object], object]] = {
    "windows": lambda v: {"w": v},
    "window-body": lambda v: {"w": {"timezone": "UTC", "weekly": v}},
    "monthly": lambda v: {"w": {"timezone": "Europe/Berlin", "monthly": v}},
    "blackouts": lambda v: [v],
    "segments": lambda v: [{"name": "s", "match": v}],
    "rings": lambda v: [{"name": "r", "members": v, "deferrals": v}],
    "rules": lambda v: [{"action": "auto", "match": v}],
    "exceptions": lambda v: [v],
    "emergency": lambda v: [{"name": "e", "cves": ["CVE-2024-6387"], "packages": [v]}],
    "health_checks": lambda v: [v],
    "deadlines": lambda v: v,
    "snapshots": lambda v: v,
    "reboot": lambda v: v,
}


@PROPERTY
@given(st.sampled_from(sorted(NESTED)), STRUCTURES)
def test_policies_with_random_nested_values_are_loaded_or_refused(
    where: str, value: object
) -> None:
    field = "windows" if where in ("window-body", "monthly") else where
    load_or_refuse(dump({**SIM.document(1), field: NESTED[where](value)}))


# -- valid policies round-trip ------------------------------------------------------------

NAMES = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}", fullmatch=True)
OFFSETS = st.integers(min_value=-14 * 60, max_value=14 * 60).map(
    lambda minutes: timezone(timedelta(minutes=minutes))
)
INSTANTS = st.datetimes(
    min_value=datetime(1970, 1, 1), max_value=datetime(2200, 1, 1), timezones=st.just(UTC)
)


# PyYAML writes NEL and the Unicode separators raw, then reads them as line breaks.
DESCRIPTIONS = st.text(
    st.characters(exclude_categories=["Cs"], exclude_characters="\x85\u2028\u2029"),
    max_size=MAX_TEXT,
)


@st.composite
def valid_policies(draw: st.DrawFn) -> dict[str, Any]:
    issued_at = draw(INSTANTS)
    expires = issued_at + draw(st.timedeltas(timedelta(seconds=1), timedelta(days=3650)))
    zone = draw(OFFSETS)
    as_text = draw(st.sampled_from(["utc", "offset", "date-only"]))
    if as_text == "utc":
        issued_text, expires_text = format_time(issued_at), format_time(expires)
    elif as_text == "offset":
        issued_text = issued_at.astimezone(zone).isoformat()
        expires_text = expires.astimezone(zone).isoformat()
    else:
        issued_at = issued_at.replace(hour=0, minute=0, second=0, microsecond=0)
        expires = issued_at + timedelta(days=draw(st.integers(1, 3650)))
        issued_text, expires_text = issued_at.date().isoformat(), expires.date().isoformat()
    document = SIM.document(
        draw(st.integers(min_value=1, max_value=2**53)),
        name=draw(NAMES),
        description=draw(DESCRIPTIONS),
        issued_at=issued_text,
        expires=expires_text,
        reboot={
            "allowed": draw(st.booleans()),
            "warn_users_minutes": draw(st.integers(0, 1440)),
        },
        rings=[
            {
                "name": "canary",
                "members": {"percentage": draw(st.floats(0, 100))},
                "deferrals": {"default": f"{draw(st.integers(0, 365))}d"},
            }
        ],
    )
    document["_expected"] = (issued_at, expires)
    return document


@PROPERTY
@given(valid_policies())
def test_valid_policies_load_and_round_trip(document: dict[str, Any]) -> None:
    issued_at, expires = document.pop("_expected")
    data = dump(document)
    loaded = load_policy(data, SOURCE)
    policy = loaded.policy
    assert loaded.data == data
    assert loaded.sha256 == hashlib.sha256(data).hexdigest()
    assert (policy.version, policy.name, policy.description) == (
        document["version"],
        document["name"],
        document["description"],
    )
    assert (policy.issued_at, policy.expires) == (issued_at, expires)
    assert policy.issued_at.tzinfo is not None
    assert policy.reboot.allowed == document["reboot"]["allowed"]
    assert policy.reboot.warn_users_minutes == document["reboot"]["warn_users_minutes"]
    (ring,) = policy.rings
    assert ring.members.percentage == document["rings"][0]["members"]["percentage"]
    assert ring.deferrals.default == timedelta(
        days=int(document["rings"][0]["deferrals"]["default"][:-1])
    )
