"""Investigation cases in the store: the pipeline's upsert of case proposals, and the case
workflow (status, notes, assignment) the API drives. Every change leaves a ``case_events`` row.

Policy (rules.md, "Scoring and cases"): one open case per subject (a partial unique index
enforces it). A proposal for a subject with an open, under-review or escalated case updates that
case, whatever its score (a case below ``case_min_level`` now is rescored down, not left high);
the same evidence and score again change nothing and write no history. A subject whose cases are
all closed gets a new case if it qualifies for one, unless the proposal's evidence is exactly
what a closed case was built from: an investigator's decision is not undone by the same
evidence.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from typing import Any

import pandas as pd
from sqlalchemy import Connection, Row, bindparam, func, select, text, update
from sqlalchemy import case as when
from sqlalchemy.orm import Session

from fwa_pipeline.domain.cases import PROPOSAL_COLUMNS, SUBJECT
from fwa_pipeline.domain.feedback import CONFIRMED, INCONCLUSIVE, NO_ISSUE, Verdicts
from fwa_pipeline.kit.validation import InvalidInput, clean_text
from fwa_pipeline.store.bulk import copy_frame, wire_table
from fwa_pipeline.store.models import (
    CASE_STATUSES,
    DISPOSITIONS,
    CaseClaim,
    CaseEvent,
    InvestigationCase,
    RuleHit,
    utcnow,
)
from fwa_pipeline.store.results import evidence_json

CLOSED = "closed"
# The evidence hash of a case whose subject a full run found no evidence on.
NO_EVIDENCE = ""
# Ids per IN (...) list: well under SQLite's bound-parameter limit.
_CHUNK = 500
ClaimKey = tuple[str, int]
_CASES = InvestigationCase.__table__
# Cases and their history as COPY writes them: JSON columns already serialised.
_CASES_WIRE = wire_table(_CASES, ["explanation"])  # type: ignore[arg-type]
_EVENTS_WIRE = wire_table(CaseEvent.__table__, ["detail"], omit=["id"])  # type: ignore[arg-type]


class CaseConflictError(ValueError):
    """The change would leave a subject with two open cases."""


def case_number(case_id: int) -> str:
    return f"CASE-{case_id:06d}"


def _actor(run_id: str) -> str:
    return f"pipeline:{run_id}"


def _chunks(items: Sequence[Any], size: int = _CHUNK) -> Iterable[Sequence[Any]]:
    return (items[i : i + size] for i in range(0, len(items), size))


def _cases_by_subject(
    connection: Connection, workspace_id: int, subjects: list[tuple[str, str]]
) -> dict[tuple[str, str], list[Row[Any]]]:
    c = _CASES.c
    statement = select(
        c.id, c.subject_type, c.subject_id, c.status, c.evidence_hash, c.risk_score, c.risk_level
    ).where(c.workspace_id == workspace_id)
    wanted = set(subjects)
    ids = sorted({subject_id for _, subject_id in wanted})
    # By subject id, the type checked here (a list of pairs plans far slower); past one list,
    # one pass over the workspace's cases beats several lists (each costs a plan).
    if len(ids) <= _CHUNK:
        statement = statement.where(c.subject_id.in_(ids))
    found: dict[tuple[str, str], list[Row[Any]]] = defaultdict(list)
    for case in connection.execute(statement):
        if (case.subject_type, case.subject_id) in wanted:
            found[(case.subject_type, case.subject_id)].append(case)
    return found


def _links(connection: Connection, case_ids: list[int]) -> dict[int, set[ClaimKey]]:
    found: dict[int, set[ClaimKey]] = defaultdict(set)
    for chunk in _chunks(case_ids):
        rows = connection.execute(
            select(CaseClaim.case_id, CaseClaim.claim_type, CaseClaim.claim_pk).where(
                CaseClaim.case_id.in_(chunk)
            )
        )
        for case_id, claim_type, claim_pk in rows:
            found[case_id].add((claim_type, int(claim_pk)))
    return found


def _new_case_ids(connection: Connection, count: int) -> list[int]:
    """Ids for ``count`` new cases, taken before they are inserted: their case numbers are made
    from them, so the rows go in complete, with one COPY."""
    if connection.dialect.name == "postgresql":
        return sorted(
            connection.scalars(
                text(
                    "SELECT nextval(pg_get_serial_sequence('investigation_cases', 'id')) "
                    "FROM generate_series(1, :n)"
                ),
                {"n": count},
            )
        )
    # SQLite numbers a new row max(id) + 1 too, and serialises writers.
    last = connection.scalar(select(func.coalesce(func.max(_CASES.c.id), 0)))
    return list(range(int(last) + 1, int(last) + 1 + count))


def _claim_map(claims: list[dict[str, Any]]) -> dict[ClaimKey, str]:
    return {(c["claim_type"], int(c["claim_pk"])): c["claim_id"] for c in claims}


def _scored(proposal: Any, run_id: str) -> dict[str, Any]:
    """The columns a proposal sets on its case."""
    return {
        "risk_score": float(proposal.risk_score),
        "risk_level": proposal.risk_level,
        "explanation": proposal.explanation,
        "flagged_billed": float(proposal.flagged_billed),
        "flagged_paid": float(proposal.flagged_paid),
        "evidence_hash": proposal.evidence_hash,
        "run_id": run_id,
    }


def upsert_cases(
    session: Session, workspace_id: int, run_id: str, proposals: pd.DataFrame
) -> dict[str, int]:
    """Open or update cases from ``proposals`` (``domain.cases.PROPOSAL_COLUMNS``, one row per
    subject) in the session's transaction. Returns counts: opened, updated, unchanged,
    skipped_closed, not_qualifying (no open case, and the score opens none).

    Set-based (thousands of cases in a full run): new cases, their history and claim links go
    in with COPY, updates with one executemany; case objects the session holds are expired."""
    counts = {"opened": 0, "updated": 0, "unchanged": 0, "skipped_closed": 0, "not_qualifying": 0}
    if proposals.empty:
        return counts
    missing = [c for c in PROPOSAL_COLUMNS if c not in proposals.columns]
    if missing:
        raise ValueError(f"proposals lack columns: {', '.join(missing)}")
    if proposals.duplicated(SUBJECT).any():
        raise ValueError("proposals name a subject twice")
    session.flush()  # the session's own pending changes first: the writes below bypass it
    connection = session.connection()
    subjects = list(proposals[SUBJECT].itertuples(index=False, name=None))
    existing = _cases_by_subject(connection, workspace_id, subjects)
    open_cases = {
        subject: case
        for subject, cases in existing.items()
        for case in cases
        if case.status != CLOSED
    }
    to_open: list[Any] = []
    to_update: list[tuple[Row[Any], Any]] = []
    for proposal in proposals.itertuples(index=False):
        subject = (proposal.subject_type, proposal.subject_id)
        case = open_cases.get(subject)
        if case is not None:
            same = (
                case.evidence_hash == proposal.evidence_hash
                and case.risk_score == float(proposal.risk_score)
                and case.risk_level == proposal.risk_level
            )
            if same:
                counts["unchanged"] += 1
            else:
                to_update.append((case, proposal))
        elif not proposal.qualifies:
            counts["not_qualifying"] += 1
        elif any(c.evidence_hash == proposal.evidence_hash for c in existing.get(subject, [])):
            counts["skipped_closed"] += 1
        else:
            to_open.append(proposal)

    actor, now = _actor(run_id), utcnow()
    events: list[tuple[int, str, dict[str, Any]]] = []
    new_links: list[tuple[int, ClaimKey, str]] = []
    # Links only of the cases that change: an unchanged batch reads no links at all.
    links = _links(connection, [case.id for case, _ in to_update])
    for case, proposal in to_update:
        claims = _claim_map(proposal.claims)
        added = claims.keys() - links[case.id]
        detail = {
            "from": {"risk_score": case.risk_score, "risk_level": case.risk_level},
            "to": {"risk_score": float(proposal.risk_score), "risk_level": proposal.risk_level},
            "evidence_changed": case.evidence_hash != proposal.evidence_hash,
            "claims_added": len(added),
        }
        events.append((case.id, "rescored", detail))
        new_links.extend((case.id, key, claims[key]) for key in sorted(added))
    if to_update:
        connection.execute(
            update(_CASES).where(_CASES.c.id == bindparam("case_id")),
            [
                {"case_id": case.id, **_scored(proposal, run_id), "updated_at": now}
                for case, proposal in to_update
            ],
        )

    opened = []
    for case_id, proposal in zip(_new_case_ids(connection, len(to_open)), to_open, strict=True):
        opened.append(
            {
                "id": case_id,
                "case_number": case_number(case_id),
                "workspace_id": workspace_id,
                "subject_type": proposal.subject_type,
                "subject_id": proposal.subject_id,
                "status": "open",
                **_scored(proposal, run_id),
                "created_at": now,
                "updated_at": now,
            }
        )
        events.append(
            (
                case_id,
                "opened",
                {
                    "risk_score": float(proposal.risk_score),
                    "risk_level": proposal.risk_level,
                    "override": proposal.override if isinstance(proposal.override, str) else None,
                    "claims": len(proposal.claims),
                },
            )
        )
        new_links.extend(
            (case_id, key, cid) for key, cid in sorted(_claim_map(proposal.claims).items())
        )
    if opened:
        rows = pd.DataFrame(opened)
        rows["explanation"] = [evidence_json(e) for e in rows["explanation"]]
        copy_frame(connection, _CASES_WIRE, rows)
    _write_events(connection, events, actor, now)
    copy_frame(
        connection,
        CaseClaim.__tablename__,
        pd.DataFrame(
            {
                "case_id": [case_id for case_id, _, _ in new_links],
                "claim_type": [key[0] for _, key, _ in new_links],
                "claim_pk": [key[1] for _, key, _ in new_links],
                "claim_id": [claim_id for _, _, claim_id in new_links],
            }
        ),
    )
    _expire_cases(session)
    counts["opened"], counts["updated"] = len(opened), len(to_update)
    return counts


def open_case_subjects(connection: Connection, workspace_id: int) -> pd.DataFrame:
    """``subject_type, subject_id`` of the workspace's cases not closed."""
    c = _CASES.c
    rows = connection.execute(
        select(c.subject_type, c.subject_id).where(
            c.workspace_id == workspace_id, c.status != CLOSED
        )
    ).all()
    return pd.DataFrame(rows, columns=SUBJECT, dtype=object)


