"""The dashboard (issue 5), in real headless Chromium against a real collector.

One collector on SQLite holds a small fleet of simulated endpoints that signed real
reports: compliant, overdue, stale, never reported, end of life, with failed and
rolled-back runs, a flag, and one endpoint whose hostname, segment, package name, update
reason and run notes are markup meant to run script. Two facts no report can set are
written to the database directly, as the collector would have on earlier days: an old
``last_report_at`` (stale) and the per-day compliance rows (the chart's history).
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
import requests
from sqlalchemy import update

from patchd.collector.schema import endpoint_daily, endpoints
from patchd.collector.store import _upsert, open_engine
from tests.conftest import require
from tests.support.collector import (
    Collector,
    Postgres,
    SimEndpoint,
    now_stamp,
    patchd_cli,
    running_collector,
    sections,
)

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]  # fmt: skip
PAGE_TIMEOUT_MS = 30_000
HISTORY_DAYS = 14
SCREENSHOT = Path(__file__).resolve().parents[2] / "docs" / "images" / "dashboard.png"

SCRIPT = "<script>alert(1)</script>"
IMG = '"><img src=x onerror=alert(2)>'
HOSTILE_HOST = f"{SCRIPT}{IMG}"
HOSTILE_SEGMENT = f"lab{IMG}"
HOSTILE_PACKAGE = f"pkg{SCRIPT}"
HOSTILE_REASON = f"held: {SCRIPT} {IMG}"
HOSTILE_NOTE = f"note {IMG}"
OVERDUE_REASON = "deadline 2026-12-01 passed; waits for the window sun-02:00 (maintenance windows)"
FAILED_NOTE = "dpkg: error processing package postgresql-15 (--configure)"


def _ago(**delta: float) -> str:
    return now_stamp(dt.datetime.now(dt.UTC) - dt.timedelta(**delta))


def _update(name: str, *, severity: str = "important", overdue: bool = False, reason: str = "",
            decision: str = "install-later", first_days: float = 3) -> dict[str, Any]:  # fmt: skip
    """An update as the agent reports it (docs/reporting.md)."""
    return {"id": f"apt:{name}:amd64=2.0-1", "name": name, "backend": "apt", "available_version": "2.0-1",
            "classification": "security", "severity": severity, "cves": ["CVE-2026-0001"],
            "first_seen": _ago(days=first_days), "deadline": _ago(days=first_days - 2), "overdue": overdue,
            "decision": decision, "reason": reason or "waits for the next maintenance window"}  # fmt: skip


def _run(run_id: str, status: str, *, done: tuple[str, ...] = (), failed: int = 0,
         notes: tuple[str, ...] = (), hours_ago: float = 2) -> dict[str, Any]:  # fmt: skip
    items = [{"update_id": u, "outcome": "done"} for u in done] + [{"outcome": "failed"}] * failed
    return {"id": run_id, "kind": "apply", "status": status, "dry_run": False, "items": items,
            "started_at": _ago(hours=hours_ago + 0.2), "finished_at": _ago(hours=hours_ago), "notes": list(notes)}  # fmt: skip


@dataclass
class Fleet:
    collector: Collector
    hosts: dict[str, SimEndpoint]

    def id(self, name: str) -> str:
        endpoint_id = self.hosts[name].endpoint_id
        assert endpoint_id is not None
        return endpoint_id

    def compliance(self) -> dict[str, Any]:
        answer = self.collector.get("/v1/compliance")
        assert answer.status_code == 200, answer.text
        document: dict[str, Any] = answer.json()
        return document


def _enrol(collector: Collector, token: str, hostname: str) -> SimEndpoint:
    endpoint = SimEndpoint(hostname)
    answer = endpoint.enrol(collector.url, token)
    assert answer.status_code == 201, answer.text
    return endpoint


def _report(collector: Collector, endpoint: SimEndpoint, **facts: Any) -> None:
    answer = endpoint.report(collector.url, **sections(**facts))
    assert answer.status_code == 202, answer.text


def _fill(collector: Collector) -> dict[str, SimEndpoint]:
    """The simulated fleet, every fact sent as a signed report through the real API."""
    made = patchd_cli("collector", "token", "create", "--db", collector.db, "--uses", "100")
    assert made.returncode == 0, made.stderr
    token = made.stdout.strip()
    names = ["web-01", "web-02", "db-01", "db-02", "old-01", "new-01", HOSTILE_HOST]
    hosts = {name: _enrol(collector, token, name) for name in names}
    web = {"segments": ("web",), "ring": "early"}
    db = {"segments": ("db",), "ring": "broad"}
    patched = _update("openssl", severity="critical", first_days=2)
    _report(collector, hosts["web-01"], pending=1, updates=[patched], **web)
    _report(
        collector, hosts["web-01"], runs=[_run("run-w1", "success", done=(patched["id"],))], **web
    )
    _report(collector, hosts["web-02"], **web)
    _report(collector, hosts["old-01"], **web)
    late = _update(
        "postgresql-15", severity="critical", overdue=True, reason=OVERDUE_REASON, first_days=9
    )
    runs = [_run("run-d1", "failed", failed=1, notes=(FAILED_NOTE,), hours_ago=5),
            _run("run-d2", "rolled-back", failed=1, notes=("health check failed: rolled back",), hours_ago=3)]  # fmt: skip
    _report(
        collector,
        hosts["db-01"],
        overdue=1,
        pending=2,
        updates=[late, _update("curl")],
        runs=runs,
        **db,
    )
    _report(collector, hosts["db-02"], eol_past=True, **db)
    hostile = _update(HOSTILE_PACKAGE, reason=HOSTILE_REASON, decision="needs-approval")
    _report(collector, hosts[HOSTILE_HOST], pending=1, updates=[hostile], segments=(HOSTILE_SEGMENT,), ring="broad",
            runs=[_run("run-h1", "partial", failed=1, notes=(HOSTILE_NOTE,))])  # fmt: skip
    # db-01 sends its first sequence number again with other contents: refused and flagged.
    db01 = hosts["db-01"]
    forked = db01.send(collector.url, db01.envelope(db01.payload(seq=1, note="cloned")))
    assert forked.status_code == 409, forked.text
    _backdate(collector.db, hosts)
    return hosts


def _backdate(db: str, hosts: dict[str, SimEndpoint]) -> None:
    """What earlier days would have left: old-01's last report two days ago, daily compliance rows."""
    engine = open_engine(db)
    today = dt.datetime.now(dt.UTC).date()
    try:
        with engine.begin() as conn:
            conn.execute(update(endpoints).where(endpoints.c.id == hosts["old-01"].endpoint_id)
                         .values(last_report_at=_ago(days=2)))  # fmt: skip
            for back in range(1, HISTORY_DAYS):
                day = (today - dt.timedelta(days=back)).isoformat()
                for i, name in enumerate(("web-01", "web-02", "db-01", "db-02", "old-01")):
                    compliant = (back + i) % 4 != 0  # a rate that moves from day to day
                    _upsert(conn, endpoint_daily, {"endpoint_id": hosts[name].endpoint_id, "day": day,
                                                   "compliant": compliant, "overdue": 0 if compliant else 1},
                            ("endpoint_id", "day"))  # fmt: skip
    finally:
        engine.dispose()


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    work = tmp_path_factory.mktemp("dashboard")
    with running_collector(work, str(work / "collector.db")) as collector:
        yield Fleet(collector, _fill(collector))


