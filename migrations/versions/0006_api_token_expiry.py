"""api token expiry and keyed hashes

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-07 17:00:00.000000

Tokens were stored as an unkeyed SHA-256 of the token; they are now an HMAC-SHA256 under
``FWA_SECRET_KEY``. ``hash_scheme`` says which: existing rows are ``sha256`` and keep working, and
each is re-hashed with the key (``hmac-sha256``) on its first use. Every token now expires:
existing ones ``EXISTING_TOKENS_LIFETIME`` after this upgrade, so no owner is locked out at once.
``last_used_at`` is when the token was last seen (to about a minute).

The downgrade drops the three columns. The code before this revision only computes the unkeyed
hash, so tokens already re-hashed with the key stop working there: their owners need new tokens.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

EXISTING_TOKENS_LIFETIME = dt.timedelta(days=90)


def upgrade() -> None:
    with op.batch_alter_table("api_tokens") as batch:
        batch.add_column(
            sa.Column("hash_scheme", sa.String(length=16), server_default="sha256", nullable=False)
        )
        batch.add_column(sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("last_used_at", sa.DateTime(timezone=True), nullable=True))
    tokens = sa.table("api_tokens", sa.column("expires_at", sa.DateTime(timezone=True)))
    op.execute(
        tokens.update().values(expires_at=dt.datetime.now(dt.UTC) + EXISTING_TOKENS_LIFETIME)
    )
    with op.batch_alter_table("api_tokens") as batch:
        batch.alter_column("expires_at", existing_type=sa.DateTime(timezone=True), nullable=False)


def downgrade() -> None:
    with op.batch_alter_table("api_tokens") as batch:
        batch.drop_column("last_used_at")
        batch.drop_column("expires_at")
        batch.drop_column("hash_scheme")
