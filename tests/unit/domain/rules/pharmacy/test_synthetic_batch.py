"""The pharmacy family against the labels of a generated demo batch."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from fwa_pipeline.domain.config import PipelineConfig, default_config
from fwa_pipeline.domain.enrich import enrich_pharmacy
from fwa_pipeline.domain.evaluation import precision_recall
from fwa_pipeline.domain.rules import evaluate
from fwa_pipeline.reference import BENZODIAZEPINE_STEMS
from tests.unit.domain.rules.pharmacy.conftest import context

MIN_PRECISION, MIN_RECALL = 0.90, 0.95


@pytest.mark.slow
def test_every_rule_finds_its_planted_fills(synth_batch: dict[str, pd.DataFrame]) -> None:
    frame = enrich_pharmacy(
        synth_batch["pharmacy_claims"],
        synth_batch["members"],
        synth_batch["providers"],
        synth_batch["ndc_reference"],
        BENZODIAZEPINE_STEMS,
    )
    rules = {r: p for r, p in default_config().rules.items() if p.family == "pharmacy"}
    hits = evaluate(context(frame), PipelineConfig(rules=rules))
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