# -- the browser --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    require(CHROMIUM)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield launched
        finally:
            launched.close()


@dataclass
class Tab:
    """A fresh browser context (no cookies) whose page fails the test if any dialog opens."""

    page: Any
    context: Any
    dialogs: list[str]


@pytest.fixture
def tab(browser: Any) -> Iterator[Tab]:
    context = browser.new_context()
    page = context.new_page()
    page.set_default_timeout(PAGE_TIMEOUT_MS)
    dialogs: list[str] = []

    def refuse(dialog: Any) -> None:
        dialogs.append(dialog.message)
        dialog.dismiss()

    page.on("dialog", refuse)
    try:
        yield Tab(page, context, dialogs)
    finally:
        context.close()
    assert dialogs == [], f"a script ran in the dashboard: dialogs {dialogs}"


def _log_in(tab: Tab, fleet: Fleet, token: str | None = None) -> int:
    """Fill in the login form and submit it: the HTTP status of the page it lands on."""
    page = tab.page
    page.goto(f"{fleet.collector.url}/login")
    page.fill("#token", token if token is not None else fleet.collector.admin_token)
    with page.expect_navigation() as landed:
        page.click("form[action='/login'] button")
    status: int = landed.value.status
    return status


@pytest.fixture
def signed_in(tab: Tab, fleet: Fleet) -> Any:
    assert _log_in(tab, fleet) == 200
    assert tab.page.url == f"{fleet.collector.url}/"
    return tab.page