def withdraw_unsupported_cases(
    session: Session,
    workspace_id: int,
    run_id: str,
    supported: pd.DataFrame,
    lowest_level: str,
) -> int:
    """After a run that judged every claim of the workspace (a full run or force_reprocess):
    each case still open whose subject is not among ``supported`` (``SUBJECT`` columns: the
    subjects the run found any hit on) has no evidence left, as when a rule was disabled or its
    claims were held.
    It is rescored to 0 and ``lowest_level``, its explanation says so, and a ``rescored``
    history entry keeps what it was. It is not closed: that is an investigator's decision.
    Returns how many cases changed (one withdrawn already is left as it is)."""
    session.flush()
    connection = session.connection()
    c = _CASES.c
    keep = set(supported[SUBJECT].itertuples(index=False, name=None))
    stale = [
        case
        for case in connection.execute(
            select(c.id, c.subject_type, c.subject_id, c.risk_score, c.risk_level).where(
                c.workspace_id == workspace_id,
                c.status != CLOSED,
                c.evidence_hash != NO_EVIDENCE,
            )
        )
        if (case.subject_type, case.subject_id) not in keep
    ]
    if not stale:
        return 0
    now = utcnow()
    explanation = {"no_current_evidence": run_id, "claim_count": 0, "rules": []}
    connection.execute(
        update(_CASES).where(_CASES.c.id == bindparam("case_id")),
        [
            {
                "case_id": case.id,
                "risk_score": 0.0,
                "risk_level": lowest_level,
                "explanation": explanation,
                "flagged_billed": 0.0,
                "flagged_paid": 0.0,
                "evidence_hash": NO_EVIDENCE,
                "run_id": run_id,
                "updated_at": now,
            }
            for case in stale
        ],
    )
    events = [
        (
            case.id,
            "rescored",
            {
                "from": {"risk_score": case.risk_score, "risk_level": case.risk_level},
                "to": {"risk_score": 0.0, "risk_level": lowest_level},
                "evidence_changed": True,
                "claims_added": 0,
                "no_current_evidence": True,
            },
        )
        for case in stale
    ]
    _write_events(connection, events, _actor(run_id), now)
    _expire_cases(session)
    return len(stale)


