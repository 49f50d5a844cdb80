"""A provider read from the store, None for one not in the workspace."""

from __future__ import annotations

from sqlalchemy import case, func, select
from sqlalchemy.orm import Session

from fwa_api.cases.models import CaseSummary
from fwa_api.providers.models import ClaimTotals, PharmacyRoles, ProviderDetail, RuleHitCount
from fwa_pipeline.store.models import (
    InvestigationCase,
    MedicalClaim,
    PharmacyClaim,
    Provider,
    RuleHit,
)

# Subjects a provider NPI can be: the rendering provider, a pharmacy, a prescriber.
ENTITY_SUBJECTS = ("provider", "pharmacy", "prescriber")


def provider_detail(session: Session, workspace_id: int, npi: str) -> ProviderDetail | None:
    """A provider (rendering, pharmacy or prescriber) with its claim counts, the rule hits that
    name it and the cases about it, riskiest first."""
    ws = workspace_id
    row = session.get(Provider, (ws, npi))
    if row is None:
        return None
    medical = session.execute(
        select(func.count(), func.coalesce(func.sum(MedicalClaim.amount_paid), 0)).where(
            MedicalClaim.workspace_id == ws, MedicalClaim.provider_id == npi
        )
    ).one()
    pharmacy = session.execute(
        select(
            func.count(case((PharmacyClaim.pharmacy_id == npi, 1))),
            func.count(case((PharmacyClaim.prescriber_id == npi, 1))),
        ).where(
            PharmacyClaim.workspace_id == ws,
            (PharmacyClaim.pharmacy_id == npi) | (PharmacyClaim.prescriber_id == npi),
        )
    ).one()
    hits = session.execute(
        select(RuleHit.rule_id, func.count())
        .where(
            RuleHit.workspace_id == ws,
            RuleHit.subject_type.in_(ENTITY_SUBJECTS),
            RuleHit.subject_id == npi,
        )
        .group_by(RuleHit.rule_id)
        .order_by(func.count().desc(), RuleHit.rule_id)
    ).all()
    cases = session.scalars(
        select(InvestigationCase)
        .where(
            InvestigationCase.workspace_id == ws,
            InvestigationCase.subject_type.in_(ENTITY_SUBJECTS),
            InvestigationCase.subject_id == npi,
        )
        .order_by(InvestigationCase.risk_score.desc(), InvestigationCase.id)
    )
    return ProviderDetail(
        npi=row.provider_id,
        name=row.name,
        provider_type=row.provider_type,
        specialty=row.specialty,
        state=row.state,
        excluded=row.excluded,
        exclusion_date=row.exclusion_date,
        medical_claims=ClaimTotals(count=medical[0], amount_paid=float(medical[1])),
        pharmacy_claims=PharmacyRoles(as_pharmacy=pharmacy[0], as_prescriber=pharmacy[1]),
        rule_hits=[RuleHitCount(rule_id=r, hits=n) for r, n in hits],
        cases=[CaseSummary.of(c) for c in cases],
    )
