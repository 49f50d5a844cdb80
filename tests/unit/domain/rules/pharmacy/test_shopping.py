"""RULE-RX-002: doctor and pharmacy shopping."""

from __future__ import annotations

import pytest

from tests.unit.domain.rules.pharmacy.conftest import (
    ALPRAZOLAM,
    LISINOPRIL,
    OXY,
    PREGABALIN,
    evidence,
    fill,
    ids,
    run,
    severity,
)

RX002 = "RULE-RX-002"


def shopping(days: list[int], parties: list[tuple[str, str]], ndc: str = OXY) -> list[dict]:
    """Controlled fills for M1 on ``days`` from (prescriber, pharmacy) ``parties``."""
    return [
        fill(f"S{i}", day, ndc=ndc, prescriber=d, pharmacy=p)
        for i, (day, (d, p)) in enumerate(zip(days, parties, strict=True), start=1)
    ]


FOUR = [("D1", "P1"), ("D2", "P2"), ("D3", "P3"), ("D4", "P4")]


def test_four_prescribers_and_pharmacies_in_window_hit_every_fill_of_it() -> None:
    fills = shopping([0, 40, 80, 120], FOUR)
    fills += [
        fill("OLD", -200, ndc=OXY, prescriber="D5", pharmacy="P5"),  # outside any window
        fill("PLAIN", 60, ndc=LISINOPRIL, prescriber="D6", pharmacy="P6"),  # not controlled
    ]
    hits = run(RX002, fills)
    assert ids(hits) == ["S1", "S2", "S3", "S4"]
    found = evidence(hits, "S1")
    assert found == {
        "window_start": "2023-11-03",  # 179 days before the end
        "window_end": "2024-04-30",
        "prescribers": 4,
        "pharmacies": 4,
        "min_prescribers": 4,
        "min_pharmacies": 4,
        "window_days": 180,
    }
    assert severity(hits, "S1") == 0.5
    assert hits["subject_type"].unique().tolist() == ["member"]


def test_three_prescribers_miss() -> None:
    parties = [("D1", "P1"), ("D2", "P2"), ("D3", "P3"), ("D3", "P4")]
    assert ids(run(RX002, shopping([0, 40, 80, 120], parties))) == []


def test_window_is_180_days_inclusive() -> None:
    assert ids(run(RX002, shopping([0, 60, 120, 179], FOUR))) == ["S1", "S2", "S3", "S4"]
    assert ids(run(RX002, shopping([0, 60, 120, 180], FOUR))) == []


def test_schedules_three_to_five_count_and_more_parties_raise_severity() -> None:
    ndcs = [ALPRAZOLAM, PREGABALIN, OXY, OXY, OXY, OXY, OXY, OXY]
    parties = [(f"D{i}", f"P{i}") for i in range(1, 9)]
    fills = [
        fill(f"S{i}", 10 * i, ndc=ndc, prescriber=d, pharmacy=p)
        for i, (ndc, (d, p)) in enumerate(zip(ndcs, parties, strict=True), start=1)
    ]
    fills.append(fill("LATE", 400, ndc=OXY, prescriber="D1", pharmacy="P1"))
    hits = run(RX002, fills)
    assert ids(hits) == [f"S{i}" for i in range(1, 9)]
    assert evidence(hits, "S1")["prescribers"] == 8
    assert severity(hits, "S1") == pytest.approx(1.0)


def test_fills_only_in_a_window_that_qualifies_are_hits() -> None:
    # S1 (day 0) shares no qualifying window: the four parties meet from day 100 to day 250.
    fills = shopping([0, 100, 150, 200, 250], [("D1", "P1"), *FOUR])
    assert ids(run(RX002, fills)) == ["S2", "S3", "S4", "S5"]
