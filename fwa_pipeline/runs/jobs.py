"""Pipeline jobs as the API sees them: enqueue a run request, read a job's status and result,
cancel it.

A job is a ``PipelineRequest`` row; the request sensor turns it into a Dagster run tagged with
the job id. Its status, phase (the asset running), progress (steps done of planned), claims
processed, errors, times and, once it has ended, its result are read from that run's record and
event log through the Dagster instance API, which also cancels or terminates the run. Nothing
here loads the Dagster definitions.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import asdict, dataclass, field
from typing import Any

import dagster as dg
from dagster import DagsterEventType, DagsterRunStatus
from dagster_shared.error import SerializableErrorInfo
from sqlalchemy import Engine

from fwa_pipeline.defs.run_mirror import STATUS, mirror_run, requested_config, run_stats
from fwa_pipeline.runs.tags import JOB_ID_TAG
from fwa_pipeline.store.claims import workspace_id
from fwa_pipeline.store.runs import (
    FINAL_STATUSES,
    as_utc,
    cancel_queued_request,
    claims_processed,
    enqueue_request,
    get_request,
)

STEP_EVENTS = {
    DagsterEventType.STEP_START,
    DagsterEventType.STEP_SUCCESS,
    DagsterEventType.STEP_FAILURE,
    DagsterEventType.STEP_SKIPPED,
    DagsterEventType.RUN_FAILURE,
}
DONE_EVENTS = {DagsterEventType.STEP_SUCCESS, DagsterEventType.STEP_SKIPPED}
# Failures the pipeline raises on purpose, whose messages are written for the job's requester
# (a missing workspace, a run another run superseded, a quality gate that halts the run).
STATED_FAILURES = {"Failure", "DagsterAssetCheckFailedError"}
# How a step is stopped when its run is terminated (or canceled as it starts).
INTERRUPTS = {"KeyboardInterrupt", "DagsterExecutionInterruptedError"}


# A run created or queued, that no run worker has picked up.
WAITING = {DagsterRunStatus.NOT_STARTED, DagsterRunStatus.QUEUED}
# A job has ended: its run finished, it was canceled before it launched, or it failed to launch.
JOB_ENDED = FINAL_STATUSES | {"failed"}


class UnknownWorkspaceError(LookupError):
    pass


class JobEndedError(RuntimeError):
    """The job has ended already: there is nothing to cancel."""


class RunNotTerminatedError(RuntimeError):
    """The Dagster run could not be terminated (its run worker did not answer)."""


def enqueue(
    engine: Engine,
    workspace: str,
    *,
    force_reprocess: bool = False,
    requested_by: str | None = None,
) -> str:
    """Ask for a pipeline run of ``workspace``; returns the job id at once."""
    ws_id = workspace_id(engine, workspace)
    if ws_id is None:
        raise UnknownWorkspaceError(workspace)
    return enqueue_request(
        engine, ws_id, force_reprocess=force_reprocess, requested_by=requested_by
    )


@dataclass
class JobResult:
    """What an ended job did: what its run recorded (claims with an outcome, rule hits, cases)
    and, unless it succeeded, why not."""

    status: str  # success | failure | canceled | failed
    claims_processed: int
    hits: int
    cases_opened: int
    cases_updated: int
    failure_reason: str | None


@dataclass
class JobStatus:
    job_id: str
    # queued | launched | running | canceling | success | failure | canceled | failed
    status: str
    phase: str | None  # the asset being computed, "done", or None before the run starts
    progress: dict[str, int]  # {"done": steps done, "total": steps planned}
    claims_processed: int
    force_reprocess: bool
    requested_at: dt.datetime | None
    started_at: dt.datetime | None = None
    completed_at: dt.datetime | None = None
    dagster_run_id: str | None = None
    errors: list[str] = field(default_factory=list)
    result: JobResult | None = None  # once the job has ended
    quality_mode: str | None = None  # the job's own, over the workspace's configuration
    # The workspace configuration version its run applies (None: the catalogue defaults).
    config_version: int | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def find_run(instance: dg.DagsterInstance, job_id: str, run_id: str | None) -> dg.RunRecord | None:
    if run_id:
        return instance.get_run_record_by_id(run_id)
    records = instance.get_run_records(filters=dg.RunsFilter(tags={JOB_ID_TAG: job_id}), limit=1)
    return records[0] if records else None


def job_status(engine: Engine, instance: dg.DagsterInstance, job_id: str) -> JobStatus | None:
    """The job's state, or None for an unknown job id."""
    request = get_request(engine, job_id)
    if request is None:
        return None
    status = JobStatus(
        job_id=job_id,
        status=request.status,
        phase=None,
        progress={"done": 0, "total": 0},
        claims_processed=0,
        force_reprocess=request.force_reprocess,
        requested_at=request.requested_at,
        errors=[request.error] if request.error else [],
        quality_mode=request.quality_mode,
    )
    record = find_run(instance, job_id, request.dagster_run_id)
    if record is None:
        status.result = _result(status, {})
        return status
    run = record.dagster_run
    status.dagster_run_id = run.run_id
    status.config_version = requested_config(run).get("config_version")
    # Termination asked for, the run worker not yet stopped.
    canceling = run.status == DagsterRunStatus.CANCELING
    status.status = "canceling" if canceling else STATUS.get(run.status, "running")
    status.started_at = as_utc(record.start_time)
    status.completed_at = as_utc(record.end_time)
    _read_events(instance, run, status)
    stats = run_stats(instance, run.run_id)
    # Until its results commit, a run has processed the claims it read.
    status.claims_processed = (
        claims_processed(stats) if stats.get("written") else int(stats.get("claims_in", 0))
    )
    status.result = _result(status, stats)
    return status


