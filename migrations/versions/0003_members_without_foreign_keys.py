"""members without foreign keys

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-25 20:00:00.000000

``members.workspace_id`` and ``members.batch_id`` lose their foreign keys, as the claim tables
did in 0001: their per-row triggers cost about 2 s of a 200,000-member COPY, and the loader
creates the workspace and batch rows in the same transaction as the members. Nothing deletes
workspaces or batches, so their ON DELETE actions had nothing to do.
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("members", schema=None) as batch_op:
        batch_op.drop_constraint(op.f("fk_members_batch_id_batches"), type_="foreignkey")
        batch_op.drop_constraint(op.f("fk_members_workspace_id_workspaces"), type_="foreignkey")


def downgrade() -> None:
    with op.batch_alter_table("members", schema=None) as batch_op:
        batch_op.create_foreign_key(
            op.f("fk_members_workspace_id_workspaces"),
            "workspaces",
            ["workspace_id"],
            ["id"],
            ondelete="CASCADE",
        )
        batch_op.create_foreign_key(
            op.f("fk_members_batch_id_batches"),
            "batches",
            ["batch_id"],
            ["id"],
            ondelete="SET NULL",
        )
