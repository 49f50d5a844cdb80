"""Seeded workspaces for the read routes' tests: the assistant's two workspaces
(``tests.agents.harness``: acme's CASE-000001..3, globex's CASE-000004), extra acme cases opened
through the store's ``upsert_cases``, evidence on the hits, run-1's row with its config snapshot,
and a token per role."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

import pandas as pd
from sqlalchemy import Engine, update

from fwa_pipeline.domain.config import default_config
from fwa_pipeline.store.cases import upsert_cases
from fwa_pipeline.store.db import session_scope
from fwa_pipeline.store.models import RuleHit
from fwa_pipeline.store.runs import upsert_run
from tests.agents.harness import seed
from tests.api.conftest import bearer, make_token

EVIDENCE = {"services_same_day": 3, "threshold": 2}
# acme's cases once seeded, highest score first: (case, level, status).
ACME_CASES = [
    ("CASE-000001", "critical", "open"),
    ("CASE-000005", "critical", "open"),
    ("CASE-000006", "high", "open"),
    ("CASE-000002", "high", "open"),
    ("CASE-000007", "medium", "open"),
    ("CASE-000003", "medium", "closed"),
]


@dataclass
class World:
    acme: int
    globex: int
    headers: dict[str, dict[str, str]]  # by role: acme's; "globex": an investigator of globex
    names: dict[str, str]
    snapshot: dict[str, Any]


def proposals(*rows: tuple[str, str, float, str]) -> pd.DataFrame:
    """Case proposals (``domain.cases.PROPOSAL_COLUMNS``) without linked claims."""
    return pd.DataFrame(
        [
            {
                "subject_type": subject_type,
                "subject_id": subject_id,
                "risk_score": score,
                "risk_level": level,
                "override": None,
                "explanation": {"summary": f"{subject_type} {subject_id}"},
                "flagged_billed": 100.0,
                "flagged_paid": 80.0,
                "claims": [],
                "evidence_hash": f"{subject_id}-{score}",
                "qualifies": True,
            }
            for subject_type, subject_id, score, level in rows
        ]
    )


def snapshot(weight: float) -> dict[str, Any]:
    """A run's config snapshot, as the pipeline records it, with RULE-MED-004's weight set."""
    config = default_config().model_dump(mode="json")
    config["rules"]["RULE-MED-004"]["weight"] = weight
    return {"force_reprocess": False, "as_of": "2026-06-30", **config}


def seed_world(engine: Engine) -> World:
    acme, globex = seed(engine)
    recorded = snapshot(9.5)
    with session_scope(engine) as session:
        upsert_cases(
            session,
            acme,
            "run-1",
            proposals(
                ("provider", "1111111111", 92.0, "critical"),
                ("member", "M7", 80.0, "high"),
                ("member", "M8", 50.0, "medium"),
            ),
        )
        session.execute(update(RuleHit).values(evidence=EVIDENCE))
        upsert_run(
            session.connection(),
            "run-1",
            acme,
            status="success",
            started_at=dt.datetime(2026, 3, 1, 11, tzinfo=dt.UTC),
            completed_at=dt.datetime(2026, 3, 1, 12, tzinfo=dt.UTC),
            config_snapshot=recorded,
        )
    names = {role: f"{role}-acme" for role in ("viewer", "investigator", "admin")}
    headers = {
        role: bearer(make_token(engine, role, "acme", name=name)) for role, name in names.items()
    }
    headers["globex"] = bearer(make_token(engine, "investigator", "globex", name="gina"))
    return World(acme, globex, headers, names, recorded)
