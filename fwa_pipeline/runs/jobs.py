"""Pipeline jobs as the API sees them: enqueue a run request, read a job's status and result,
cancel it.

A job is a ``PipelineRequest`` row; the request sensor turns it into a Dagster run tagged with
the job id, and the run records itself in its ``PipelineRun`` row as it goes (``runs.ledger``).
A job's status, phase (the step executing), progress (steps done of planned), claims processed,
errors, times and, once it has ended, its result are read from those two rows alone. Canceling
asks the Dagster instance to cancel or terminate the run. Nothing here loads the Dagster
definitions.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import asdict, dataclass, field
from typing import Any

import dagster as dg
from sqlalchemy import Engine

from fwa_pipeline.runs import ledger
from fwa_pipeline.runs.ending import WAITING, end_run
from fwa_pipeline.runs.tags import JOB_ID_TAG
from fwa_pipeline.store.claims import workspace_id
from fwa_pipeline.store.models import PipelineRun
from fwa_pipeline.store.runs import (
    FINAL_STATUSES,
    cancel_queued_request,
    claims_processed,
    enqueue_request,
    get_request,
    get_run,
)

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


def job_status(engine: Engine, job_id: str) -> JobStatus | None:
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
    row = get_run(engine, request.dagster_run_id) if request.dagster_run_id else None
    if row is None:
        status.result = _result(status, {})
        return status
    status.dagster_run_id = row.run_id
    status.config_version = _config_version(row)
    # A run waiting in Dagster's queue leaves its request's status ("launched") as it is.
    if row.status != "queued":
        status.status = row.status
    status.phase = ledger.phase(row)
    progress = row.progress or {}
    done = len(progress.get("done", []))
    status.progress = {"done": done, "total": max(len(progress.get("planned", [])), done)}
    status.started_at = row.started_at
    status.completed_at = row.completed_at
    status.errors.extend(row.errors or [])
    stats = row.stats or {}
    # Until its results commit, a run has processed the claims it read.
    status.claims_processed = (
        claims_processed(stats) if stats.get("written") else int(stats.get("claims_in", 0))
    )
    status.result = _result(status, stats)
    return status


def _config_version(row: PipelineRun) -> int | None:
    """The workspace configuration version the run applies (as requested, for a run whose
    config was invalid)."""
    snapshot = row.config_snapshot or {}
    version = snapshot.get(
        "config_version", (snapshot.get("requested") or {}).get("config_version")
    )
    return int(version) if version is not None else None


def _result(status: JobStatus, stats: dict[str, Any]) -> JobResult | None:
    if status.status not in JOB_ENDED:
        return None
    reasons = {
        "success": None,
        "canceled": "the job was canceled",
        # The first error is the cause.
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
    as canceled when the worker stops; its row reads canceling until then).

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
        end_run(engine, instance, run.run_id)
        return
    ledger.canceling(engine, instance, run)
    if not instance.run_launcher.terminate(run.run_id):
        raise RunNotTerminatedError(run.run_id)
    # The run worker records the run canceled as it stops; one that stopped at once is ended
    # here, before the job is read again.
    end_run(engine, instance, run.run_id)
