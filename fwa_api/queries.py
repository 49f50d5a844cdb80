"""Read-side queries shared by the API's routes and the assistant's tools.

Pure store reading: a session and a workspace id in, typed models out, None for anything not in
that workspace (so a caller answers another workspace's record exactly like a missing one). The
routes return these models as they are; the tools trim them for a prompt. Nothing here returns
member PHI except :func:`member`, and only when asked to.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable
from functools import lru_cache
from typing import Any, Generic, Literal, TypeVar, get_args

from pydantic import (
    AliasPath,
    BaseModel,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    field_validator,
)
from sqlalchemy import Engine, case, func, select
from sqlalchemy.orm import Session, load_only

from fwa_pipeline.domain.config import RuleParams, default_config
from fwa_pipeline.store import queries as store_queries
from fwa_pipeline.store.cases import case_number as format_case_number
from fwa_pipeline.store.crypto import FieldCipher
from fwa_pipeline.store.db import read_scope
from fwa_pipeline.store.models import (
    CASE_STATUSES,
    RISK_LEVELS,
    CaseClaim,
    CaseEvent,
    InvestigationCase,
    MedicalClaim,
    Member,
    PharmacyClaim,
    PipelineRun,
    Provider,
    RuleHit,
)
from fwa_pipeline.store.pii import get_member

RiskLevel = Literal["low", "medium", "high", "critical"]
CaseStatus = Literal["open", "under_review", "escalated", "closed"]
# The Literals are what OpenAPI shows; they must not drift from the store's lists.
assert get_args(RiskLevel) == RISK_LEVELS and get_args(CaseStatus) == CASE_STATUSES

CASE_NUMBER = re.compile(r"^(?:CASE-)?(\d{1,12})$", re.IGNORECASE)
# Subjects a provider NPI can be: the rendering provider, a pharmacy, a prescriber.
ENTITY_SUBJECTS = ("provider", "pharmacy", "prescriber")
# Linked claims and rule hits a case detail lists (their counts give the totals).
DETAIL_ROWS = 100

T = TypeVar("T")


def case_number(raw: str) -> str | None:
    """``CASE-000123`` from ``CASE-000123``, ``case-123`` or ``123``; None if it is not one."""
    match = CASE_NUMBER.match(raw.strip())
    return format_case_number(int(match.group(1))) if match else None


@lru_cache(maxsize=1)
def catalogue() -> dict[str, RuleParams]:
    """The shipped rule catalogue (names, families, default parameters)."""
    return default_config().rules


def in_session(engine: Engine, query: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
    """``query(session, *args, **kwargs)`` in a read-only session of its own
    (``store.db.read_scope``): one call for a worker thread."""
    with read_scope(engine) as session:
        return query(session, *args, **kwargs)


class Page(BaseModel, Generic[T]):
    total: int
    limit: int
    offset: int
    items: list[T]


# --------------------------------------------------------------------------- cases


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
        )


SUMMARY_COLUMNS = (
    InvestigationCase.case_number,
    InvestigationCase.subject_type,
    InvestigationCase.subject_id,
    InvestigationCase.risk_score,
    InvestigationCase.risk_level,
    InvestigationCase.status,
    InvestigationCase.flagged_billed,
    InvestigationCase.flagged_paid,
    InvestigationCase.assignee,
)


class CasePage(Page[CaseSummary]):
    pass


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


def list_cases(
    session: Session,
    workspace_id: int,
    *,
    risk_level: str | None = None,
    status: str | None = None,
    limit: int = 50,
    offset: int = 0,
) -> CasePage:
    """Cases highest risk score first (then oldest first), filtered, one page of them."""
    where = [InvestigationCase.workspace_id == workspace_id]
    if risk_level:
        where.append(InvestigationCase.risk_level == risk_level)
    if status:
        where.append(InvestigationCase.status == status)
    total = session.scalar(select(func.count()).select_from(InvestigationCase).where(*where))
    rows = session.scalars(
        select(InvestigationCase)
        .options(load_only(*SUMMARY_COLUMNS))  # not the explanations: kilobytes each
        .where(*where)
        .order_by(InvestigationCase.risk_score.desc(), InvestigationCase.id)
        .limit(limit)
        .offset(offset)
    )
    return CasePage(
        total=total or 0, limit=limit, offset=offset, items=[CaseSummary.of(r) for r in rows]
    )


def find_case(
    session: Session, workspace_id: int, raw_id: str, *, for_update: bool = False
) -> InvestigationCase | None:
    """The case ``raw_id`` names (see :func:`case_number`) if it is in the workspace;
    ``for_update`` locks its row until the transaction ends."""
    number = case_number(raw_id)
    if number is None:
        return None
    query = select(InvestigationCase).where(
        InvestigationCase.workspace_id == workspace_id, InvestigationCase.case_number == number
    )
    return session.scalars(query.with_for_update() if for_update else query).first()


def case_detail(
    session: Session, workspace_id: int, raw_id: str, *, rows: int = DETAIL_ROWS
) -> CaseDetail | None:
    """One case: its summary, explanation, linked claims and the rule hits on them (the first
    ``rows`` of each, with totals), hits per rule, and its whole history, oldest first."""
    row = find_case(session, workspace_id, raw_id)
    if row is None:
        return None
    claim_count = session.scalar(
        select(func.count()).select_from(CaseClaim).where(CaseClaim.case_id == row.id)
    )
    claims = session.execute(
        select(CaseClaim.claim_type, CaseClaim.claim_id)
        .where(CaseClaim.case_id == row.id)
        .order_by(CaseClaim.claim_type, CaseClaim.claim_id)
        .limit(rows)
    ).all()
    on_case_claims = (
        (CaseClaim.claim_type == RuleHit.claim_type)
        & (CaseClaim.claim_pk == RuleHit.claim_pk)
        & (CaseClaim.case_id == row.id)
    )
    per_rule = session.execute(
        select(RuleHit.rule_id, func.count(), func.max(RuleHit.severity))
        .join(CaseClaim, on_case_claims)
        .where(RuleHit.workspace_id == workspace_id)
        .group_by(RuleHit.rule_id)
        .order_by(func.count().desc(), RuleHit.rule_id)
    ).all()
    hits = session.scalars(
        select(RuleHit)
        .join(CaseClaim, on_case_claims)
        .where(RuleHit.workspace_id == workspace_id)
        .order_by(RuleHit.severity.desc(), RuleHit.rule_id, RuleHit.id)
        .limit(rows)
    )
    history = session.scalars(
        select(CaseEvent).where(CaseEvent.case_id == row.id).order_by(CaseEvent.id)
    )
    known = catalogue()
    return CaseDetail(
        **CaseSummary.of(row).model_dump(),
        explanation=row.explanation or {},
        created_at=row.created_at,
        updated_at=row.updated_at,
        claim_count=claim_count or 0,
        claims=[LinkedClaim(claim_type=t, claim_id=c) for t, c in claims],
        rules=[
            RuleCount(
                rule_id=rule_id,
                name=known[rule_id].name if rule_id in known else None,
                hits=count,
                max_severity=round(severity, 2),
            )
            for rule_id, count, severity in per_rule
        ],
        hit_count=sum(count for _, count, _ in per_rule),
        hits=[CaseHit.model_validate(h) for h in hits],
        history=[CaseEventOut.of(event) for event in history],
    )


# --------------------------------------------------------------------------- rules


class RuleOut(BaseModel):
    rule_id: str
    name: str
    family: str
    version: str
    enabled: bool
    weight: float
    cap: float
    lookback_days: int
    thresholds: dict[str, Any]
    hits: int
    claims_hit: int


class RuleCatalogue(BaseModel):
    parameters_run_id: str | None
    rules: list[RuleOut]


_RULES = TypeAdapter(dict[str, RuleParams])


def rules_in_effect(
    session: Session, workspace_id: int
) -> tuple[str | None, dict[str, RuleParams]]:
    """The rule parameters the workspace's latest successful run scored with (from its config
    snapshot) and that run's id; the shipped catalogue and None before any run."""
    found = session.execute(
        select(PipelineRun.run_id, PipelineRun.config_snapshot)
        .where(PipelineRun.workspace_id == workspace_id, PipelineRun.status == "success")
        .order_by(PipelineRun.created_at.desc())
        .limit(1)
    ).first()
    if found is not None and isinstance(found.config_snapshot, dict):
        try:
            return found.run_id, _RULES.validate_python(found.config_snapshot.get("rules"))
        except ValidationError:
            pass  # a snapshot from an incompatible catalogue: say so by naming no run
    return None, catalogue()


