"""Each medical rule's registered facts against what it does on a generated demo batch, and the
peer rules' two phases over shards of it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pandas as pd
import pytest

from fwa_pipeline.domain.rules import RuleContext
from tests.unit.domain.rules.facts import check_increments, check_phases, check_reads
from tests.unit.domain.rules.medical.conftest import batch_context, params
from tests.unit.domain.rules.medical.test_synth_batch import MEDICAL_RULES


@pytest.fixture(scope="session")
def batch_ctx(batch: Path) -> RuleContext:
    return batch_context(batch)


@pytest.mark.parametrize("rule_id", MEDICAL_RULES)
def test_a_rule_reads_exactly_the_columns_it_declares(rule_id: str, batch_ctx: RuleContext) -> None:
    check_reads(
        rule_id,
        params(rule_id),
        batch_ctx.medical,
        "medical",
        lambda frame: replace(batch_ctx, medical=frame),
    )


PEER_RULES = ["RULE-MED-005", "RULE-MED-010", "RULE-MED-011", "RULE-MED-012"]


def with_medical(batch_ctx: RuleContext) -> Callable[[pd.DataFrame], RuleContext]:
    return lambda frame: replace(batch_ctx, medical=frame)


@pytest.mark.parametrize("rule_id", PEER_RULES)
def test_peer_phases_over_shards_find_what_the_rule_finds(
    rule_id: str, batch_ctx: RuleContext
) -> None:
    check_phases(rule_id, params(rule_id), batch_ctx.medical, with_medical(batch_ctx))


@pytest.mark.parametrize("rule_id", PEER_RULES)
def test_peer_aggregates_of_batches_merged_are_those_of_one_pass(
    rule_id: str, batch_ctx: RuleContext
) -> None:
    check_increments(rule_id, params(rule_id), batch_ctx.medical, with_medical(batch_ctx))
