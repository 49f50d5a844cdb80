"""Pipeline jobs and runs. Every route takes ``?workspace=NAME``.

* ``POST /api/pipeline/enqueue`` (investigator; ``{"force_reprocess": bool, "quality_mode":
  "skip_invalid" | "halt_on_errors" | "flag_only" | null}``): 202 with the job id at once. The run
  applies the workspace's configuration version; ``quality_mode`` overrides its mode for this
  run. The job is a ``PipelineRequest`` row that the Dagster daemon's request sensor turns into
  a run (``fwa_pipeline.runs.jobs``).
  With an ``Idempotency-Key`` header, a retry (same key, same workspace, same body) within
  ``FWA_PIPELINE_IDEMPOTENCY_HOURS`` answers 200 with the first job instead of queueing another;
  the same key with another body is a 409 (the key is taken), and nothing is queued.
* ``GET /api/pipeline/jobs/{job_id}``: status, phase, progress, claims processed, errors and
  times, read from the job's request and the row its run records itself in, and once the job
  has ended its ``result`` (what the run recorded, and why it did not succeed); a job of
  another workspace is 404.
* ``POST /api/pipeline/jobs/{job_id}/cancel`` (investigator): a queued job is canceled before it
  launches (200); a running one has its Dagster run terminated (202, ``canceling`` until the run
  worker stops, then ``canceled``). 409 for a job that has ended, 503 when the run could not be
  reached.
* ``GET /api/pipeline/runs?limit=&offset=``: the workspace's ``PipelineRun`` rows with their
  stats and the workspace configuration version each applied (``config_version``), newest
  first; ``GET /api/pipeline/runs/{run_id}``: one with its config snapshot (rules, thresholds,
  scoring in effect, the run's override, reference data hashes, code version), quality report,
  progress (steps planned and done) and errors, as the run recorded them.
* ``POST /api/pipeline/run-full?timeout_s=`` (investigator): enqueue and wait for the job to
  end: 200 with its final status, or 202 with the job as it stands when ``timeout_s`` (at most
  ``FWA_PIPELINE_WAIT_MAX_S``) runs out, so the client can poll the job.
* ``POST /api/pipeline/run-stream`` (investigator): enqueue, then Server-Sent Events, ``data:``
  JSON each: ``{"type": "progress", "done": false, ...job}`` whenever status, phase or progress
  change, then ``{"type": "end", "done": true, ...job}`` when the job ends, or ``{"type":
  "timeout", "done": true, ...job}`` after ``FWA_PIPELINE_WAIT_MAX_S``. A client that disconnects
  stops the polling (the job itself goes on).

The store and Dagster (to cancel a run) are called in worker threads: their calls block.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, HTTPException, Path, Query, Request, Response
from fastapi.responses import JSONResponse
from sse_starlette.sse import EventSourceResponse
from starlette.concurrency import run_in_threadpool

from fwa_api.auth import Principal
from fwa_api.deps import WorkspaceId, require_role
from fwa_api.kit.db import in_session
from fwa_api.params import NO_NUL, Offset
from fwa_api.pipeline import queries
from fwa_api.pipeline.models import EnqueuedOut, EnqueueIn, JobOut, RunDetail, RunList
from fwa_api.services import Services, services
from fwa_pipeline.runs.jobs import (
    JOB_ENDED,
    JobEndedError,
    RunNotTerminatedError,
    cancel_job,
)
from fwa_pipeline.store.runs import (
    IdempotencyKeyReusedError,
    enqueue_once,
    enqueue_request,
)

logger = logging.getLogger(__name__)

router = APIRouter(prefix="/api/pipeline", tags=["pipeline"])

Investigator = Annotated[Principal, Depends(require_role("investigator"))]

# How often run-full and run-stream re-read a job while they wait.
POLL_S = 1.0
SSE_PING_S = 15

# Printable ASCII without spaces, as clients generate them (UUIDs, hashes).
IdempotencyKey = Annotated[
    str | None,
    Header(alias="Idempotency-Key", min_length=1, max_length=200, pattern=r"^[\x21-\x7e]+$"),
]


async def _read_job(app: Services, workspace_id: int, job_id: str) -> JobOut:
    found = await run_in_threadpool(queries.find_job, app.engine, workspace_id, job_id)
    if found is None:
        raise HTTPException(404, "job not found")
    return found


async def _enqueue(
    request: Request,
    workspace_id: int,
    principal: Principal,
    body: EnqueueIn | None,
    key: str | None = None,
) -> tuple[str, bool]:
    """(job id, whether it is new): with an idempotency ``key``, a retry of the same request
    gets the first job."""
    app = services(request)
    asked: dict[str, Any] = (body or EnqueueIn()).model_dump(mode="json")
    if key is None:
        job_id = await run_in_threadpool(
            enqueue_request, app.engine, workspace_id, requested_by=principal.name, **asked
        )
        return job_id, True
    digest = hashlib.sha256(json.dumps(asked, sort_keys=True).encode()).hexdigest()
    window = dt.timedelta(hours=app.settings.pipeline_idempotency_hours)
    try:
        return await run_in_threadpool(
            enqueue_once,
            app.engine,
            workspace_id,
            key,
            digest,
            window,
            requested_by=principal.name,
            **asked,
        )
    except IdempotencyKeyReusedError:
        raise HTTPException(
            409, "Idempotency-Key: this key was used with a different request body"
        ) from None


@router.post(
    "/enqueue",
    status_code=202,
    responses={
        200: {"model": EnqueuedOut, "description": "a retry: the key's first job"},
        409: {"description": "the Idempotency-Key was used with a different request body"},
    },
)
async def enqueue(
    request: Request,
    response: Response,
    principal: Investigator,
    workspace_id: WorkspaceId,
    body: EnqueueIn | None = None,
    idempotency_key: IdempotencyKey = None,
) -> EnqueuedOut:
    asked = body or EnqueueIn()
    job_id, created = await _enqueue(request, workspace_id, principal, asked, idempotency_key)
    if created:
        return EnqueuedOut(
            job_id=job_id,
            status="queued",
            force_reprocess=asked.force_reprocess,
            quality_mode=asked.quality_mode,
        )
    response.status_code = 200
    first = await _read_job(services(request), workspace_id, job_id)
    return EnqueuedOut(
        job_id=job_id,
        status=first.status,
        force_reprocess=first.force_reprocess,
        quality_mode=first.quality_mode,
    )


@router.get("/jobs/{job_id}")
async def get_job(request: Request, workspace_id: WorkspaceId, job_id: uuid.UUID) -> JobOut:
    return await _read_job(services(request), workspace_id, str(job_id))


@router.post(
    "/jobs/{job_id}/cancel",
    response_model=JobOut,
    responses={
        202: {"model": JobOut, "description": "termination asked for: the run is canceling"},
        409: {"description": "the job has ended"},
        503: {"description": "the run could not be reached to terminate it"},
    },
)
async def cancel(
    request: Request, principal: Investigator, workspace_id: WorkspaceId, job_id: uuid.UUID
) -> JSONResponse:
    app = services(request)
    await _read_job(app, workspace_id, str(job_id))  # 404 for another workspace's job
    try:
        await run_in_threadpool(cancel_job, app.engine, app.dagster_instance(), str(job_id))
    except JobEndedError:
        raise HTTPException(409, "the job has ended: there is nothing to cancel") from None
    except RunNotTerminatedError:
        raise HTTPException(
            503, "the job's run could not be reached to terminate it; try again"
        ) from None
    logger.info("pipeline: job %s canceled by %s", job_id, principal.name)
    job = await _read_job(app, workspace_id, str(job_id))
    code = 200 if job.status in JOB_ENDED else 202
    return JSONResponse(job.model_dump(mode="json"), status_code=code)


@router.get("/runs")
async def list_runs(
    request: Request,
    workspace_id: WorkspaceId,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    offset: Offset = 0,
) -> RunList:
    return await run_in_threadpool(
        in_session, services(request).engine, queries.run_page, workspace_id, limit, offset
    )


@router.get("/runs/{run_id}")
async def get_run(
    request: Request,
    workspace_id: WorkspaceId,
    run_id: Annotated[str, Path(max_length=64, pattern=NO_NUL)],
) -> RunDetail:
    found = await run_in_threadpool(
        in_session, services(request).engine, queries.run_detail, workspace_id, run_id
    )
    if found is None:
        raise HTTPException(404, "run not found")
    return found


@router.post(
    "/run-full",
    response_model=JobOut,
    responses={202: {"model": JobOut, "description": "the job had not ended in time"}},
)
async def run_full(
    request: Request,
    principal: Investigator,
    workspace_id: WorkspaceId,
    body: EnqueueIn | None = None,
    timeout_s: Annotated[float | None, Query(gt=0)] = None,
) -> JSONResponse:
    app = services(request)
    cap = app.settings.pipeline_wait_max_s
    wait = min(timeout_s, cap) if timeout_s is not None else cap
    job_id, _ = await _enqueue(request, workspace_id, principal, body)
    deadline = time.monotonic() + wait
    while True:
        job = await _read_job(app, workspace_id, job_id)
        left = deadline - time.monotonic()
        # A client that left gets no answer: stop polling for it (the job goes on).
        if job.status in JOB_ENDED or left <= 0 or await request.is_disconnected():
            code = 200 if job.status in JOB_ENDED else 202
            return JSONResponse(job.model_dump(mode="json"), status_code=code)
        await asyncio.sleep(min(POLL_S, left))


def _event(kind: str, job: JobOut) -> dict[str, str]:
    payload = {"type": kind, "done": kind != "progress", **job.model_dump(mode="json")}
    return {"data": json.dumps(payload, separators=(",", ":"))}


@router.post("/run-stream", response_class=EventSourceResponse)
async def run_stream(
    request: Request,
    principal: Investigator,
    workspace_id: WorkspaceId,
    body: EnqueueIn | None = None,
) -> EventSourceResponse:
    app = services(request)
    job_id, _ = await _enqueue(request, workspace_id, principal, body)
    deadline = time.monotonic() + app.settings.pipeline_wait_max_s

    async def events() -> AsyncIterator[dict[str, str]]:
        # sse-starlette cancels this generator when the client disconnects: the polling stops.
        last: tuple[Any, ...] | None = None
        try:
            while True:
                job = await _read_job(app, workspace_id, job_id)
                if job.status in JOB_ENDED:
                    yield _event("end", job)
                    return
                if time.monotonic() >= deadline:
                    yield _event("timeout", job)
                    return
                state = (job.status, job.phase, job.progress, job.claims_processed)
                if state != last:
                    last = state
                    yield _event("progress", job)
                await asyncio.sleep(POLL_S)
        except Exception:
            # The response has started: an error can only be reported as an event.
            logger.exception("pipeline: the job stream failed")
            error = {"type": "error", "done": True, "job_id": job_id, "error": "internal error"}
            yield {"data": json.dumps(error, separators=(",", ":"))}

    return EventSourceResponse(events(), ping=SSE_PING_S)
