"""pipeline request idempotency keys

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-07 17:30:00.000000

``pipeline_requests.idempotency_key``: the ``Idempotency-Key`` an enqueue was sent with, unique
per workspace while it is held, and ``request_hash``: a hash of the request body it was sent
with, so a retry with the same key returns the first job and a different body under the same key
is refused.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("pipeline_requests") as batch:
        batch.add_column(sa.Column("idempotency_key", sa.String(length=200), nullable=True))
        batch.add_column(sa.Column("request_hash", sa.String(length=64), nullable=True))
        batch.create_index(
            "ux_pipeline_requests_idempotency", ["workspace_id", "idempotency_key"], unique=True
        )


def downgrade() -> None:
    with op.batch_alter_table("pipeline_requests") as batch:
        batch.drop_index("ux_pipeline_requests_idempotency")
        batch.drop_column("request_hash")
        batch.drop_column("idempotency_key")
