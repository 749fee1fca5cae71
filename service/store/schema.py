"""Tables of the metadata database. SQLAlchemy, so that a server database can replace SQLite."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import DateTime, ForeignKey, Integer, String, Text, UniqueConstraint, inspect, text
from sqlalchemy.engine import Engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    pass


class TenantRow(Base):
    __tablename__ = "tenants"

    name: Mapped[str] = mapped_column(String(63), primary_key=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class ApiKeyRow(Base):
    __tablename__ = "api_keys"

    key_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    tenant: Mapped[str] = mapped_column(ForeignKey("tenants.name"), index=True)
    # SHA-256 of the secret: secrets are 256-bit random, so a fast hash is enough (no dictionary
    # to attack) and a stolen database reveals no usable key.
    secret_sha256: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class HeadRow(Base):
    """One published version of a head; a deleted version stays as a tombstone so that version
    numbers are never reused (a client holding "v3" never silently gets a different model)."""

    __tablename__ = "heads"
    __table_args__ = (UniqueConstraint("tenant", "name", "version"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    tenant: Mapped[str] = mapped_column(String(63), index=True)
    name: Mapped[str] = mapped_column(String(64))
    version: Mapped[int] = mapped_column(Integer)
    card_json: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    deleted_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    # Why the version's stored files cannot serve (checksum, unreadable card, missing files);
    # NULL while healthy. Set when a load finds the damage, cleared when a load succeeds again.
    damage: Mapped[str | None] = mapped_column(Text, nullable=True)


class JobRow(Base):
    __tablename__ = "jobs"

    job_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    tenant: Mapped[str] = mapped_column(String(63), index=True)
    head: Mapped[str] = mapped_column(String(64))
    backbone: Mapped[str] = mapped_column(String(128))
    kind: Mapped[str] = mapped_column(String(64))
    num_examples: Mapped[int] = mapped_column(Integer)
    state: Mapped[str] = mapped_column(String(16), index=True)
    stage: Mapped[str] = mapped_column(String(32))
    progress: Mapped[float] = mapped_column()
    error: Mapped[str] = mapped_column(Text, default="")
    metrics_json: Mapped[str] = mapped_column(Text, default="{}")
    version: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


# Columns added after the first release: (table, column, SQL type). `create_all` creates missing
# tables but never alters an existing one, so a data directory of an older release gets them here.
ADDED_COLUMNS: tuple[tuple[str, str, str], ...] = (("heads", "damage", "TEXT"),)


def upgrade(engine: Engine) -> list[str]:
    """Creates missing tables and adds missing nullable columns; idempotent.

    Returns:
        The columns added, as ``table.column``.
    """
    Base.metadata.create_all(engine)
    added: list[str] = []
    with engine.begin() as connection:
        inspector = inspect(connection)
        for table, column, sql_type in ADDED_COLUMNS:
            present = {c["name"] for c in inspector.get_columns(table)}
            if column not in present:
                # Nullable with no default: SQLite adds it without rewriting the table.
                connection.execute(text(f"ALTER TABLE {table} ADD COLUMN {column} {sql_type}"))
                added.append(f"{table}.{column}")
    return added
