"""The dashboard and the HTML report: server-rendered pages, every value escaped."""

from __future__ import annotations

from collections.abc import Mapping
from functools import cache
from typing import Any

from fastapi import FastAPI
from jinja2 import Environment, PackageLoader, select_autoescape


@cache
def templates() -> Environment:
    """Jinja2 with autoescaping for every template: endpoint-supplied text is never markup."""
    environment = Environment(
        loader=PackageLoader("patchd.collector", "templates"),
        autoescape=select_autoescape(default=True, default_for_string=True),
    )
    environment.globals["pct"] = _pct
    environment.globals["cell"] = _cell
    return environment


def _pct(value: float | None) -> str:
    return "—" if value is None else f"{value * 100:.1f} %"


def _cell(value: object) -> str:
    if value is None:
        return "—"
    if isinstance(value, list):
        return ", ".join(str(v) for v in value)
    return str(value)


def render_report(document: Mapping[str, Any]) -> str:
    """The printable compliance report (``patchd collector report --format html``)."""
    from patchd.collector.export import COLUMNS

    return templates().get_template("report.html").render(document=document, columns=COLUMNS)


def add_dashboard(app: FastAPI) -> None:
    """Register the dashboard's routes on ``app``."""
