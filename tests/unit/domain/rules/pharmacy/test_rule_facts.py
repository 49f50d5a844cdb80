"""Each pharmacy rule's registered facts against what it does on a generated demo batch, and the
peer rule's two phases over shards of it."""

from __future__ import annotations

import pandas as pd
import pytest

from fwa_pipeline.domain.rules import REGISTRY
from tests.unit.domain.rules.facts import check_increments, check_phases, check_reads
from tests.unit.domain.rules.pharmacy.conftest import context, params

RX_RULES = sorted(r for r in REGISTRY if r.startswith("RULE-RX-"))


@pytest.mark.parametrize("rule_id", RX_RULES)
def test_a_rule_reads_exactly_the_columns_it_declares(
    rule_id: str, synth_enriched: pd.DataFrame
) -> None:
    check_reads(rule_id, params(rule_id), synth_enriched, "pharmacy", context)


def test_peer_phases_over_shards_find_what_the_rule_finds(synth_enriched: pd.DataFrame) -> None:
    check_phases("RULE-RX-010", params("RULE-RX-010"), synth_enriched, context)


def test_peer_aggregates_of_batches_merged_are_those_of_one_pass(
    synth_enriched: pd.DataFrame,
) -> None:
    check_increments("RULE-RX-010", params("RULE-RX-010"), synth_enriched, context)
