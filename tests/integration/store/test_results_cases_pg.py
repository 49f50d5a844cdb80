"""Run results and cases on the real PostgreSQL only: evidence stored as jsonb, and a run over
many claims. What both engines share is in ``test_results_cases.py``."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sqlalchemy import Engine, select, text

from fwa_pipeline.domain.cases import case_proposals, case_subjects
from fwa_pipeline.domain.config import default_config
from fwa_pipeline.npi import make_npis
from fwa_pipeline.store.cases import upsert_cases
from fwa_pipeline.store.claims import claim_statuses
from fwa_pipeline.store.db import session_scope
from fwa_pipeline.store.models import (
    CaseClaim,
    ClaimScore,
    InvestigationCase,
    RuleHit,
)
from fwa_pipeline.store.results import load_case_inputs
from tests.integration.store.seeded import count, hits_on, record, seed

pytestmark = pytest.mark.postgres


def test_evidence_is_jsonb(pg_engine: Engine) -> None:
    config = default_config()
    seeded = seed(pg_engine)
    record(pg_engine, seeded, "run-1", hits_on(seeded, "RULE-MED-003", "medical", [0]), config)
    with pg_engine.connect() as connection:
        kind, nan = connection.execute(
            text("SELECT jsonb_typeof(evidence), evidence->'nan' FROM rule_hits")
        ).one()
    assert kind == "object"
    assert nan is None  # NaN became JSON null, which jsonb accepts


@pytest.mark.slow
def test_many_claims(pg_engine: Engine) -> None:
    """60,000 claims over 2,000 providers: results written set-based, replaced on reprocess,
    and the cases of every touched provider built from the stored hits (every 4th claim is
    flagged, so 500 providers). ``benchmarks``-sized runs are timed outside the suite."""
    config = default_config()
    providers = tuple(make_npis(np.arange(100_000_000, 100_002_000)))
    seeded = seed(pg_engine, medical=60_000, pharmacy=0, providers=providers)
    positions = list(range(0, 60_000, 4))  # 15,000 flagged claims
    hits = pd.concat(
        [
            hits_on(seeded, "RULE-MED-003", "medical", positions),
            hits_on(seeded, "RULE-MED-012", "medical", positions[::2], severity=0.5, weight=4.0),
        ],
        ignore_index=True,
    )
    written = record(pg_engine, seeded, "run-1", hits, config)
    assert written == {"processed": 60_000, "held": 0, "hits": 22_500, "scores": 15_000}
    states = claim_statuses(pg_engine, seeded.workspace_id)
    assert states.groupby(["status", "last_run_id"]).size().to_dict() == {
        ("processed", "run-1"): 60_000
    }

    # Reprocess everything with half the findings: the earlier rows are replaced, not added to.
    record(pg_engine, seeded, "run-2", hits.iloc[: len(positions) // 2], config)
    assert count(pg_engine, RuleHit) == 7_500
    assert count(pg_engine, ClaimScore) == 7_500
    with pg_engine.connect() as connection:
        runs = set(connection.scalars(select(RuleHit.run_id).distinct()))
    assert runs == {"run-2"}

    stored = hits.iloc[: len(positions) // 2]
    subjects = case_subjects(stored, seeded.claims(), config)
    inputs = load_case_inputs(pg_engine, seeded.workspace_id, subjects)
    assert len(inputs.hits) == 7_500
    proposals = case_proposals(inputs.hits, inputs.claims, inputs.scores, config, subjects=subjects)
    assert len(proposals) == len(subjects) == 500
    with session_scope(pg_engine) as session:
        counts = upsert_cases(session, seeded.workspace_id, "run-2", proposals)
    assert counts["opened"] == 500
    assert count(pg_engine, CaseClaim) == 7_500
    with session_scope(pg_engine) as session:
        again = upsert_cases(session, seeded.workspace_id, "run-2b", proposals)
    assert again == {
        "opened": 0,
        "updated": 0,
        "unchanged": 500,
        "skipped_closed": 0,
        "not_qualifying": 0,
    }
    with pg_engine.connect() as connection:
        numbers = connection.scalars(select(InvestigationCase.case_number)).all()
    assert all(n.startswith("CASE-") for n in numbers)
    assert len(set(numbers)) == 500
