"""Registering a rule: its facts are mandatory, checked when the decorator runs (at import)."""

from __future__ import annotations

from dataclasses import replace

import pandas as pd
import pytest

from fwa_pipeline.domain.config import RuleParams
from fwa_pipeline.domain.rules import REGISTRY, Key, RuleContext
from fwa_pipeline.domain.rules.base import empty_hits, rule


def throwaway(ctx: RuleContext, params: RuleParams) -> pd.DataFrame:
    return empty_hits()


def test_a_rule_without_a_key_is_refused() -> None:
    with pytest.raises(TypeError, match="RULE-TEST-001 declares no key"):
        rule("RULE-TEST-001", reads=("member_id",))(throwaway)
    assert "RULE-TEST-001" not in REGISTRY


def test_a_rule_without_the_columns_it_reads_is_refused() -> None:
    with pytest.raises(ValueError, match="RULE-TEST-001 declares no column it reads"):
        rule("RULE-TEST-001", key=Key.LINE)(throwaway)
    # One column name given as a string would read as its letters.
    with pytest.raises(TypeError, match="RULE-TEST-001 reads must be a sequence"):
        rule("RULE-TEST-001", key=Key.LINE, reads="member_id")(throwaway)
    assert "RULE-TEST-001" not in REGISTRY


def test_peer_phases_belong_to_peer_rules_only() -> None:
    phases = REGISTRY["RULE-MED-012"].phases
    assert phases is not None
    with pytest.raises(ValueError, match="RULE-TEST-001 has peer phases but key LINE"):
        rule("RULE-TEST-001", key=Key.LINE, reads=("cpt_code",), phases=phases)(throwaway)
    assert "RULE-TEST-001" not in REGISTRY


def test_a_provider_day_rule_reads_one_provider_column() -> None:
    # The provider whose days it compares: what its claims are split into shards by.
    for reads in (("service_date",), ("prescriber_id", "pharmacy_id", "fill_date")):
        with pytest.raises(ValueError, match="RULE-TEST-001 has key PROVIDER_DAY but reads"):
            rule("RULE-TEST-001", key=Key.PROVIDER_DAY, reads=reads)(throwaway)
    assert "RULE-TEST-001" not in REGISTRY


def test_a_rule_is_sharded_by_the_column_the_claims_it_compares_share() -> None:
    columns = {
        rule_id: REGISTRY[rule_id].shard_column
        for rule_id in ("RULE-MED-001", "RULE-MED-004", "RULE-MED-006", "RULE-MED-012")
    }
    assert columns == {
        "RULE-MED-001": "member_id",  # the member's day
        "RULE-MED-004": "provider_id",  # the provider's day
        "RULE-MED-006": "member_id",  # the line alone
        "RULE-MED-012": "cpt_code",  # the peer rule's subject
    }
    assert REGISTRY["RULE-RX-002"].shard_column == "member_id"  # the member's window
    assert REGISTRY["RULE-RX-010"].shard_column == "pharmacy_id"
    # A peer rule without phases needs every claim at once.
    without_phases = replace(REGISTRY["RULE-MED-001"], key=Key.PEERS)
    assert without_phases.shard_column is None


def test_a_rule_id_is_registered_once() -> None:
    registered = REGISTRY["RULE-MED-001"]
    with pytest.raises(ValueError, match="RULE-MED-001 registered twice"):
        rule("RULE-MED-001", key=Key.LINE, reads=("member_id",))(throwaway)
    assert REGISTRY["RULE-MED-001"] is registered


def test_registration_keeps_the_function_and_its_facts() -> None:
    try:

        @rule("RULE-TEST-001", key=Key.MEMBER_DAY, reads=["member_id", "service_date"])
        def same_day(ctx: RuleContext, params: RuleParams) -> pd.DataFrame:
            return empty_hits()

        facts = REGISTRY["RULE-TEST-001"]
    finally:
        REGISTRY.pop("RULE-TEST-001", None)
    assert (facts.fn, facts.key, facts.reads) == (
        same_day,
        Key.MEMBER_DAY,
        ("member_id", "service_date"),
    )
