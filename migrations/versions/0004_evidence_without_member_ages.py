"""evidence without member ages

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-26 04:00:00.000000

RULE-MED-008 used to record the member's age in its evidence. The age is derived from the date
of birth, and evidence reaches every role and the assistant, so the rule now records which bound
was crossed instead (``age``: ``below min_age`` or ``above max_age``). This rewrites the evidence
already stored the same way: in ``rule_hits`` and in the evidence samples of case explanations.
The ages are not kept anywhere, so the downgrade has nothing to restore.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

AGE = "member_age"
JSON = sa.JSON().with_variant(JSONB(), "postgresql")


def _without_age(value: Any) -> Any:
    """``value`` with every evidence dict's age replaced by the bound it crossed."""
    if isinstance(value, list):
        return [_without_age(item) for item in value]
    if not isinstance(value, dict):
        return value
    value = {key: _without_age(item) for key, item in value.items()}
    if AGE not in value:
        return value
    age, low = value.pop(AGE), value.get("min_age")
    below = age is not None and low is not None and age < low
    return {"age": "below min_age" if below else "above max_age", **value}


def _rewrite(table: sa.TableClause, column: str, where: sa.ColumnElement[bool]) -> None:
    connection = op.get_bind()
    rows = connection.execute(sa.select(table.c.id, table.c[column]).where(where)).all()
    changed = [{"row_id": row_id, "value": _without_age(value)} for row_id, value in rows if value]
    if changed:
        connection.execute(
            table.update()
            .where(table.c.id == sa.bindparam("row_id"))
            .values({column: sa.bindparam("value", type_=JSON)}),
            changed,
        )


def upgrade() -> None:
    hits = sa.table("rule_hits", sa.column("id"), sa.column("rule_id"), sa.column("evidence", JSON))
    cases = sa.table("investigation_cases", sa.column("id"), sa.column("explanation", JSON))
    _rewrite(
        hits,
        "evidence",
        sa.and_(
            hits.c.rule_id == "RULE-MED-008",
            sa.cast(hits.c.evidence, sa.Text).like(f'%"{AGE}"%'),
        ),
    )
    _rewrite(cases, "explanation", sa.cast(cases.c.explanation, sa.Text).like(f'%"{AGE}"%'))


def downgrade() -> None:
    pass
