"""date of death encrypted at rest

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-07 17:00:00.000000

A date of death is PHI like the date of birth, so it is stored the same way: ``members.
date_of_death`` becomes text holding an encryption token under the row's ``pii_key_id`` (NULL
while no death is known; plaintext ISO text for rows stored without a key in development, which
``fwa keys rotate`` encrypts). Encrypting the existing dates needs the keys of the rows' key ids
(``FWA_ENCRYPTION_KEY``, read as every ``fwa`` command reads it); without them the upgrade is
refused before anything changes.

RULE-MED-006 and RULE-RX-008 used to copy the date into their evidence, which every role and
the assistant read; they now record only ``days_after_death``. The evidence already stored (rule
hits and the samples of case explanations) loses its dates the same way. The downgrade decrypts
the dates back into a date column; the evidence keeps no date to restore.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

from fwa_pipeline.store.crypto import FieldCipher
from fwa_pipeline.store.migrate import MigrationRefusedError, migration_settings
from fwa_pipeline.store.pii import TABLE, row_key

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

COLUMN = "date_of_death"
DEATH_RULES = ("RULE-MED-006", "RULE-RX-008")
JSON = sa.JSON().with_variant(JSONB(), "postgresql")
MEMBERS = sa.table(
    TABLE,
    sa.column("workspace_id"),
    sa.column("member_id"),
    sa.column("pii_key_id"),
    sa.column(COLUMN, sa.Text),
)


def _ciphers(key_ids: set[str]) -> dict[str, FieldCipher]:
    """A cipher writing (and reading) under each of ``key_ids``: a row's date of death must be
    under the key its other PHI is, which ``pii_key_id`` names."""
    if not key_ids:  # nothing sealed: no key needed
        return {}
    keys = migration_settings(op.get_context().config).encryption_keys
    missing = sorted(key_ids - keys.keys())
    if missing:
        raise MigrationRefusedError(
            f"members are encrypted under key id(s) {', '.join(missing)}, which "
            "FWA_ENCRYPTION_KEY does not hold: configure them to migrate their dates of death"
        )
    return {kid: FieldCipher(keys, active_key_id=kid) for kid in key_ids}


def _stored_deaths() -> list[tuple[Any, ...]]:
    """(workspace id, member id, key id, stored value) of every member with a date of death."""
    m = MEMBERS.c
    return [
        tuple(row)
        for row in op.get_bind().execute(
            sa.select(m.workspace_id, m.member_id, m.pii_key_id, m[COLUMN]).where(
                m[COLUMN].is_not(None)
            )
        )
    ]


def _write_deaths(values: list[dict[str, Any]], type_: sa.types.TypeEngine[Any]) -> None:
    m = MEMBERS.c
    if values:
        op.get_bind().execute(
            MEMBERS.update()
            .where(m.workspace_id == sa.bindparam("ws"), m.member_id == sa.bindparam("mid"))
            .values({COLUMN: sa.bindparam("value", type_=type_)}),
            values,
        )


def _crypt(
    rows: list[tuple[Any, ...]], ciphers: dict[str, FieldCipher], *, encrypt: bool
) -> list[dict[str, Any]]:
    """The rows' values encrypted (or decrypted) under their key ids; rows without a key id
    (plaintext stored in development) as they are."""
    out = []
    for workspace_id, member_id, kid, value in rows:
        if kid is not None:
            crypt = ciphers[kid].encrypt if encrypt else ciphers[kid].decrypt
            key = row_key(workspace_id, member_id)
            value = crypt(value, table=TABLE, column=COLUMN, row_key=key)
        out.append({"ws": workspace_id, "mid": member_id, "value": value})
    return out


def _without_death_dates(value: Any) -> Any:
    """``value`` with the date of death removed from every evidence dict in it."""
    if isinstance(value, list):
        return [_without_death_dates(item) for item in value]
    if not isinstance(value, dict):
        return value
    return {k: _without_death_dates(v) for k, v in value.items() if k != COLUMN}


def _rewrite(table: sa.TableClause, column: str, where: sa.ColumnElement[bool]) -> None:
    connection = op.get_bind()
    rows = connection.execute(sa.select(table.c.id, table.c[column]).where(where)).all()
    changed = [
        {"row_id": row_id, "value": _without_death_dates(value)} for row_id, value in rows if value
    ]
    if changed:
        connection.execute(
            table.update()
            .where(table.c.id == sa.bindparam("row_id"))
            .values({column: sa.bindparam("value", type_=JSON)}),
            changed,
        )


def _key_ids(rows: list[tuple[Any, ...]]) -> set[str]:
    return {kid for _, _, kid, _ in rows if kid is not None}


def upgrade() -> None:
    # Refused before any change: SQLite runs the batch's CREATE TABLE outside the transaction.
    ciphers = _ciphers(_key_ids(_stored_deaths()))
    with op.batch_alter_table(TABLE) as batch:
        batch.alter_column(
            COLUMN,
            existing_type=sa.Date(),
            type_=sa.Text(),
            existing_nullable=True,
            postgresql_using=f"to_char({COLUMN}, 'YYYY-MM-DD')",
        )
    sealed = [row for row in _stored_deaths() if row[2] is not None]
    _write_deaths(_crypt(sealed, ciphers, encrypt=True), sa.Text())
    hits = sa.table("rule_hits", sa.column("id"), sa.column("rule_id"), sa.column("evidence", JSON))
    cases = sa.table("investigation_cases", sa.column("id"), sa.column("explanation", JSON))
    holds_date = f'%"{COLUMN}"%'
    _rewrite(
        hits,
        "evidence",
        sa.and_(
            hits.c.rule_id.in_(DEATH_RULES), sa.cast(hits.c.evidence, sa.Text).like(holds_date)
        ),
    )
    _rewrite(cases, "explanation", sa.cast(cases.c.explanation, sa.Text).like(holds_date))


def downgrade() -> None:
    # Decrypted and set aside first: a token is no date, and SQLite's batch copy would CAST the
    # ISO text to DATE, which it reads as a number (2024).
    rows = _stored_deaths()
    deaths = _crypt(rows, _ciphers(_key_ids(rows)), encrypt=False)
    op.get_bind().execute(MEMBERS.update().values({COLUMN: None}))
    with op.batch_alter_table(TABLE) as batch:
        batch.alter_column(
            COLUMN,
            existing_type=sa.Text(),
            type_=sa.Date(),
            existing_nullable=True,
            postgresql_using=f"{COLUMN}::date",
        )
    for row in deaths:
        row["value"] = dt.date.fromisoformat(row["value"])
    _write_deaths(deaths, sa.Date())
