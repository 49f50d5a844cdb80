"""``GET /api/claims/{claim_id}/provenance?workspace=NAME``: how a claim was scored: the run
that last processed it with that run's config snapshot (every rule's weight, cap and thresholds,
the scoring bands, the quality mode), its score, the rule hits of that run on it (each with its
evidence and its rule's settings) and the cases it is linked to. A claim id carried by several
rows (a duplicate the quality gate held) describes the processed row and lists the others under
``other_rows``. A claim of another workspace is answered 404 like one that does not exist."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Path, Request
from starlette.concurrency import run_in_threadpool

from fwa_api.claims import queries
from fwa_api.claims.models import ClaimProvenance
from fwa_api.deps import WorkspaceId
from fwa_api.kit.db import in_session
from fwa_api.params import NO_NUL
from fwa_api.services import services

router = APIRouter(prefix="/api/claims", tags=["claims"])


@router.get(
    "/{claim_id}/provenance",
    responses={404: {"description": "No such claim in this workspace."}},
)
async def claim_provenance(
    request: Request,
    workspace_id: WorkspaceId,
    claim_id: Annotated[
        str, Path(max_length=64, pattern=NO_NUL, description="The payer's claim id.")
    ],
) -> ClaimProvenance:
    """The claim, the run that last processed it with its config snapshot, its score, that
    run's rule hits on it (evidence and the rule's settings in that run), and its cases."""
    found = await run_in_threadpool(
        in_session,
        services(request).engine,
        queries.claim_provenance,
        workspace_id,
        claim_id,
    )
    if found is None:
        raise HTTPException(404, "claim not found")
    return found
