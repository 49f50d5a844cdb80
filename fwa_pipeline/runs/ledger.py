"""The run record: the only code that writes ``PipelineRun`` rows, and that marks the
``PipelineRequest`` a run was asked by as launched.

A run records itself as it goes: :func:`started` as its first asset fixes its batches and config
(and the steps it will execute), :func:`gated` after the quality gate, :func:`committed` in the
transaction that commits its results, then the job's hooks record each step's end
(:func:`step_done`, :func:`failed`): the last planned step done ends the row as success, a failed
one as failure (canceled when interrupted). What a run cannot record itself (it waits in
Dagster's queue, was canceled or failed before its first step, its process died, its Dagster run
was deleted) is recorded by :func:`waiting` and :func:`ended`, which ``runs.ending`` calls.

A final status is never replaced (``store.runs.upsert_run``): whoever records a run's end first
wins, and a late writer adds nothing to it.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

import dagster as dg
from sqlalchemy import Connection, Engine, Row, select

from fwa_pipeline.runs.config import PIPELINE_CONFIG_KEY, PipelineRunConfig
from fwa_pipeline.runs.tags import JOB_ID_TAG, PARTITION_TAG, WORKSPACE_TAG
from fwa_pipeline.store.claims import workspace_id
from fwa_pipeline.store.models import PipelineRun, utcnow
from fwa_pipeline.store.runs import FINAL_STATUSES, mark_request, upsert_run

# Output metadata that makes up a run's statistics (each named by one asset only).
STATS_KEYS = (
    "batches",
    "claims_in",
    "claims_history",
    "peer_claims",
    "claims_passed",
    "claims_held",
    "quality_issues",
    "hits",
    "hits_by_rule",
    "claims_flagged",
    "claims_scored",
    "scores_by_level",
    "cases_opened",
    "cases_updated",
    "cases_unchanged",
    "cases_by_level",
    "flagged_billed",
    "flagged_paid",
    "precision_recall",
    "written",
)
# Failures the pipeline raises on purpose, whose messages are written for the job's requester
# (a missing workspace, a run another run superseded, a quality gate that halts the run).
STATED_FAILURES = {"Failure", "DagsterAssetCheckFailedError"}
# How a step is stopped when its run is terminated (or canceled as it starts).
INTERRUPTS = {"KeyboardInterrupt", "DagsterExecutionInterruptedError"}
UNSTATED = "failed (the run's event log in Dagster has the details)"
DELETED = "the Dagster run was deleted"


def run_workspace(run: dg.DagsterRun) -> str | None:
    return run.tags.get(PARTITION_TAG) or run.tags.get(WORKSPACE_TAG)


def planned_steps(instance: dg.DagsterInstance, run: dg.DagsterRun) -> list[str]:
    """The steps ``run`` executes, in order, as its execution plan fixed them."""
    if not run.execution_plan_snapshot_id:
        return []
    plan = instance.get_execution_plan_snapshot(run.execution_plan_snapshot_id)
    return list(plan.step_keys_to_execute) if plan else []


def requested_config(run: dg.DagsterRun) -> dict[str, Any]:
    """The ``PipelineRunConfig`` fields a run was launched with, as its launcher set them."""
    requested = (run.run_config or {}).get("resources", {}).get(PIPELINE_CONFIG_KEY, {})
    fields = requested.get("config", {}) if isinstance(requested, dict) else {}
    return fields if isinstance(fields, dict) else {}


def config_snapshot(run: dg.DagsterRun) -> dict[str, Any]:
    """The effective config a run was launched with (for a run that did not record its own, e.g.
    it failed before its first asset); an invalid one is kept as requested."""
    fields = requested_config(run)
    try:
        return PipelineRunConfig(**fields).snapshot()
    except Exception as exc:  # a config the run refused: record what was asked and why
        return {"invalid": str(exc).splitlines()[0], "requested": fields}


def step_stats(metadata: Mapping[str, Any]) -> dict[str, Any]:
    """A run's statistics among a step's output metadata (output name -> its metadata)."""
    stats: dict[str, Any] = {}
    for output in metadata.values():
        for key, value in output.items():
            if key in STATS_KEYS:
                stats[key] = value.value if isinstance(value, dg.MetadataValue) else value
    return stats


def step_error(error: BaseException | None) -> str:
    """What a job's requester reads of a failed step: the message of a failure the pipeline
    states on purpose; that it was interrupted; for anything else only that it failed.
    Exception details (class paths, reprs, stack) stay in the run's event log, for operators."""
    name = type(error).__name__ if error is not None else ""
    if name in INTERRUPTS:
        return "interrupted"
    if name not in STATED_FAILURES:
        return UNSTATED
    said = error.description if isinstance(error, dg.Failure) else str(error)
    return (said or "").strip() or UNSTATED


