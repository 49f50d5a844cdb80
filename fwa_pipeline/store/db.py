"""Engines and sessions. One engine per URL per process; SQLite gets the pragmas it needs to be a
sound embedded default (foreign keys, WAL, a busy timeout for the Dagster daemon + API pair)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.orm import Session, sessionmaker

from fwa_pipeline.settings import (
    DB_CONNECT_TIMEOUT_S,
    DB_STATEMENT_TIMEOUT_S,
    Settings,
    get_settings,
)


def _sqlite_pragmas(dbapi_connection, _record) -> None:  # type: ignore[no-untyped-def]
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def _postgres_timeouts(connect_timeout_s: int, statement_timeout_s: int) -> Callable[..., None]:
    def apply(_dialect: Any, _record: Any, _args: Any, params: dict[str, Any]) -> None:
        # libpq waits for an unresponsive server without limit by default; a thread stuck in
        # connect() also holds up shutdown, which waits for worker threads.
        params["connect_timeout"] = connect_timeout_s
        if statement_timeout_s:
            limit = f"-c statement_timeout={statement_timeout_s * 1000}"
            # Keep the URL's own server options (a search_path, say).
            params["options"] = f"{params['options']} {limit}" if params.get("options") else limit

    return apply


def engine_for(
    url: str,
    connect_timeout_s: int = DB_CONNECT_TIMEOUT_S,
    statement_timeout_s: int = DB_STATEMENT_TIMEOUT_S,
) -> Engine:
    """The process's engine for this URL and these PostgreSQL timeouts (SQLite ignores them)."""
    return _engine(url, connect_timeout_s, statement_timeout_s)


@lru_cache(maxsize=8)
def _engine(url: str, connect_timeout_s: int, statement_timeout_s: int) -> Engine:
    # hide_parameters: a logged SQL error never carries row values (PHI), on either engine.
    if url.startswith("sqlite"):
        path = url.split("///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"timeout": 30}, hide_parameters=True)
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    engine = create_engine(
        url, pool_pre_ping=True, pool_size=5, max_overflow=10, hide_parameters=True
    )
    if engine.dialect.name == "postgresql":
        event.listen(
            engine, "do_connect", _postgres_timeouts(connect_timeout_s, statement_timeout_s)
        )
    return engine


def url_of(engine: Engine) -> str:
    """``engine``'s URL with its password: what opens the same database elsewhere (a task on
    a worker, through :func:`engine_for`; Alembic). Never to be logged."""
    return engine.url.render_as_string(hide_password=False)


def clear_engines() -> None:
    """Forget the process's engines (tests that drop their database)."""
    _engine.cache_clear()


def get_engine(settings: Settings | None = None) -> Engine:
    settings = settings or get_settings()
    return engine_for(
        settings.sqlalchemy_url, settings.db_connect_timeout_s, settings.db_statement_timeout_s
    )


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
