"""Running the pipeline in-process (``fwa run``, ``fwa demo``, the benchmark, the tests) against a
real Dagster instance, so the run shows in the Dagster UI like any other, then recording what the
run could not record itself (it failed before its first step) without waiting for the daemon's
ending sensor."""

import datetime as dt
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import dagster as dg

from fwa_pipeline.definitions import build_defs
from fwa_pipeline.defs.jobs import PIPELINE_JOB
from fwa_pipeline.defs.partitions import ensure_partition
from fwa_pipeline.defs.resources import StoreResource
from fwa_pipeline.runs.config import workspace_run_config
from fwa_pipeline.runs.ending import end_run
from fwa_pipeline.runs.tags import process_tags, run_tags
from fwa_pipeline.store.claims import store_id


@dataclass(frozen=True)
class LaunchResult:
    run_id: str
    success: bool
    status: str | None  # as its PipelineRun row records it


def run_pipeline(
    workspace: str,
    instance: dg.DagsterInstance,
    *,
    force_reprocess: bool = False,
    pipeline: Mapping[str, Any] | None = None,
    as_of: dt.date | None = None,
    store: StoreResource | None = None,
    trigger: str = "cli",
    tags: Mapping[str, str] | None = None,
    log_level: str = "WARNING",
) -> LaunchResult:
    """Materialise every asset of ``workspace``'s partition in this process.

    ``store`` defaults to the environment's (``FWA_*``): leave it unset outside tests, since
    explicit resource values are recorded in the instance's job snapshot.
    """
    store = store or StoreResource()
    # Dagster's PostgreSQL storages open a connection per event by default: hundreds per run,
    # ~5 ms each. A run in this process holds one per storage instead (0: no statement timeout).
    instance.optimize_for_webserver(statement_timeout=0, pool_recycle=3600, max_overflow=10)
    defs = build_defs(resource_overrides={"store": store})
    ensure_partition(instance, workspace)
    run_id = str(uuid.uuid4())  # known before the run starts, for its process tags
    result = defs.resolve_job_def(PIPELINE_JOB).execute_in_process(
        instance=instance,
        partition_key=workspace,
        run_config={
            **workspace_run_config(
                store.engine(),
                workspace,
                force_reprocess=force_reprocess,
                pipeline=pipeline,
                as_of=as_of,
            ),
            # The events are stored in the instance either way; keep the terminal quiet.
            "loggers": {"console": {"config": {"log_level": log_level}}},
        },
        tags={
            **run_tags(workspace, trigger, store_id(store.engine())),
            **process_tags(run_id),
            **(tags or {}),
        },
        run_id=run_id,
        raise_on_error=False,
    )
    status = end_run(store.engine(), instance, result.run_id)
    return LaunchResult(run_id=result.run_id, success=result.success, status=status)
