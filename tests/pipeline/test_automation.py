"""Sensors, the schedule, the run record (what a run records of itself, what the ending sensor
records for it) and job status, ticked by hand against a real Dagster instance."""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
import uuid

import dagster as dg
import pytest
from dagster import DagsterRunStatus

from fwa_pipeline.definitions import build_defs
from fwa_pipeline.defs import assets
from fwa_pipeline.defs.assets import ASSETS
from fwa_pipeline.defs.jobs import PIPELINE_JOB
from fwa_pipeline.defs.partitions import WORKSPACES
from fwa_pipeline.defs.schedules import nightly_rescore
from fwa_pipeline.defs.sensors import (
    landed_batch_sensor,
    pipeline_request_sensor,
    pipeline_run_ending,
)
from fwa_pipeline.runs.ending import end_run, sweep
from fwa_pipeline.runs.jobs import JobStatus, UnknownWorkspaceError, enqueue, job_status
from fwa_pipeline.runs.tags import (
    JOB_ID_TAG,
    PARENT_RUN_TAG,
    PARTITION_TAG,
    PID_RUN_TAG,
    PID_TAG,
    STORE_TAG,
    process_tags,
)
from fwa_pipeline.store.claims import store_id
from fwa_pipeline.store.runs import get_request, get_run
from tests.pipeline import batch
from tests.pipeline.conftest import WORKSPACE, Pipeline


def tick(sensor: dg.SensorDefinition, pipeline: Pipeline) -> object:
    # Closed here, not whenever it is collected: a context's teardown resets Dagster's
    # context-local instance state, and must not do so in the middle of a later test.
    with dg.build_sensor_context(
        instance=pipeline.instance, resources={"store": pipeline.store}
    ) as context:
        return sensor(context)


def launch(
    pipeline: Pipeline, result: dg.SensorResult, request: dg.RunRequest | None = None
) -> dg.ExecuteInProcessResult:
    """What the daemon does with a sensor's result: add the partitions it asks for, then launch
    its (first) run request, in-process here."""
    for add in result.dynamic_partitions_requests or []:
        pipeline.instance.add_dynamic_partitions(add.partitions_def_name, list(add.partition_keys))
    request = request or result.run_requests[0]
    job = build_defs({"store": pipeline.store}).resolve_job_def(PIPELINE_JOB)
    return job.execute_in_process(
        instance=pipeline.instance,
        partition_key=request.partition_key,
        run_config=request.run_config,
        tags=request.tags,
        raise_on_error=False,
    )


def requested(pipeline: Pipeline) -> tuple[str, dg.SensorResult]:
    """A batch landed and a job enqueued for it, and the request sensor's tick that asks for its
    run: (the job id, the tick's result)."""
    pipeline.land(batch.batch_one())
    job_id = enqueue(pipeline.engine, WORKSPACE)
    result = tick(pipeline_request_sensor, pipeline)
    assert isinstance(result, dg.SensorResult)
    return job_id, result


# --------------------------------------------------------------------------- batch sensor


def test_a_landed_batch_adds_its_partition_and_requests_one_run(pipeline: Pipeline) -> None:
    first = pipeline.land(batch.batch_one())
    result = tick(landed_batch_sensor, pipeline)

    assert isinstance(result, dg.SensorResult)
    (request,) = result.run_requests
    assert request.partition_key == WORKSPACE
    assert request.run_key == f"batch-{first}"
    (add,) = result.dynamic_partitions_requests
    assert add.partitions_def_name == WORKSPACES.name and list(add.partition_keys) == [WORKSPACE]
    # Nothing new: the same run key again, which Dagster turns into no second run.
    again = tick(landed_batch_sensor, pipeline)
    assert isinstance(again, dg.SensorResult)
    assert [r.run_key for r in again.run_requests] == [f"batch-{first}"]
    # Two batches in one workspace: one run, keyed by the newer.
    second = pipeline.land(batch.batch_two())
    third = pipeline.land(batch.batch_one(), workspace="globex")
    later = tick(landed_batch_sensor, pipeline)
    assert isinstance(later, dg.SensorResult)
    assert sorted((r.partition_key, r.run_key) for r in later.run_requests) == [
        (WORKSPACE, f"batch-{second}"),
        ("globex", f"batch-{third}"),
    ]


def test_a_requested_run_consumes_the_batch_and_later_ticks_skip_it(pipeline: Pipeline) -> None:
    pipeline.land(batch.batch_one())
    result = tick(landed_batch_sensor, pipeline)
    assert isinstance(result, dg.SensorResult)

    run = launch(pipeline, result)

    assert run.success
    assert "pending" not in pipeline.statuses().values()
    # Even from the start (a lost cursor), a consumed batch requests nothing.
    assert isinstance(tick(landed_batch_sensor, pipeline), dg.SkipReason)


