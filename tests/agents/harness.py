"""What the assistant's tests and its benchmark share: two workspaces of seeded data, and the
app with the assistant's routes.

``acme`` holds CASE-000001 (critical, provider), CASE-000002 (high, member) and CASE-000003
(closed); ``globex`` holds CASE-000004, which acme's tokens must never reach.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from fastapi import FastAPI
from sqlalchemy import Engine

from fwa_api.app import create_app
from fwa_pipeline.settings import AssistantSettings, Settings
from fwa_pipeline.store.db import session_scope
from fwa_pipeline.store.models import (
    Batch,
    CaseClaim,
    CaseEvent,
    ClaimScore,
    InvestigationCase,
    MedicalClaim,
    Provider,
    RuleHit,
    Workspace,
)

ACME_NPI = "1234567893"
GLOBEX_NPI = "9876543213"
FOREIGN_CASE = "CASE-000004"
FOREIGN_SUBJECT = GLOBEX_NPI
FOREIGN_AMOUNT = "77,777.77"


def _case(
    ws: int, number: str, subject_type: str, subject_id: str, level: str, score: float, **kw: Any
) -> InvestigationCase:
    return InvestigationCase(
        case_number=number,
        workspace_id=ws,
        subject_type=subject_type,
        subject_id=subject_id,
        risk_score=score,
        risk_level=level,
        explanation={
            "summary": f"{subject_type} {subject_id} flagged",
            "top_rules": ["RULE-MED-004"],
        },
        flagged_billed=kw.get("billed", 1000.0),
        flagged_paid=kw.get("paid", 800.0),
        status=kw.get("status", "open"),
        run_id="run-1",
        evidence_hash=number,
    )


def seed(engine: Engine) -> tuple[int, int]:
    when = dt.datetime(2026, 3, 1, 12, tzinfo=dt.UTC)
    with session_scope(engine) as s:
        acme, globex = Workspace(name="acme"), Workspace(name="globex")
        s.add_all([acme, globex])
        s.flush()
        for ws, npi, name in ((acme, ACME_NPI, "Acme Clinic"), (globex, GLOBEX_NPI, "Globex Labs")):
            batch = Batch(
                workspace_id=ws.id,
                source="cli",
                files={"medical_claims.csv": 3},
                processed_run_id="run-1",  # its claims are processed
            )
            s.add(batch)
            s.add(Provider(workspace_id=ws.id, provider_id=npi, name=name, provider_type="clinic"))
            s.flush()
            for n in range(3):
                s.add(
                    MedicalClaim(
                        workspace_id=ws.id,
                        batch_id=batch.id,
                        claim_id=f"{ws.name.upper()}-CLM-{n}",
                        member_id=f"M{n}",
                        provider_id=npi,
                        service_date=dt.date(2026, 2, n + 1),
                        cpt_code="99215",
                        units=1,
                        amount_billed=500.0,
                        amount_paid=400.0,
                    )
                )
        s.flush()
        acme_claims = (
            s.query(MedicalClaim).filter_by(workspace_id=acme.id).order_by(MedicalClaim.id).all()
        )
        globex_claims = s.query(MedicalClaim).filter_by(workspace_id=globex.id).all()
        cases = [
            _case(acme.id, "CASE-000001", "provider", ACME_NPI, "critical", 95.5, paid=12345.0),
            _case(acme.id, "CASE-000002", "member", "M1", "high", 75.0),
            _case(acme.id, "CASE-000003", "member", "M2", "medium", 45.0, status="closed"),
            _case(globex.id, FOREIGN_CASE, "provider", GLOBEX_NPI, "critical", 99.0, paid=77777.77),
        ]
        s.add_all(cases)
        s.flush()
        for case, claims in ((cases[0], acme_claims), (cases[3], globex_claims)):
            for claim in claims:
                ref = {"claim_type": "medical", "claim_pk": claim.id, "claim_id": claim.claim_id}
                s.add(CaseClaim(case_id=case.id, **ref))
                s.add(
                    RuleHit(
                        workspace_id=case.workspace_id,
                        run_id="run-1",
                        rule_id="RULE-MED-004",
                        rule_version="1.0",
                        **ref,
                        subject_type="provider",
                        subject_id=case.subject_id,
                        severity=1.0,
                        weight=8.0,
                    )
                )
                s.add(
                    ClaimScore(
                        workspace_id=case.workspace_id,
                        **ref,
                        score=80.0,
                        risk_level="high",
                        hit_count=1,
                        run_id="run-1",
                    )
                )
            s.add(CaseEvent(case_id=case.id, at=when, actor="pipeline:run-1", action="opened"))
        return acme.id, globex.id


def build_app(settings: Settings, assistant: AssistantSettings | None = None) -> FastAPI:
    """The app, with ``assistant`` in place of the settings' own assistant settings."""
    if assistant is not None:
        settings = settings.model_copy(update={"assistant": assistant})
    return create_app(settings)
