"""Tests for patchd.discovery.eol: the shipped end-of-life table and its lookup.

The shipped table is tested as data (coverage, order, the dates admins rely on) and through
the lookup, with a clock passed in; malformed tables are built from a small valid one.
"""

from __future__ import annotations

import copy
import dataclasses
import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from patchd.discovery.eol import EolStatus, EolTable, eol_status, load_table, parse_table

REVIEW_DAY = date(2026, 12, 4)  # the day the table was reviewed; it must not claim later


def status(os_id: str, version_id: str, today: date = REVIEW_DAY, **kw: Any) -> EolStatus:
    found = eol_status(os_id, version_id, today=today, **kw)
    assert found is not None, f"{os_id} {version_id} not found"
    return found


# --- the dates admins rely on ---------------------------------------------------------


@dataclass(frozen=True)
class Known:
    os_id: str
    version: str
    release: str
    security_end: date
    extended_end: date | None


KNOWN = [
    Known("debian", "11", "11", date(2024, 8, 14), date(2026, 8, 31)),
    Known("debian", "12", "12", date(2026, 6, 10), date(2028, 6, 30)),
    Known("debian", "13", "13", date(2028, 8, 9), date(2030, 6, 30)),
    Known("ubuntu", "18.04", "18.04", date(2023, 5, 31), date(2028, 4, 30)),
    Known("ubuntu", "20.04", "20.04", date(2025, 5, 31), date(2030, 4, 30)),
    Known("ubuntu", "24.10", "24.10", date(2025, 7, 10), None),
    Known("rhel", "7.9", "7", date(2024, 6, 30), date(2028, 6, 30)),
    Known("rhel", "9.4", "9", date(2032, 5, 31), date(2035, 5, 31)),
    Known("centos", "7", "7", date(2024, 6, 30), None),
    Known("centos", "8", "8", date(2024, 5, 31), None),
    Known("almalinux", "8.10", "8", date(2029, 3, 1), None),
    Known("rocky", "8.10", "8", date(2029, 5, 31), None),
    Known("fedora", "40", "40", date(2025, 5, 13), None),
    Known("amzn", "2", "2", date(2026, 6, 30), None),
    Known("amzn", "2023", "2023", date(2029, 6, 30), None),
    Known("sles", "12.5", "12 SP5", date(2024, 10, 31), date(2027, 10, 31)),
    Known("sles", "15.7", "15 SP7", date(2031, 7, 31), date(2034, 7, 31)),
    Known("opensuse-leap", "15.6", "15.6", date(2026, 4, 30), None),
    Known("alpine", "3.20.3", "3.20", date(2026, 4, 1), None),
    Known("windows", "10.0.19045", "10 22H2", date(2025, 10, 14), date(2028, 10, 10)),
    Known("windows", "10.0.22631", "11 23H2", date(2025, 11, 11), None),
    Known("windows-server", "6.3.9600", "2012 R2", date(2023, 10, 10), date(2026, 10, 13)),
    Known("windows-server", "10.0.20348", "2022", date(2031, 10, 14), None),
]


@pytest.mark.parametrize("known", KNOWN, ids=lambda k: f"{k.os_id}-{k.version}")
def test_known_release_has_the_vendors_dates(known: Known) -> None:
    found = status(known.os_id, known.version)
    assert (found.release, found.security_end, found.extended_end) == (
        known.release,
        known.security_end,
        known.extended_end,
    )


BOUNDARIES = [
    ("debian", "11", "security", date(2024, 8, 14)),
    ("debian", "11", "extended", date(2026, 8, 31)),
    ("ubuntu", "20.04", "security", date(2025, 5, 31)),
    ("rhel", "7", "extended", date(2028, 6, 30)),
    ("sles", "15.5", "security", date(2024, 12, 31)),
    ("alpine", "3.19.1", "security", date(2025, 11, 1)),
    ("amzn", "2", "security", date(2026, 6, 30)),
    ("windows", "10.0.19045", "security", date(2025, 10, 14)),
    ("windows", "10.0.19045", "extended", date(2028, 10, 10)),
    ("windows-server", "10.0.17763", "security", date(2029, 1, 9)),
]
DAYS = [(-1, "day-before"), (0, "day-of"), (1, "day-after")]


@pytest.mark.parametrize(
    ("os_id", "version", "kind", "end", "offset"),
    [(*b, offset) for b in BOUNDARIES for offset, _ in DAYS],
    ids=[f"{b[0]}-{b[1]}-{b[2]}-{label}" for b in BOUNDARIES for _, label in DAYS],
)
def test_past_only_from_the_day_after_the_end(
    os_id: str, version: str, kind: str, end: date, offset: int
) -> None:
    found = status(os_id, version, today=end + timedelta(days=offset))
    past = found.past_security_end if kind == "security" else found.past_extended_end
    assert past is (offset > 0)