def _cookie(tab: Tab) -> dict[str, Any] | None:
    found = [c for c in tab.context.cookies() if c["name"] == "patchd_session"]
    return found[0] if found else None


# -- signing in ---------------------------------------------------------------------------------


PAGES = [
    "/",
    "/segments/web",
    "/rings/broad",
    "/endpoints",
    "/endpoints/ep_x",
    "/endpoints/ep_x/updates/a:b",
]


@pytest.mark.parametrize("path", PAGES)
def test_a_page_without_a_session_redirects_to_login(fleet: Fleet, path: str) -> None:
    answer = requests.get(fleet.collector.url + path, allow_redirects=False, timeout=30)
    assert answer.status_code == 303
    assert answer.headers["location"] == "/login"
    assert "web-01" not in answer.text


def test_a_forged_session_cookie_is_not_a_session(fleet: Fleet) -> None:
    answer = requests.get(fleet.collector.url + "/", allow_redirects=False, timeout=30,
                          cookies={"patchd_session": "0" * 64})  # fmt: skip
    assert answer.status_code == 303


def test_the_browser_is_sent_to_login_and_a_wrong_token_is_refused(tab: Tab, fleet: Fleet) -> None:
    page = tab.page
    page.goto(fleet.collector.url + "/")
    assert page.url == f"{fleet.collector.url}/login"
    assert _log_in(tab, fleet, token="not-the-admin-token") == 401
    assert page.url == f"{fleet.collector.url}/login"
    assert "That is not the admin token." in page.inner_text("main")
    assert _cookie(tab) is None
    page.goto(fleet.collector.url + "/")
    assert page.url == f"{fleet.collector.url}/login"


def test_the_admin_token_lands_on_the_overview_with_a_strict_cookie(tab: Tab, fleet: Fleet) -> None:
    page = tab.page
    assert _log_in(tab, fleet) == 200
    assert page.url == f"{fleet.collector.url}/"
    assert page.inner_text("h1") == "Fleet compliance"
    cookie = _cookie(tab)
    assert cookie is not None
    assert (cookie["httpOnly"], cookie["sameSite"], cookie["secure"]) == (True, "Strict", False)
    assert cookie["value"] != fleet.collector.admin_token
    assert page.evaluate("document.cookie") == ""  # HttpOnly: invisible to scripts


def test_the_bearer_token_opens_pages_without_a_session(fleet: Fleet) -> None:
    answer = fleet.collector.get("/", allow_redirects=False)
    assert answer.status_code == 200
    assert "Fleet compliance" in answer.text


def test_log_out_ends_the_session(tab: Tab, fleet: Fleet, signed_in: Any) -> None:
    page = signed_in
    with page.expect_navigation():
        page.click("form[action='/logout'] button")
    assert page.url == f"{fleet.collector.url}/login"
    assert _cookie(tab) is None
    page.goto(f"{fleet.collector.url}/endpoints")
    assert page.url == f"{fleet.collector.url}/login"


def _self_signed(directory: Path) -> tuple[Path, Path]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.UTC)
    certificate = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1)).not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .sign(key, hashes.SHA256())
    )  # fmt: skip
    cert, key_file = directory / "cert.pem", directory / "key.pem"
    cert.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))  # fmt: skip
    return cert, key_file


def test_over_https_the_session_cookie_is_secure(tmp_path: Path) -> None:
    cert, key = _self_signed(tmp_path)
    with running_collector(
        tmp_path / "tls", str(tmp_path / "tls.db"), tls=(cert, key)
    ) as collector:

        def log_in(token: str) -> requests.Response:
            # Connection: close, or the server's graceful shutdown waits for the idle TLS connection.
            return requests.post(f"{collector.url}/login", data={"token": token}, verify=str(cert),
                                 allow_redirects=False, timeout=30, headers={"Connection": "close"})  # fmt: skip

        refused = log_in("wrong-token-here")
        answer = log_in(collector.admin_token)
    assert refused.status_code == 401
    assert "set-cookie" not in refused.headers
    assert answer.status_code == 303
    attributes = {a.strip().lower() for a in answer.headers["set-cookie"].split(";")}
    assert {"httponly", "secure", "samesite=strict", "path=/"} <= attributes


# -- what the pages show ------------------------------------------------------------------------


def _figure(page: Any, name: str) -> int:
    return int(page.inner_text(f"#endpoint-counts [data-figure='{name}']"))


