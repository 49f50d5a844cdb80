"""``GET /api/providers/{npi}?workspace=NAME``: a provider (rendering, pharmacy or prescriber)
with its claim counts, the rule hits that name it and the cases about it. A provider of another
workspace is answered 404 like one that does not exist."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Path, Request
from starlette.concurrency import run_in_threadpool

from fwa_api.deps import WorkspaceId
from fwa_api.kit.db import in_session
from fwa_api.providers import queries
from fwa_api.providers.models import ProviderDetail
from fwa_api.services import services

router = APIRouter(prefix="/api/providers", tags=["providers"])


@router.get("/{npi}", responses={404: {"description": "No such provider in this workspace."}})
async def get_provider(
    request: Request,
    workspace_id: WorkspaceId,
    npi: Annotated[str, Path(pattern=r"^\d{10}$", description="The 10-digit NPI.")],
) -> ProviderDetail:
    """The provider, its medical claims (count, amount paid) and pharmacy claims (as pharmacy,
    as prescriber), the rule hits that name it per rule, and its cases, riskiest first."""
    found = await run_in_threadpool(
        in_session, services(request).engine, queries.provider_detail, workspace_id, npi
    )
    if found is None:
        raise HTTPException(404, "provider not found")
    return found