def _write_events(
    connection: Connection,
    events: list[tuple[int, str, dict[str, Any]]],
    actor: str,
    at: Any,
) -> None:
    copy_frame(
        connection,
        _EVENTS_WIRE,
        pd.DataFrame(
            {
                "case_id": [case_id for case_id, _, _ in events],
                "at": at,
                "actor": actor,
                "action": [action for _, action, _ in events],
                "detail": [evidence_json(detail) for _, _, detail in events],
            }
        ),
    )


def _expire_cases(session: Session) -> None:
    """The writes bypassed the session: case objects it holds are stale."""
    for held in list(session.identity_map.values()):
        if isinstance(held, InvestigationCase):
            session.expire(held)


# --------------------------------------------------------------------------- workflow


def _event(
    session: Session, case: InvestigationCase, actor: str, action: str, detail: dict[str, Any]
) -> CaseEvent:
    event = CaseEvent(case_id=case.id, actor=actor, action=action, detail=detail)
    session.add(event)
    return event


def change_case_status(
    session: Session,
    case: InvestigationCase,
    status: str,
    actor: str,
    note: str | None = None,
    *,
    disposition: str | None = None,
    amount_recovered: float | None = None,
) -> CaseEvent | None:
    """Move ``case`` to ``status`` (``models.CASE_STATUSES``), with a ``status_changed`` history
    entry; None when it already has that status.

    Closing takes a ``disposition`` (``models.DISPOSITIONS``) and optionally the
    ``amount_recovered``; any other status takes neither. Reopening a closed case clears both
    (the entry that closed it keeps them). ``InvalidInput`` naming the field for an unknown
    status, a blank note, a missing or misplaced disposition or a negative amount; reopening a
    closed case raises :class:`CaseConflictError` when its subject has another open case."""
    if status not in CASE_STATUSES:
        raise InvalidInput([("status", f"must be one of {', '.join(CASE_STATUSES)}")])
    if note is not None:
        note = clean_text(note, "note")
    _check_disposition(status, disposition, amount_recovered)
    if status == case.status:
        return None
    if case.status == CLOSED:
        other = session.scalar(
            select(InvestigationCase.case_number).where(
                InvestigationCase.workspace_id == case.workspace_id,
                InvestigationCase.subject_type == case.subject_type,
                InvestigationCase.subject_id == case.subject_id,
                InvestigationCase.status != CLOSED,
                InvestigationCase.id != case.id,
            )
        )
        if other is not None:
            raise CaseConflictError(f"{case.case_number} cannot reopen: {other} is open")
    detail: dict[str, Any] = {"from": case.status, "to": status}
    if status == CLOSED:
        detail["disposition"] = disposition
        detail["amount_recovered"] = amount_recovered
    if note is not None:
        detail["note"] = note
    case.status = status
    case.disposition, case.amount_recovered = disposition, amount_recovered
    return _event(session, case, actor, "status_changed", detail)