# --------------------------------------------------------------------------- the run's own


def started(
    engine: Engine,
    instance: dg.DagsterInstance,
    run: dg.DagsterRun,
    workspace: int,
    *,
    batch_id: int | None,
    force_reprocess: bool,
    config: Mapping[str, Any],
) -> None:
    """The run has fixed its batches and config: it is running, with the steps it plans, and
    the request that asked for it (if one did) is launched and linked to it."""
    with engine.begin() as connection:
        upsert_run(
            connection,
            run.run_id,
            workspace,
            status="running",
            job_name=run.job_name,
            started_at=utcnow(),
            batch_id=batch_id,
            force_reprocess=force_reprocess,
            config_snapshot=dict(config),
            progress={"planned": planned_steps(instance, run), "done": []},
        )
        _link(connection, run)


def gated(engine: Engine, run_id: str, workspace: int, report: Mapping[str, Any]) -> None:
    """The quality gate's report."""
    with engine.begin() as connection:
        upsert_run(connection, run_id, workspace, quality_report=dict(report))


def committed(connection: Connection, run_id: str, stats: Mapping[str, Any]) -> None:
    """The commit's figures, in the transaction of the results they describe: the row and the
    store agree whether it commits or rolls back."""
    row = _locked(connection, run_id)
    if row is not None:  # else the run did not record its start: its step's hook makes the row
        upsert_run(connection, run_id, row.workspace_id, stats={**row.stats, **stats})


def step_done(
    engine: Engine,
    instance: dg.DagsterInstance,
    run: dg.DagsterRun,
    step: str,
    stats: Mapping[str, Any],
) -> None:
    """``step`` succeeded with ``stats``: the row's progress and statistics; done with every
    planned step, the run has succeeded."""
    with engine.begin() as connection:
        row = _locked(connection, run.run_id) or _opened(connection, instance, run)
        if row is None or row.status in FINAL_STATUSES:  # a late writer adds nothing to an end
            return
        planned = list(row.progress.get("planned", []))
        done = [s for s in row.progress.get("done", []) if s != step] + [step]
        fields: dict[str, Any] = {
            "stats": {**row.stats, **stats},
            "progress": {"planned": planned, "done": done},
        }
        if planned and set(planned) <= set(done):
            fields.update(status="success", completed_at=utcnow())
        upsert_run(connection, run.run_id, row.workspace_id, **fields)


def failed(
    engine: Engine,
    instance: dg.DagsterInstance,
    run: dg.DagsterRun,
    step: str,
    error: BaseException | None,
) -> None:
    """``step`` failed: the run has failed (been canceled, if the step was interrupted), with
    what its requester may read of why."""
    said = step_error(error)
    with engine.begin() as connection:
        row = _locked(connection, run.run_id) or _opened(connection, instance, run)
        if row is None or row.status in FINAL_STATUSES:
            return
        upsert_run(
            connection,
            run.run_id,
            row.workspace_id,
            status="canceled" if said == "interrupted" else "failure",
            completed_at=utcnow(),
            errors=[*row.errors, f"{step}: {said}"],
        )


# --------------------------------------------------------------------------- from outside


def canceling(engine: Engine, instance: dg.DagsterInstance, run: dg.DagsterRun) -> None:
    """Termination was asked for: the row (made now if the run has not recorded its start yet)
    reads canceling until the run ends."""
    with engine.begin() as connection:
        row = _locked(connection, run.run_id)
        if row is None:
            _opened(connection, instance, run, status="canceling")
        elif row.status not in FINAL_STATUSES:
            upsert_run(connection, run.run_id, row.workspace_id, status="canceling")


def waiting(engine: Engine, instance: dg.DagsterInstance, run: dg.DagsterRun) -> str | None:
    """``run`` waits in Dagster's queue: it is recorded queued (until it starts or ends).
    Returns the row's status, None for a run of no workspace of this store."""
    with engine.begin() as connection:
        row = _locked(connection, run.run_id) or _opened(connection, instance, run, status="queued")
        return None if row is None else str(row.status)


