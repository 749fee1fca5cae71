"""Replicas on one database: head artifacts in the database, jobs with their payload and lease.

Revision ID: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "head_blobs",
        sa.Column("sha256", sa.String(64), primary_key=True),
        sa.Column("data", sa.LargeBinary, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    # Nullable, or with a server default: SQLite adds such columns without copying the table.
    op.add_column("heads", sa.Column("onnx_sha256", sa.String(64), nullable=True))
    op.add_column("heads", sa.Column("card_sha256", sa.String(64), nullable=True))
    op.add_column("jobs", sa.Column("payload", sa.LargeBinary, nullable=True))
    op.add_column("jobs", sa.Column("attempts", sa.Integer, nullable=False, server_default="0"))
    op.add_column("jobs", sa.Column("lease_owner", sa.String(64), nullable=True))
    op.add_column("jobs", sa.Column("lease_expires_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column("jobs", sa.Column("lease_token", sa.Integer, nullable=False, server_default="0"))
    op.add_column("jobs", sa.Column("claimed_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column(
        "jobs",
        sa.Column("cancel_requested", sa.Boolean, nullable=False, server_default=sa.false()),
    )
    op.create_index("ix_jobs_tenant_claimed_at", "jobs", ["tenant", "claimed_at"])


def downgrade() -> None:
    op.drop_index("ix_jobs_tenant_claimed_at", "jobs")
    for column in (
        "cancel_requested", "claimed_at", "lease_token", "lease_expires_at", "lease_owner",
        "attempts", "payload",
    ):  # fmt: skip
        op.drop_column("jobs", column)
    op.drop_column("heads", "card_sha256")
    op.drop_column("heads", "onnx_sha256")
    op.drop_table("head_blobs")
