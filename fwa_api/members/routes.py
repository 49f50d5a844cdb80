"""``GET /api/members/{member_id}?workspace=NAME``: a member and the cases about them.

Name and dates of birth and death (PHI) are decrypted only for the investigator and admin roles;
a viewer gets the record with ``first_name``, ``last_name``, ``date_of_birth`` and
``date_of_death`` null (never masked strings, so nothing derived from them leaks) and
``phi_included`` false. Every request for a
member that exists writes a PHI audit event in the same transaction as the read: actor, action
``read``, the member id, the request id and the outcome (``allowed``; ``denied`` for a viewer,
who got no PHI; ``error`` when the PHI could not be decrypted, answered 503), never the PHI. A
member of another workspace is answered 404 like one that does not exist.
"""

from __future__ import annotations

import logging
from typing import Annotated

from fastapi import APIRouter, HTTPException, Path, Request
from sqlalchemy import Engine
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from fwa_api.auth import Principal
from fwa_api.deps import CurrentPrincipal, WorkspaceId, audit_phi
from fwa_api.members import queries
from fwa_api.members.models import MemberOut
from fwa_api.params import NO_NUL
from fwa_api.services import services
from fwa_pipeline.settings import Settings
from fwa_pipeline.store.db import session_scope
from fwa_pipeline.store.pii import cipher_from_settings

logger = logging.getLogger(__name__)

router = APIRouter(prefix="/api/members", tags=["members"])

PHI_ROLE = "investigator"
RESOURCE = "member"


def _read(
    engine: Engine, settings: Settings, principal: Principal, workspace_id: int, member_id: str
) -> MemberOut | None:
    with_phi = principal.has_role(PHI_ROLE)

    def audit(session: Session, outcome: str) -> None:
        audit_phi(
            session,
            principal,
            action="read",
            resource_type=RESOURCE,
            resource_id=member_id,
            workspace_id=workspace_id,
            outcome=outcome,
        )

    try:
        with session_scope(engine) as session:
            cipher = cipher_from_settings(settings) if with_phi else None
            found = queries.member(session, cipher, workspace_id, member_id, with_phi=with_phi)
            if found is not None:
                audit(session, "allowed" if with_phi else "denied")
            return found
    except ValueError as exc:  # DecryptionError, or no key for encrypted rows
        # Type only: the message may name the record, never log anything closer to the PHI.
        logger.error("member PHI could not be decrypted: %s", type(exc).__name__)
        with session_scope(engine) as session:  # the read's transaction has rolled back
            audit(session, "error")
        raise HTTPException(503, "the member's protected fields cannot be decrypted") from exc


@router.get(
    "/{member_id}",
    responses={
        404: {"description": "No such member in this workspace."},
        503: {"description": "The member's PHI cannot be decrypted (a key is missing)."},
    },
)
async def get_member(
    request: Request,
    principal: CurrentPrincipal,
    workspace_id: WorkspaceId,
    member_id: Annotated[
        str, Path(max_length=64, pattern=NO_NUL, description="The payer's member id.")
    ],
) -> MemberOut:
    """The member and the cases about them. ``first_name``, ``last_name``, ``date_of_birth`` and
    ``date_of_death`` are decrypted for investigators and admins; for viewers they are null (not
    masked) and ``phi_included`` is false. Each read is PHI-audited (who, which member, the
    request id, the outcome), whatever the role."""
    app = services(request)
    found = await run_in_threadpool(
        _read, app.engine, app.settings, principal, workspace_id, member_id
    )
    if found is None:
        raise HTTPException(404, "member not found")
    return found