@pytest.mark.parametrize(
    ("os_id", "version", "past_security", "past_extended"),
    [
        ("debian", "11", True, True),
        ("debian", "12", True, False),
        ("ubuntu", "22.04", False, False),
        ("rhel", "8.10", False, False),
        ("centos", "7", True, False),
        ("windows", "10.0.19045", True, False),
        ("windows", "10.0.26200", False, False),
        ("fedora", "42", True, False),
    ],
    ids=str,
)
def test_status_on_the_review_day(
    os_id: str, version: str, past_security: bool, past_extended: bool
) -> None:
    found = status(os_id, version)
    assert (found.past_security_end, found.past_extended_end) == (past_security, past_extended)


def test_no_extended_date_is_never_past_extended() -> None:
    found = status("macos", "11.7.10", today=date(2099, 1, 1))
    assert found.extended_end is None
    assert found.past_security_end is True
    assert found.past_extended_end is False


# --- normalisation --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("os_id", "version", "release"),
    [
        ("rocky", "9.4", "9"),
        ("rhel", "10.0", "10"),
        ("ol", "8.10", "8"),
        ("almalinux", "9.5", "9"),
        ("debian", "12.5", "12"),
        ("sles", "15.5", "15 SP5"),
        ("sles", "12.5", "12 SP5"),
        ("sles", "15 sp7", "15 SP7"),
        ("alpine", "3.19.1", "3.19"),
        ("alpine", "3.19", "3.19"),
        ("opensuse-leap", "16.0", "16.0"),
        ("ubuntu", "22.04", "22.04"),
        ("macos", "14.5", "14"),
        ("macos", "26.1", "26"),
        ("amzn", "2023", "2023"),
        ("windows", "10.0.19045", "10 22H2"),
        ("windows", "10.0.19045.4529", "10 22H2"),
        ("windows", "19044", "10 21H2"),
        ("windows", "10.0.22631", "11 23H2"),
        ("windows", "10.0.26100", "11 24H2"),
        ("windows", "23H2", "11 23H2"),
        ("windows", "10 22h2", "10 22H2"),
        ("windows-server", "10.0.26100", "2025"),
        ("windows-server", "10.0.20348", "2022"),
        ("windows-server", "10.0.17763", "2019"),
        ("windows-server", "10.0.14393", "2016"),
        ("windows-server", "6.3.9600", "2012 R2"),
        ("windows-server", "2012 r2", "2012 R2"),
        ("windows-server", "21H2", "2022"),
        (" Ubuntu ", " 22.04 ", "22.04"),
    ],
    ids=str,
)
def test_version_is_normalised_per_product(os_id: str, version: str, release: str) -> None:
    assert status(os_id, version).release == release


@given(point=st.integers(min_value=0, max_value=999))
def test_any_point_release_maps_to_its_major(point: int) -> None:
    assert status("rhel", f"9.{point}").release == "9"
    assert status("alpine", f"3.19.{point}").release == "3.19"
    assert status("windows", f"10.0.22631.{point}").release == "11 23H2"


@pytest.mark.parametrize(
    ("os_id", "version"),
    [
        ("gentoo", "2.15"),
        ("", ""),
        ("debian", "7"),
        ("debian", "bookworm"),
        ("ubuntu", "22.05"),
        ("ubuntu", "22"),
        ("fedora", "37"),
        ("rhel", "6.10"),
        ("rhel", "abc"),
        ("sles", "15"),
        ("sles", "11.4"),
        ("macos", "10.15.7"),
        ("windows", "22H2"),
        ("windows", "21H2"),
        ("windows", "10.0.99999"),
        ("windows", "2019"),
        ("windows-server", "10.0.22631"),
        ("windows-server", "10.0.19045"),
        ("debian", "12" + " " * 100),  # over MAX_INPUT_CHARS: not read at all
    ],
    ids=lambda v: str(v)[:20],
)
def test_unknown_product_or_release_is_none(os_id: str, version: str) -> None:
    assert eol_status(os_id, version, today=REVIEW_DAY) is None


# --- ID_LIKE fallback -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("os_id", "version", "id_like", "product", "release"),
    [
        ("pop", "22.04", ["ubuntu", "debian"], "ubuntu", "22.04"),
        ("raspbian", "12", ["debian"], "debian", "12"),
        ("neon", "24.04", ["ubuntu", "debian"], "ubuntu", "24.04"),
        ("eurolinux", "9", ["rhel", "fedora", "centos"], "rhel", "9"),
    ],
    ids=str,
)
def test_id_like_is_used_when_the_version_is_a_parent_release(
    os_id: str, version: str, id_like: list[str], product: str, release: str
) -> None:
    found = status(os_id, version, id_like=id_like)
    assert (found.product, found.release) == (product, release)