def ended(
    engine: Engine,
    instance: dg.DagsterInstance,
    run: dg.DagsterRun,
    *,
    status: str,
    started_at: dt.datetime | None = None,
    completed_at: dt.datetime | None = None,
    reason: str | None = None,
) -> str | None:
    """``run`` ended (``status``) without recording it: its row, made now if it has none, ends
    with ``reason`` (why, for its requester) or, for a run canceled mid-step, that step
    interrupted. Returns the row's status (a final one already recorded stays), or None for a
    run of no workspace of this store."""
    with engine.begin() as connection:
        row = _locked(connection, run.run_id) or _opened(
            connection, instance, run, status="queued", started_at=started_at
        )
        if row is None:
            return None
        return _end(connection, run.run_id, row, status, completed_at, reason)


def deleted(engine: Engine, run_id: str) -> str | None:
    """Dagster no longer has run ``run_id``: its row, still open, ends as a failure (nothing
    else ever would; had it committed, it would be final). Returns the row's status, None
    without a row."""
    with engine.begin() as connection:
        row = _locked(connection, run_id)
        if row is None:
            return None
        return _end(connection, run_id, row, "failure", None, DELETED)


def _end(
    connection: Connection,
    run_id: str,
    row: Row[Any],
    status: str,
    completed_at: dt.datetime | None,
    reason: str | None,
) -> str:
    if row.status in FINAL_STATUSES:
        return str(row.status)
    errors = list(row.errors)
    stats = dict(row.stats)
    if reason is not None:
        errors.append(reason)
        stats["failure"] = reason
    elif status == "canceled" and not errors and row.status in ("running", "canceling"):
        step = _current_step(row.progress)
        if step is not None:
            errors.append(f"{step}: interrupted")
    upsert_run(
        connection,
        run_id,
        row.workspace_id,
        status=status,
        completed_at=completed_at or utcnow(),
        errors=errors,
        stats=stats,
    )
    return status


def _current_step(progress: Mapping[str, Any]) -> str | None:
    """The first planned step not done: the one executing (steps run in plan order)."""
    done = set(progress.get("done", []))
    return next((s for s in progress.get("planned", []) if s not in done), None)


def phase(row: PipelineRun) -> str | None:
    """The step a run is executing, "done" once it has ended, None before it starts."""
    if row.status in FINAL_STATUSES:
        return "done"
    if row.status not in ("running", "canceling"):
        return None
    return _current_step(row.progress or {})


def _locked(connection: Connection, run_id: str) -> Row[Any] | None:
    """The row's fields the ledger merges into, locked until the transaction ends (two writers
    of one row merge one after the other; SQLite locks the whole database anyway)."""
    return connection.execute(
        select(
            PipelineRun.workspace_id,
            PipelineRun.status,
            PipelineRun.stats,
            PipelineRun.progress,
            PipelineRun.errors,
        )
        .where(PipelineRun.run_id == run_id)
        .with_for_update()
    ).one_or_none()


def _opened(
    connection: Connection,
    instance: dg.DagsterInstance,
    run: dg.DagsterRun,
    *,
    status: str = "running",
    started_at: dt.datetime | None = None,
) -> Row[Any] | None:
    """The row of a run that did not record its start (a re-execution of later steps only, a
    run that never started), made from what Dagster holds of it; None for a run of no
    workspace of this store."""
    name = run_workspace(run)
    ws_id = workspace_id(connection, name) if name else None
    if ws_id is None:
        return None
    snapshot = config_snapshot(run)
    upsert_run(
        connection,
        run.run_id,
        ws_id,
        status=status,
        job_name=run.job_name,
        started_at=started_at or (utcnow() if status in ("running", "canceling") else None),
        force_reprocess=bool(snapshot.get("force_reprocess", False)),
        config_snapshot=snapshot,
        progress={"planned": planned_steps(instance, run), "done": []},
    )
    _link(connection, run)
    return _locked(connection, run.run_id)


def _link(connection: Connection, run: dg.DagsterRun) -> None:
    """Mark the request that asked for ``run`` (if one did) launched, linked to the run."""
    job_id = run.tags.get(JOB_ID_TAG)
    if job_id:
        mark_request(connection, job_id, status="launched", dagster_run_id=run.run_id)