def rule_catalogue(
    session: Session, workspace_id: int, rule_id: str | None = None
) -> RuleCatalogue:
    """Every rule (or only ``rule_id``) with its parameters in effect and its hits in the
    workspace, by rule id."""
    run_id, params = rules_in_effect(session, workspace_id)
    query = (
        select(RuleHit.rule_id, func.count(), func.count(func.distinct(RuleHit.claim_pk)))
        .where(RuleHit.workspace_id == workspace_id)
        .group_by(RuleHit.rule_id)
    )
    if rule_id is not None:
        params = {rule_id: params[rule_id]} if rule_id in params else {}
        query = query.where(RuleHit.rule_id == rule_id)
    counts = {rule: (hits, claims) for rule, hits, claims in session.execute(query)}
    rules = [
        RuleOut(
            rule_id=rule,
            **p.model_dump(),
            hits=counts.get(rule, (0, 0))[0],
            claims_hit=counts.get(rule, (0, 0))[1],
        )
        for rule, p in sorted(params.items())
    ]
    return RuleCatalogue(parameters_run_id=run_id, rules=rules)


# --------------------------------------------------------------------------- providers


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


# --------------------------------------------------------------------------- claims


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


# --------------------------------------------------------------------------- members


class MemberOut(BaseModel):
    member_id: str
    gender: str
    state: str | None
    date_of_death: dt.date | None
    phi_included: bool
    first_name: str | None
    last_name: str | None
    date_of_birth: dt.date | None
    cases: list[CaseSummary]


def member(
    session: Session,
    cipher: FieldCipher | None,
    workspace_id: int,
    member_id: str,
    *,
    with_phi: bool,
) -> MemberOut | None:
    """A member and the cases about them; name and dates of birth and death decrypted only
    ``with_phi`` (else null, and never decrypted). The caller audits the read."""
    phi: dict[str, Any] = {
        "first_name": None,
        "last_name": None,
        "date_of_birth": None,
        "date_of_death": None,
    }
    if with_phi:
        record = get_member(session, cipher, workspace_id, member_id)
        if record is None:
            return None
        gender, state = record.gender, record.state
        phi = {k: getattr(record, k) for k in phi}
    else:
        row = session.get(Member, (workspace_id, member_id))
        if row is None:
            return None
        gender, state = row.gender, row.state
    cases = session.scalars(
        select(InvestigationCase)
        .where(
            InvestigationCase.workspace_id == workspace_id,
            InvestigationCase.subject_type == "member",
            InvestigationCase.subject_id == member_id,
        )
        .order_by(InvestigationCase.risk_score.desc(), InvestigationCase.id)
    )
    return MemberOut(
        member_id=member_id,
        gender=gender,
        state=state,
        phi_included=with_phi,
        cases=[CaseSummary.of(c) for c in cases],
        **phi,
    )