@pytest.mark.parametrize(
    ("os_id", "version", "id_like"),
    [
        ("linuxmint", "21.3", ["ubuntu", "debian"]),  # Mint's own numbering
        ("pureos", "10.0", ["debian"]),  # based on Debian 11: never normalise a derivative
        ("eurolinux", "9.3", ["rhel", "fedora", "centos"]),
        ("rocky", "7", ["rhel", "centos", "fedora"]),  # ID known: no fallback to RHEL 7
        ("centos", "6", ["rhel", "fedora"]),
        ("someos", "1", ["otheros"]),
        ("pop", "22.04", [*(f"x{n}" for n in range(8)), "ubuntu"]),  # past MAX_ID_LIKE
    ],
    ids=str,
)
def test_id_like_never_guesses(os_id: str, version: str, id_like: list[str]) -> None:
    assert eol_status(os_id, version, id_like=id_like, today=REVIEW_DAY) is None


# --- the shipped table ----------------------------------------------------------------

REQUIRED = {
    "debian": [str(n) for n in range(8, 14)],
    "ubuntu": [f"{y}.{m}" for y in range(14, 26) for m in ("04", "10")],
    "rhel": ["7", "8", "9", "10"],
    "centos": ["7", "8", "9", "10"],
    "rocky": ["8", "9", "10"],
    "almalinux": ["8", "9", "10"],
    "ol": ["7", "8", "9"],
    "fedora": [str(n) for n in range(38, 44)],
    "amzn": ["2", "2023"],
    "sles": ["12 SP5", *(f"15 SP{n}" for n in range(3, 8))],
    "opensuse-leap": ["15.3", "15.4", "15.5", "15.6", "16.0"],
    "alpine": [f"3.{n}" for n in range(16, 24)],
    "macos": ["11", "12", "13", "14", "15", "26"],
    "windows": ["10 21H2", "10 22H2", "11 21H2", "11 22H2", "11 23H2", "11 24H2", "11 25H2"],
    "windows-server": ["2012 R2", "2016", "2019", "2022", "2025"],
}


@pytest.mark.parametrize("product", sorted(REQUIRED))
def test_table_covers_the_required_releases(product: str) -> None:
    listed = {r.release for r in load_table().products[product]}
    assert set(REQUIRED[product]) <= listed


def test_table_was_not_reviewed_in_the_future() -> None:
    table = load_table()
    assert table.reviewed <= REVIEW_DAY
    assert table.notes, "the table must say what its dates mean"


@pytest.mark.parametrize("product", sorted(REQUIRED))
def test_entries_are_sane_and_in_release_order(product: str) -> None:
    table = load_table()
    releases = table.products[product]
    assert [r.released for r in releases] == sorted(r.released for r in releases)
    for r in releases:
        assert r.released <= table.reviewed, f"{r.release} released after the review"
        assert r.released < r.security_end
        assert r.extended_end is None or r.security_end <= r.extended_end
    assert table.sources[product].startswith("https://")


@pytest.mark.parametrize("product", ["macos", "fedora"])
def test_projected_dates_are_marked_estimated(product: str) -> None:
    table = load_table()
    future = [r for r in table.products[product] if r.security_end > table.reviewed]
    assert future
    assert all(r.estimated for r in future)
    assert all(r.estimated for r in table.products["macos"])


@pytest.mark.parametrize(
    ("product", "release"),
    [(p, r.release) for p, rs in load_table().products.items() for r in rs],
    ids=str,
)
def test_every_release_is_found_by_its_own_name(product: str, release: str) -> None:
    found = status(product, release)
    assert (found.product, found.release) == (product, release)


def test_table_is_loaded_once() -> None:
    assert load_table() is load_table()


def test_as_dict_is_json_ready_with_iso_dates() -> None:
    found = status("debian", "12")
    as_dict = found.as_dict()
    assert set(as_dict) == {f.name for f in dataclasses.fields(EolStatus)}
    assert as_dict["security_end"] == "2026-06-10"
    assert as_dict["table_reviewed"] == load_table().reviewed.isoformat()
    assert json.loads(json.dumps(as_dict)) == as_dict


# --- malformed tables fail loudly -----------------------------------------------------


def minimal_table() -> dict[str, Any]:
    return {
        "schema_version": 1,
        "reviewed": "2026-12-04",
        "sources": {"demo": "https://example.org/lifecycle"},
        "version_schemes": {"demo": "major"},
        "products": {
            "demo": [
                {
                    "release": "1",
                    "name": "Demo 1",
                    "released": "2020-01-01",
                    "security_end": "2022-01-01",
                    "extended_end": None,
                },
                {
                    "release": "2",
                    "name": "Demo 2",
                    "released": "2021-01-01",
                    "security_end": "2023-01-01",
                    "extended_end": "2025-01-01",
                    "extended_kind": "Demo LTS",
                    "match": {"aliases": ["two"]},
                },
            ]
        },
    }


