"""Confidence: pure functions over an answer and the data the tools returned. Figures in an
answer must be in the data (after formatting and rounding), and so must its ids."""

from __future__ import annotations

from typing import Any

import pytest

from fwa_api.agents.confidence import Confidence, assess, figures, unsupported

CASE: dict[str, Any] = {
    "case_id": "CASE-000001",
    "risk_score": 95.5,
    "flagged_billed": 21000.0,
    "flagged_paid": 18812.4,
    "claims": [
        {"claim_id": "ACME-CLM-0", "amount_paid": 400.0},
        {"claim_id": "ACME-CLM-1", "amount_paid": 400.0},
        {"claim_id": "ACME-CLM-2", "amount_paid": 400.0},
    ],
    "rules": [{"rule_id": "RULE-MED-004", "hits": 3}],
    "explanation": {"summary": "billed 12 units on 2026-03-01", "share_flagged": 0.45},
}


@pytest.mark.parametrize(
    "answer",
    [
        "CASE-000001 paid $18,812.40.",
        "It paid 18812.4 in total.",
        "About $18.8k is at stake.",
        "Roughly $19,000 was paid, $21K billed.",
        "$18,812 paid on 3 claims worth $1,200 together.",
        "Its risk score is 95.5, and RULE-MED-004 fired.",
        "45% of the amount was flagged; 12 units were billed.",
        "1. Review the 2026-03-01 visits first (top 5 priorities).",
        "No other claims were found: 0 hits elsewhere.",
        "All of them (100%) were paid; RULE-MED-004 made 25% of the 12 units' flags: 3 of 12.",
    ],
)
def test_figures_held_by_the_data_are_supported(answer: str) -> None:
    assert unsupported(answer, [CASE]) == []


@pytest.mark.parametrize(
    ("answer", "missing"),
    [
        ("CASE-000001 involves $2.5 million in paid claims.", ["$2.5 million"]),
        ("It paid $18,900.", ["$18,900"]),
        ("7 claims were flagged.", ["7 claims"]),
        ("A 73% share was flagged.", ["73%"]),
        ("RULE-MED-001 fired on CASE-000002.", ["CASE-000002", "RULE-MED-001"]),
    ],
)
def test_invented_figures_and_ids_are_not(answer: str, missing: list[str]) -> None:
    assert unsupported(answer, [CASE]) == missing


def test_no_evidence_supports_no_figure() -> None:
    assert unsupported("It paid $18,812.40.", []) == ["$18,812.40"]


def test_figures_parse_their_scale_and_precision() -> None:
    [millions, thousands, exact, share] = figures("$2.5M, 18.8k, USD 1,000.50 and 4.5 percent")
    assert (millions.value, millions.tolerance) == (2_500_000, 50_000)
    assert (thousands.value, thousands.tolerance) == (18_800, 50)
    assert exact.value == pytest.approx(1000.5) and exact.tolerance == pytest.approx(0.005)
    assert share.percent and share.value == 4.5


@pytest.mark.parametrize(
    ("answered_by", "had_data", "removed", "unsupported_figures", "expected"),
    [
        ("data", True, False, [], Confidence.high),
        ("llm", True, False, [], Confidence.medium),
        ("llm", True, True, [], Confidence.low),
        ("llm", True, False, ["$2.5 million"], Confidence.low),
        ("llm", False, False, [], Confidence.low),
        ("fallback", True, False, [], Confidence.low),
        ("data", False, False, [], Confidence.low),
    ],
)
def test_assess(
    answered_by: Any, had_data: bool, removed: bool, unsupported_figures: list[str], expected: Any
) -> None:
    assert (
        assess(
            answered_by,
            had_data=had_data,
            removed_ids=removed,
            unsupported=unsupported_figures,
        )
        == expected
    )
