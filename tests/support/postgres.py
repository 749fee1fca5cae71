"""PostgreSQL for the tests: the local server (127.0.0.1:5432, trust auth, user postgres), one
new database per test, dropped afterwards. Override the server with TRANSFERD_TEST_POSTGRES."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
import pytest

from service.store.database import sqlite_url

SERVER = os.environ.get("TRANSFERD_TEST_POSTGRES", "postgres@127.0.0.1:5432")
ADMIN_DSN = f"postgresql://{SERVER}/postgres"
SQLITE, POSTGRES = "sqlite", "postgresql"


def postgres_url(database: str, server: str = SERVER) -> str:
    """The SQLAlchemy URL of `database` on `server` (user@host:port)."""
    return f"postgresql+psycopg://{server}/{database}"


@contextmanager
def new_database(prefix: str = "transferd_test") -> Iterator[str]:
    """A fresh, empty database; yields its name, drops it (and its connections) afterwards."""
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(ADMIN_DSN, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield name
    finally:
        with psycopg.connect(ADMIN_DSN, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(params=[SQLITE, POSTGRES])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A new, empty database of each kind: the shared store code runs against both."""
    if request.param == SQLITE:
        yield sqlite_url(tmp_path / "sqlite")
        return
    with new_database() as name:
        yield postgres_url(name)
