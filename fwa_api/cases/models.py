"""What the case routes answer and take: case summaries and details, and the investigator's
actions on a case."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator

from fwa_api.kit.pagination import Page
from fwa_pipeline.kit.validation import FREE_TEXT
from fwa_pipeline.store.models import (
    CASE_STATUSES,
    DISPOSITIONS,
    RISK_LEVELS,
    CaseEvent,
    InvestigationCase,
)

RiskLevel = Literal["low", "medium", "high", "critical"]
CaseStatus = Literal["open", "under_review", "escalated", "closed"]
Disposition = Literal[
    "confirmed_fraud", "confirmed_waste_abuse", "no_issue", "insufficient_evidence"
]
# The Literals are what OpenAPI shows; they must not drift from the store's lists.
assert get_args(RiskLevel) == RISK_LEVELS and get_args(CaseStatus) == CASE_STATUSES
assert get_args(Disposition) == DISPOSITIONS

MAX_NOTE_CHARS = 4000
NoteText = Annotated[str, StringConstraints(max_length=MAX_NOTE_CHARS), FREE_TEXT]
# A token's name (the column's size).
TokenName = Annotated[str, StringConstraints(max_length=100), FREE_TEXT]
# The most a money column (14 digits, 2 after the point) holds.
MAX_MONEY = 999_999_999_999.99


class CaseSummary(BaseModel):
    case_id: str
    subject_type: str
    subject_id: str
    risk_score: float
    risk_level: RiskLevel
    status: CaseStatus
    flagged_billed: float
    flagged_paid: float
    assignee: str | None
    disposition: Disposition | None
    amount_recovered: float | None

    @classmethod
    def of(cls, row: InvestigationCase) -> CaseSummary:
        return cls(
            case_id=row.case_number,
            subject_type=row.subject_type,
            subject_id=row.subject_id,
            risk_score=round(row.risk_score, 1),  # as shown; the bands are whole numbers
            risk_level=row.risk_level,  # type: ignore[arg-type]
            status=row.status,  # type: ignore[arg-type]
            flagged_billed=row.flagged_billed,
            flagged_paid=row.flagged_paid,
            assignee=row.assignee,
            disposition=row.disposition,  # type: ignore[arg-type]
            amount_recovered=row.amount_recovered,
        )


class CasePage(Page[CaseSummary]):
    counts_by_risk_level: dict[RiskLevel, int] = Field(
        description="Cases each risk level holds under every filter but the risk level itself."
    )


class LinkedClaim(BaseModel):
    claim_type: str
    claim_id: str


class RuleCount(BaseModel):
    rule_id: str
    name: str | None
    hits: int
    max_severity: float


class CaseHit(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    rule_id: str
    rule_version: str
    run_id: str
    claim_type: str
    claim_id: str
    subject_type: str
    subject_id: str
    severity: float
    weight: float
    evidence: dict[str, Any]

    @field_validator("evidence", mode="before")
    @classmethod
    def _no_evidence(cls, value: Any) -> Any:
        return value or {}


class CaseEventOut(BaseModel):
    at: dt.datetime
    actor: str
    action: str
    detail: dict[str, Any]

    @classmethod
    def of(cls, row: CaseEvent) -> CaseEventOut:
        return cls(at=row.at, actor=row.actor, action=row.action, detail=row.detail or {})


class CaseDetail(CaseSummary):
    explanation: dict[str, Any]
    created_at: dt.datetime
    updated_at: dt.datetime
    claim_count: int
    claims: list[LinkedClaim]
    rules: list[RuleCount]
    hit_count: int
    hits: list[CaseHit]
    history: list[CaseEventOut]


class StatusChange(BaseModel):
    # The schema says what the store checks: closing needs a disposition, and only closing
    # takes a disposition or an amount.
    model_config = ConfigDict(
        json_schema_extra={
            "if": {"properties": {"status": {"const": "closed"}}},
            "then": {
                "required": ["disposition"],
                "properties": {"disposition": {"enum": list(DISPOSITIONS)}},
            },
            "else": {
                "properties": {
                    "disposition": {"type": "null"},
                    "amount_recovered": {"type": "null"},
                }
            },
        }
    )

    status: CaseStatus = Field(description="The new status.")
    note: NoteText | None = Field(None, description="Why; kept in the history entry.")
    disposition: Disposition | None = Field(
        None, description="What the investigation found: required to close, refused otherwise."
    )
    amount_recovered: Annotated[float, Field(ge=0, le=MAX_MONEY)] | None = Field(
        None, description="Money recovered, when closing."
    )


class Assignment(BaseModel):
    assignee: TokenName | None = Field(
        description="The token name of an investigator of this workspace; null unassigns."
    )


class NoteIn(BaseModel):
    note: NoteText


class CaseAction(BaseModel):
    """The case after the action, and the history entry the action appended."""

    case: CaseSummary
    event: CaseEventOut
