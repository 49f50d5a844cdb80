"""``GET /api/workspaces``: the caller's workspaces; ``GET /api/workspaces/{workspace}``: one of
them (404 for any other, existing or not)."""

from __future__ import annotations

import datetime as dt

from fastapi import APIRouter, HTTPException, Request
from pydantic import BaseModel
from sqlalchemy import Engine, select
from starlette.concurrency import run_in_threadpool

from fwa_api.deps import CurrentPrincipal, WorkspaceId
from fwa_api.services import services
from fwa_pipeline.store.db import read_scope
from fwa_pipeline.store.models import Workspace

router = APIRouter(prefix="/api/workspaces", tags=["workspaces"])


class WorkspaceOut(BaseModel):
    name: str
    created_at: dt.datetime
    last_pipeline_run_at: dt.datetime | None
    last_pipeline_run_id: str | None
    needs_reprocessing: bool


class WorkspaceList(BaseModel):
    workspaces: list[WorkspaceOut]


def _out(row: Workspace) -> WorkspaceOut:
    return WorkspaceOut(
        name=row.name,
        created_at=row.created_at,
        last_pipeline_run_at=row.last_pipeline_run_at,
        last_pipeline_run_id=row.last_pipeline_run_id,
        needs_reprocessing=row.needs_reprocessing,
    )


# Handlers are async and hand the store work to a worker thread in one call: a plain-def
# handler would cost two thread hops, FastAPI validating the response in a second one.


def _list(engine: Engine, names: frozenset[str]) -> WorkspaceList:
    with read_scope(engine) as session:
        rows = session.scalars(
            select(Workspace).where(Workspace.name.in_(names)).order_by(Workspace.name)
        )
        return WorkspaceList(workspaces=[_out(row) for row in rows])


def _get(engine: Engine, workspace_id: int) -> WorkspaceOut | None:
    with read_scope(engine) as session:
        row = session.get(Workspace, workspace_id)
        return None if row is None else _out(row)


@router.get("")
async def list_workspaces(request: Request, principal: CurrentPrincipal) -> WorkspaceList:
    # A token may name workspaces that no upload has created yet: only existing ones are listed.
    return await run_in_threadpool(_list, services(request).engine, principal.workspaces)


@router.get("/{workspace}")
async def get_workspace(request: Request, workspace_id: WorkspaceId) -> WorkspaceOut:
    found = await run_in_threadpool(_get, services(request).engine, workspace_id)
    if found is None:  # deleted since its id was cached
        raise HTTPException(404, "workspace not found")
    return found
