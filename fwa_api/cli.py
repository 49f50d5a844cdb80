"""The ``fwa`` command: the pipeline's data commands plus ``serve``, ``dev`` and ``token``.

The arrow runs from the API to the pipeline: this module extends ``fwa_pipeline.cli.cli``, never
the other way round. Heavy imports stay inside commands so ``fwa --help`` stays instant.
"""

from __future__ import annotations

import datetime as dt
import sys
from pathlib import Path

import click

from fwa_pipeline.cli import cli, load_settings, store_engine
from fwa_pipeline.store.models import ROLES


@cli.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=click.IntRange(1, 65535))
@click.option(
    "--workers",
    default=1,
    show_default=True,
    type=click.IntRange(1),
    help="Processes; each keeps its own /metrics counters, so prefer one per container.",
)
def serve(host: str, port: int, workers: int) -> None:
    """Serve the API with uvicorn (JSON logs on stderr)."""
    import uvicorn

    from fwa_api.app import UVICORN_LOGGERS
    from fwa_pipeline.kit.logging import configure_logging

    settings = load_settings()  # refuse an unsafe production configuration before binding
    configure_logging(settings.log_level, reroute=UVICORN_LOGGERS)
    # A database that does not answer yet (its container still starting) is the health
    # route's to report; one that answers unmigrated is refused here.
    store_engine(settings, unreachable_ok=True)
    uvicorn.run(
        "fwa_api.app:create_app",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        log_config=None,  # keep the JSON handler configured above
        access_log=False,  # the request-context middleware writes the access line
        # The rate limiter reads X-Forwarded-For itself, trusting only FWA_TRUSTED_PROXIES.
        proxy_headers=False,
        server_header=False,
    )


PORT = click.IntRange(1, 65535)


@cli.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="For the API and the UI.")
@click.option("--api-port", default=8000, show_default=True, type=PORT)
@click.option("--dagster-port", default=3000, show_default=True, type=PORT, help="Dagster UI.")
@click.option(
    "--workspace-file",
    default="workspace.yaml",
    show_default=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Dagster's code locations (the repository's loads fwa_pipeline.definitions).",
)
def dev(host: str, api_port: int, dagster_port: int, workspace_file: Path) -> None:
    """Run the local stack: Dagster webserver and daemon (sensors turn landed batches and
    enqueued jobs into runs) and the API, on the configured store (by default SQLite under the
    data directory and the Dagster home ./dagster_home). Ctrl-C or SIGTERM stops all of it."""
    from dagster import DagsterInstance

    from fwa_api import dev as stack
    from fwa_pipeline.runs.home import default_dagster_home
    from fwa_pipeline.store import migrate
    from fwa_pipeline.store.db import get_engine

    settings = load_settings()
    migrate.upgrade(get_engine(settings), settings=settings)
    # Children inherit the environment: all of them find the same instance and store.
    home = default_dagster_home()
    # Opening the instance creates a fresh home's SQLite storage; the children opening it all
    # at once would race to stamp its schema version.
    with DagsterInstance.get():
        pass
    click.echo(f"store: {get_engine(settings).url.render_as_string()}; DAGSTER_HOME={home}")
    services = stack.services(host, api_port, dagster_port, workspace_file.resolve())
    sys.exit(stack.run(services, click.echo))


@cli.group()
def token() -> None:
    """Bearer tokens for the API."""


@token.command("create")
@click.option("--name", required=True, help="Who or what holds it; names audit entries.")
@click.option("--role", required=True, type=click.Choice(ROLES))
@click.option("--workspace", "workspaces", required=True, multiple=True, help="Repeat for several.")
@click.option(
    "--expires-in",
    metavar="DURATION",
    help="Lifetime, e.g. 30d, 12h, 2w (default: FWA_TOKEN_LIFETIME_DAYS days).",
)
@click.option(
    "--long-lived", is_flag=True, help="Allow --expires-in beyond FWA_TOKEN_LIFETIME_DAYS."
)
def token_create(
    name: str, role: str, workspaces: tuple[str, ...], expires_in: str | None, long_lived: bool
) -> None:
    """Create a token and print it once (stdout); it is stored only as a keyed hash."""
    from fwa_api.auth import create_token, in_utc, missing_workspaces, parse_duration

    settings = load_settings()
    engine = store_engine(settings)
    try:
        secret, row = create_token(
            engine,
            settings,
            name=name,
            role=role,
            workspaces=workspaces,
            expires_in=None if expires_in is None else parse_duration(expires_in),
            long_lived=long_lived,
        )
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(secret)
    click.echo(
        f"token {row.id} ({row.prefix}…) for {name}: role {role}, workspaces "
        f"{', '.join(row.workspaces)}, expires {in_utc(row.expires_at):%Y-%m-%d %H:%M} UTC. "
        "It is shown only this once.",
        err=True,
    )
    for missing in missing_workspaces(engine, row.workspaces):
        click.echo(f"note: workspace {missing!r} does not exist yet", err=True)


@token.command("revoke")
@click.argument("prefix_or_id")
def token_revoke(prefix_or_id: str) -> None:
    """Revoke the token with this id or display prefix."""
    from redis.exceptions import RedisError

    from fwa_api.auth import REDIS_PREFIX, TOKEN_TTL_S, announce_revocation, revoke_token

    settings = load_settings()
    engine = store_engine(settings)
    try:
        row = revoke_token(engine, prefix_or_id)
    except LookupError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"revoked token {row.id} ({row.prefix}…, {row.name})")
    later = f"running servers drop it within {TOKEN_TTL_S:.0f} s"
    if settings.redis_url is None or not settings.redis_url.get_secret_value():
        click.echo(f"FWA_REDIS_URL is not set: {later}", err=True)
        return
    try:
        listening = announce_revocation(
            settings.redis_url.get_secret_value(), REDIS_PREFIX, row.token_hash
        )
    except (RedisError, OSError) as exc:
        click.echo(f"could not notify servers ({type(exc).__name__}): {later}", err=True)
        return
    click.echo(f"{listening} running server process(es) dropped it now", err=True)


@token.command("list")
def token_list() -> None:
    """List tokens (never the tokens themselves)."""
    from fwa_api.auth import in_utc, list_tokens

    rows = list_tokens(store_engine())
    if not rows:
        click.echo("no tokens")
        return
    now = dt.datetime.now(dt.UTC)
    minute = "%Y-%m-%d %H:%M"
    click.echo(
        f"{'id':>4}  {'prefix':<12}  {'role':<12}  {'status':<8}  {'created':<10}  "
        f"{'expires (UTC)':<16}  {'last used (UTC)':<16}  name"
    )
    for row in rows:
        expires = in_utc(row.expires_at)
        status = "revoked" if row.revoked_at else "expired" if expires <= now else "active"
        used = "never" if row.last_used_at is None else f"{in_utc(row.last_used_at):{minute}}"
        click.echo(
            f"{row.id:>4}  {row.prefix:<12}  {row.role:<12}  {status:<8}  "
            f"{in_utc(row.created_at):%Y-%m-%d}  {expires:{minute}}  {used:<16}  "
            f"{row.name} [{', '.join(row.workspaces)}]"
        )


def main() -> None:
    cli()


if __name__ == "__main__":
    main()
