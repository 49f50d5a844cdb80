"""The pipeline job's hooks: each step's end recorded in the run's ``PipelineRun`` row as it
happens (``runs.ledger``), so the row alone tells a job's progress and outcome."""

from __future__ import annotations

import dagster as dg

from fwa_pipeline.defs.resources import StoreResource
from fwa_pipeline.runs import ledger


def _run(context: dg.HookContext) -> dg.DagsterRun:
    run = context.instance.get_run_by_id(context.run_id)
    if run is None:  # the hook runs inside the run: Dagster has its record
        raise LookupError(context.run_id)
    return run


@dg.success_hook(required_resource_keys={"store"})
def step_recorded(context: dg.HookContext) -> None:
    store: StoreResource = context.resources.store
    stats = ledger.step_stats(context.op_output_metadata)
    ledger.step_done(store.engine(), context.instance, _run(context), context.step_key, stats)


@dg.failure_hook(required_resource_keys={"store"})
def step_failure_recorded(context: dg.HookContext) -> None:
    store: StoreResource = context.resources.store
    ledger.failed(
        store.engine(), context.instance, _run(context), context.step_key, context.op_exception
    )


HOOKS = {step_recorded, step_failure_recorded}
