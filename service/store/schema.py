"""Tables of the metadata database, for SQLite and PostgreSQL alike.

The tables are created and changed only by the Alembic migrations (`service.store.migrations`);
these models must match what the last migration leaves (a test compares them on both databases).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    Boolean,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
    false,
)
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
    # Past it the key is refused (NULL: never expires).
    expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    # The minute of the last authenticated call (NULL: never used); see `tenancy.key_usage`.
    last_used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


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
    # The version's artifacts in `head_blobs` (NULL for versions published before the artifacts
    # moved into the database: their files on disk are the only copy).
    onnx_sha256: Mapped[str | None] = mapped_column(String(64), nullable=True)
    card_sha256: Mapped[str | None] = mapped_column(String(64), nullable=True)


class HeadBlobRow(Base):
    """Head artifact bytes (ONNX graphs, cards), write-once and keyed by their SHA-256: every
    replica reads a head from here; its local disk is only a cache."""

    __tablename__ = "head_blobs"

    sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    data: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class JobRow(Base):
    """A training job, with what any replica needs to run it or take it over: its request
    (`payload`, compressed) and its lease."""

    __tablename__ = "jobs"
    # The claim query: queued jobs, tenants in turn (by when each tenant was last served).
    __table_args__ = (Index("ix_jobs_tenant_claimed_at", "tenant", "claimed_at"),)

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
    # The published head's transfer report (heads.transfer), as JSON; NULL when there is none.
    transfer_json: Mapped[str | None] = mapped_column(Text, nullable=True)
    version: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    # The validated request, compressed (see service.jobs.payload); NULL for jobs of releases
    # that kept it in memory only.
    payload: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    # Times a replica claimed it; past the maximum, a job whose replicas keep dying is FAILED.
    attempts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # The lease: which replica runs it, until when, and the fencing token, raised by every claim,
    # that every write of the holder must still match.
    lease_owner: Mapped[str | None] = mapped_column(String(64), nullable=True)
    lease_expires_at: Mapped[datetime | None] = mapped_column(
        DateTime(timezone=True), nullable=True
    )
    lease_token: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    claimed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    # CancelJob on any replica sets it; the replica running the job sees it and stops.
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
