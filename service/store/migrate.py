"""Schema migrations (Alembic), run at start-up by every replica, safely at the same time.

On PostgreSQL the whole upgrade runs under a session advisory lock, so replicas starting
together take turns: the first migrates, the others find the schema current. A SQLite data
directory of the releases before migrations (tables, no `alembic_version`) is brought to the
baseline revision first, then upgraded in place like any other.
"""

from __future__ import annotations

import logging
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, inspect, text
from sqlalchemy.engine import Engine

log = logging.getLogger(__name__)

MIGRATIONS = Path(__file__).with_name("migrations")
BASELINE = "0001"
# Any fixed 64-bit number: the advisory lock every replica of this schema takes to migrate.
ADVISORY_LOCK_ID = 0x7472616E73666572  # "transfer"
# Columns the releases before migrations added by hand to their first tables.
PRE_MIGRATION_COLUMNS: tuple[tuple[str, str, str], ...] = (("heads", "damage", "TEXT"),)


def _config(connection: Connection | None = None) -> Config:
    """Alembic's configuration, in code (there is no alembic.ini); env.py reads `connection`."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    return config


def latest_revision() -> str:
    """The revision the code expects the database at."""
    head = ScriptDirectory.from_config(_config()).get_current_head()
    assert head is not None
    return head


def current_revision(connection: Connection) -> str | None:
    """The revision the database is at (None: never migrated)."""
    return MigrationContext.configure(connection).get_current_revision()


def _adopt_pre_migration_schema(connection: Connection) -> bool:
    """Stamps a database of the releases before migrations at the baseline; True if it was one."""
    inspector = inspect(connection)
    tables = set(inspector.get_table_names())
    if "heads" not in tables or "alembic_version" in tables:
        return False
    for table, column, sql_type in PRE_MIGRATION_COLUMNS:
        if column not in {c["name"] for c in inspector.get_columns(table)}:
            connection.execute(text(f"ALTER TABLE {table} ADD COLUMN {column} {sql_type}"))
    command.stamp(_config(connection), BASELINE)
    log.info("database of an earlier release adopted at revision %s", BASELINE)
    return True


def migrate(engine: Engine) -> tuple[str | None, str]:
    """Upgrades the schema to the latest revision; idempotent, and safe for replicas starting
    together (PostgreSQL's advisory lock).

    Returns:
        (the revision before, the revision after); None before: an empty database (one of
        the releases before migrations is at the baseline).
    """
    with engine.connect() as connection:
        postgres = connection.dialect.name == "postgresql"
        if postgres:
            # A session lock, held across the migration's own transactions; released below or,
            # if this process dies, by PostgreSQL when its connection ends.
            connection.execute(text("SELECT pg_advisory_lock(:id)"), {"id": ADVISORY_LOCK_ID})
            connection.commit()
        try:
            before = current_revision(connection)
            if before is None and _adopt_pre_migration_schema(connection):
                connection.commit()
                before = BASELINE
            command.upgrade(_config(connection), "head")
            connection.commit()
            after = current_revision(connection)
        finally:
            if postgres:
                connection.rollback()
                connection.execute(text("SELECT pg_advisory_unlock(:id)"), {"id": ADVISORY_LOCK_ID})
                connection.commit()
    assert after is not None
    if before != after:
        log.info("database migrated from %s to %s", before or "empty", after)
    return before, after
