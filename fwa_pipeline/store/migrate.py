"""Alembic driven from the settings: ``fwa db upgrade`` / ``downgrade`` / ``revision``."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine

MIGRATIONS_DIR = Path(__file__).resolve().parents[2] / "migrations"


def alembic_config(url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    # ConfigParser interpolation: escape % in passwords.
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


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


def upgrade(engine: Engine, revision: str = "head") -> None:
    config = alembic_config(engine.url.render_as_string(hide_password=False))
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, revision)


def downgrade(engine: Engine, revision: str) -> None:
    config = alembic_config(engine.url.render_as_string(hide_password=False))
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.downgrade(config, revision)


def revision(engine: Engine, message: str) -> None:
    command.revision(
        alembic_config(engine.url.render_as_string(hide_password=False)),
        message=message,
        autogenerate=True,
    )
