"""Engines and sessions: a read-only session holds no transaction open on the server (real
PostgreSQL), a failed statement's error never carries its values (both engines), and the settings'
statement timeout bounds every statement on PostgreSQL."""

from __future__ import annotations

import psycopg
import pytest
from psycopg import pq
from sqlalchemy import Engine, select, text
from sqlalchemy.exc import DBAPIError

from fwa_pipeline.settings import DB_CONNECT_TIMEOUT_S, Settings
from fwa_pipeline.store.db import engine_for, get_engine, read_scope, session_scope
from fwa_pipeline.store.models import Workspace


def server_transaction(session: object) -> pq.TransactionStatus:
    dbapi = session.connection().connection.dbapi_connection  # type: ignore[attr-defined]
    return dbapi.info.transaction_status


@pytest.mark.postgres
def test_a_read_scope_runs_without_begin_or_commit(pg_engine: Engine) -> None:
    with session_scope(pg_engine) as session:
        session.add(Workspace(name="north"))
    with session_scope(pg_engine) as session:
        session.scalars(select(Workspace.name)).all()
        assert server_transaction(session) == pq.TransactionStatus.INTRANS

    with read_scope(pg_engine) as session:
        assert session.scalars(select(Workspace.name)).all() == ["north"]
        # No transaction was opened for the read, so none waits for a COMMIT.
        assert server_transaction(session) == pq.TransactionStatus.IDLE
        assert session.execute(text("SELECT now() = statement_timestamp()")).scalar_one()


def test_a_failed_statement_does_not_carry_its_values(store_engine: Engine) -> None:
    # Such errors reach the logs; the values may be PHI.
    with pytest.raises(DBAPIError) as failed, store_engine.connect() as c:
        c.execute(text("SELECT :name FROM no_such_table"), {"name": "Jane Doe 1961-04-02"})
    assert "Jane Doe" not in str(failed.value)
    assert "parameters hidden" in str(failed.value)


@pytest.mark.postgres
def test_settings_bound_every_statement_and_keep_the_urls_options(pg_database_url: str) -> None:
    settings = Settings(
        environment="test",
        database_url=f"{pg_database_url}?options=-c%20application_name%3Dfwa-timeouts",
        db_statement_timeout_s=1,
        _env_file=None,
    )
    engine = get_engine(settings)
    with engine.connect() as connection:
        assert connection.execute(text("SHOW statement_timeout")).scalar() == "1s"
        assert connection.execute(text("SHOW application_name")).scalar() == "fwa-timeouts"
        with pytest.raises(DBAPIError) as info:
            connection.execute(text("SELECT pg_sleep(5)"))
    assert isinstance(info.value.orig, psycopg.errors.QueryCanceled)
    # Zero: no limit, the server's own default.
    unbounded = engine_for(pg_database_url, DB_CONNECT_TIMEOUT_S, 0)
    with unbounded.connect() as connection:
        assert connection.execute(text("SHOW statement_timeout")).scalar() == "0"
