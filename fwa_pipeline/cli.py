"""The data commands: ``fwa synth``, ``load``, ``db``, ``keys``, ``run``, ``export`` and ``demo``.
Imports of heavy modules happen inside commands so ``fwa --help`` stays instant."""

from __future__ import annotations

import datetime as dt
import json
import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
from pydantic import ValidationError

from fwa_pipeline.domain.config import QualityMode
from fwa_pipeline.settings import ConfigurationError, Settings, variable

if TYPE_CHECKING:
    from sqlalchemy import Engine

    from fwa_pipeline.runs.launch import LaunchResult

logger = logging.getLogger(__name__)


def load_settings() -> Settings:
    try:
        return Settings()
    except ConfigurationError as exc:
        raise click.ClickException(str(exc)) from None
    except ValidationError as exc:
        # Named by variable, without the value given (it may be a secret).
        lines = []
        for error in exc.errors():
            name = variable(error["loc"])
            lines.append(f"  - {name}: {error['msg']}" if name else f"  - {error['msg']}")
        raise click.ClickException("invalid configuration:\n" + "\n".join(lines)) from None


def store_engine(settings: Settings | None = None, *, unreachable_ok: bool = False) -> Engine:
    """The claims store's engine, once the database answers and is migrated (a clear error,
    not a traceback, when it is not; ``unreachable_ok``: only when it answers)."""
    from sqlalchemy.exc import OperationalError

    from fwa_pipeline.store.db import get_engine
    from fwa_pipeline.store.migrate import SchemaNotCurrentError, require_current

    engine = get_engine(settings or load_settings())
    try:
        require_current(engine)
    except SchemaNotCurrentError as exc:
        raise click.ClickException(str(exc)) from None
    except OperationalError as exc:  # the driver's reason names host and port, never a password
        reason = str(exc.orig).strip().splitlines()[0] if exc.orig else type(exc).__name__
        if unreachable_ok:
            logger.warning(
                "cannot reach the database (%s): starting anyway; health reports it", reason
            )
            return engine
        raise click.ClickException(f"cannot reach the database: {reason}") from None
    return engine


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
    _migrate(revision, down=False)


@db.command("downgrade")
@click.argument("revision")
def db_downgrade(revision: str) -> None:
    """Migrate the database down to REVISION (``base`` drops everything)."""
    _migrate(revision, down=True)


def _migrate(revision: str, *, down: bool) -> None:
    """Migrate the configured database to ``revision``; a migration that refuses says why, as
    the user's error rather than a traceback."""
    from fwa_pipeline.store import migrate
    from fwa_pipeline.store.db import get_engine

    settings = load_settings()
    step = migrate.downgrade if down else migrate.upgrade
    try:
        step(get_engine(settings), revision, settings=settings)
    except migrate.MigrationRefusedError as exc:
        raise click.ClickException(str(exc)) from None
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
@click.option(
    "--key-id",
    default=None,
    help="Key id, alphanumeric, up to 16 (default: k + UTC date and time).",
)
def keys_generate(key_id: str | None) -> None:
    """Print a new AES-256 key in the form FWA_ENCRYPTION_KEY expects."""
    from fwa_pipeline.store.crypto import generate_key

    click.echo(generate_key(key_id))


@keys.command("rotate")
@click.option("--batch-size", default=1000, show_default=True, type=click.IntRange(1))
def keys_rotate(batch_size: int) -> None:
    """Re-encrypt every member's PHI under the active key (resumable; plaintext rows too)."""
    from fwa_pipeline.store.pii import rotate_keys

    settings = load_settings()
    engine = store_engine(settings)
    try:
        report = rotate_keys(engine, settings, batch_size=batch_size)
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

    settings = load_settings()
    engine = store_engine(settings)
    try:
        result = load_directory(engine, settings, workspace, directory, source="cli")
    except BatchRejected as exc:
        click.echo(str(exc), err=True)
        sys.exit(2)
    click.echo(json.dumps(result.summary(), indent=2))


# --------------------------------------------------------------------------- pipeline

QUALITY_MODES = [mode.value for mode in QualityMode]


def _config_file(config_file: Path) -> dict[str, Any]:
    """A YAML/JSON file of config sections (quality, scoring, rules.<id>)."""
    import yaml

    try:
        loaded = yaml.safe_load(config_file.read_text()) or {}
    except yaml.YAMLError as exc:
        raise click.ClickException(f"{config_file}: not YAML or JSON ({exc})") from None
    if not isinstance(loaded, dict):
        raise click.ClickException(f"{config_file}: expected a mapping of config sections")
    return loaded