# --------------------------------------------------------------------------- requests


def test_an_enqueued_job_runs_and_reports_its_status(pipeline: Pipeline) -> None:
    pipeline.land(batch.batch_one())
    job_id = enqueue(pipeline.engine, WORKSPACE, force_reprocess=False, requested_by="api:test")
    queued = job_status(pipeline.engine, job_id)
    assert queued is not None and queued.status == "queued" and queued.dagster_run_id is None

    result = tick(pipeline_request_sensor, pipeline)
    assert isinstance(result, dg.SensorResult)
    (request,) = result.run_requests
    assert request.run_key == f"request-{job_id}"
    assert request.tags[JOB_ID_TAG] == job_id
    # Queued until its run starts: a tick whose run was never created strands nothing, and
    # the next tick asks again under the same run key (one run, however often asked).
    assert get_request(pipeline.engine, job_id).status == "queued"
    again = tick(pipeline_request_sensor, pipeline)
    assert isinstance(again, dg.SensorResult)
    assert [r.run_key for r in again.run_requests] == [f"request-{job_id}"]

    run = launch(pipeline, result)

    assert run.success
    assert get_request(pipeline.engine, job_id).status == "launched"
    assert get_request(pipeline.engine, job_id).dagster_run_id == run.run_id
    assert isinstance(tick(pipeline_request_sensor, pipeline), dg.SkipReason)
    status = job_status(pipeline.engine, job_id)
    assert status is not None
    assert status.status == "success" and status.phase == "done" and status.errors == []
    assert status.progress == {"done": len(ASSETS), "total": len(ASSETS)}
    assert status.claims_processed == 9
    assert status.started_at is not None and status.completed_at is not None
    assert status.dagster_run_id == run.run_id


def test_a_failed_job_reports_its_errors(pipeline: Pipeline) -> None:
    job_id, result = requested(pipeline)
    request = result.run_requests[0]
    halting = {
        "resources": {
            "pipeline_config": {"config": {"pipeline": {"quality": {"mode": "halt_on_errors"}}}}
        }
    }
    launch(pipeline, result, request.with_replaced_attrs(run_config=halting))

    status = job_status(pipeline.engine, job_id)
    assert status is not None and status.status == "failure"
    assert status.progress["done"] < status.progress["total"]
    # The gate's own words, without Dagster's class path.
    assert status.errors[0] == (
        "raw_claims: 2 blocking asset checks failed with ERROR severity:\n"
        "raw_claims: conformance,referential_integrity"
    )
    assert not any("dagster._core" in error for error in status.errors)


