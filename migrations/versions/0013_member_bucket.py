"""claims and members keep their member's bucket

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-07 22:30:00.000000

``member_bucket`` on ``medical_claims``, ``pharmacy_claims`` and ``members``: the bucket of the
row's member (``compute.shards.bucket_of``), indexed on the claim tables by
``(workspace_id, member_bucket)``, so that a shard of a run reads only its members' rows. Rows
already stored get theirs computed here: the distinct member ids, a chunk at a time, into a
temporary table the tables are then updated from.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import pandas as pd
import sqlalchemy as sa
from alembic import op

from fwa_pipeline.compute.shards import bucket_of

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLES = ("medical_claims", "pharmacy_claims", "members")
INDEXED = ("medical_claims", "pharmacy_claims")
# Member ids computed and sent per round trip.
CHUNK_ROWS = 50_000

BUCKETS = sa.Table(
    "_member_buckets",
    sa.MetaData(),
    sa.Column("member_id", sa.String(64), primary_key=True),
    sa.Column("bucket", sa.SmallInteger, nullable=False),
    prefixes=["TEMPORARY"],
)


def upgrade() -> None:
    for table in TABLES:
        with op.batch_alter_table(table) as batch:
            batch.add_column(sa.Column("member_bucket", sa.SmallInteger(), nullable=True))
    _backfill(op.get_bind())
    with _claim_status_view_set_aside():
        for table in TABLES:
            with op.batch_alter_table(table) as batch:
                batch.alter_column("member_bucket", existing_type=sa.SmallInteger(), nullable=False)
                if table in INDEXED:
                    batch.create_index(f"ix_{table}_ws_bucket", ["workspace_id", "member_bucket"])


def downgrade() -> None:
    with _claim_status_view_set_aside():
        for table in TABLES:
            with op.batch_alter_table(table) as batch:
                if table in INDEXED:
                    batch.drop_index(f"ix_{table}_ws_bucket")
                batch.drop_column("member_bucket")


def _backfill(connection: sa.Connection) -> None:
    """Every stored row's bucket: computed in Python (the database cannot hash as pandas does)
    for each distinct member id, then joined in by one UPDATE per table."""
    BUCKETS.create(connection)
    distinct = sa.union(
        *(sa.select(sa.table(t, sa.column("member_id")).c.member_id) for t in TABLES)
    ).subquery()
    ids = connection.execute(
        sa.select(distinct.c.member_id)
        .where(distinct.c.member_id.is_not(None))
        .execution_options(stream_results=True)
    )
    for chunk in ids.scalars().partitions(CHUNK_ROWS):
        keys = pd.Series(chunk, dtype=object)
        buckets = bucket_of(keys).tolist()
        connection.execute(
            BUCKETS.insert(),
            [{"member_id": m, "bucket": b} for m, b in zip(chunk, buckets, strict=True)],
        )
    for table in TABLES:
        rows = sa.table(table, sa.column("member_id"), sa.column("member_bucket"))
        found = (
            sa.select(BUCKETS.c.bucket)
            .where(BUCKETS.c.member_id == rows.c.member_id)
            .scalar_subquery()
        )
        # A claim without a member is in bucket 0, as bucket_of puts missing keys.
        connection.execute(rows.update().values(member_bucket=sa.func.coalesce(found, 0)))
    BUCKETS.drop(connection)


@contextmanager
def _claim_status_view_set_aside() -> Iterator[None]:
    """On SQLite, the ``claim_status`` view is dropped around the block and made again as it
    was: SQLite's batch alters recreate the claim tables, which a view on them would block."""
    connection = op.get_bind()
    definition = None
    if connection.dialect.name == "sqlite":
        definition = connection.execute(
            sa.text("SELECT sql FROM sqlite_master WHERE type = 'view' AND name = 'claim_status'")
        ).scalar()
    if definition is not None:
        op.execute("DROP VIEW claim_status")
    yield
    if definition is not None:
        op.execute(definition)