def _pipeline_overrides(config_file: Path | None, quality_mode: str | None) -> dict[str, Any]:
    overrides = _config_file(config_file) if config_file is not None else {}
    if quality_mode:
        overrides = {**overrides, "quality": {**overrides.get("quality", {}), "mode": quality_mode}}
    return overrides


def _execute(
    settings: Settings,
    workspace: str,
    force: bool,
    pipeline: dict[str, Any],
    as_of: dt.date | None = None,
) -> LaunchResult:
    """Run the pipeline in-process on the local Dagster instance, then end what runs could not
    record themselves (an earlier ``fwa run`` killed): PipelineRun rows are complete without the
    daemon's ending sensor."""
    from dagster import DagsterInstance

    from fwa_pipeline.runs.config import PipelineRunConfig
    from fwa_pipeline.runs.ending import sweep
    from fwa_pipeline.runs.home import default_dagster_home
    from fwa_pipeline.runs.launch import run_pipeline

    try:
        PipelineRunConfig(force_reprocess=force, pipeline=pipeline).effective()
    except ValueError as exc:
        raise click.ClickException(f"invalid pipeline config: {exc}") from None
    default_dagster_home()
    engine = store_engine(settings)
    with DagsterInstance.get() as instance:
        result = run_pipeline(
            workspace, instance, force_reprocess=force, pipeline=pipeline, as_of=as_of
        )
        sweep(engine, instance)
    return result


def _run_summary(settings: Settings, run_id: str) -> dict[str, Any]:
    from fwa_pipeline.store.db import get_engine
    from fwa_pipeline.store.runs import get_run

    row = get_run(get_engine(settings), run_id)
    if row is None:
        return {"run_id": run_id, "status": "unknown"}
    quality = row.quality_report or {}
    return {
        "run_id": run_id,
        "status": row.status,
        "started_at": row.started_at.isoformat() if row.started_at else None,
        "completed_at": row.completed_at.isoformat() if row.completed_at else None,
        "force_reprocess": row.force_reprocess,
        # The workspace configuration version it applied (None: the catalogue defaults).
        "config_version": (row.config_snapshot or {}).get("config_version"),
        "quality": {
            k: quality.get(k) for k in ("total_claims", "passed", "failed", "counts_by_type")
        },
        "stats": row.stats,
    }


@cli.command("run")
@click.option("--workspace", required=True, help="Workspace name.")
@click.option("--force-reprocess", is_flag=True, help="Reprocess every claim, not only new ones.")
@click.option("--quality-mode", type=click.Choice(QUALITY_MODES), default=None)
@click.option(
    "--config",
    "config_file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="YAML/JSON laid over the catalogue defaults: quality, scoring, rules.<id>.",
)
@click.option(
    "--as-of",
    type=click.DateTime(["%Y-%m-%d"]),
    default=None,
    help="The run's as-of date (claims dated later are in the future). Default: today.",
)
def run_command(
    workspace: str,
    force_reprocess: bool,
    quality_mode: str | None,
    config_file: Path | None,
    as_of: dt.datetime | None,
) -> None:
    """Run the pipeline for WORKSPACE in this process (recorded in the local Dagster instance)."""
    from fwa_pipeline.store.claims import workspace_id

    settings = load_settings()
    if workspace_id(store_engine(settings), workspace) is None:
        raise click.ClickException(f"no workspace {workspace!r}: load a batch into it first")
    pipeline = _pipeline_overrides(config_file, quality_mode)
    result = _execute(
        settings, workspace, force_reprocess, pipeline, as_of.date() if as_of else None
    )
    click.echo(json.dumps(_run_summary(settings, result.run_id), indent=2, default=str))
    if not result.success:
        sys.exit(1)


# --------------------------------------------------------------------------- configuration


@cli.group("config")
def config_group() -> None:
    """A workspace's pipeline configuration: versioned, applied by every run that does not
    override it (``fwa run --config``, the API's enqueue)."""


def _workspace(engine: Engine, workspace: str) -> int:
    from fwa_pipeline.store.claims import workspace_id

    ws_id = workspace_id(engine, workspace)
    if ws_id is None:
        raise click.ClickException(f"no workspace {workspace!r}")
    return ws_id


def _echo_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, default=str))


