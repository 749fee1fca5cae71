"""Schema migrations: an empty database of each kind, replicas migrating at once, and a data
directory of the releases before migrations upgraded in place."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import create_engine, text

from service.store.database import DB_FILE, Database
from service.store.migrate import current_revision, latest_revision, migrate
from service.store.schema import Base
from tests.conftest import DATA
from tests.support.postgres import database_url, new_database, postgres_url

__all__ = ["database_url"]  # the fixture, used by name


def test_an_empty_database_migrates_to_what_the_models_say(
    database_url: str, tmp_path: Path
) -> None:
    for _ in range(2):  # the second open finds it current
        db = Database(tmp_path, database_url)
        db.close()
    engine = create_engine(database_url)
    with engine.connect() as connection:
        assert current_revision(connection) == latest_revision()
        differences = compare_metadata(MigrationContext.configure(connection), Base.metadata)
    engine.dispose()
    assert differences == []


def test_replicas_migrating_at_once_take_turns() -> None:
    with new_database() as name:
        url = postgres_url(name)
        engines = [create_engine(url) for _ in range(4)]
        start = threading.Barrier(len(engines))
        outcomes: list[object] = []

        def replica(engine) -> None:
            start.wait()
            try:
                outcomes.append(migrate(engine))
            except Exception as error:  # reported below, with every replica's outcome
                outcomes.append(error)

        threads = [threading.Thread(target=replica, args=(e,)) for e in engines]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        for engine in engines:
            engine.dispose()
    latest = latest_revision()
    # Exactly one replica migrated from empty; the others found the schema current.
    assert sorted(outcomes, key=str) == sorted(
        [(None, latest)] + [(latest, latest)] * 3, key=str
    ), outcomes


def test_a_data_directory_of_the_releases_before_migrations_upgrades_in_place(
    tmp_path: Path,
) -> None:
    with sqlite3.connect(tmp_path / DB_FILE) as old:
        old.executescript((DATA / "previous_release_schema.sql").read_text())
        old.execute("INSERT INTO tenants VALUES ('acme', '2026-01-01 00:00:00')")
        old.execute(
            "INSERT INTO api_keys VALUES ('k1', 'acme', 'ab' || hex(zeroblob(31)), "
            "'2026-01-01 00:00:00', NULL)"
        )
        old.execute(
            "INSERT INTO heads VALUES (1, 'acme', 'h', 1, '{}', '2026-01-01 00:00:00', NULL)"
        )
        old.execute(
            "INSERT INTO jobs VALUES ('j1', 'acme', 'h', 'all-minilm-l6-v2', 'logistic', 8, "
            "'succeeded', 'done', 1.0, '', '{}', 1, '2026-01-01 00:00:00', '2026-01-01 00:00:01')"
        )
    for _ in range(2):  # idempotent
        Database(tmp_path).close()
    with sqlite3.connect(tmp_path / DB_FILE) as upgraded:
        assert upgraded.execute("SELECT name FROM tenants").fetchall() == [("acme",)]
        assert upgraded.execute("SELECT key_id, tenant FROM api_keys").fetchall() == [
            ("k1", "acme")
        ]
        assert upgraded.execute(
            "SELECT tenant, name, version, card_json, damage, onnx_sha256 FROM heads"
        ).fetchall() == [("acme", "h", 1, "{}", None, None)]
        assert upgraded.execute(
            "SELECT job_id, state, version, attempts, payload FROM jobs"
        ).fetchall() == [("j1", "succeeded", 1, 0, None)]
    engine = create_engine(f"sqlite:///{tmp_path / DB_FILE}")
    with engine.connect() as connection:
        assert current_revision(connection) == latest_revision()
        assert compare_metadata(MigrationContext.configure(connection), Base.metadata) == []
        assert connection.execute(text("SELECT count(*) FROM head_blobs")).scalar() == 0
    engine.dispose()
