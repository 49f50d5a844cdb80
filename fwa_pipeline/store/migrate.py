"""Alembic driven from the settings: ``fwa db upgrade`` / ``downgrade`` / ``revision``.

A migration that rewrites encrypted data reads the settings (the encryption keys) with
:func:`migration_settings`: those handed to :func:`upgrade` / :func:`downgrade`, else the
environment's, as every ``fwa`` command reads them."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine

from fwa_pipeline.settings import Settings
from fwa_pipeline.store.db import url_of

MIGRATIONS_DIR = Path(__file__).resolve().parents[2] / "migrations"


def alembic_config(url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    # ConfigParser interpolation: escape % in passwords.
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


class MigrationRefusedError(RuntimeError):
    """A migration refused to run and changed nothing; the message says why and what to do."""


class SchemaNotCurrentError(RuntimeError):
    """The database is not at the revision this code was written for."""


def require_current(engine: Engine) -> None:
    """Raise :class:`SchemaNotCurrentError` unless the database is at this code's head
    revision: a command on a new or older database would otherwise fail halfway with a
    missing table or column."""
    heads = set(ScriptDirectory.from_config(alembic_config(str(engine.url))).get_heads())
    with engine.connect() as connection:
        current = set(MigrationContext.configure(connection).get_current_heads())
    if current != heads:
        found = ", ".join(sorted(current)) or "none (an empty database)"
        raise SchemaNotCurrentError(
            f"the database is at revision {found}, this code needs {', '.join(sorted(heads))}: "
            "run `fwa db upgrade`"
        )


def upgrade(engine: Engine, revision: str = "head", *, settings: Settings | None = None) -> None:
    config = alembic_config(url_of(engine))
    with engine.begin() as connection:
        config.attributes.update(connection=connection, settings=settings)
        command.upgrade(config, revision)


def downgrade(engine: Engine, revision: str, *, settings: Settings | None = None) -> None:
    config = alembic_config(url_of(engine))
    with engine.begin() as connection:
        config.attributes.update(connection=connection, settings=settings)
        command.downgrade(config, revision)


def migration_settings(config: Config) -> Settings:
    """The settings a running migration reads (see the module's docstring)."""
    given = config.attributes.get("settings")
    return given if isinstance(given, Settings) else Settings()


def revision(engine: Engine, message: str) -> None:
    command.revision(
        alembic_config(url_of(engine)),
        message=message,
        autogenerate=True,
    )
