"""versioned workspace configuration

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-07 17:00:00.000000

``workspace_configs``: each workspace's pipeline configuration (quality mode, rules, scoring), one
row per version, never updated: the full validated document, who set it, when and why. Runs that
do not override it apply the workspace's newest version and record its number. A pipeline
request (the API's enqueue) may ask for a quality mode for its run: ``quality_mode``.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "workspace_configs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("workspace_id", sa.Integer(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column(
            "document",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("created_by", sa.String(length=100), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("note", sa.String(length=500), nullable=False),
        sa.CheckConstraint("version >= 1", name=op.f("ck_workspace_configs_positive_version")),
        sa.ForeignKeyConstraint(
            ["workspace_id"],
            ["workspaces.id"],
            name=op.f("fk_workspace_configs_workspace_id_workspaces"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_workspace_configs")),
        sa.UniqueConstraint(
            "workspace_id", "version", name=op.f("uq_workspace_configs_workspace_id")
        ),
    )
    with op.batch_alter_table("pipeline_requests") as batch:
        batch.add_column(sa.Column("quality_mode", sa.String(length=16), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("pipeline_requests") as batch:
        batch.drop_column("quality_mode")
    op.drop_table("workspace_configs")
