"""RULE-RX-003 high opioid dose and RULE-RX-004 opioid with benzodiazepine."""

from __future__ import annotations

import pytest

from tests.unit.domain.rules.pharmacy.conftest import (
    ALPRAZOLAM,
    CODEINE,
    HYDROCODONE,
    LISINOPRIL,
    OXY,
    evidence,
    fill,
    ids,
    run,
    severity,
)

RX003, RX004 = "RULE-RX-003", "RULE-RX-004"


def hydrocodone(claim_id: str, day: int, mme: float, days: int = 30, **kw: object) -> dict:
    """A hydrocodone fill (10 mg a unit, factor 1) worth ``mme`` a day."""
    return fill(claim_id, day, ndc=HYDROCODONE, days=days, quantity=mme * days / 10, **kw)


def test_daily_mme_at_threshold_for_enough_days_hits() -> None:
    # Oxycodone 10 mg x 180 / 30 days x 1.5 = 90 MME a day for 30 days.
    hits = run(RX003, [fill("A", 0, ndc=OXY, quantity=180), hydrocodone("B", 100, 50)])
    assert ids(hits) == ["A"]
    found = evidence(hits, "A")
    assert found["fill_daily_mme"] == 90
    assert found["peak_daily_mme"] == 90
    assert found["fill_days_at_or_above"] == 30
    assert found["member_days_at_or_above"] == 30
    assert found["mme_threshold"] == 90
    assert severity(hits, "A") == 0.5
    assert hits["subject_id"].tolist() == ["M1"]


def test_mme_just_below_threshold_misses() -> None:
    assert ids(run(RX003, [hydrocodone("A", 0, 89)])) == []


def test_concurrent_fills_sum_and_need_enough_days() -> None:
    # 45 + 45 MME on the 15 days the two supplies overlap (days 15..29).
    fifteen = [hydrocodone("A", 0, 45), hydrocodone("B", 15, 45), hydrocodone("C", 60, 45)]
    hits = run(RX003, fifteen)
    assert ids(hits) == ["A", "B"]
    assert evidence(hits, "B")["member_days_at_or_above"] == 15
    assert evidence(hits, "B")["fill_days_at_or_above"] == 15
    fourteen = [hydrocodone("A", 0, 45), hydrocodone("B", 16, 45)]
    assert ids(run(RX003, fourteen)) == []


def test_days_count_across_separate_episodes_and_severity_grows_with_peak() -> None:
    fills = [hydrocodone("A", 0, 145, days=10), hydrocodone("B", 50, 200, days=5)]
    hits = run(RX003, fills)
    assert ids(hits) == ["A", "B"]
    assert severity(hits, "A") == pytest.approx(0.5 + 0.5 * 55 / 110)
    assert severity(hits, "B") == 1.0


def test_non_opioids_and_unknown_strength_are_ignored() -> None:
    fills = [
        fill("A", 0, ndc=LISINOPRIL, quantity=9000),
        fill("B", 0, ndc=CODEINE, quantity=9000),  # strength missing: no MME
        hydrocodone("C", 0, 100, member="M2", days=14),  # 14 days only
    ]
    assert ids(run(RX003, fills)) == []


def benzo(claim_id: str, day: int, days: int, **kw: object) -> dict:
    return fill(claim_id, day, ndc=ALPRAZOLAM, days=days, **kw)


def test_two_benzodiazepine_fills_overlapping_thirty_days_hit_with_the_opioids() -> None:
    fills = [
        hydrocodone("O1", 0, 30),
        hydrocodone("O2", 100, 30),  # no benzodiazepine then
        benzo("B1", 0, 15),
        benzo("B2", 15, 15),
        benzo("B3", 200, 30),  # no opioid then
        fill("X", 0),  # neither
    ]
    hits = run(RX004, fills)
    assert ids(hits) == ["B1", "B2", "O1"]
    assert evidence(hits, "O1") == {
        "drug_class": "opioid",
        "fill_overlap_days": 30,
        "member_overlap_days": 30,
        "overlapping_benzo_fills": 2,
        "min_overlap_days": 30,
        "min_benzo_fills": 2,
    }
    assert evidence(hits, "B2")["drug_class"] == "benzodiazepine"
    assert evidence(hits, "B2")["fill_overlap_days"] == 15
    assert severity(hits, "B1") == 0.5


def test_overlap_days_count_once_when_opioids_overlap_each_other() -> None:
    fills = [hydrocodone("O1", 0, 30), hydrocodone("O2", 0, 30, pharmacy="P2")]
    fills += [benzo("B1", 0, 20), benzo("B2", 20, 9)]  # 29 days with both
    assert ids(run(RX004, fills)) == []
    hits = run(RX004, [*fills[:3], benzo("B2", 20, 10)])
    assert ids(hits) == ["B1", "B2", "O1", "O2"]
    assert evidence(hits, "O1")["member_overlap_days"] == 30


def test_one_benzodiazepine_fill_or_one_fill_date_is_not_enough() -> None:
    single = [hydrocodone("O1", 0, 30, days=60), benzo("B1", 0, 60)]
    assert ids(run(RX004, single)) == []
    same_day = [*single, benzo("B2", 0, 60, pharmacy="P2")]
    assert ids(run(RX004, same_day)) == []
    assert ids(run(RX004, [*single, benzo("B2", 1, 60)])) == ["B1", "B2", "O1"]


def test_other_members_supply_does_not_overlap() -> None:
    fills = [hydrocodone("O1", 0, 30), benzo("B1", 0, 15, member="M2")]
    fills += [benzo("B2", 15, 15, member="M2")]
    assert ids(run(RX004, fills)) == []
