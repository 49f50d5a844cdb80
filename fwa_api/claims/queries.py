"""A claim's provenance read from the store, None for a claim not in the workspace."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from fwa_api.claims.models import ClaimProvenance
from fwa_pipeline.store import queries as store_queries
from fwa_pipeline.store.models import CaseClaim, InvestigationCase


def claim_provenance(session: Session, workspace_id: int, claim_id: str) -> ClaimProvenance | None:
    """``store.queries.claim_provenance`` (the run, its config snapshot, the hits that scored
    the claim) plus the cases the claim is linked to."""
    found = store_queries.claim_provenance(session, workspace_id, claim_id)
    if found is None:
        return None
    claim = found["claim"]
    found["cases"] = list(
        session.scalars(
            select(InvestigationCase.case_number)
            .join(CaseClaim, CaseClaim.case_id == InvestigationCase.id)
            .where(
                InvestigationCase.workspace_id == workspace_id,
                CaseClaim.claim_type == claim["claim_type"],
                CaseClaim.claim_pk == claim["claim_pk"],
            )
            .order_by(InvestigationCase.case_number)
        )
    )
    return ClaimProvenance.model_validate(found)