def _pct(value: float | None) -> str:
    return "—" if value is None else f"{value * 100:.1f} %"


def test_the_overview_shows_the_figures_of_the_compliance_api(fleet: Fleet, signed_in: Any) -> None:
    page = signed_in
    expected = fleet.compliance()
    counts = expected["endpoints"]
    shown = {name: _figure(page, name) for name in counts}
    assert shown == counts
    assert (counts["compliant"], counts["overdue"], counts["stale"], counts["never_reported"]) == (
        4,
        1,
        1,
        1,
    )
    assert (counts["end_of_life"], counts["flagged"]) == (1, 1)
    assert page.inner_text("#compliance-rate") == _pct(expected["compliance_rate"])
    assert page.inner_text("#failure-rate") == _pct(expected["failure_rate"])
    assert page.inner_text("#rollback-rate") == _pct(expected["stability"]["rollback_rate"])
    for severity, pending in expected["pending_by_severity"].items():
        row = f"#by-severity tr[data-severity='{severity}']"
        assert int(page.inner_text(f"{row} [data-figure='pending']")) == pending
        assert (
            int(page.inner_text(f"{row} [data-figure='overdue']"))
            == expected["overdue_by_severity"][severity]
        )
    assert expected["overdue_by_severity"]["critical"] == 1


def test_the_overview_lists_failed_runs_stale_end_of_life_and_flags(
    fleet: Fleet, signed_in: Any
) -> None:
    page = signed_in
    failed = page.inner_text("#failed-runs")
    assert FAILED_NOTE in failed
    assert {"run-d1", "run-d2", "run-h1"} <= set(re.findall(r"run-\w+", failed))
    assert "run-w1" not in failed  # it succeeded
    assert "rolled back" in failed
    assert page.locator("#stale tbody tr td:first-child a").all_inner_texts() == ["old-01"]
    assert page.locator("#end-of-life tbody tr td:first-child a").all_inner_texts() == ["db-02"]
    flags = page.inner_text("#flags")
    assert "db-01" in flags
    assert "fork" in flags


def test_the_chart_has_one_point_per_history_day(fleet: Fleet, signed_in: Any) -> None:
    page = signed_in
    history = fleet.compliance()["history"]
    assert len(history) == HISTORY_DAYS
    points = page.locator("#compliance-chart circle.point")
    assert points.count() == len(history)
    days = [points.nth(i).get_attribute("data-day") for i in range(points.count())]
    assert days == [h["day"] for h in history]
    heights = [float(points.nth(i).get_attribute("cy")) for i in range(points.count())]
    rates = [h["compliance_rate"] for h in history]
    # A higher rate is drawn higher (a smaller y): the order of the points follows the rates.
    for a, b in zip(range(len(rates)), range(1, len(rates)), strict=False):
        assert (rates[a] > rates[b]) == (heights[a] < heights[b]), (rates, heights)
    assert page.locator("#compliance-chart polyline.line").count() == 1


def test_drill_down_from_fleet_to_segment_to_endpoint_to_update(
    fleet: Fleet, signed_in: Any
) -> None:
    page = signed_in
    expected = {g["name"]: g for g in fleet.compliance()["by_segment"]}["db"]
    with page.expect_navigation():
        page.click("#segments a:text-is('db')")
    assert page.url == f"{fleet.collector.url}/segments/db"
    assert page.inner_text("#scope-name") == "db"
    assert _figure(page, "reporting") == expected["reporting"] == 2
    assert _figure(page, "compliant") == expected["compliant"] == 1
    assert page.inner_text("#compliance-rate") == _pct(expected["compliance_rate"])
    listed = page.locator("#endpoints tbody tr td:first-child a").all_inner_texts()
    assert listed == ["db-01", "db-02"]
    with page.expect_navigation():
        page.click("#endpoints a:text-is('db-01')")
    assert page.url == f"{fleet.collector.url}/endpoints/{fleet.id('db-01')}"
    assert page.inner_text("#hostname") == "db-01"
    assert OVERDUE_REASON in page.inner_text("#pending-updates")
    assert FAILED_NOTE in page.inner_text("#runs")
    assert "fork" in page.inner_text("#endpoint-flags")
    assert page.locator("#reports tbody tr").count() == 1  # the forked report was not stored
    with page.expect_navigation():
        page.click("#pending-updates a:text-is('postgresql-15')")
    assert page.url == (f"{fleet.collector.url}/endpoints/{fleet.id('db-01')}/updates/"
                        + quote("apt:postgresql-15:amd64=2.0-1", safe=""))  # fmt: skip
    assert page.inner_text("#reason") == f"install-later {OVERDUE_REASON}"
    facts = page.inner_text("#update-facts")
    assert "CVE-2026-0001" in facts
    assert "overdue" in facts