def test_a_job_that_failed_unexpectedly_does_not_show_why(
    pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    job_id, result = requested(pipeline)

    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("SELECT * FROM providers WHERE dsn='postgresql://fwa:secret@db'")

    monkeypatch.setattr("fwa_pipeline.defs.assets.read_reference", broken)
    launch(pipeline, result, result.run_requests[0])

    status = job_status(pipeline.engine, job_id)
    assert status is not None and status.status == "failure"
    assert (
        status.errors[0]
        == "reference_data: failed (the run's event log in Dagster has the details)"
    )
    assert not any("secret" in error or "RuntimeError" in error for error in status.errors)


def test_enqueue_refuses_an_unknown_workspace_and_status_an_unknown_job(
    pipeline: Pipeline,
) -> None:
    with pytest.raises(UnknownWorkspaceError):
        enqueue(pipeline.engine, "nobody")
    assert job_status(pipeline.engine, str(uuid.uuid4())) is None


# --------------------------------------------------------------------------- run record


def test_a_run_records_its_success_and_its_failure(pipeline: Pipeline) -> None:
    pipeline.land(batch.batch_one())
    ok = pipeline.run()
    failed = pipeline.run(force_reprocess=True, pipeline={"quality": {"mode": "halt_on_errors"}})

    row = get_run(pipeline.engine, ok.run_id)
    assert row is not None and row.status == "success" and row.completed_at is not None
    assert row.stats["claims_in"] == 9 and row.stats["hits"] >= 4
    assert row.config_snapshot["quality"]["mode"] == "skip_invalid"
    assert row.progress["done"] == row.progress["planned"] and len(row.progress["done"]) == len(
        ASSETS
    )
    failure = get_run(pipeline.engine, failed.run_id)
    assert failure is not None and failure.status == "failure" and failure.force_reprocess
    assert failure.config_snapshot["quality"]["mode"] == "halt_on_errors"
    assert failure.completed_at is not None
    assert failure.errors == [
        "raw_claims: 2 blocking asset checks failed with ERROR severity:\n"
        "raw_claims: conformance,referential_integrity"
    ]


def test_a_run_records_its_progress_as_it_goes(
    pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    job_id, result = requested(pipeline)
    seen: list[object] = []
    detect = assets.detect

    def watched(*args: object, **kwargs: object) -> object:
        # As the API reads it while the rules run: from the rows alone.
        seen.append(job_status(pipeline.engine, job_id))
        return detect(*args, **kwargs)

    monkeypatch.setattr(assets, "detect", watched)
    launch(pipeline, result)

    (midway,) = seen
    assert isinstance(midway, JobStatus)
    assert (midway.status, midway.phase) == ("running", "rule_hits")
    assert midway.progress == {"done": 6, "total": len(ASSETS)}
    assert midway.claims_processed == 9  # the claims it read, until its results commit
    assert midway.result is None and midway.completed_at is None
    done = job_status(pipeline.engine, job_id)
    assert done is not None and (done.status, done.phase) == ("success", "done")


def test_a_run_of_later_steps_only_records_itself_from_its_hooks(pipeline: Pipeline) -> None:
    # A re-execution from the UI of the steps after the first: no asset records the start.
    pipeline.land(batch.batch_one())
    pipeline.instance.add_dynamic_partitions(WORKSPACES.name, [WORKSPACE])
    job = build_defs({"store": pipeline.store}).resolve_job_def(PIPELINE_JOB)
    result = job.execute_in_process(
        instance=pipeline.instance,
        partition_key=WORKSPACE,
        asset_selection=[dg.AssetKey("reference_data")],
    )

    row = get_run(pipeline.engine, result.run_id)
    assert row is not None and row.status == "success" and row.completed_at is not None
    assert row.progress == {"planned": ["reference_data"], "done": ["reference_data"]}
    assert row.config_snapshot["quality"]["mode"] == "skip_invalid"


def test_the_ending_sensor_records_a_run_canceled_while_queued(pipeline: Pipeline) -> None:
    job_id, result = requested(pipeline)
    (request,) = result.run_requests
    run = pipeline.instance.add_run(
        dg.DagsterRun(
            job_name=PIPELINE_JOB,
            run_id=str(uuid.uuid4()),
            run_config=request.run_config,
            tags={**request.tags, PARTITION_TAG: WORKSPACE},
            status=DagsterRunStatus.NOT_STARTED,  # created by the daemon, waiting its turn
        )
    )

    assert isinstance(tick(pipeline_run_ending, pipeline), dg.SkipReason)
    waiting = get_run(pipeline.engine, run.run_id)
    assert waiting is not None and waiting.status == "queued"
    assert get_request(pipeline.engine, job_id).dagster_run_id == run.run_id
    # Canceled in Dagster's queue (the UI), not through the API: no step ever records it.
    pipeline.instance.report_run_canceled(run)
    tick(pipeline_run_ending, pipeline)

    row = get_run(pipeline.engine, run.run_id)
    assert row is not None and row.status == "canceled" and row.completed_at is not None
    status = job_status(pipeline.engine, job_id)
    assert status is not None and (status.status, status.errors) == ("canceled", [])
    assert status.result is not None and status.result.failure_reason == "the job was canceled"


def test_a_run_canceled_before_a_worker_took_it_is_recorded_canceled(pipeline: Pipeline) -> None:
    pipeline.land(batch.batch_one())
    run = pipeline.instance.add_run(
        dg.DagsterRun(
            job_name=PIPELINE_JOB,
            run_id=str(uuid.uuid4()),
            tags={PARTITION_TAG: WORKSPACE},
            status=DagsterRunStatus.NOT_STARTED,
        )
    )
    pipeline.instance.report_run_canceled(run)

    assert end_run(pipeline.engine, pipeline.instance, run.run_id) == "canceled"

    row = get_run(pipeline.engine, run.run_id)
    assert row is not None and row.status == "canceled"


def test_the_ending_sensor_ends_a_row_its_run_left_open(pipeline: Pipeline) -> None:
    pipeline.land(batch.batch_one())
    result = pipeline.run()
    # As if the run's last hook had not reached the store.
    with pipeline.engine.begin() as connection:
        connection.exec_driver_sql("UPDATE pipeline_runs SET status = 'running'")

    outcome = tick(pipeline_run_ending, pipeline)

    assert isinstance(outcome, dg.SkipReason)
    row = get_run(pipeline.engine, result.run_id)
    assert row is not None and row.status == "success" and row.stats["claims_in"] == 9
    # A final status is never replaced by an earlier one.
    sweep(pipeline.engine, pipeline.instance)
    assert get_run(pipeline.engine, result.run_id).status == "success"


def dead_pid() -> str:
    gone = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    return gone.stdout.strip()


def started_run(pipeline: Pipeline, run_id: str, tags: dict[str, str]) -> dg.DagsterRun:
    """A run as the instance holds it while a process executes it."""
    return pipeline.instance.add_run(
        dg.DagsterRun(
            job_name=PIPELINE_JOB,
            run_id=run_id,
            tags={PARTITION_TAG: WORKSPACE, **tags},
            status=DagsterRunStatus.STARTED,
        )
    )


def test_the_ending_sensor_fails_a_run_whose_process_died(pipeline: Pipeline) -> None:
    pipeline.land(batch.batch_one())
    run_id = str(uuid.uuid4())
    run = started_run(pipeline, run_id, {**process_tags(run_id), PID_TAG: dead_pid()})

    sweep(pipeline.engine, pipeline.instance)

    assert pipeline.instance.get_run_by_id(run.run_id).status == DagsterRunStatus.FAILURE
    row = get_run(pipeline.engine, run.run_id)
    assert row is not None and row.status == "failure"
    assert row.errors == [f"the process running it (pid {run.tags[PID_TAG]}) is gone"]


@pytest.mark.parametrize("with_pid_run", [True, False], ids=["tagged", "tagged-before-pid-run"])
def test_the_ending_sensor_leaves_a_reexecution_that_copied_a_dead_runs_tags(
    pipeline: Pipeline, with_pid_run: bool
) -> None:
    # Re-executed from the UI: the parent's tags (its dead process's pid among them) are
    # copied, but the daemon's run worker executes it.
    pipeline.land(batch.batch_one())
    parent = str(uuid.uuid4())
    tags = {**process_tags(parent), PID_TAG: dead_pid(), PARENT_RUN_TAG: parent}
    if not with_pid_run:
        del tags[PID_RUN_TAG]
    run = started_run(pipeline, str(uuid.uuid4()), tags)

    sweep(pipeline.engine, pipeline.instance)

    assert pipeline.instance.get_run_by_id(run.run_id).status == DagsterRunStatus.STARTED


def test_the_ending_sensor_fails_a_dead_run_tagged_before_pid_run_existed(
    pipeline: Pipeline,
) -> None:
    pipeline.land(batch.batch_one())
    run_id = str(uuid.uuid4())
    tags = {**process_tags(run_id), PID_TAG: dead_pid()}
    del tags[PID_RUN_TAG]
    run = started_run(pipeline, run_id, tags)

    sweep(pipeline.engine, pipeline.instance)

    assert pipeline.instance.get_run_by_id(run.run_id).status == DagsterRunStatus.FAILURE


# --------------------------------------------------------------------------- schedule


def test_the_nightly_schedule_reprocesses_every_workspace(pipeline: Pipeline) -> None:
    pipeline.land(batch.batch_one(), workspace="acme")
    pipeline.land(batch.batch_one(), workspace="globex")
    with dg.instance_for_test() as instance:  # a schedule context needs a persistent instance
        # A partition of another store sharing this Dagster home is not this store's to rerun.
        instance.add_dynamic_partitions(WORKSPACES.name, ["acme", "elsewhere", "globex"])
        with dg.build_schedule_context(
            instance=instance,
            scheduled_execution_time=dt.datetime(2026, 11, 26, 2, tzinfo=dt.UTC),
            resources={"store": pipeline.store},
        ) as context:
            requests = nightly_rescore(context)

    assert [(r.partition_key, r.run_key) for r in requests] == [
        ("acme", "nightly-2026-11-26-acme"),
        ("globex", "nightly-2026-11-26-globex"),
    ]
    assert all(
        r.run_config["resources"]["pipeline_config"]["config"]["force_reprocess"] for r in requests
    )
    assert {r.tags[STORE_TAG] for r in requests} == {store_id(pipeline.engine)}


def test_the_ending_sensor_ends_a_run_whose_dagster_record_was_deleted(pipeline: Pipeline) -> None:
    pipeline.land(batch.batch_one())
    result = pipeline.run()
    # Deleted from Dagster (the UI's "delete run") while its row still read running.
    with pipeline.engine.begin() as connection:
        connection.exec_driver_sql("UPDATE pipeline_runs SET status = 'running'")
    pipeline.instance.delete_run(result.run_id)

    sweep(pipeline.engine, pipeline.instance)

    row = get_run(pipeline.engine, result.run_id)
    assert row is not None and row.status == "failure" and row.completed_at is not None
    assert row.stats["failure"] == "the Dagster run was deleted"
    assert row.errors == ["the Dagster run was deleted"]
    assert row.stats["claims_in"] == 9  # what it had recorded stays
