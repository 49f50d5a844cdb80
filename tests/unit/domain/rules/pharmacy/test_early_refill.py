"""RULE-RX-001: early refill, with supply carried over."""

from __future__ import annotations

import pytest

from tests.unit.domain.rules.pharmacy.conftest import (
    ALPRAZOLAM,
    LISINOPRIL,
    OXY,
    OXY_OTHER_PACKAGE,
    evidence,
    fill,
    ids,
    run,
    run_scoped,
    severity,
)

RX001 = "RULE-RX-001"


def test_refill_before_threshold_share_hits_with_evidence() -> None:
    hits = run(RX001, [fill("A", 0, days=20), fill("B", 14, days=20)])
    assert ids(hits) == ["B"]
    found = evidence(hits, "B")
    assert found["previous_claim_id"] == "A"
    assert found["previous_fill_date"] == "2024-01-01"
    assert found["elapsed_share"] == pytest.approx(0.7)
    assert found["min_elapsed_share"] == 0.75
    assert found["days_on_hand"] == 6
    assert found["drug"] == "lisinopril 10 mg tablet"
    # Severity 0.5 at the threshold rising to 1 at share 0: 0.5 + 0.5 * 0.05 / 0.75.
    assert severity(hits, "B") == pytest.approx(0.5 + 0.5 * 0.05 / 0.75)
    assert hits["subject_type"].unique().tolist() == ["member"]
    assert hits["subject_id"].unique().tolist() == ["M1"]


@pytest.mark.parametrize(
    ("ndc", "days", "at_threshold"),
    [
        (LISINOPRIL, 20, 15),  # unscheduled: 75%
        (ALPRAZOLAM, 20, 17),  # schedule 4: 85%
        (OXY, 30, 27),  # schedule 2: 90%
    ],
)
def test_threshold_share_depends_on_schedule(ndc: str, days: int, at_threshold: int) -> None:
    exactly = run(RX001, [fill("A", 0, ndc=ndc, days=days), fill("B", at_threshold, ndc=ndc)])
    assert ids(exactly) == []
    early = run(RX001, [fill("A", 0, ndc=ndc, days=days), fill("B", at_threshold - 1, ndc=ndc)])
    assert ids(early) == ["B"]


def test_carried_over_supply_catches_a_chain() -> None:
    # Each refill comes at 80% of the previous 30 days (not early by itself), but six days
    # carry over each time: by the third fill the previous supply started on day 30.
    fills = [fill(c, day) for c, day in [("A", 0), ("B", 24), ("C", 48), ("D", 72)]]
    hits = run(RX001, fills)
    assert ids(hits) == ["C", "D"]
    third = evidence(hits, "C")
    assert third["carried_over_days"] == 6
    assert third["elapsed_share"] == pytest.approx(0.6)
    assert third["days_on_hand"] == 12
    assert evidence(hits, "D")["elapsed_share"] == pytest.approx(0.4)


def test_a_late_fill_resets_the_carry_over() -> None:
    fills = [fill("A", 0), fill("B", 24), fill("C", 70), fill("D", 94)]
    assert ids(run(RX001, fills)) == []


def test_same_drug_is_the_drug_name_across_ndc_packages() -> None:
    switched = [fill("A", 0, ndc=OXY), fill("B", 10, ndc=OXY_OTHER_PACKAGE)]
    assert ids(run(RX001, switched)) == ["B"]
    other_drug = [fill("A", 0, ndc=OXY), fill("B", 10, ndc=LISINOPRIL)]
    assert ids(run(RX001, other_drug)) == []
    other_member = [fill("A", 0), fill("B", 10, member="M2")]
    assert ids(run(RX001, other_member)) == []


def test_ndc_missing_from_reference_is_its_own_drug() -> None:
    fills = [fill("A", 0, ndc="99999999999"), fill("B", 10, ndc="99999999999")]
    hits = run(RX001, fills)
    assert ids(hits) == ["B"]
    assert evidence(hits, "B")["drug"] == "ndc:99999999999"
    assert evidence(hits, "B")["dea_schedule"] is None


def test_duplicate_copies_and_missing_values_are_not_refills() -> None:
    fills = [
        fill("A", 0),
        fill("B", 0),  # a duplicate copy of A: RULE-RX-009's finding
        fill("C", 5, days=None),
        fill("D", 5, member=None),
        fill("E", 6, ndc=None),
        fill("F", 7, ndc=None),
    ]
    assert ids(run(RX001, fills)) == []


def test_same_day_fill_at_another_pharmacy_is_early() -> None:
    hits = run(RX001, [fill("A", 0), fill("B", 0, pharmacy="P2")])
    assert ids(hits) == ["B"]
    assert severity(hits, "B") == 1.0


def test_previous_fill_from_history_counts_but_only_in_scope_hits() -> None:
    fills = [fill("A", 0, in_scope=False), fill("B", 5, in_scope=False), fill("C", 10)]
    assert ids(run(RX001, fills)) == ["B", "C"]
    assert ids(run_scoped(RX001, fills)) == ["C"]
