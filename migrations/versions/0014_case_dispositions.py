"""investigation cases keep their disposition

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-07 23:10:00.000000

``investigation_cases.disposition`` (``confirmed_fraud``, ``confirmed_waste_abuse``,
``no_issue`` or ``insufficient_evidence``) and ``amount_recovered``: what the investigator who
closed the case found, and any money recovered. Both are NULL on a case not closed (cases
closed before this revision have none). Reopening a case clears them; its history keeps them.
An index on ``(workspace_id, assignee)`` serves an investigator's own queue.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("investigation_cases") as batch:
        batch.add_column(sa.Column("disposition", sa.String(length=24), nullable=True))
        batch.add_column(
            sa.Column(
                "amount_recovered",
                sa.Numeric(precision=14, scale=2, asdecimal=False),
                nullable=True,
            )
        )
        batch.create_index("ix_investigation_cases_ws_assignee", ["workspace_id", "assignee"])


def downgrade() -> None:
    with op.batch_alter_table("investigation_cases") as batch:
        batch.drop_index("ix_investigation_cases_ws_assignee")
        batch.drop_column("amount_recovered")
        batch.drop_column("disposition")
