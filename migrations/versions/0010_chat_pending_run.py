"""a chat session's pending pipeline run

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-07 18:00:00.000000

``chat_sessions.pending_run_force_reprocess`` and ``pending_run_expires_at``: a pipeline run the
assistant proposed in a session, queued only when the user confirms it in the session's next
message before it expires.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("chat_sessions") as batch:
        batch.add_column(sa.Column("pending_run_force_reprocess", sa.Boolean(), nullable=True))
        batch.add_column(
            sa.Column("pending_run_expires_at", sa.DateTime(timezone=True), nullable=True)
        )


def downgrade() -> None:
    with op.batch_alter_table("chat_sessions") as batch:
        batch.drop_column("pending_run_expires_at")
        batch.drop_column("pending_run_force_reprocess")
