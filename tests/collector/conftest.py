"""Collectors on SQLite and on a real PostgreSQL server, for every contract test."""

from __future__ import annotations

from collections.abc import Iterator
from itertools import count
from pathlib import Path

import pytest

from tests.conftest import require
from tests.support.collector import (
    Collector,
    Postgres,
    patchd_cli,
    postgres_cluster,
    running_collector,
)

_databases = count()


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[Postgres]:
    require("/usr/lib/postgresql", "runuser", root=True)
    with postgres_cluster() as cluster:
        yield cluster


def new_database(kind: str, request: pytest.FixtureRequest, work: Path) -> str:
    """A fresh, empty database of ``kind``: its URL."""
    if kind == "sqlite":
        return str(work / f"collector-{next(_databases)}.db")
    cluster: Postgres = request.getfixturevalue("pg_cluster")
    return cluster.create_database(f"patchd_{next(_databases)}")


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def collector(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Collector]:
    work = tmp_path_factory.mktemp(f"collector-{request.param}")
    db = new_database(request.param, request, work)
    with running_collector(work, db) as running:
        yield running


@pytest.fixture(scope="module")
def token(collector: Collector) -> str:
    """A token for many enrolments, made with the real CLI."""
    result = patchd_cli(
        "collector", "token", "create", "--db", collector.db, "--uses", "10000", "--ttl", "1d"
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()
