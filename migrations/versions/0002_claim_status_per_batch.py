"""claim processing status per batch

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25 19:40:00.000000

Claims no longer carry ``status`` and ``last_run_id``: a run updating both on every claim it
processed rewrote each row and all its indexes (about a minute per million claims). A claim's
status now follows from its batch (``batches.processed_run_id``) and the new ``held_claims``
table, and the ``claim_status`` view answers it in SQL. Downgrading writes the derived values
back into the columns.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

CLAIM_TABLES = {"medical": "medical_claims", "pharmacy": "pharmacy_claims"}


def _status_select(claim_type: str, table: str) -> str:
    return (
        f"SELECT c.workspace_id, '{claim_type}' AS claim_type, c.id AS claim_pk, c.claim_id, "
        "c.batch_id, CASE WHEN b.processed_run_id IS NULL THEN 'pending' "
        "WHEN h.claim_pk IS NOT NULL THEN 'held' ELSE 'processed' END AS status, "
        "b.processed_run_id AS last_run_id "
        f"FROM {table} c JOIN batches b ON b.id = c.batch_id "
        "LEFT JOIN held_claims h ON h.workspace_id = c.workspace_id "
        f"AND h.claim_type = '{claim_type}' AND h.claim_pk = c.id"
    )


CLAIM_STATUS_VIEW = "CREATE VIEW claim_status AS " + " UNION ALL ".join(
    _status_select(claim_type, table) for claim_type, table in CLAIM_TABLES.items()
)


def upgrade() -> None:
    op.create_table(
        "held_claims",
        sa.Column("workspace_id", sa.Integer(), nullable=False),
        sa.Column("claim_type", sa.String(length=10), nullable=False),
        sa.Column("claim_pk", sa.BigInteger(), nullable=False),
        sa.Column("run_id", sa.String(length=64), nullable=False),
        sa.Column("reason", sa.String(length=200), nullable=False),
        sa.ForeignKeyConstraint(
            ["workspace_id"],
            ["workspaces.id"],
            name=op.f("fk_held_claims_workspace_id_workspaces"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint(
            "workspace_id", "claim_type", "claim_pk", name=op.f("pk_held_claims")
        ),
    )
    # Held claims carried their status; their run and reason were not kept.
    for claim_type, table in CLAIM_TABLES.items():
        op.execute(
            "INSERT INTO held_claims (workspace_id, claim_type, claim_pk, run_id, reason) "
            f"SELECT workspace_id, '{claim_type}', id, COALESCE(last_run_id, ''), 'unknown' "
            f"FROM {table} WHERE status = 'held'"
        )
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_index(f"ix_{table}_ws_status")
            batch_op.create_index(f"ix_{table}_ws_batch", ["workspace_id", "batch_id"])
            batch_op.drop_column("status")
            batch_op.drop_column("last_run_id")
    # After the batch alters: SQLite recreates those tables, which a view on them would block.
    op.execute(CLAIM_STATUS_VIEW)


def downgrade() -> None:
    op.execute("DROP VIEW claim_status")
    for claim_type, table in CLAIM_TABLES.items():
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.add_column(
                sa.Column("status", sa.String(length=12), nullable=False, server_default="pending")
            )
            batch_op.add_column(sa.Column("last_run_id", sa.String(length=64), nullable=True))
        op.execute(
            f"UPDATE {table} SET last_run_id = (SELECT b.processed_run_id FROM batches b "
            f"WHERE b.id = {table}.batch_id)"
        )
        op.execute(
            f"UPDATE {table} SET status = CASE WHEN last_run_id IS NULL THEN 'pending' "
            "WHEN EXISTS (SELECT 1 FROM held_claims h WHERE h.workspace_id = "
            f"{table}.workspace_id AND h.claim_type = '{claim_type}' AND h.claim_pk = {table}.id) "
            "THEN 'held' ELSE 'processed' END"
        )
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.alter_column("status", server_default=None)
            batch_op.drop_index(f"ix_{table}_ws_batch")
            batch_op.create_index(f"ix_{table}_ws_status", ["workspace_id", "status"])
    op.drop_table("held_claims")
