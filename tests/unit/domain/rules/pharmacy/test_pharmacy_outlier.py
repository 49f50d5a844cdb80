"""RULE-RX-010: the pharmacy outlier among pharmacies."""

from __future__ import annotations

import pytest

from tests.unit.domain.rules.pharmacy.conftest import (
    LISINOPRIL,
    OXY,
    evidence,
    fill,
    ids,
    run,
    run_scoped,
    severity,
)

RX010 = "RULE-RX-010"


def pharmacy_fills(
    pharmacy: str, schedule2: int, *, billed: float = 100.0, n: int = 30
) -> list[dict]:
    """``n`` fills at ``pharmacy`` for ten members, the first ``schedule2`` of them oxycodone."""
    return [
        fill(
            f"{pharmacy}-{i:02d}",
            i,
            member=f"{pharmacy}-M{i % 10}",
            ndc=OXY if i < schedule2 else LISINOPRIL,
            pharmacy=pharmacy,
            billed=billed,
        )
        for i in range(n)
    ]


def peers(outlier_schedule2: int) -> list[dict]:
    """Seven pharmacies with 2-6 schedule-2 fills out of 30 (median 4, MAD 1 with the eighth)."""
    fills = []
    for pharmacy, count in zip([f"P{i}" for i in range(1, 8)], [2, 3, 3, 4, 4, 5, 6], strict=True):
        fills += pharmacy_fills(pharmacy, count)
    return fills + pharmacy_fills("P8", outlier_schedule2)


def test_schedule2_share_outlier_hits_every_fill_with_peer_statistics() -> None:
    fills = peers(10)  # z = 0.6745 x (10 - 4) / 1 = 4.05
    fills += pharmacy_fills("P9", 5, n=5)  # too few fills to be a peer
    fills += pharmacy_fills("ORG", 30)  # not a pharmacy
    fills += pharmacy_fills("NOWHERE", 30)  # unknown
    hits = run(RX010, fills)
    assert ids(hits) == [f"P8-{i:02d}" for i in range(30)]
    assert hits["subject_type"].unique().tolist() == ["pharmacy"]
    assert hits["subject_id"].unique().tolist() == ["P8"]
    found = evidence(hits, "P8-00")
    assert found["schedule2_share"] == pytest.approx(10 / 30, abs=1e-4)
    assert found["schedule2_share_peer_median"] == pytest.approx(4 / 30, abs=1e-4)
    assert found["schedule2_share_peer_mad"] == pytest.approx(1 / 30, abs=1e-4)
    assert found["schedule2_share_z"] == pytest.approx(4.05, abs=0.01)
    assert found["schedule2_share_flagged"] is True
    assert found["cost_per_member_z"] is None  # every pharmacy bills the same: MAD 0
    assert found["cost_per_member_flagged"] is False
    assert (found["fills"], found["members"], found["peers"]) == (30, 10, 8)
    assert found["min_robust_z"] == 3.5
    assert severity(hits, "P8-00") == pytest.approx(0.5 + 0.5 * (0.6745 * 6 - 3.5) / 3.5)


def test_schedule2_share_just_below_the_z_threshold_misses() -> None:
    assert ids(run(RX010, peers(9))) == []  # z = 0.6745 x 5 = 3.37


def test_cost_per_member_outlier() -> None:
    fills = []
    for i, billed in enumerate([100, 110, 120, 130, 140, 150, 160, 400], start=1):
        fills += pharmacy_fills(f"P{i}", 3, billed=billed)
    hits = run(RX010, fills)
    assert set(hits["subject_id"]) == {"P8"}
    found = evidence(hits, "P8-00")
    assert found["cost_per_member"] == 1200
    assert found["cost_per_member_peer_median"] == 405
    assert found["cost_per_member_peer_mad"] == 60
    assert found["cost_per_member_z"] == pytest.approx(0.6745 * 795 / 60, abs=0.01)
    assert found["schedule2_share_flagged"] is False
    assert severity(hits, "P8-00") == 1.0


def test_too_few_peers_and_history() -> None:
    few = pharmacy_fills("P1", 2) + pharmacy_fills("P2", 3) + pharmacy_fills("P3", 30)
    assert run(RX010, few).empty
    history = [dict(f, in_scope=f["claim_id"] == "P8-05") for f in peers(12)]
    assert ids(run_scoped(RX010, history)) == ["P8-05"]
