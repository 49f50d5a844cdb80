"""Pipeline jobs and runs read from the store; None for another workspace's."""

from __future__ import annotations

from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from fwa_api.pipeline.models import JobOut, RunDetail, RunList, RunOut
from fwa_pipeline.runs.jobs import job_status
from fwa_pipeline.store.models import PipelineRun
from fwa_pipeline.store.runs import get_request


def find_job(engine: Engine, workspace_id: int, job_id: str) -> JobOut | None:
    """Blocking (the store): call from a worker thread."""
    request = get_request(engine, job_id)
    if request is None or request.workspace_id != workspace_id:
        return None
    status = job_status(engine, job_id)
    return None if status is None else JobOut.model_validate(status.as_dict())


def run_page(session: Session, workspace_id: int, limit: int, offset: int) -> RunList:
    total = session.scalar(
        select(func.count())
        .select_from(PipelineRun)
        .where(PipelineRun.workspace_id == workspace_id)
    )
    rows = session.scalars(
        select(PipelineRun)
        .where(PipelineRun.workspace_id == workspace_id)
        .order_by(PipelineRun.created_at.desc(), PipelineRun.run_id)
        .limit(limit)
        .offset(offset)
    )
    runs = [RunOut.model_validate(row) for row in rows]
    return RunList(runs=runs, total=total or 0, limit=limit, offset=offset)


def run_detail(session: Session, workspace_id: int, run_id: str) -> RunDetail | None:
    row = session.get(PipelineRun, run_id)
    if row is None or row.workspace_id != workspace_id:
        return None
    return RunDetail.model_validate(row)