@config_group.command("show")
@click.option("--workspace", required=True, help="Workspace name.")
@click.option("--version", "number", type=click.IntRange(1), help="Default: the newest.")
def config_show(workspace: str, number: int | None) -> None:
    """Print the configuration runs of WORKSPACE apply (the catalogue's until a version is set)."""
    from fwa_pipeline.domain.config import catalogue_document
    from fwa_pipeline.store.workspace_config import config_version, current_config

    engine = store_engine()
    ws_id = _workspace(engine, workspace)
    found = config_version(engine, ws_id, number) if number else current_config(engine, ws_id)
    if found is None and number:
        raise click.ClickException(f"workspace {workspace!r} has no configuration version {number}")
    if found is None:
        _echo_json({"version": None, "config": catalogue_document()})
        return
    _echo_json(
        {
            "version": found.version,
            "created_by": found.created_by,
            "created_at": found.created_at,
            "note": found.note,
            "config": found.document,
        }
    )


@config_group.command("set")
@click.option("--workspace", required=True, help="Workspace name.")
@click.option(
    "--file",
    "config_file",
    required=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="YAML/JSON laid over the catalogue defaults: quality, scoring, rules.<id>.",
)
@click.option("--note", required=True, help="Why: kept with the version.")
@click.option("--by", "author", default=None, help="Who sets it. Default: cli:<OS user>.")
@click.option(
    "--based-on",
    type=click.IntRange(0),
    default=None,
    help="The version the change was made from (0: none): refused if another came since.",
)
def config_set(
    workspace: str, config_file: Path, note: str, author: str | None, based_on: int | None
) -> None:
    """Validate FILE and save it as WORKSPACE's next configuration version. Runs adopt it when
    they start: nothing is rescored until then."""
    import getpass

    from fwa_pipeline.kit.validation import InvalidInput
    from fwa_pipeline.store.workspace_config import StaleConfigError, config_history, set_config

    if author is None:
        try:
            author = f"cli:{getpass.getuser()}"
        except (KeyError, OSError):  # no user name for this uid (a container)
            author = "cli"
    document = _config_file(config_file)
    engine = store_engine()
    ws_id = _workspace(engine, workspace)
    try:
        found, created = set_config(
            engine, ws_id, document, created_by=author[:100], note=note, based_on=based_on
        )
    except InvalidInput as exc:  # the document (ConfigError) or the note
        raise click.ClickException(f"invalid pipeline config: {exc}") from None
    except StaleConfigError as exc:
        raise click.ClickException(str(exc)) from None
    changes = config_history(engine, ws_id)[0]["changes"] if created else []
    _echo_json({"version": found.version, "created": created, "changes": changes})


@config_group.command("history")
@click.option("--workspace", required=True, help="Workspace name.")
def config_history_command(workspace: str) -> None:
    """Every configuration version of WORKSPACE, newest first: who, when, why and what changed."""
    from fwa_pipeline.store.workspace_config import config_history

    engine = store_engine()
    history = config_history(engine, _workspace(engine, workspace))
    _echo_json([{k: v for k, v in entry.items() if k != "document"} for entry in history])


@cli.command("export")
@click.option("--workspace", required=True, help="Workspace name.")
@click.argument("what", type=click.Choice(["rule-hits", "scores", "cases"]))
@click.option(
    "--format", "fmt", type=click.Choice(["csv", "json"]), default="csv", show_default=True
)
@click.option(
    "--output", "-o", type=click.Path(dir_okay=False, path_type=Path), help="Default: stdout."
)
def export_command(workspace: str, what: str, fmt: str, output: Path | None) -> None:
    """Export a workspace's rule hits (one row per rule and claim), claim scores or cases."""
    from fwa_pipeline.store.claims import workspace_id
    from fwa_pipeline.store.exports import EXPORTS, to_csv, to_json

    engine = store_engine()
    ws_id = workspace_id(engine, workspace)
    if ws_id is None:
        raise click.ClickException(f"no workspace {workspace!r}")
    frame = EXPORTS[what](engine, ws_id)
    text = to_csv(frame) if fmt == "csv" else to_json(frame)
    if output is None:
        click.echo(text, nl=False)
    else:
        output.write_text(text)
        click.echo(f"{len(frame)} row(s) written to {output}", err=True)