def _result(status: JobStatus, stats: dict[str, Any]) -> JobResult | None:
    if status.status not in JOB_ENDED:
        return None
    reasons = {
        "success": None,
        "canceled": "the job was canceled",
        # The first error is the cause; a run failure's summary follows it.
        "failure": status.errors[0] if status.errors else "the run failed",
        "failed": status.errors[0] if status.errors else "the run could not be launched",
    }
    written = stats.get("written") or {}
    return JobResult(
        status=status.status,
        claims_processed=claims_processed(stats),
        hits=int(written.get("hits", 0)),
        cases_opened=int(stats.get("cases_opened", 0)),
        cases_updated=int(stats.get("cases_updated", 0)),
        failure_reason=reasons[status.status],
    )


def cancel_job(engine: Engine, instance: dg.DagsterInstance, job_id: str) -> None:
    """Cancel a job that has not ended: a queued request is canceled before the sensor launches
    it; its Dagster run, once there is one, is canceled at once while it waits in the run
    queue, or terminated through the instance's run launcher once a run worker has it (it ends
    as canceled when the worker stops). The run's ``PipelineRun`` row is mirrored.

    Raises :class:`JobEndedError` for a job that has ended, and
    :class:`RunNotTerminatedError` when the run launcher could not reach the run."""
    request = get_request(engine, job_id)
    if request is None:
        raise LookupError(job_id)
    record = find_run(instance, job_id, request.dagster_run_id)
    if record is None:
        if cancel_queued_request(engine, job_id):
            # The sensor may have created the run just before: cancel that too.
            record = find_run(instance, job_id, None)
            if record is None:
                return
        else:
            raise JobEndedError(job_id)
    run = record.dagster_run
    if run.is_finished:
        raise JobEndedError(job_id)
    cancel_queued_request(engine, job_id)  # linked to its run only once the run starts
    if run.status in WAITING:  # no run worker yet: the run ends where it waits
        instance.report_run_canceled(run, message="The pipeline job was canceled.")
        terminated = True
    else:
        terminated = instance.run_launcher.terminate(run.run_id)
    mirror_run(engine, instance, run.run_id)
    if not terminated:
        raise RunNotTerminatedError(run.run_id)


def _read_events(instance: dg.DagsterInstance, run: dg.DagsterRun, status: JobStatus) -> None:
    plan = (
        instance.get_execution_plan_snapshot(run.execution_plan_snapshot_id)
        if run.execution_plan_snapshot_id
        else None
    )
    started: dict[str, None] = {}
    done = 0
    for entry in instance.all_logs(run.run_id, of_type=STEP_EVENTS):
        event = entry.dagster_event
        if event is None:
            continue
        if event.event_type == DagsterEventType.STEP_START:
            started[event.step_key or ""] = None
            continue
        started.pop(event.step_key or "", None)
        if event.event_type in DONE_EVENTS:
            done += 1
        elif event.event_type == DagsterEventType.STEP_FAILURE:
            error = event.step_failure_data.error if event.step_failure_data else None
            # A canceled run's step may fail with whatever the interrupt broke (a query cut
            # off mid-wait) instead of Dagster's interrupt: the cancel is still its cause.
            said = "interrupted" if status.status == "canceled" else step_error(error)
            status.errors.append(f"{event.step_key}: {said}")
        elif event.event_type == DagsterEventType.RUN_FAILURE and entry.message:
            status.errors.append(entry.message)
    total = len(plan.step_keys_to_execute) if plan else 0
    status.progress = {"done": done, "total": max(total, done)}
    if status.status in ("success", "failure", "canceled"):
        status.phase = "done"
    elif started:
        status.phase = next(reversed(started))


def step_error(error: SerializableErrorInfo | None) -> str:
    """What a job's requester reads of a failed step: the message of a failure the pipeline
    states on purpose, without Dagster's class path; that it was interrupted; for anything else
    only that it failed. Exception details (class paths, reprs, stack) stay in the run's event
    log, for operators."""
    if error is not None and error.cls_name in INTERRUPTS:
        return "interrupted"
    if error is None or error.cls_name not in STATED_FAILURES:
        return "failed (the run's event log in Dagster has the details)"
    return error.message.split(": ", 1)[-1].strip()