def test_a_ring_page_counts_only_its_endpoints(fleet: Fleet, signed_in: Any) -> None:
    page = signed_in
    expected = {g["name"]: g for g in fleet.compliance()["by_ring"]}["early"]
    page.goto(f"{fleet.collector.url}/rings/early")
    assert _figure(page, "reporting") == expected["reporting"] == 2
    assert _figure(page, "enrolled") == 3  # old-01 is in the ring but stale
    assert _figure(page, "stale") == 1
    assert page.locator("#endpoints tbody tr td:first-child a").all_inner_texts() == [
        "old-01",
        "web-01",
        "web-02",
    ]
    assert page.locator("#failed-runs tbody tr").count() == 0


def test_an_installed_update_shows_when_it_landed(fleet: Fleet, signed_in: Any) -> None:
    page = signed_in
    page.goto(f"{fleet.collector.url}/endpoints/{fleet.id('web-01')}")
    assert page.locator("#pending-updates").count() == 0
    installed = page.inner_text("#other-updates")
    assert "openssl" in installed
    detail = fleet.collector.get(f"/v1/endpoints/{fleet.id('web-01')}").json()
    assert detail["updates"][0]["installed_at"] in installed


def test_the_endpoint_list_filters_by_status(fleet: Fleet, signed_in: Any) -> None:
    page = signed_in
    page.click("#endpoint-counts a:text-is('Never reported')")
    page.wait_for_url(f"{fleet.collector.url}/endpoints?status=never-reported")
    assert page.locator("#endpoints tbody tr td:first-child a").all_inner_texts() == ["new-01"]


@pytest.mark.parametrize(
    "path",
    [
        "/endpoints/ep_nope",
        "/endpoints/ep_nope/updates/apt:x",
        "/segments/nowhere",
        "/endpoints?status=bogus",
    ],
)
def test_unknown_things_are_404_pages(fleet: Fleet, path: str) -> None:
    answer = fleet.collector.get(path)
    assert answer.status_code == 404
    assert answer.headers["content-type"].startswith("text/html")
    assert answer.headers["content-security-policy"].startswith("default-src 'none'")


# -- hostile text -------------------------------------------------------------------------------


def test_endpoint_text_is_shown_literally_and_never_runs(
    tab: Tab, fleet: Fleet, signed_in: Any
) -> None:
    page = signed_in
    hostile = fleet.id(HOSTILE_HOST)
    visited = [
        "/",
        f"/endpoints/{hostile}",
        f"/endpoints/{hostile}/updates/{quote(f'apt:{HOSTILE_PACKAGE}:amd64=2.0-1', safe='')}",
        f"/segments/{quote(HOSTILE_SEGMENT, safe='')}",
        "/endpoints",
    ]
    for path in visited:
        page.goto(fleet.collector.url + path)
        assert page.locator("main").count() == 1, path
        assert page.locator("script").count() == 0, path
        assert page.locator("img").count() == 0, path
    page.goto(f"{fleet.collector.url}/endpoints/{hostile}")
    assert page.inner_text("#hostname") == HOSTILE_HOST
    assert HOSTILE_REASON in page.inner_text("#pending-updates")
    assert HOSTILE_NOTE in page.inner_text("#runs")
    assert page.title() == f"{HOSTILE_HOST} — patchd"
    with page.expect_navigation():
        page.click(f"#pending-updates a:text-is('{HOSTILE_PACKAGE}')")
    assert HOSTILE_REASON in page.inner_text("#reason")
    page.goto(f"{fleet.collector.url}/endpoints/{hostile}")
    with page.expect_navigation():
        page.click("p.crumbs a >> nth=1")  # the segment's link, its name quoted in the path
    assert page.inner_text("#scope-name") == HOSTILE_SEGMENT
    assert page.locator("#endpoints tbody tr td:first-child a").all_inner_texts() == [HOSTILE_HOST]
    assert tab.dialogs == []


def test_hostile_text_is_escaped_in_the_html_itself(fleet: Fleet) -> None:
    html = fleet.collector.get(f"/endpoints/{fleet.id(HOSTILE_HOST)}").text
    for raw in (SCRIPT, IMG, "<img"):
        assert raw not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert f'href="/segments/{quote(HOSTILE_SEGMENT, safe="")}"' in html


