"""Alembic's environment: run only through `service.store.migrate`, which passes the connection
(holding PostgreSQL's advisory lock) in the config's attributes. There is no alembic.ini."""

from __future__ import annotations

from alembic import context

from service.store.schema import Base

connection = context.config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    # SQLite alters a table by copying it; batch mode does that where a migration needs it.
    render_as_batch=connection.dialect.name == "sqlite",
)
with context.begin_transaction():
    context.run_migrations()
