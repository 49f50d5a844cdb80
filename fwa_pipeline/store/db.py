"""Engines and sessions. One engine per URL per process; SQLite gets the pragmas it needs to be a
sound embedded default (foreign keys, WAL, a busy timeout for the Dagster daemon + API pair)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.orm import Session, sessionmaker

from fwa_pipeline.settings import Settings, get_settings


def _sqlite_pragmas(dbapi_connection, _record) -> None:  # type: ignore[no-untyped-def]
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


@lru_cache(maxsize=8)
def engine_for(url: str) -> Engine:
    # hide_parameters: a logged SQL error never carries row values (PHI), on either engine.
    if url.startswith("sqlite"):
        path = url.split("///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"timeout": 30}, hide_parameters=True)
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    return create_engine(
        url, pool_pre_ping=True, pool_size=5, max_overflow=10, hide_parameters=True
    )


def get_engine(settings: Settings | None = None) -> Engine:
    return engine_for((settings or get_settings()).sqlalchemy_url)


@lru_cache(maxsize=8)
def _sessionmaker(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


@contextmanager
def session_scope(engine: Engine | None = None) -> Iterator[Session]:
    """A session whose transaction commits on success and rolls back on any error."""
    session = _sessionmaker(engine or get_engine())()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


@contextmanager
def read_scope(engine: Engine | None = None) -> Iterator[Session]:
    """A session for reads only, on a connection in autocommit: no BEGIN and no COMMIT, two of
    the four round trips of a one-query API read. Each statement still sees its own snapshot,
    as under PostgreSQL's default READ COMMITTED inside a transaction. A write through it is
    committed statement by statement: use :func:`session_scope` for writes."""
    engine = engine or get_engine()
    with (
        engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection,
        Session(bind=connection, expire_on_commit=False) as session,
    ):
        yield session


def is_postgres(engine: Engine) -> bool:
    return engine.dialect.name == "postgresql"