@pytest.mark.parametrize(
    "path", ["/", "/endpoints", "/rings/broad", "/login", "/static/dashboard.css"]
)
def test_dashboard_responses_carry_the_security_headers(fleet: Fleet, path: str) -> None:
    answer = fleet.collector.get(path, allow_redirects=False)
    assert answer.status_code in (200, 303)
    policy = {
        d.strip().split(" ", 1)[0]: d.strip()
        for d in answer.headers["content-security-policy"].split(";")
    }
    assert policy["default-src"] == "default-src 'none'"
    assert "script-src" not in policy
    assert policy["frame-ancestors"] == "frame-ancestors 'none'"
    assert policy["form-action"] == "form-action 'self'"
    assert "unsafe-inline" not in answer.headers["content-security-policy"]
    assert answer.headers["x-content-type-options"] == "nosniff"
    assert answer.headers["referrer-policy"] == "no-referrer"


def test_the_login_form_refuses_a_body_over_its_limit(fleet: Fleet) -> None:
    answer = requests.post(f"{fleet.collector.url}/login", data={"token": "x" * 10_000}, allow_redirects=False,
                           timeout=30)  # fmt: skip
    assert answer.status_code == 413
    assert "set-cookie" not in answer.headers


def test_the_overview_screenshot(fleet: Fleet, signed_in: Any, tmp_path: Path) -> None:
    """A picture of the overview: to the docs with PATCHD_UPDATE_SCREENSHOT=1, else to a temp dir."""
    import os

    page = signed_in
    page.set_viewport_size({"width": 1280, "height": 900})
    target = (
        SCREENSHOT
        if os.environ.get("PATCHD_UPDATE_SCREENSHOT") == "1"
        else tmp_path / "dashboard.png"
    )
    target.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(target), full_page=True)
    assert target.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# -- PostgreSQL ---------------------------------------------------------------------------------


def test_the_pages_render_from_postgresql(pg_cluster: Postgres, tmp_path: Path) -> None:
    """The same pages over HTTP on PostgreSQL, where LIKE is case-sensitive and booleans are real."""
    db = pg_cluster.create_database("patchd_dashboard")
    with running_collector(tmp_path, db) as collector:
        made = patchd_cli("collector", "token", "create", "--db", collector.db, "--uses", "10")
        token = made.stdout.strip()
        good, late, other = (
            _enrol(collector, token, h) for h in ("pg-good", "pg-late", "pg-other")
        )
        _report(collector, good, segments=("a_b%",), ring="r1")
        _report(collector, late, overdue=1, pending=1, segments=("a_b%",), ring="r1",
                updates=[_update("zlib", overdue=True, reason=OVERDUE_REASON)],
                runs=[_run("run-p1", "failed", failed=1, notes=(FAILED_NOTE,))])  # fmt: skip
        _report(collector, other, segments=("aXbY",), ring="r2", eol_past=True)
        expected = collector.get("/v1/compliance").json()
        overview = collector.get("/")
        segment = collector.get("/segments/" + quote("a_b%", safe=""))
        ring = collector.get("/rings/r2")
        detail = collector.get(f"/endpoints/{late.endpoint_id}")
        one = collector.get(
            f"/endpoints/{late.endpoint_id}/updates/" + quote("apt:zlib:amd64=2.0-1", safe="")
        )
    assert [a.status_code for a in (overview, segment, ring, detail, one)] == [200] * 5
    assert f'id="compliance-rate">{_pct(expected["compliance_rate"])}<' in overview.text
    assert FAILED_NOTE in overview.text  # the failed runs
    assert "pg-other" in overview.text  # end of life
    assert _listed(segment.text) == ["pg-good", "pg-late"]
    assert _listed(ring.text) == ["pg-other"]
    assert OVERDUE_REASON in detail.text
    assert OVERDUE_REASON in one.text


def _listed(html: str) -> list[str]:
    """The hostnames in a scope page's endpoint table."""
    table = html.split('<table id="endpoints">', 1)[1].split("</table>", 1)[0]
    return re.findall(r">(pg-[a-z]+)</a>", table)


def test_the_dialog_guard_sees_a_script_that_runs(tab: Tab) -> None:
    """The guard behind every browser test works: a page without the dashboard's policy alerts."""
    tab.page.set_content("<p>probe</p><script>alert('probe')</script>")
    assert tab.dialogs == ["probe"]
    tab.dialogs.clear()
