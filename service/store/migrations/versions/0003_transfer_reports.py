"""A job keeps its head's transfer report (the head against a from-scratch baseline).

Revision ID: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Nullable: SQLite adds it without copying the table, and older releases' rows have none.
    op.add_column("jobs", sa.Column("transfer_json", sa.Text, nullable=True))


def downgrade() -> None:
    op.drop_column("jobs", "transfer_json")