@cli.command()
@click.option("--claims", "n_claims", default=20_000, show_default=True, type=click.IntRange(100))
@click.option("--seed", default=42, show_default=True, type=int)
@click.option("--workspace", default="demo", show_default=True)
def demo(n_claims: int, seed: int, workspace: str) -> None:
    """Synthesise a batch with planted schemes, load it into a fresh WORKSPACE, run the whole
    pipeline on the embedded default (SQLite, local Dagster home) and print what it found."""
    from fwa_pipeline.ingest import BatchRejected, load_directory
    from fwa_pipeline.runs.home import default_dagster_home
    from fwa_pipeline.store import migrate
    from fwa_pipeline.store.claims import delete_workspace
    from fwa_pipeline.store.db import get_engine
    from fwa_pipeline.synth import ANCHOR_DATE, generate

    settings = load_settings()
    engine = get_engine(settings)
    migrate.upgrade(engine, settings=settings)
    batch_dir = settings.data_dir / "demo" / workspace
    click.echo(f"synthesising {n_claims:,} claims (seed {seed}) into {batch_dir} ...")
    generate(batch_dir, n_claims=n_claims, seed=seed, quality_defects=True)
    if delete_workspace(engine, workspace):
        click.echo(f"replaced the earlier {workspace!r} workspace")
    try:
        load_directory(engine, settings, workspace, batch_dir, source="cli")
    except BatchRejected as exc:  # the generator writes conformant files; say so if not
        raise click.ClickException(str(exc)) from None
    click.echo(f"loaded into workspace {workspace!r}; running the pipeline ...")
    # The synthetic data's "today" is its anchor date: claims after it are the planted
    # future-dated defects.
    result = _execute(settings, workspace, False, {}, as_of=ANCHOR_DATE)
    click.echo(_demo_report(settings, workspace, result.run_id))
    home = default_dagster_home()
    click.echo(
        "\nOpen the Dagster UI on the same data (assets, checks, runs, lineage):\n"
        f"  DAGSTER_HOME={home} {Path(sys.executable).with_name('dagster')} dev "
        "-w workspace.yaml\n"
        "  then http://127.0.0.1:3000 (run it from this directory)"
    )
    if not result.success:
        sys.exit(1)


def _demo_report(settings: Settings, workspace: str, run_id: str) -> str:
    from fwa_pipeline.store.claims import workspace_id
    from fwa_pipeline.store.db import get_engine
    from fwa_pipeline.store.exports import cases_by_level

    summary = _run_summary(settings, run_id)
    stats = summary.get("stats") or {}
    quality = summary["quality"]
    engine = get_engine(settings)
    levels = cases_by_level(engine, workspace_id(engine, workspace) or -1)
    lines = [
        f"\nrun {run_id}: {summary['status']}",
        f"claims: {quality.get('total_claims') or 0:,} in, {quality.get('passed') or 0:,} passed "
        f"the quality gate, {stats.get('claims_held', 0):,} held back",
        "quality issues: "
        + (
            ", ".join(f"{k} {v:,}" for k, v in (quality.get("counts_by_type") or {}).items())
            or "none"
        ),
        f"rule hits: {stats.get('hits', 0):,} on {stats.get('claims_flagged', 0):,} claims",
    ]
    evaluation = {r["rule_id"]: r for r in (stats.get("precision_recall") or {}).get("rules", [])}
    lines.append(f"  {'rule':<14}{'hits':>7}{'labelled':>10}{'precision':>11}{'recall':>8}")
    for rule_id in sorted(set(stats.get("hits_by_rule") or {}) | set(evaluation)):
        row = evaluation.get(rule_id, {})
        lines.append(
            f"  {rule_id:<14}{(stats.get('hits_by_rule') or {}).get(rule_id, 0):>7,}"
            f"{row.get('labelled', 0):>10,}{_ratio(row.get('precision')):>11}"
            f"{_ratio(row.get('recall')):>8}"
        )
    overall = (stats.get("precision_recall") or {}).get("overall") or {}
    lines.append(
        f"  {'all rules':<14}{'':>17}{_ratio(overall.get('precision')):>11}"
        f"{_ratio(overall.get('recall')):>8}"
    )
    order = ["critical", "high", "medium", "low"]
    lines.append(
        "open cases by risk level: "
        + (", ".join(f"{level} {levels[level]:,}" for level in order if level in levels) or "none")
        + f" (opened {stats.get('cases_opened', 0):,}, flagged billed "
        f"${stats.get('flagged_billed', 0):,.2f})"
    )
    return "\n".join(lines)


def _ratio(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def main() -> None:
    cli()


if __name__ == "__main__":
    main()
