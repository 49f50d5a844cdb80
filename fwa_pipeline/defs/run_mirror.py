"""The ``PipelineRun`` mirror: a Dagster run's status, times and figures copied into the store.

:func:`mirror_run` is idempotent and is called by the run-status sensors, by the reconciliation
(:func:`reconcile`, run by a sensor, ``fwa run``/``fwa demo`` and the API) and nowhere else. The
run itself writes what only it knows as it goes (config snapshot and batch at start, the quality
report after the gate); the mirror adds status, start and end times and the run's statistics,
read from its assets' materialisation metadata, and links a pipeline request to its run.

This module uses only Dagster's instance API: the API imports it without loading definitions.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import socket
from typing import Any

import dagster as dg
from dagster import DagsterEventType, DagsterRunStatus
from sqlalchemy import Engine, select

from fwa_pipeline.defs.resources import PIPELINE_CONFIG_KEY, PipelineRunConfig
from fwa_pipeline.runs.tags import (
    HOST_TAG,
    JOB_ID_TAG,
    PARTITION_TAG,
    STORE_TAG,
    WORKSPACE_TAG,
    process_of,
)
from fwa_pipeline.store.claims import store_id, workspace_id
from fwa_pipeline.store.models import PipelineRun, utcnow
from fwa_pipeline.store.runs import (
    FINAL_STATUSES,
    as_utc,
    get_run,
    mark_request,
    upsert_run,
)

log = logging.getLogger(__name__)

STATUS = {
    DagsterRunStatus.QUEUED: "queued",
    DagsterRunStatus.NOT_STARTED: "queued",
    DagsterRunStatus.MANAGED: "queued",
    DagsterRunStatus.STARTING: "running",
    DagsterRunStatus.STARTED: "running",
    DagsterRunStatus.SUSPENDED: "running",
    DagsterRunStatus.CANCELING: "running",
    DagsterRunStatus.SUCCESS: "success",
    DagsterRunStatus.FAILURE: "failure",
    DagsterRunStatus.CANCELED: "canceled",
}

# Materialisation metadata that makes up a run's statistics (each named by one asset only).
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


def run_workspace(run: dg.DagsterRun) -> str | None:
    return run.tags.get(PARTITION_TAG) or run.tags.get(WORKSPACE_TAG)


def requested_config(run: dg.DagsterRun) -> dict[str, Any]:
    """The ``PipelineRunConfig`` fields a run was launched with, as its launcher set them."""
    requested = (run.run_config or {}).get("resources", {}).get(PIPELINE_CONFIG_KEY, {})
    fields = requested.get("config", {}) if isinstance(requested, dict) else {}
    return fields if isinstance(fields, dict) else {}


def config_snapshot(run: dg.DagsterRun) -> dict[str, Any]:
    """The effective config a run was launched with (used when the run did not record its own,
    e.g. it failed before its first asset); an invalid one is kept as requested."""
    fields = requested_config(run)
    try:
        return PipelineRunConfig(**fields).snapshot()
    except Exception as exc:  # a config the run refused: record what was asked and why
        return {"invalid": str(exc).splitlines()[0], "requested": fields}


def run_stats(instance: dg.DagsterInstance, run_id: str) -> dict[str, Any]:
    stats: dict[str, Any] = {}
    for entry in instance.all_logs(run_id, of_type=DagsterEventType.ASSET_MATERIALIZATION):
        event = entry.dagster_event
        if event is None:
            continue
        for key, value in event.materialization.metadata.items():
            if key in STATS_KEYS:
                stats[key] = value.value
    return stats


def mirror_run(
    engine: Engine, instance: dg.DagsterInstance, run_id: str, store: str | None = None
) -> str | None:
    """Copy Dagster run ``run_id`` into its ``PipelineRun`` row; returns the mirrored status, or
    None for a run that is not a workspace's pipeline run of this store (``store``: its id,
    when the caller has read it already). A run carries its store's id once it has started
    (``StoreResource``); one without (it never started, or predates the tag) is taken by
    workspace name."""
    record = instance.get_run_record_by_id(run_id)
    if record is None:
        return None
    run = record.dagster_run
    ours = store or store_id(engine)
    if run.tags.get(STORE_TAG, ours) != ours:
        return None  # another store's run, sharing this Dagster home
    workspace = run_workspace(run)
    ws_id = workspace_id(engine, workspace) if workspace else None
    if ws_id is None:
        return None
    status = STATUS.get(run.status, "running")
    existing = get_run(engine, run_id)
    fields: dict[str, Any] = {
        "status": status,
        "job_name": run.job_name,
        "started_at": as_utc(record.start_time),
        "completed_at": as_utc(record.end_time) if status in FINAL_STATUSES else None,
        "stats": {**(existing.stats if existing else {}), **run_stats(instance, run_id)},
    }
    if existing is None or not existing.config_snapshot:
        fields["config_snapshot"] = config_snapshot(run)
        fields["force_reprocess"] = bool(fields["config_snapshot"].get("force_reprocess", False))
    with engine.begin() as connection:
        upsert_run(connection, run_id, ws_id, **fields)
        job_id = run.tags.get(JOB_ID_TAG)
        if job_id:
            mark_request(connection, job_id, status="launched", dagster_run_id=run_id)
    return status


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


def fail_orphaned_runs(instance: dg.DagsterInstance) -> list[str]:
    """Mark failed the in-process runs of this host whose process is gone (a killed ``fwa run``:
    without a daemon nothing else would). Returns their run ids."""
    records = instance.get_run_records(
        filters=dg.RunsFilter(
            statuses=[DagsterRunStatus.STARTING, DagsterRunStatus.STARTED],
            tags={HOST_TAG: socket.gethostname()},
        )
    )
    failed = []
    for record in records:
        run = record.dagster_run
        pid = process_of(run)
        if pid is not None and not _alive(pid):
            instance.report_run_failed(run, message=f"the process running it (pid {pid}) is gone")
            failed.append(run.run_id)
    return failed


def reconcile(
    engine: Engine,
    instance: dg.DagsterInstance,
    *,
    updated_after: dt.datetime | None = None,
    limit: int = 200,
) -> int:
    """Mirror what the sensors may have missed: every run whose ``PipelineRun`` row is not
    final, and the Dagster runs updated after ``updated_after`` (or the latest ``limit``).
    Returns the number of runs mirrored."""
    fail_orphaned_runs(instance)
    with engine.connect() as connection:
        open_ids = set(
            connection.execute(
                select(PipelineRun.run_id).where(PipelineRun.status.not_in(FINAL_STATUSES))
            ).scalars()
        )
    records = instance.get_run_records(
        filters=dg.RunsFilter(updated_after=updated_after) if updated_after else None,
        limit=limit,
    )
    run_ids = open_ids | {r.dagster_run.run_id for r in records}
    ours = store_id(engine)
    mirrored = 0
    for run_id in sorted(run_ids):
        if mirror_run(engine, instance, run_id, ours) is not None:
            mirrored += 1
        elif run_id in open_ids and instance.get_run_record_by_id(run_id) is None:
            _fail_lost_run(engine, run_id)
            mirrored += 1
    return mirrored


def _fail_lost_run(engine: Engine, run_id: str) -> None:
    """A ``PipelineRun`` row still open whose Dagster run was deleted: nothing will ever end it
    (its commit, had it happened, would have left the row final)."""
    with engine.begin() as connection:
        row = connection.execute(
            select(PipelineRun.workspace_id, PipelineRun.stats).where(PipelineRun.run_id == run_id)
        ).one()
        upsert_run(
            connection,
            run_id,
            row.workspace_id,
            status="failure",
            completed_at=utcnow(),
            stats={**(row.stats or {}), "failure": "the Dagster run was deleted"},
        )
