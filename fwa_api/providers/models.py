"""What the provider route answers: a provider with its claims, rule hits and cases."""

from __future__ import annotations

import datetime as dt

from pydantic import BaseModel

from fwa_api.cases.models import CaseSummary


class ClaimTotals(BaseModel):
    count: int
    amount_paid: float


class PharmacyRoles(BaseModel):
    as_pharmacy: int
    as_prescriber: int


class RuleHitCount(BaseModel):
    rule_id: str
    hits: int


class ProviderDetail(BaseModel):
    npi: str
    name: str
    provider_type: str
    specialty: str | None
    state: str | None
    excluded: bool
    exclusion_date: dt.date | None
    medical_claims: ClaimTotals
    pharmacy_claims: PharmacyRoles
    rule_hits: list[RuleHitCount]
    cases: list[CaseSummary]
