"""The dashboard and the HTML report: server-rendered pages, every value escaped.

Hostnames, package names, reasons and run notes come from endpoints, so every page
treats them as hostile text: Jinja escapes every value, links quote every path part, and
each response carries a Content-Security-Policy that allows no script at all — the pages
use none. Pages need the admin token, as the ``patchd_session`` cookie set by ``/login``
or as ``Authorization: Bearer``; without it they redirect to ``/login``. Routes are plain
``def`` functions: their database reads run in FastAPI's thread pool.
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping
from functools import cache
from importlib.resources import files
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, quote

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from jinja2 import Environment, PackageLoader, select_autoescape

if TYPE_CHECKING:
    from patchd.collector.app import State
    from patchd.collector.compliance import Options

MAX_LOGIN_BYTES = 4096
SESSION_HOURS = 12  # how long the browser keeps the session cookie
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'self'; img-src 'self' data:; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
}


@cache
def templates() -> Environment:
    """Jinja2 with autoescaping for every template: endpoint-supplied text is never markup."""
    environment = Environment(
        loader=PackageLoader("patchd.collector", "templates"),
        autoescape=select_autoescape(default=True, default_for_string=True),
    )
    environment.globals["pct"] = _pct
    environment.globals["cell"] = _cell
    environment.globals["hours"] = _hours
    environment.filters["q"] = _quote
    return environment


def _pct(value: float | None) -> str:
    return "—" if value is None else f"{value * 100:.1f} %"


def _cell(value: object) -> str:
    if value is None:
        return "—"
    if isinstance(value, list):
        return ", ".join(str(v) for v in value)
    return str(value)


def _hours(value: float | None) -> str:
    if value is None:
        return "—"
    return f"{value:.1f} h" if value < 48 else f"{value / 24:.1f} d"


def _quote(value: object) -> str:
    """One URL path segment: every character that could end or change the path is escaped."""
    return quote(str(value), safe="")


def render_report(document: Mapping[str, Any]) -> str:
    """The printable compliance report (``patchd collector report --format html``)."""
    from patchd.collector.export import COLUMNS

    return templates().get_template("report.html").render(document=document, columns=COLUMNS)


# -- responses ---------------------------------------------------------------------------------


def _page(name: str, http_status: int = 200, **context: Any) -> HTMLResponse:
    html = templates().get_template(name).render(**context)
    return HTMLResponse(html, status_code=http_status, headers=SECURITY_HEADERS)


def _redirect(location: str) -> RedirectResponse:
    return RedirectResponse(location, status_code=303, headers=SECURITY_HEADERS)


def _not_found(what: str) -> HTMLResponse:
    return _page("not_found.html", 404, what=what)


class LoginRequired(Exception):
    """A page was asked for without the admin token: the browser goes to ``/login``."""


async def _login_required(request: Request, e: LoginRequired) -> Response:
    return _redirect("/login")


def _state(request: Request) -> State:
    state: State = request.app.state.patchd
    return state


def require_session(request: Request) -> None:
    from patchd.collector.app import is_admin

    if not is_admin(request):
        raise LoginRequired()


# -- sign in and out ---------------------------------------------------------------------------

public = APIRouter(include_in_schema=False)
pages = APIRouter(include_in_schema=False, dependencies=[Depends(require_session)])


@public.get("/login")
def login_form(request: Request) -> Response:
    from patchd.collector.app import is_admin

    return _redirect("/") if is_admin(request) else _page("login.html")


@public.post("/login")
async def login(request: Request) -> Response:
    """Check the admin token from the form; on success set the session cookie."""
    from patchd.collector.app import SESSION_COOKIE, read_body

    state = _state(request)
    body = await read_body(request, MAX_LOGIN_BYTES)
    token = parse_qs(body.decode("utf-8", "replace")).get("token", [""])[0].strip()
    if not hmac.compare_digest(token.encode(), state.settings.admin_token.encode()):
        state.count("dashboard_login_refused")
        return _page("login.html", 401, error="That is not the admin token.")
    answer = _redirect("/")
    answer.set_cookie(SESSION_COOKIE, state.session_value, max_age=SESSION_HOURS * 3600, path="/",
                      httponly=True, samesite="strict", secure=request.url.scheme == "https")  # fmt: skip
    return answer


@public.get("/logout")
def logout_form() -> Response:
    return _page("logout.html")


@public.post("/logout")
def logout(request: Request) -> Response:
    from patchd.collector.app import SESSION_COOKIE

    answer = _redirect("/login")
    answer.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="strict",
                         secure=request.url.scheme == "https")  # fmt: skip
    return answer


@public.get("/static/dashboard.css")
def stylesheet() -> Response:
    return Response(_stylesheet(), media_type="text/css",
                    headers={**SECURITY_HEADERS, "Cache-Control": "max-age=3600"})  # fmt: skip


@cache
def _stylesheet() -> bytes:
    return files("patchd.collector").joinpath("static/dashboard.css").read_bytes()


# -- pages -------------------------------------------------------------------------------------


def _options(state: State) -> Options:
    from patchd.collector.compliance import Options

    return Options(stale_after=state.settings.stale_after)


@pages.get("/")
def overview(request: Request) -> Response:
    from patchd.collector import pages as read

    state = _state(request)
    with state.store.reading() as conn:
        shown = read.overview(conn, state.settings.clock(), _options(state))
    return _page("overview.html", **shown)


@pages.get("/segments/{name:path}")
def segment(request: Request, name: str) -> Response:
    return _scoped(request, "segment", name)


@pages.get("/rings/{name:path}")
def ring(request: Request, name: str) -> Response:
    return _scoped(request, "ring", name)


def _scoped(request: Request, kind: str, name: str) -> Response:
    from patchd.collector import pages as read
    from patchd.collector.compliance import Scope

    state = _state(request)
    scope = Scope(kind, name)
    with state.store.reading() as conn:
        shown = read.scoped(conn, state.settings.clock(), _options(state), scope)
    if not shown["endpoints"].rows:
        return _not_found(f"no endpoint is in the {kind} {name!r}")
    return _page("scope.html", scope=scope, **shown)


@pages.get("/endpoints")
def endpoint_index(request: Request, status: str | None = None) -> Response:
    from patchd.collector import pages as read

    state = _state(request)
    if status is not None and status not in read.STATUS_FILTERS:
        return _not_found(f"no status {status!r}; known: {', '.join(read.STATUS_FILTERS)}")
    with state.store.reading() as conn:
        listing = read.endpoint_listing(
            conn, state.settings.clock(), state.settings.stale_after, status=status
        )
    return _page("endpoints.html", listing=listing, status=status)


@pages.get("/endpoints/{endpoint_id}")
def endpoint(request: Request, endpoint_id: str) -> Response:
    from patchd.collector import pages as read
    from patchd.collector.app import endpoint_detail

    state = _state(request)
    found = endpoint_detail(state.store, state.settings, endpoint_id)
    if found is None:
        return _not_found(f"no endpoint {endpoint_id!r}")
    pending, others = read.split_updates(found.pop("updates"))
    return _page("endpoint.html", endpoint=found, pending=pending, others=others)


@pages.get("/endpoints/{endpoint_id}/updates/{update_id:path}")
def update(request: Request, endpoint_id: str, update_id: str) -> Response:
    from patchd.collector import pages as read

    state = _state(request)
    with state.store.reading() as conn:
        found = read.one_update(conn, endpoint_id, update_id)
    if found is None:
        return _not_found(f"no update {update_id!r} on endpoint {endpoint_id!r}")
    return _page("update.html", update=found)


def add_dashboard(app: FastAPI) -> None:
    """Register the dashboard's routes on ``app``."""
    app.add_exception_handler(LoginRequired, _login_required)  # type: ignore[arg-type]
    app.include_router(public)
    app.include_router(pages)
