"""Cases read from the store: a session and a workspace id in, typed models out, None for a case
not in that workspace (so a caller answers another workspace's case exactly like a missing one).
The routes return these models as they are; the assistant's tools trim them for a prompt."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Literal, get_args

from sqlalchemy import ColumnElement, func, select
from sqlalchemy.orm import Session, load_only

from fwa_api.auth import ROLE_RANK
from fwa_api.cases.models import (
    CaseDetail,
    CaseEventOut,
    CaseHit,
    CasePage,
    CaseSummary,
    LinkedClaim,
    RuleCount,
)
from fwa_api.kit.case_numbers import case_number
from fwa_api.rules.queries import catalogue
from fwa_pipeline.store.models import (
    RISK_LEVELS,
    ApiToken,
    CaseClaim,
    CaseEvent,
    InvestigationCase,
    RuleHit,
    Workspace,
    utcnow,
)

# The role that may change a case: its status, notes, assignee; and be assigned one.
CASE_WORKER = "investigator"
# Linked claims and rule hits a case detail lists (their counts give the totals).
DETAIL_ROWS = 100

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
    InvestigationCase.disposition,
    InvestigationCase.amount_recovered,
)


# What each ``sort`` orders by; the case's id breaks ties so pages never overlap.
SORTS = {
    "score": (InvestigationCase.risk_score.desc(), InvestigationCase.id),
    # The amount at stake: what was paid on the flagged claims, the money a finding recovers.
    "amount": (InvestigationCase.flagged_paid.desc(), InvestigationCase.id),
    "age": (InvestigationCase.created_at, InvestigationCase.id),
}
CaseSort = Literal["score", "amount", "age"]
assert set(get_args(CaseSort)) == set(SORTS)
# ``assignee=none``: the cases nobody is assigned.
UNASSIGNED = "none"


@dataclass(frozen=True)
class CaseFilters:
    """What narrows the queue; an empty tuple or None leaves that dimension open."""

    status: tuple[str, ...] = ()
    risk_level: tuple[str, ...] = ()
    assignee: str | None = None
    rule_id: str | None = None
    subject_id: str | None = None
    opened_from: dt.date | None = None
    opened_to: dt.date | None = None

    def conditions(self, workspace_id: int) -> list[ColumnElement[bool]]:
        """Every filter but the risk level (the counts by level are taken without it)."""
        case = InvestigationCase
        where: list[ColumnElement[bool]] = [case.workspace_id == workspace_id]
        if self.status:
            where.append(case.status.in_(self.status))
        if self.assignee == UNASSIGNED:
            where.append(case.assignee.is_(None))
        elif self.assignee:
            where.append(case.assignee == self.assignee)
        if self.subject_id:
            where.append(case.subject_id == self.subject_id)
        if self.opened_from:
            where.append(case.created_at >= _midnight(self.opened_from))
        if self.opened_to:  # the whole day included
            where.append(case.created_at < _midnight(self.opened_to + dt.timedelta(days=1)))
        if self.rule_id:
            # EXISTS, not a join: a case with many hits of the rule is listed once.
            where.append(
                select(CaseClaim.case_id)
                .join(
                    RuleHit,
                    (RuleHit.claim_type == CaseClaim.claim_type)
                    & (RuleHit.claim_pk == CaseClaim.claim_pk),
                )
                .where(
                    CaseClaim.case_id == case.id,
                    RuleHit.workspace_id == workspace_id,
                    RuleHit.rule_id == self.rule_id,
                )
                .exists()
            )
        return where


def _midnight(day: dt.date) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(), tzinfo=dt.UTC)


def list_cases(
    session: Session,
    workspace_id: int,
    filters: CaseFilters = CaseFilters(),
    *,
    sort: CaseSort = "score",
    limit: int = 50,
    offset: int = 0,
) -> CasePage:
    """One page of the filtered cases in ``sort`` order, with the total and the counts by risk
    level (those without the risk level filter, so a queue shows every level's count)."""
    where = filters.conditions(workspace_id)
    # One GROUP BY gives the counts and, summed over the chosen levels, the total.
    counts = {level: 0 for level in RISK_LEVELS}
    per_level = session.execute(
        select(InvestigationCase.risk_level, func.count())
        .where(*where)
        .group_by(InvestigationCase.risk_level)
    )
    counts.update({level: count for level, count in per_level})
    if filters.risk_level:
        where.append(InvestigationCase.risk_level.in_(filters.risk_level))
    rows = session.scalars(
        select(InvestigationCase)
        .options(load_only(*SUMMARY_COLUMNS))  # not the explanations: kilobytes each
        .where(*where)
        .order_by(*SORTS[sort])
        .limit(limit)
        .offset(offset)
    )
    chosen = filters.risk_level or RISK_LEVELS
    return CasePage(
        total=sum(counts.get(level, 0) for level in chosen),
        limit=limit,
        offset=offset,
        items=[CaseSummary.of(r) for r in rows],
        counts_by_risk_level=counts,  # type: ignore[arg-type]
    )


def may_be_assigned(session: Session, workspace_id: int, name: str) -> bool:
    """Whether ``name`` is the name of a token, neither revoked nor expired, that may work the
    workspace's cases (the investigator role or above, the workspace among its own)."""
    workspace = session.scalar(select(Workspace.name).where(Workspace.id == workspace_id))
    holders = session.execute(
        select(ApiToken.role, ApiToken.workspaces).where(
            ApiToken.name == name, ApiToken.revoked_at.is_(None), ApiToken.expires_at > utcnow()
        )
    )
    return any(
        ROLE_RANK[role] >= ROLE_RANK[CASE_WORKER] and workspace in workspaces
        for role, workspaces in holders
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
