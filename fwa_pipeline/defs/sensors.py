"""Automation: runs for newly landed batches and for pipeline requests, and the ending of the
``PipelineRun`` rows their runs could not write themselves.

* ``landed_batch_sensor``: a batch landed (CLI or API upload) adds its workspace's partition and
  requests a run for the workspace, keyed by the newest batch id so a batch never starts two
  runs. Batches a run already consumed (``fwa run`` in-process) are skipped.
* ``pipeline_request_sensor``: a queued ``PipelineRequest`` (the API's enqueue) becomes a run
  tagged with its job id; the run marks the request launched, with its Dagster run id, when it
  starts.
* ``pipeline_run_ending``: every minute, record what runs could not record themselves
  (``runs.ending.sweep``): a run waiting in the run queue, one that ended before its first step
  (canceled while queued, an invalid config), one whose process died, one deleted from Dagster.
  A run records its own start, progress and end (``runs.ledger``).
"""

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import dagster as dg
from sqlalchemy import Engine

from fwa_pipeline.defs.jobs import pipeline_job
from fwa_pipeline.defs.partitions import WORKSPACES
from fwa_pipeline.defs.resources import StoreResource
from fwa_pipeline.runs.config import workspace_run_config
from fwa_pipeline.runs.ending import sweep
from fwa_pipeline.runs.tags import run_tags
from fwa_pipeline.store.claims import store_id, unconsumed_batches
from fwa_pipeline.store.runs import queued_requests

RUNNING = dg.DefaultSensorStatus.RUNNING
# The ending sensor re-reads this much before its cursor: run records are updated out of order.
ENDING_OVERLAP = dt.timedelta(minutes=10)


@dataclass(frozen=True)
class _Wanted:
    """A run a sensor asks for: its workspace, its run key and what its run config sets."""

    workspace: str
    run_key: str
    job_id: str | None = None
    force_reprocess: bool = False
    pipeline: Mapping[str, Any] | None = None


def _runs(
    context: dg.SensorEvaluationContext, engine: Engine, trigger: str, wanted: list[_Wanted]
) -> dg.SensorResult:
    """A run for each of ``wanted``, pinned to its workspace's newest configuration and tagged
    with ``trigger``, and the partitions of the workspaces Dagster does not know yet."""
    this_store = store_id(engine)
    known = set(context.instance.get_dynamic_partitions(WORKSPACES.name))
    new = sorted({run.workspace for run in wanted} - known)
    return dg.SensorResult(
        run_requests=[
            dg.RunRequest(
                partition_key=run.workspace,
                run_key=run.run_key,
                run_config=workspace_run_config(
                    engine,
                    run.workspace,
                    force_reprocess=run.force_reprocess,
                    pipeline=run.pipeline,
                ),
                tags=run_tags(run.workspace, trigger, this_store, job_id=run.job_id),
            )
            for run in wanted
        ],
        dynamic_partitions_requests=[WORKSPACES.build_add_request(new)] if new else [],
    )


@dg.sensor(
    job=pipeline_job,
    minimum_interval_seconds=30,
    default_status=RUNNING,
    description="A newly landed batch adds its workspace's partition and requests a run "
    "(run key: the batch id).",
)
def landed_batch_sensor(
    context: dg.SensorEvaluationContext, store: StoreResource
) -> dg.SensorResult | dg.SkipReason:
    # Every unconsumed batch, each tick: no cursor on batch ids, since ids are taken when a load
    # starts but seen when it commits, so a slow load can commit under a lower id than one
    # already seen. Dagster makes one run per run key, however often it is requested.
    landed = unconsumed_batches(store.engine())
    if not landed:
        return dg.SkipReason("no unconsumed batch")
    newest = {workspace: batch_id for batch_id, workspace in landed}  # the last one wins
    wanted = [
        _Wanted(workspace, f"batch-{batch_id}") for workspace, batch_id in sorted(newest.items())
    ]
    return _runs(context, store.engine(), "batch_sensor", wanted)


@dg.sensor(
    job=pipeline_job,
    minimum_interval_seconds=15,
    default_status=RUNNING,
    description="A queued pipeline request (the API's enqueue) becomes a run tagged with its "
    "job id.",
)
def pipeline_request_sensor(
    context: dg.SensorEvaluationContext, store: StoreResource
) -> dg.SensorResult | dg.SkipReason:
    # A request stays queued until its run links itself (``runs.ledger``): marking it here
    # would strand it if this tick's runs were never created.
    # Requested again each tick meanwhile, it still makes one run: its run key is its job id.
    queued = queued_requests(store.engine())
    if not queued:
        return dg.SkipReason("no queued pipeline request")
    wanted = [
        _Wanted(
            request.workspace,
            f"request-{request.job_id}",
            job_id=request.job_id,
            force_reprocess=request.force_reprocess,
            pipeline=request.override(),
        )
        for request in queued
    ]
    return _runs(context, store.engine(), "request_sensor", wanted)


@dg.sensor(
    minimum_interval_seconds=60,
    default_status=RUNNING,
    description="Record the runs that could not record themselves in PipelineRun: waiting in "
    "the run queue, ended before their first step, their process dead, deleted from Dagster.",
)
def pipeline_run_ending(context: dg.SensorEvaluationContext, store: StoreResource) -> dg.SkipReason:
    started = dt.datetime.now(dt.UTC)
    since = dt.datetime.fromisoformat(context.cursor) - ENDING_OVERLAP if context.cursor else None
    recorded = sweep(store.engine(), context.instance, updated_after=since)
    context.update_cursor(started.isoformat())
    return dg.SkipReason(f"recorded {recorded} run(s)")


SENSORS = [landed_batch_sensor, pipeline_request_sensor, pipeline_run_ending]
