"""Sessions on the real PostgreSQL: a read-only session holds no transaction open on the server."""

from __future__ import annotations

import pytest
from psycopg import pq
from sqlalchemy import Engine, select, text

from fwa_pipeline.store.db import read_scope, session_scope
from fwa_pipeline.store.models import Workspace

pytestmark = pytest.mark.postgres


def server_transaction(session: object) -> pq.TransactionStatus:
    dbapi = session.connection().connection.dbapi_connection  # type: ignore[attr-defined]
    return dbapi.info.transaction_status


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
