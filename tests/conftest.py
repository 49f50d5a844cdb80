"""Shared fixtures.

* ``sqlite_engine``: a migrated SQLite file per test, copied from one template migrated once per
  session (fast unit path).
* ``pg_engine``: the machine's real PostgreSQL. One database of our own is created per test run
  (``fwa_test_<random>``), migrated once, truncated after each test and dropped at the end.
* ``store_engine``: each of the two in turn (the PostgreSQL one marked ``postgres``).
* ``settings`` / ``pg_settings``: test settings with a fresh encryption key pointing at those.
"""

from __future__ import annotations

import base64
import logging
import os
import secrets
import shutil
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
import pytest
from sqlalchemy import Engine, create_engine, text

from fwa_pipeline.settings import Settings
from fwa_pipeline.store import migrate
from fwa_pipeline.store.db import clear_engines, engine_for
from fwa_pipeline.store.models import Base

PG_ADMIN_DSN = os.environ.get(
    "FWA_TEST_PG_ADMIN_DSN", "postgresql://postgres@127.0.0.1:5432/postgres"
)


def make_key(kid: str = "test1") -> str:
    return f"{kid}:{base64.urlsafe_b64encode(secrets.token_bytes(32)).decode()}"


@pytest.fixture(autouse=True)
def _restore_root_logger() -> Iterator[None]:
    """The app's lifespan installs a JSON handler on the root logger bound to this test's
    captured stderr; take it away again so later tests do not write to a closed stream."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for handler in [h for h in root.handlers if h not in handlers]:
        root.removeHandler(handler)
        handler.close()
    root.setLevel(level)


@pytest.fixture
def silent_database() -> Iterator[int]:
    """A port that accepts TCP connections and never answers a byte: a hung database server.
    The kernel completes the handshakes from the listen backlog; nothing ever reads."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        yield int(listener.getsockname()[1])
    # Closing the listener resets the pending connections, so an abandoned client thread ends.


@contextmanager
def scratch_database(prefix: str = "fwa_mig", admin_dsn: str = PG_ADMIN_DSN) -> Iterator[str]:
    """The URL of an empty PostgreSQL database of the caller's own on ``admin_dsn``'s server,
    dropped after."""
    name = f"{prefix}_{secrets.token_hex(4)}"
    try:
        admin = psycopg.connect(admin_dsn, autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as exc:  # pragma: no cover - CI starts the server
        pytest.fail(f"PostgreSQL is not answering at {admin_dsn}: {exc}")
    with admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        base = admin_dsn.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://")
        yield f"{base}/{name}"
    finally:
        with psycopg.connect(admin_dsn, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextmanager
def migrated_database(prefix: str, admin_dsn: str = PG_ADMIN_DSN) -> Iterator[str]:
    """:func:`scratch_database`, migrated to the head revision (the benchmarks use it too)."""
    with scratch_database(prefix, admin_dsn) as url:
        engine = create_engine(url)
        migrate.upgrade(engine)
        engine.dispose()
        yield url


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def empty_store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty database on each engine, for tests that migrate a store themselves."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'empty.db'}"
    else:
        with scratch_database() as url:
            yield url


@pytest.fixture(scope="session")
def _sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("sqlite-template") / "template.db"
    engine = create_engine(f"sqlite:///{path}")
    migrate.upgrade(engine)
    engine.dispose()
    return path


@pytest.fixture
def sqlite_url(_sqlite_template: Path, tmp_path: Path) -> str:
    path = tmp_path / "fwa.db"
    shutil.copy(_sqlite_template, path)
    return f"sqlite:///{path}"


@pytest.fixture
def sqlite_engine(sqlite_url: str) -> Iterator[Engine]:
    engine = engine_for(sqlite_url)
    yield engine
    engine.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store_engine(request: pytest.FixtureRequest) -> Engine:
    """A migrated store on each engine, for behaviour both must share: ``sqlite_engine`` and
    ``pg_engine`` in turn."""
    return request.getfixturevalue("sqlite_engine" if request.param == "sqlite" else "pg_engine")


def settings_for(database_url: str, tmp_path: Path) -> Settings:
    """Test settings on ``database_url``: data under ``tmp_path``, a fresh encryption key, and
    nothing read from a .env file."""
    return Settings(
        environment="test",
        database_url=database_url,
        data_dir=tmp_path / "data",
        encryption_key=make_key(),
        _env_file=None,
    )


@pytest.fixture
def settings(sqlite_url: str, tmp_path: Path) -> Settings:
    return settings_for(sqlite_url, tmp_path)


@pytest.fixture(scope="session")
def pg_database_url() -> Iterator[str]:
    """Create a database of our own for this run, migrated; drop it at the end."""
    with migrated_database("fwa_test") as url:
        try:
            yield url
        finally:
            clear_engines()


@pytest.fixture
def pg_engine(pg_database_url: str) -> Iterator[Engine]:
    engine = engine_for(pg_database_url)
    yield engine
    truncate_all(engine)


def truncate_all(engine: Engine) -> None:
    """Empty every table of the store but its identity row, which is the migration's, like the
    schema."""
    tables = ", ".join(
        f'"{t.name}"' for t in Base.metadata.sorted_tables if t.name != "store_identity"
    )
    with engine.begin() as conn:
        conn.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))


@pytest.fixture
def pg_settings(pg_database_url: str, tmp_path: Path) -> Settings:
    return settings_for(pg_database_url, tmp_path)