def parse(raw: dict[str, Any]) -> EolTable:
    return parse_table(json.dumps(raw), source="bad.json")


def test_minimal_table_parses_and_answers() -> None:
    table = parse(minimal_table())
    found = eol_status("demo", "2.7", today=date(2024, 1, 1), table=table)
    assert found is not None
    assert (found.release, found.past_security_end, found.past_extended_end) == ("2", True, False)
    assert eol_status("demo", "two", today=date(2024, 1, 1), table=table) is not None


Mutation = Callable[[dict[str, Any]], None]


def _entry(raw: dict[str, Any], index: int = 1) -> dict[str, Any]:
    entry: dict[str, Any] = raw["products"]["demo"][index]
    return entry


BAD_TABLES: list[tuple[str, Mutation, str]] = [
    ("month-13", lambda t: _entry(t).update(released="2021-13-01"), r"demo\[1\].*not a date"),
    ("compact-date", lambda t: _entry(t).update(security_end="20230101"), "not a YYYY-MM-DD"),
    (
        "security-after-extended",
        lambda t: _entry(t).update(extended_end="2022-06-01"),
        r"demo\[1\].*security_end 2023-01-01 is after extended_end 2022-06-01",
    ),
    (
        "end-before-release",
        lambda t: _entry(t).update(security_end="2020-06-01"),
        "before released",
    ),
    ("duplicate-release", lambda t: _entry(t).update(release="1"), "names both '1' and '1'"),
    ("alias-is-other-release", lambda t: _entry(t)["match"].update(aliases=["1"]), "names both"),
    ("missing-field", lambda t: _entry(t).pop("security_end"), r"missing keys \['security_end'\]"),
    ("misspelt-field", lambda t: _entry(t).update(securty_end="2023-01-01"), "unknown keys"),
    ("kind-without-date", lambda t: _entry(t, 0).update(extended_kind="LTS"), "exactly when"),
    ("date-without-kind", lambda t: _entry(t).pop("extended_kind"), "exactly when"),
    ("estimated-not-bool", lambda t: _entry(t).update(estimated="yes"), "estimated must be"),
    ("build-is-bool", lambda t: _entry(t)["match"].update(builds=[True]), "positive integers"),
    ("out-of-order", lambda t: _entry(t).update(released="2019-01-01"), "listed after"),
    (
        "unknown-scheme",
        lambda t: t["version_schemes"].update(demo="semver"),
        "unknown version scheme",
    ),
    ("plain-http-source", lambda t: t["sources"].update(demo="http://x.org"), "https URL"),
    ("missing-source", lambda t: t["sources"].clear(), "sources must name exactly"),
    ("bad-reviewed", lambda t: t.update(reviewed="soon"), "reviewed"),
    ("schema-2", lambda t: t.update(schema_version=2), "schema_version 2"),
    ("empty-product", lambda t: t["products"].update(demo=[]), "non-empty list"),
]


@pytest.mark.parametrize(
    ("mutate", "message"),
    [(m, msg) for _, m, msg in BAD_TABLES],
    ids=[name for name, _, _ in BAD_TABLES],
)
def test_malformed_table_raises_naming_file_and_entry(mutate: Mutation, message: str) -> None:
    raw = copy.deepcopy(minimal_table())
    mutate(raw)
    with pytest.raises(ValueError, match=message) as caught:
        parse(raw)
    assert str(caught.value).startswith("bad.json: ")


def test_non_json_table_raises_naming_file() -> None:
    with pytest.raises(ValueError, match=r"^bad\.json: not valid JSON"):
        parse_table(b"{not json", source="bad.json")


# --- odd input never raises -----------------------------------------------------------

VERSIONS = st.one_of(
    st.text(max_size=80),
    st.from_regex(r"[0-9]{1,8}(\.[0-9]{1,8}){0,4}", fullmatch=True),
    st.sampled_from(["22H2", "15 SP5", "2012 R2", "10.0.", "..", "9.", "\x00", "٣.١٩"]),
)
PRODUCTS = st.one_of(st.text(max_size=80), st.sampled_from(sorted(REQUIRED)))


@settings(max_examples=400, deadline=None)
@given(
    os_id=PRODUCTS,
    version_id=VERSIONS,
    id_like=st.lists(PRODUCTS, max_size=12),
    today=st.dates(),
)
def test_arbitrary_input_never_raises(
    os_id: str, version_id: str, id_like: list[str], today: date
) -> None:
    found = eol_status(os_id, version_id, id_like=id_like, today=today)
    assert found is None or isinstance(found, EolStatus)
