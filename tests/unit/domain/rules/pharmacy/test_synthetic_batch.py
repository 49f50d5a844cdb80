"""The pharmacy family against the labels of a generated demo batch."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from fwa_pipeline.domain.config import PipelineConfig, default_config
from fwa_pipeline.domain.evaluation import precision_recall
from fwa_pipeline.domain.rules import evaluate
from tests.unit.domain.rules.pharmacy.conftest import context

MIN_PRECISION, MIN_RECALL = 0.90, 0.95


@pytest.mark.slow
def test_every_rule_finds_its_planted_fills(
    synth_batch: dict[str, pd.DataFrame], synth_enriched: pd.DataFrame
) -> None:
    rules = {r: p for r, p in default_config().rules.items() if p.family == "pharmacy"}
    hits = evaluate(context(synth_enriched), PipelineConfig(rules=rules))
    labels = synth_batch["labels"]
    labels = labels.loc[labels["rule_id"].isin(rules)]
    table = precision_recall(hits, labels).set_index("rule_id").reindex(sorted(rules))
    short = table.loc[
        ~(table["labelled"] > 0)
        | ~(table["precision"] >= MIN_PRECISION)
        | ~(table["recall"] >= MIN_RECALL)
    ]
    assert short.empty, f"\n{table.to_string()}"
    assert hits["severity"].between(0, 1).all()
    json.dumps(hits["evidence"].tolist())  # evidence is stored as JSON
    # A date of death is PHI: the evidence says how many days after it the fill came.
    after_death = hits.loc[hits["rule_id"] == "RULE-RX-008", ["claim_id", "evidence"]]
    assert not after_death.empty
    assert all(
        "date_of_death" not in e and e["days_after_death"] > 0 for e in after_death["evidence"]
    )
    members = synth_batch["members"].set_index("member_id")["date_of_death"]
    fills = synth_batch["pharmacy_claims"].set_index("claim_id")["member_id"]
    death = members.reindex(fills.loc[after_death["claim_id"]]).dt.strftime("%Y-%m-%d")
    assert not any(
        d in map(str, e.values()) for d, e in zip(death, after_death["evidence"], strict=True)
    )
