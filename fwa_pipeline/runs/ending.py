"""Ending what a run could not record itself, from what Dagster holds of it.

A run records its own start, progress and end (``runs.ledger``). What it cannot record: that it
waits in Dagster's queue, that it ended before its first step (canceled while queued, refused by
its resources, an invalid config), that its process died, that its Dagster run was deleted.
:func:`sweep` (the ending sensor's tick) finds those; :func:`end_run` records one run, and is
also what the in-process launcher and ``cancel_job`` call for their run.

This module uses only Dagster's instance API: the API imports it without loading definitions.
"""

from __future__ import annotations

import datetime as dt
import os
import socket

import dagster as dg
from dagster import DagsterEventType, DagsterRunStatus
from sqlalchemy import Engine, select

from fwa_pipeline.runs import ledger
from fwa_pipeline.runs.tags import HOST_TAG, STORE_TAG, process_of
from fwa_pipeline.store.claims import store_id
from fwa_pipeline.store.models import PipelineRun
from fwa_pipeline.store.runs import FINAL_STATUSES, as_utc, get_run

ENDED = {
    DagsterRunStatus.SUCCESS: "success",
    DagsterRunStatus.FAILURE: "failure",
    DagsterRunStatus.CANCELED: "canceled",
}
# A run created or queued, that no run worker has picked up.
WAITING = {DagsterRunStatus.NOT_STARTED, DagsterRunStatus.QUEUED}


def end_run(
    engine: Engine,
    instance: dg.DagsterInstance,
    run_id: str,
    store: str | None = None,
    *,
    reason: str | None = None,
) -> str | None:
    """Record what Dagster knows of run ``run_id`` that the run did not record: it waits, it
    ended, or it is gone. Returns the row's status, or None for a run that is not this store's
    (``store``: its id, when the caller has read it already). A run with no row is this store's
    if it carries the store's tag (or none) and never started a step: one that did has recorded
    itself in the store its resource points at."""
    row = get_run(engine, run_id)
    record = instance.get_run_record_by_id(run_id)
    if record is None:
        return ledger.deleted(engine, run_id)
    run = record.dagster_run
    if row is None:
        ours = store or store_id(engine)
        if run.tags.get(STORE_TAG, ours) != ours or _stepped(instance, run_id):
            return None
        if run.status in WAITING:
            return ledger.waiting(engine, instance, run)
    elif row.status in FINAL_STATUSES:
        return row.status
    status = ENDED.get(run.status)
    if status is None:  # still going: the run records its own end
        return row.status if row is not None else None
    return ledger.ended(
        engine,
        instance,
        run,
        status=status,
        started_at=as_utc(record.start_time),
        completed_at=as_utc(record.end_time),
        reason=reason or _why(run, status, row is None or row.status == "queued"),
    )


def _why(run: dg.DagsterRun, status: str, unrecorded: bool) -> str | None:
    """Why a run that never started a step failed, as its requester may read it."""
    if status != "failure" or not unrecorded:
        return None
    if "invalid" in ledger.config_snapshot(run):
        return "the run's configuration is invalid"
    return "the run failed before its first step"


def _stepped(instance: dg.DagsterInstance, run_id: str) -> bool:
    started = instance.get_records_for_run(run_id, of_type=DagsterEventType.STEP_START, limit=1)
    return bool(started.records)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


def orphaned_runs(instance: dg.DagsterInstance) -> dict[str, str]:
    """Fail in Dagster the in-process runs of this host whose process is gone (a killed
    ``fwa run``: without a daemon nothing else would). Returns their run ids and why."""
    records = instance.get_run_records(
        filters=dg.RunsFilter(
            statuses=[DagsterRunStatus.STARTING, DagsterRunStatus.STARTED],
            tags={HOST_TAG: socket.gethostname()},
        )
    )
    failed = {}
    for record in records:
        run = record.dagster_run
        pid = process_of(run)
        if pid is not None and not _alive(pid):
            why = f"the process running it (pid {pid}) is gone"
            instance.report_run_failed(run, message=why)
            failed[run.run_id] = why
    return failed


def sweep(
    engine: Engine,
    instance: dg.DagsterInstance,
    *,
    updated_after: dt.datetime | None = None,
    limit: int = 200,
) -> int:
    """End what runs could not record: the in-process runs whose process died, every row not
    final (its Dagster run finished or gone), and the Dagster runs updated after
    ``updated_after`` (or the latest ``limit``) that have no row. Returns the runs recorded."""
    orphans = orphaned_runs(instance)
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
    ours = store_id(engine)
    recorded = 0
    for run_id in sorted(open_ids | {r.dagster_run.run_id for r in records}):
        if end_run(engine, instance, run_id, ours, reason=orphans.get(run_id)) is not None:
            recorded += 1
    return recorded
