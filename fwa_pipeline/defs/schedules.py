"""The nightly rescore: every workspace reprocessed with the day's peer statistics and its newest
configuration version (a weight or threshold changed during the day reaches every claim)."""

import dagster as dg

from fwa_pipeline.defs.jobs import pipeline_job
from fwa_pipeline.defs.partitions import WORKSPACES
from fwa_pipeline.defs.resources import StoreResource
from fwa_pipeline.runs.config import workspace_run_config
from fwa_pipeline.runs.tags import run_tags
from fwa_pipeline.store.claims import store_id, workspace_names

NIGHTLY_CRON = "0 2 * * *"


@dg.schedule(
    job=pipeline_job,
    cron_schedule=NIGHTLY_CRON,
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Reprocess every workspace at 02:00 UTC.",
)
def nightly_rescore(
    context: dg.ScheduleEvaluationContext, store: StoreResource
) -> list[dg.RunRequest]:
    day = context.scheduled_execution_time.date().isoformat()
    engine = store.engine()
    this_store = store_id(engine)
    # The partitions that are this store's workspaces (a Dagster home may hold another's).
    ours = set(workspace_names(engine))
    return [
        dg.RunRequest(
            partition_key=workspace,
            run_key=f"nightly-{day}-{workspace}",
            run_config=workspace_run_config(engine, workspace, force_reprocess=True),
            tags=run_tags(workspace, "nightly", this_store),
        )
        for workspace in context.instance.get_dynamic_partitions(WORKSPACES.name)
        if workspace in ours
    ]


SCHEDULES = [nightly_rescore]
