"""chat messages mark degraded exchanges

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-07 18:30:00.000000

``chat_messages.degraded``: true on both messages of an exchange whose answer was degraded (the
data gathered under a note, when the model gave no usable answer, ran out of steps or time, or
could not be reached). A session's history sent to the model leaves them out.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("chat_messages") as batch:
        batch.add_column(
            sa.Column("degraded", sa.Boolean(), server_default=sa.false(), nullable=False)
        )


def downgrade() -> None:
    with op.batch_alter_table("chat_messages") as batch:
        batch.drop_column("degraded")
