"""RULE-RX-005 .. RULE-RX-009: checks of one fill, and duplicate fills."""

from __future__ import annotations

import pytest

from tests.unit.domain.rules.pharmacy.conftest import (
    ALPRAZOLAM,
    BUPRENORPHINE,
    HYDROCODONE,
    LISINOPRIL,
    OXY,
    PREGABALIN,
    evidence,
    fill,
    ids,
    run,
    run_scoped,
    severity,
)


def test_quantity_limit() -> None:
    fills = [
        fill("AT", 0, ndc=LISINOPRIL, quantity=60, days=30),  # 2 a day: the limit
        fill("OVER", 0, ndc=LISINOPRIL, quantity=61, days=30),
        fill("DOUBLE", 0, ndc=LISINOPRIL, quantity=120, days=30),
        fill("NOLIMIT", 0, ndc=HYDROCODONE, quantity=900, days=30),
        fill("UNKNOWN", 0, ndc="99999999999", quantity=900, days=30),
        fill("NOSUPPLY", 0, ndc=LISINOPRIL, quantity=900, days=None),
    ]
    hits = run("RULE-RX-005", fills)
    assert ids(hits) == ["DOUBLE", "OVER"]
    assert evidence(hits, "OVER") == {
        "quantity": 61.0,
        "days_supply": 30.0,
        "daily_quantity": pytest.approx(2.0333, abs=1e-4),
        "max_daily_quantity": 2.0,
    }
    assert severity(hits, "OVER") == pytest.approx(0.5 + 0.5 * (61 / 60 - 1))
    assert severity(hits, "DOUBLE") == 1.0
    assert hits["subject_type"].unique().tolist() == ["claim"]
    assert hits["subject_id"].tolist() == hits["claim_id"].tolist()


def test_illegal_refill() -> None:
    fills = [
        fill("C2_FIRST", 0, ndc=OXY, refill=0),
        fill("C2_REFILL", 0, ndc=OXY, refill=1),
        fill("C3_FIVE", 0, ndc=BUPRENORPHINE, refill=5),
        fill("C3_SIX", 0, ndc=BUPRENORPHINE, refill=6),
        fill("C4_SIX", 0, ndc=ALPRAZOLAM, refill=6),
        fill("C5_MANY", 0, ndc=PREGABALIN, refill=11),
        fill("PLAIN", 0, ndc=LISINOPRIL, refill=11),
        fill("C2_BLANK", 0, ndc=OXY, refill=None),
    ]
    hits = run("RULE-RX-006", fills)
    assert ids(hits) == ["C2_REFILL", "C3_SIX", "C4_SIX"]
    assert evidence(hits, "C3_SIX") == {
        "dea_schedule": 3.0,
        "refill_number": 6.0,
        "max_refills": 5.0,
    }
    assert severity(hits, "C2_REFILL") == 1.0


def test_excluded_or_invalid_prescriber() -> None:
    fills = [
        fill("BEFORE", 59, prescriber="EXCL"),  # 2024-02-29, excluded from 2024-03-01
        fill("ON", 60, prescriber="EXCL"),
        fill("UNDATED", 0, prescriber="EXCL_UNDATED"),
        fill("ORG", 0, prescriber="ORG"),
        fill("PHARMACY", 0, prescriber="P3"),
        fill("UNKNOWN", 0, prescriber="NOBODY"),
        fill("FINE", 0, prescriber="D2"),
    ]
    hits = run("RULE-RX-007", fills)
    assert ids(hits) == ["ON", "ORG", "PHARMACY", "UNDATED"]
    assert evidence(hits, "ON") == {
        "prescriber_id": "EXCL",
        "excluded": True,
        "exclusion_date": "2024-03-01",
        "invalid_type": False,
        "prescriber_type": "individual",
        "fill_date": "2024-03-01",
    }
    assert evidence(hits, "ORG")["invalid_type"] is True
    assert evidence(hits, "UNDATED")["exclusion_date"] is None


def test_fill_after_death() -> None:
    fills = [
        fill("ON_DAY", 121, member="DEAD"),  # 2024-05-01, the date of death
        fill("AFTER", 122, member="DEAD"),
        fill("ALIVE", 300, member="M1"),
        fill("UNKNOWN", 300, member="GHOST"),
    ]
    hits = run("RULE-RX-008", fills)
    assert ids(hits) == ["AFTER"]
    # How many days after the death, never the date of death itself (PHI).
    assert evidence(hits, "AFTER") == {"fill_date": "2024-05-02", "days_after_death": 1}


def test_duplicate_fill_hits_every_copy_but_the_first() -> None:
    fills = [
        fill("C2", 0),
        fill("C1", 0),
        fill("C3", 0, quantity=60),  # same key, other quantity: still a copy
        fill("OTHER_PHARMACY", 0, pharmacy="P2"),
        fill("OTHER_DAY", 1),
        fill("OTHER_NDC", 0, ndc=OXY),
        fill("NO_MEMBER_1", 0, member=None),
        fill("NO_MEMBER_2", 0, member=None),
    ]
    hits = run("RULE-RX-009", fills)
    assert ids(hits) == ["C2", "C3"]
    assert evidence(hits, "C3") == {"original_claim_id": "C1"}


def test_duplicate_of_a_history_fill_hits_in_scope_copy_only() -> None:
    fills = [fill("A1", 0, in_scope=False), fill("A2", 0)]
    assert ids(run_scoped("RULE-RX-009", fills)) == ["A2"]
