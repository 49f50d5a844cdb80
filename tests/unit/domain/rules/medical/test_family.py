"""The medical family as a whole: registration, defaults, empty and incomplete input, evidence
that serialises, and incremental runs through ``evaluate``."""

from __future__ import annotations

import json
from dataclasses import replace

import pandas as pd
import pytest

from fwa_pipeline.domain.config import PipelineConfig, RuleParams, default_config
from fwa_pipeline.domain.rules import HIT_FRAME_COLUMNS, REGISTRY, evaluate
from fwa_pipeline.domain.rules.base import HIT_COLUMNS, RuleContext
from fwa_pipeline.reference import load_default_reference
from tests.unit.domain.rules.medical.conftest import claim, context, params, run

MEDICAL_RULES = [f"RULE-MED-{i:03d}" for i in range(1, 13)]


def test_every_medical_rule_is_registered_and_configured() -> None:
    rules = default_config().rules
    assert {r for r in rules if rules[r].family == "medical"} == set(MEDICAL_RULES)
    assert set(MEDICAL_RULES) <= set(REGISTRY)


@pytest.mark.parametrize("rule_id", MEDICAL_RULES)
def test_empty_claims_give_empty_hits(rule_id: str) -> None:
    hits = REGISTRY[rule_id].fn(context([]), params(rule_id))
    assert hits.empty
    assert list(hits.columns) == HIT_COLUMNS


# Lines missing every optional value, each next to a twin that would otherwise pair with it.
INCOMPLETE = [
    claim("N1", member_id=None, cpt_code="97110", units=9),
    claim("N2", member_id=None, cpt_code="97110", units=9),
    claim("N3", provider_id=None, cpt_code="20605"),
    claim("N4", provider_id=None, cpt_code="20610"),
    claim("N5", service_date=None, cpt_code="59400", member_id="M1"),
    claim("N6", service_date=None, cpt_code="59400", member_id="M1"),
    claim("N7", cpt_code=None, units=None, amount_billed=None),
    claim("N8", cpt_code="ZZZZZ", member_id="GHOST", provider_id="P404"),
]


@pytest.mark.parametrize("rule_id", MEDICAL_RULES)
def test_missing_values_neither_raise_nor_hit_spuriously(rule_id: str) -> None:
    hits = run(rule_id, context(INCOMPLETE))
    # N5/N6: a male member on a female-only code is wrong whatever the (missing) date.
    expected = {"RULE-MED-007": ["N5", "N6"]}.get(rule_id, [])
    assert sorted(hits.index) == expected


def test_evidence_serialises_as_json() -> None:
    rows = [
        claim("C1"),
        claim("C2"),
        claim("C3", cpt_code="20610"),
        claim("C4", cpt_code="20605"),
        claim("C5", cpt_code="97110", units=5),
        claim("C6", member_id="DEAD"),
        claim("C7", member_id="M1", cpt_code="59400"),
        claim("C8", cpt_code="90460"),
        claim("C9", provider_id="PX", service_date="2024-04-01"),
    ]
    ctx = context(rows)
    hits = {rule_id: run(rule_id, ctx) for rule_id in MEDICAL_RULES}
    hit_rules = {rule_id for rule_id, frame in hits.items() if not frame.empty}
    assert hit_rules == {f"RULE-MED-{i:03d}" for i in (1, 2, 3, 6, 7, 8, 9)}
    for frame in hits.values():
        for evidence in frame["evidence"]:
            json.dumps(evidence)


def test_evaluate_keeps_in_scope_hits_of_a_history_duplicate() -> None:
    # The first copy is history; the new copy is a duplicate of it and is in scope.
    rows = [claim("C1", in_scope=False), claim("C2"), claim("C0", in_scope=False)]
    config = PipelineConfig(rules={"RULE-MED-001": params("RULE-MED-001")})
    hits = evaluate(context(rows), config)
    assert list(hits.columns) == HIT_FRAME_COLUMNS
    assert list(hits["claim_id"]) == ["C2"]  # C1 is a copy of C0 too, but history
    assert hits.loc[0, "evidence"]["first_claim_id"] == "C0"
    assert hits.loc[0, "rule_version"] == "1.0"


def test_shipped_reference_types() -> None:
    # The shipped tables load with nullable Int64/Float64 numbers and boolean modifier flags.
    reference = load_default_reference()
    rows = [
        claim("C1", cpt_code="90837", modifier="59"),
        claim("C2", cpt_code="90834"),  # pair without modifier indicator
        claim("C3", cpt_code="20610", member_id="M1"),
        claim("C4", cpt_code="20605", member_id="M1", modifier="XS"),  # excused
        claim("C5", cpt_code="97110", units=5, member_id="U1"),  # MUE 4
        claim("C6", cpt_code="59400", member_id="M1"),  # female-only code
        claim("C7", cpt_code="59400", member_id="CHILD"),  # from age 12
    ]
    ctx = context(rows, cpt=reference["cpt_reference"], ncci=reference["ncci_edits"])
    found = {r: sorted(run(r, ctx).index) for r in MEDICAL_RULES}
    assert {r: ids for r, ids in found.items() if ids} == {
        "RULE-MED-002": ["C2"],
        "RULE-MED-003": ["C5"],
        "RULE-MED-007": ["C6"],
        "RULE-MED-008": ["C7"],
    }


def test_a_rule_reading_the_other_familys_claims_fails_loudly(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Families run in parallel threads on their own frames only; a rule that crossed over would
    # share a pandas object between threads, so evaluate refuses it instead.
    def crosses_over(ctx: RuleContext, _: RuleParams) -> pd.DataFrame:
        return ctx.pharmacy.head(0)

    monkeypatch.setitem(
        REGISTRY, "RULE-MED-001", replace(REGISTRY["RULE-MED-001"], fn=crosses_over)
    )
    config = PipelineConfig(rules={"RULE-MED-001": params("RULE-MED-001")})
    with pytest.raises(TypeError, match="a medical rule read another family's claims"):
        evaluate(context([claim("C1")]), config)
