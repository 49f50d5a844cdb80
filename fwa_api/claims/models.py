"""What the claim provenance route answers: how a claim was scored, and by which run."""

from __future__ import annotations

import datetime as dt
from typing import Any

from pydantic import AliasPath, BaseModel, Field


class ProvenanceClaim(BaseModel):
    claim_type: str
    claim_pk: int
    claim_id: str
    batch_id: int
    status: str
    last_run_id: str | None
    member_id: str | None
    provider_id: str | None
    pharmacy_id: str | None
    prescriber_id: str | None
    claim_date: dt.date | None
    code: str | None
    amount_billed: float | None
    amount_paid: float | None


class ProvenanceRun(BaseModel):
    run_id: str
    status: str
    started_at: dt.datetime | None
    completed_at: dt.datetime | None
    # The workspace configuration version that scored the claim (null: the catalogue's).
    config_version: int | None = Field(
        None, validation_alias=AliasPath("config_snapshot", "config_version")
    )
    config_snapshot: dict[str, Any]


class ProvenanceScore(BaseModel):
    score: float
    risk_level: str
    hit_count: int


class ProvenanceHit(BaseModel):
    rule_id: str
    rule_version: str
    weight: float
    severity: float
    subject_type: str
    subject_id: str
    evidence: dict[str, Any] | None
    rule_config: dict[str, Any] | None


class OtherRow(BaseModel):
    claim_type: str
    claim_pk: int
    status: str


class ClaimProvenance(BaseModel):
    claim: ProvenanceClaim
    run: ProvenanceRun | None
    score: ProvenanceScore | None
    hits: list[ProvenanceHit]
    other_rows: list[OtherRow]
    cases: list[str]
