"""Migration 0006 (token expiry and keyed hashes) on SQLite and PostgreSQL: a token stored with
the unkeyed hash before it keeps working."""

from __future__ import annotations

import datetime as dt
import secrets

from sqlalchemy import create_engine, inspect, select, text
from sqlalchemy.orm import Session

from fwa_api.auth import hash_token, in_utc, legacy_hash, load_principal
from fwa_pipeline.store import migrate
from fwa_pipeline.store.models import ApiToken


def test_a_token_from_before_keyed_hashes_keeps_working(empty_store_url: str) -> None:
    """0006 keeps a token stored with the unkeyed hash: marked ``sha256``, given an expiry 90
    days after the upgrade, verified and re-hashed with the key on first use; the downgrade
    drops the new columns and keeps the row."""
    engine = create_engine(empty_store_url)
    token, key = "fwa_" + secrets.token_urlsafe(32), b"k" * 32
    try:
        migrate.upgrade(engine, "0005")
        with engine.begin() as conn:
            conn.execute(
                text(
                    "INSERT INTO api_tokens (name, token_hash, prefix, role, workspaces, "
                    "created_at) VALUES ('old', :hash, :prefix, 'viewer', '[\"a\"]', :at)"
                ),
                {"hash": legacy_hash(token), "prefix": token[:12], "at": dt.datetime(2026, 1, 1)},
            )
        before = dt.datetime.now(dt.UTC)
        migrate.upgrade(engine)
        with Session(engine) as session:
            row = session.scalars(select(ApiToken)).one()
            assert (row.hash_scheme, row.last_used_at) == ("sha256", None)
            expires = in_utc(row.expires_at)
            assert before + dt.timedelta(days=90) <= expires
            assert expires <= dt.datetime.now(dt.UTC) + dt.timedelta(days=90)

        principal = load_principal(engine, token, key)
        assert principal is not None and principal.name == "old"
        with Session(engine) as session:
            row = session.scalars(select(ApiToken)).one()
            assert (row.token_hash, row.hash_scheme) == (hash_token(token, key), "hmac-sha256")
            assert row.last_used_at is not None
        assert load_principal(engine, token, key) is not None  # by its keyed hash now

        migrate.downgrade(engine, "0005")
        columns = {c["name"] for c in inspect(engine).get_columns("api_tokens")}
        assert not columns & {"hash_scheme", "expires_at", "last_used_at"}
        with engine.connect() as conn:
            assert conn.execute(text("SELECT name FROM api_tokens")).scalars().all() == ["old"]
    finally:
        engine.dispose()
