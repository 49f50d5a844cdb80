"""The data commands: ``fwa synth``, ``load``, ``db``, ``keys`` (and, later, ``run``, ``export``,
``demo``). Imports of heavy modules happen inside commands so ``fwa --help`` stays instant."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from fwa_pipeline.settings import ConfigurationError, Settings


def load_settings() -> Settings:
    try:
        return Settings()
    except ConfigurationError as exc:
        raise click.ClickException(str(exc)) from None


@click.group()
def cli() -> None:
    """FWA detection platform: data, pipeline and serving commands."""


# --------------------------------------------------------------------------- db


@cli.group()
def db() -> None:
    """Database schema migrations (Alembic)."""


@db.command("upgrade")
@click.argument("revision", default="head")
def db_upgrade(revision: str) -> None:
    """Migrate the database to REVISION (default: head)."""
    from fwa_pipeline.store import migrate
    from fwa_pipeline.store.db import get_engine

    migrate.upgrade(get_engine(load_settings()), revision)
    click.echo(f"database at {revision}")


@db.command("downgrade")
@click.argument("revision")
def db_downgrade(revision: str) -> None:
    """Migrate the database down to REVISION (``base`` drops everything)."""
    from fwa_pipeline.store import migrate
    from fwa_pipeline.store.db import get_engine

    migrate.downgrade(get_engine(load_settings()), revision)
    click.echo(f"database at {revision}")


@db.command("revision")
@click.option("-m", "--message", required=True)
def db_revision(message: str) -> None:
    """Autogenerate a migration from the models (developers)."""
    from fwa_pipeline.store import migrate
    from fwa_pipeline.store.db import get_engine

    migrate.revision(get_engine(load_settings()), message)


# --------------------------------------------------------------------------- keys


@cli.group()
def keys() -> None:
    """Field-encryption keys for member PHI."""


@keys.command("generate")
@click.option("--key-id", default=None, help="Key id (default: k + today's date).")
def keys_generate(key_id: str | None) -> None:
    """Print a new AES-256 key in the form FWA_ENCRYPTION_KEY expects."""
    from fwa_pipeline.store.crypto import generate_key

    click.echo(generate_key(key_id))


@keys.command("rotate")
@click.option("--batch-size", default=1000, show_default=True, type=click.IntRange(1))
def keys_rotate(batch_size: int) -> None:
    """Re-encrypt every member's PHI under the active key (resumable; plaintext rows too)."""
    from fwa_pipeline.store.db import get_engine
    from fwa_pipeline.store.pii import rotate_keys

    settings = load_settings()
    try:
        report = rotate_keys(get_engine(settings), settings, batch_size=batch_size)
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(json.dumps(report, indent=2))


# --------------------------------------------------------------------------- data


@cli.command()
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False, path_type=Path))
@click.option("--claims", "n_claims", default=10_000, show_default=True, type=click.IntRange(100))
@click.option("--seed", default=42, show_default=True, type=int)
def synth(out_dir: Path, n_claims: int, seed: int) -> None:
    """Write a synthetic, contract-conformant batch with planted FWA schemes and labels.csv."""
    from fwa_pipeline.synth import generate

    summary = generate(out_dir, n_claims=n_claims, seed=seed)
    click.echo(json.dumps(summary, indent=2))


@cli.command()
@click.option("--workspace", required=True, help="Workspace name (created if new).")
@click.argument("directory", type=click.Path(exists=True, file_okay=False, path_type=Path))
def load(workspace: str, directory: Path) -> None:
    """Validate and land DIRECTORY's contract files as one batch (all or nothing)."""
    from fwa_pipeline.ingest import BatchRejected, load_directory
    from fwa_pipeline.store.db import get_engine

    settings = load_settings()
    try:
        result = load_directory(get_engine(settings), settings, workspace, directory, source="cli")
    except BatchRejected as exc:
        click.echo(str(exc), err=True)
        sys.exit(2)
    click.echo(json.dumps(result.summary(), indent=2))


def main() -> None:
    cli()


if __name__ == "__main__":
    main()
