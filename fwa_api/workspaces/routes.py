"""``GET /api/workspaces``: the caller's workspaces; ``GET /api/workspaces/{workspace}``: one of
them (404 for any other, existing or not)."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, Request
from starlette.concurrency import run_in_threadpool

from fwa_api.deps import CurrentPrincipal, WorkspaceId
from fwa_api.kit.db import in_session
from fwa_api.services import services
from fwa_api.workspaces import queries
from fwa_api.workspaces.models import WorkspaceList, WorkspaceOut

router = APIRouter(prefix="/api/workspaces", tags=["workspaces"])

# Handlers are async and hand the store work to a worker thread in one call: a plain-def
# handler would cost two thread hops, FastAPI validating the response in a second one.


@router.get("")
async def list_workspaces(request: Request, principal: CurrentPrincipal) -> WorkspaceList:
    # A token may name workspaces that no upload has created yet: only existing ones are listed.
    return await run_in_threadpool(
        in_session, services(request).engine, queries.workspace_list, principal.workspaces
    )


@router.get("/{workspace}")
async def get_workspace(request: Request, workspace_id: WorkspaceId) -> WorkspaceOut:
    found = await run_in_threadpool(
        in_session, services(request).engine, queries.find_workspace, workspace_id
    )
    if found is None:  # deleted since its id was cached
        raise HTTPException(404, "workspace not found")
    return found
