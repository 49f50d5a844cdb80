"""store identity

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-26 07:00:00.000000

One row naming this store (a random id made here). The pipeline tags the Dagster runs it launches
with it, and the run mirror copies into ``pipeline_runs`` only runs tagged with its own store: two
stores sharing a Dagster home (the embedded SQLite one, then PostgreSQL) no longer copy each
other's runs by workspace name.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    table = op.create_table(
        "store_identity",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("store_id", sa.String(length=36), nullable=False),
        sa.CheckConstraint("id = 1", name=op.f("ck_store_identity_one_row")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_store_identity")),
    )
    op.bulk_insert(table, [{"id": 1, "store_id": str(uuid.uuid4())}])


def downgrade() -> None:
    op.drop_table("store_identity")
