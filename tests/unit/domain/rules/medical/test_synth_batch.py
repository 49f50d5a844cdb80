"""The medical rules against a generated demo batch: per-rule precision and recall versus the
batch's ``labels.csv``."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from fwa_pipeline.domain.config import PipelineConfig, default_config
from fwa_pipeline.domain.evaluation import precision_recall
from fwa_pipeline.domain.rules import evaluate
from tests.unit.domain.rules.batch_files import read_batch_csv
from tests.unit.domain.rules.medical.conftest import batch_context

MEDICAL_RULES = [f"RULE-MED-{i:03d}" for i in range(1, 13)]


@pytest.fixture(scope="session")
def hits(batch: Path) -> pd.DataFrame:
    rules = {r: p for r, p in default_config().rules.items() if p.family == "medical"}
    return evaluate(batch_context(batch), PipelineConfig(rules=rules))


@pytest.fixture(scope="session")
def scores(batch: Path, hits: pd.DataFrame) -> pd.DataFrame:
    labels = read_batch_csv(batch, "labels")
    labels = labels[labels["rule_id"].isin(MEDICAL_RULES)]
    return precision_recall(hits, labels).set_index("rule_id")


@pytest.mark.parametrize("rule_id", MEDICAL_RULES)
def test_precision_and_recall(scores: pd.DataFrame, rule_id: str) -> None:
    row = scores.loc[rule_id]
    assert row["labelled"] > 0, "the batch plants every rule"
    assert row["precision"] >= 0.90, row.to_dict()
    assert row["recall"] >= 0.95, row.to_dict()


def test_no_evidence_carries_phi_or_a_value_derived_from_it(
    batch: Path, hits: pd.DataFrame
) -> None:
    # Evidence is shown to every role and to the assistant; the age comes from the birth date,
    # and a date of death is PHI like any date of a person: evidence says how many days after.
    assert {"RULE-MED-006", "RULE-MED-008"} <= set(hits["rule_id"])
    keys = {key for evidence in hits["evidence"] for key in evidence}
    assert not keys & {
        "member_age",
        "date_of_birth",
        "date_of_death",
        "member_date_of_death",
        "first_name",
        "last_name",
    }
    # Nor does any hit's evidence hold its member's date of death under another name.
    members = read_batch_csv(batch, "members").set_index("member_id")["date_of_death"]
    claims = read_batch_csv(batch, "medical_claims").set_index("claim_id")["member_id"]
    death = members.reindex(claims.loc[hits["claim_id"]]).dt.strftime("%Y-%m-%d").tolist()
    assert not any(
        d in map(str, e.values()) for d, e in zip(death, hits["evidence"], strict=True) if d
    )
    after_death = hits.loc[hits["rule_id"] == "RULE-MED-006", "evidence"]
    assert all(e["days_after_death"] > 0 for e in after_death)
