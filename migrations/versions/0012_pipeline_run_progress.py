"""pipeline runs record their own progress and errors

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-07 20:00:00.000000

``pipeline_runs.progress``: the steps the run planned when it started and those done so far
(``{"planned": [...], "done": [...]}``); ``pipeline_runs.errors``: what its requester may read of
why it failed, one line per failed step. The run writes both as it goes, so a job's status is read
from its row alone.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")


def upgrade() -> None:
    with op.batch_alter_table("pipeline_runs") as batch:
        batch.add_column(
            sa.Column("progress", JSON, server_default=sa.text("'{}'"), nullable=False)
        )
        batch.add_column(sa.Column("errors", JSON, server_default=sa.text("'[]'"), nullable=False))


def downgrade() -> None:
    with op.batch_alter_table("pipeline_runs") as batch:
        batch.drop_column("errors")
        batch.drop_column("progress")
