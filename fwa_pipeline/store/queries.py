"""Read-side questions about pipeline output."""

from __future__ import annotations

from typing import Any

from sqlalchemy import String, and_, case, cast, literal, null, select, union_all
from sqlalchemy.orm import Session

from fwa_pipeline.domain.cases import json_safe
from fwa_pipeline.store.claims import CLAIM_STATUS
from fwa_pipeline.store.models import (
    ClaimScore,
    MedicalClaim,
    PharmacyClaim,
    PipelineRun,
    RuleHit,
)

_PARTIES = ("provider_id", "pharmacy_id", "prescriber_id")
_CLAIM_FIELDS = (
    "claim_type",
    "claim_pk",
    "claim_id",
    "batch_id",
    "status",
    "last_run_id",
    "member_id",
    *_PARTIES,
    "claim_date",
    "code",
    "amount_billed",
    "amount_paid",
)
_HIT_FIELDS = (
    "rule_id",
    "rule_version",
    "weight",
    "severity",
    "subject_type",
    "subject_id",
    "evidence",
)


def _pick(row: Any, *keys: str) -> dict[str, Any]:
    return {key: row[key] for key in keys}


def _claim_rows(workspace_id: int, claim_id: str) -> Any:
    """Medical and pharmacy rows carrying ``claim_id``, in one shape (``_CLAIM_FIELDS``)."""

    state = CLAIM_STATUS.c

    def shaped(model: Any, claim_type: str, date: Any, code: Any) -> Any:
        parties = [
            getattr(model, name) if hasattr(model, name) else cast(null(), String(10)).label(name)
            for name in _PARTIES
        ]
        return (
            select(
                literal(claim_type, String(10)).label("claim_type"),
                model.id.label("claim_pk"),
                model.claim_id,
                model.batch_id,
                state.status,
                state.last_run_id,
                model.member_id,
                *parties,
                date.label("claim_date"),
                code.label("code"),
                model.amount_billed,
                model.amount_paid,
            )
            .join(
                CLAIM_STATUS,
                and_(
                    state.workspace_id == model.workspace_id,
                    state.claim_type == claim_type,
                    state.claim_pk == model.id,
                ),
            )
            .where(model.workspace_id == workspace_id, model.claim_id == claim_id)
        )

    return union_all(
        shaped(MedicalClaim, "medical", MedicalClaim.service_date, MedicalClaim.cpt_code),
        shaped(PharmacyClaim, "pharmacy", PharmacyClaim.fill_date, PharmacyClaim.ndc_code),
    ).subquery("c")


def claim_provenance(
    session: Session, workspace_id: int, claim_id: str, claim_type: str | None = None
) -> dict[str, Any] | None:
    """Which rules and thresholds were in effect when this claim was scored?

    One query: the claim, its batch, processing status and ``last_run_id`` (the run that last
    processed its batch, see ``store.claims.CLAIM_STATUS``), that run's status and config
    snapshot, the rule
    hits of that run on the claim and its score. When several rows carry the claim id (a
    duplicate the quality gate held), the processed one (else the first landed) is described and
    the others are listed under ``other_rows``. None when no row has the id. JSON-ready.
    """
    c = _claim_rows(workspace_id, claim_id)
    statement = (
        select(
            c,
            PipelineRun.status.label("run_status"),
            PipelineRun.started_at,
            PipelineRun.completed_at,
            PipelineRun.config_snapshot,
            ClaimScore.score,
            ClaimScore.risk_level,
            ClaimScore.hit_count,
            RuleHit.rule_id,
            RuleHit.rule_version,
            RuleHit.weight,
            RuleHit.severity,
            RuleHit.subject_type,
            RuleHit.subject_id,
            RuleHit.evidence,
        )
        .outerjoin(
            PipelineRun,
            and_(
                PipelineRun.run_id == c.c.last_run_id,
                PipelineRun.workspace_id == workspace_id,
            ),
        )
        .outerjoin(
            ClaimScore,
            and_(
                ClaimScore.workspace_id == workspace_id,
                ClaimScore.claim_type == c.c.claim_type,
                ClaimScore.claim_pk == c.c.claim_pk,
            ),
        )
        .outerjoin(
            RuleHit,
            and_(
                RuleHit.workspace_id == workspace_id,
                RuleHit.claim_type == c.c.claim_type,
                RuleHit.claim_pk == c.c.claim_pk,
                RuleHit.run_id == c.c.last_run_id,
            ),
        )
        .order_by(
            case((c.c.status == "processed", 0), else_=1),
            c.c.claim_pk,
            c.c.claim_type,
            RuleHit.rule_id,
            RuleHit.id,
        )
    )
    if claim_type is not None:
        statement = statement.where(c.c.claim_type == claim_type)
    rows = session.execute(statement).mappings().all()
    if not rows:
        return None
    first = rows[0]
    chosen = (first["claim_type"], first["claim_pk"])
    mine = [r for r in rows if (r["claim_type"], r["claim_pk"]) == chosen]
    others = {
        (r["claim_type"], r["claim_pk"]): _pick(r, "claim_type", "claim_pk", "status")
        for r in rows
        if (r["claim_type"], r["claim_pk"]) != chosen
    }
    snapshot = first["config_snapshot"] or {}
    rule_config = snapshot.get("rules", {}) if isinstance(snapshot, dict) else {}
    run = (
        None
        if first["run_status"] is None
        else {
            "run_id": first["last_run_id"],
            "status": first["run_status"],
            **_pick(first, "started_at", "completed_at"),
            "config_snapshot": snapshot,
        }
    )
    score = None if first["score"] is None else _pick(first, "score", "risk_level", "hit_count")
    hits = [
        {
            **_pick(r, *_HIT_FIELDS),
            # The rule's settings in that run: weight, cap, thresholds.
            "rule_config": rule_config.get(r["rule_id"]),
        }
        for r in mine
        if r["rule_id"] is not None
    ]
    claim = _pick(first, *_CLAIM_FIELDS)
    return json_safe(
        {
            "claim": claim,
            "run": run,
            "score": score,
            "hits": hits,
            "other_rows": list(others.values()),
        }
    )