def _check_disposition(status: str, disposition: str | None, amount: float | None) -> None:
    problems = []
    if status == CLOSED:
        if disposition is None:
            problems.append(("disposition", "closing a case needs a disposition"))
        elif disposition not in DISPOSITIONS:
            problems.append(("disposition", f"must be one of {', '.join(DISPOSITIONS)}"))
        if amount is not None and not amount >= 0:
            problems.append(("amount_recovered", "must be zero or more"))
    else:
        problems += [
            (field, "only a case being closed takes one")
            for field, value in (("disposition", disposition), ("amount_recovered", amount))
            if value is not None
        ]
    if problems:
        raise InvalidInput(problems)


def add_case_note(session: Session, case: InvestigationCase, actor: str, note: str) -> CaseEvent:
    """Append an investigator's note to the case history (``InvalidInput`` when it is blank)."""
    return _event(session, case, actor, "note", {"note": clean_text(note, "note")})


def assign_case(
    session: Session, case: InvestigationCase, assignee: str | None, actor: str
) -> CaseEvent | None:
    """Assign ``case`` to ``assignee`` (None unassigns), with an ``assigned`` history entry;
    None when nothing changes. ``InvalidInput`` for a blank name."""
    if assignee is not None:
        assignee = clean_text(assignee, "assignee")
    if assignee == case.assignee:
        return None
    detail = {"from": case.assignee, "to": assignee}
    case.assignee = assignee
    return _event(session, case, actor, "assigned", detail)


# --------------------------------------------------------------------------- feedback


def rule_verdicts(
    session: Session, workspace_id: int, rule_id: str | None = None
) -> dict[str, Verdicts]:
    """Per rule (or only ``rule_id``): the workspace's closed cases citing it (a hit of the rule
    on one of the case's claims), counted by disposition (``domain.feedback``). One aggregate
    query; rules no closed case cites are absent."""
    cited = (
        select(InvestigationCase.id, InvestigationCase.disposition, RuleHit.rule_id)
        .join(CaseClaim, CaseClaim.case_id == InvestigationCase.id)
        .join(
            RuleHit,
            (RuleHit.workspace_id == InvestigationCase.workspace_id)
            & (RuleHit.claim_type == CaseClaim.claim_type)
            & (RuleHit.claim_pk == CaseClaim.claim_pk),
        )
        .where(
            InvestigationCase.workspace_id == workspace_id,
            InvestigationCase.status == CLOSED,
            InvestigationCase.disposition.is_not(None),
        )
        .distinct()  # a case cites a rule once, however many of its claims it hit
    )
    if rule_id is not None:
        cited = cited.where(RuleHit.rule_id == rule_id)
    pairs = cited.subquery()

    def count(dispositions: tuple[str, ...]) -> Any:
        return func.coalesce(func.sum(when((pairs.c.disposition.in_(dispositions), 1), else_=0)), 0)

    rows = session.execute(
        select(pairs.c.rule_id, count(CONFIRMED), count(NO_ISSUE), count(INCONCLUSIVE)).group_by(
            pairs.c.rule_id
        )
    )
    return {
        rule: Verdicts(int(confirmed), int(no_issue), int(inconclusive))
        for rule, confirmed, no_issue, inconclusive in rows
    }
