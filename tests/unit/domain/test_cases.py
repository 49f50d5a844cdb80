"""Case proposals: subject resolution, the entity score, levels and overrides, flagged dollars,
the explanation and the evidence hash."""

from __future__ import annotations

import datetime as dt
import hashlib
import json

import numpy as np
import pandas as pd
import pytest

from fwa_pipeline.domain.cases import (
    CLAIM_COLUMNS,
    EVIDENCE_SAMPLES,
    PROPOSAL_COLUMNS,
    attribute_hits,
    case_proposals,
    case_subjects,
    json_safe,
)
from fwa_pipeline.domain.config import PipelineConfig, default_config
from fwa_pipeline.domain.rules import HIT_FRAME_COLUMNS
from fwa_pipeline.domain.scoring import score_claims
from tests.unit.domain.hits import hit

PROV, PROV2 = "1000000001", "1000000002"
PHARM, PRESC = "2000000001", "3000000001"


def claim(claim_type: str, pk: int, billed: float = 100.0, paid: float | None = 80.0, **ids: str):
    base = {
        "claim_type": claim_type,
        "claim_pk": pk,
        "claim_id": f"{claim_type[0].upper()}{pk}",
        "member_id": "M1",
        "provider_id": PROV if claim_type == "medical" else None,
        "pharmacy_id": PHARM if claim_type == "pharmacy" else None,
        "prescriber_id": PRESC if claim_type == "pharmacy" else None,
        "amount_billed": billed,
        "amount_paid": paid,
    }
    return {**base, **ids}


def frames(hits: list[dict[str, object]], claims: list[dict[str, object]]):
    return pd.DataFrame(hits, columns=HIT_FRAME_COLUMNS), pd.DataFrame(claims)


def propose(
    hits: list[dict[str, object]],
    claims: list[dict[str, object]],
    cfg: PipelineConfig | None = None,
    **kwargs: object,
) -> pd.DataFrame:
    cfg = cfg or default_config()
    hit_frame, claim_frame = frames(hits, claims)
    return case_proposals(hit_frame, claim_frame, score_claims(hit_frame, cfg), cfg, **kwargs)


def by_subject(proposals: pd.DataFrame) -> dict[tuple[str, str], dict[str, object]]:
    return {(r["subject_type"], r["subject_id"]): r for r in proposals.to_dict(orient="records")}


# --------------------------------------------------------------------------- subjects


def test_claim_level_hits_go_to_the_configured_party() -> None:
    hits = [
        hit("RULE-MED-003", "medical", 1),  # provider
        hit("RULE-RX-001", "pharmacy", 2),  # member
        hit("RULE-RX-005", "pharmacy", 2),  # pharmacy
        hit("RULE-RX-007", "pharmacy", 2),  # prescriber
        hit("RULE-NEW-001", "pharmacy", 3),  # not in case_subject: the pharmacy
        hit("RULE-NEW-002", "medical", 1),  # not in case_subject: the provider
    ]
    claims = [claim("medical", 1), claim("pharmacy", 2), claim("pharmacy", 3, member_id="M9")]
    attributed = attribute_hits(*frames(hits, claims), default_config())
    assert list(
        zip(
            attributed["rule_id"], attributed["subject_type"], attributed["subject_id"], strict=True
        )
    ) == [
        ("RULE-MED-003", "provider", PROV),
        ("RULE-RX-001", "member", "M1"),
        ("RULE-RX-005", "pharmacy", PHARM),
        ("RULE-RX-007", "prescriber", PRESC),
        ("RULE-NEW-001", "pharmacy", PHARM),
        ("RULE-NEW-002", "provider", PROV),
    ]
    assert set(attributed.columns) >= set(HIT_FRAME_COLUMNS)


def test_entity_hits_keep_their_subject() -> None:
    hits = [
        hit("RULE-RX-002", "pharmacy", 1, subject=("member", "M7")),
        hit("RULE-MED-005", "medical", 2, subject=("provider", PROV2)),
    ]
    claims = [claim("pharmacy", 1), claim("medical", 2)]
    subjects = case_subjects(*frames(hits, claims), default_config())
    assert sorted(subjects.itertuples(index=False, name=None)) == [
        ("member", "M7"),
        ("provider", PROV2),
    ]


def test_a_claim_lacking_the_subjects_id_names_no_subject() -> None:
    hits = [hit("RULE-MED-003", "medical", 1), hit("RULE-RX-001", "pharmacy", 2)]
    claims = [claim("medical", 1, provider_id=None), claim("pharmacy", 2)]
    attributed = attribute_hits(*frames(hits, claims), default_config())
    assert attributed["rule_id"].tolist() == ["RULE-RX-001"]


def test_the_config_decides_the_subject() -> None:
    cfg = default_config(
        scoring={
            "case_subject": {**default_config().scoring.case_subject, "RULE-MED-003": "member"}
        }
    )
    attributed = attribute_hits(
        *frames([hit("RULE-MED-003", "medical", 1)], [claim("medical", 1)]), cfg
    )
    assert attributed[["subject_type", "subject_id"]].values.tolist() == [["member", "M1"]]


def test_hits_on_unknown_claims_are_a_wiring_error() -> None:
    hits, claims = frames([hit("RULE-MED-003", "medical", 1)], [claim("medical", 2)])
    with pytest.raises(ValueError, match="1 claim\\(s\\) with hits have no row in claims"):
        attribute_hits(hits, claims, default_config())


def test_claims_missing_from_the_scores_are_a_wiring_error() -> None:
    hits, claims = frames([hit("RULE-MED-003", "medical", 1)], [claim("medical", 1)])
    empty_scores = pd.DataFrame({"claim_type": [], "claim_pk": [], "score": []})
    with pytest.raises(ValueError, match="no row in claim_scores"):
        case_proposals(hits, claims, empty_scores, default_config())


# --------------------------------------------------------------------------- scores and levels


def test_entity_score_is_the_worst_claim_plus_dollar_points() -> None:
    # Claim 1 scores 70 (high); $25,000 flagged adds 0.2 x 100 x 0.5 = 10.
    hits = [hit("RULE-MED-003", "medical", 1), hit("RULE-MED-002", "medical", 2, severity=0.5)]
    claims = [claim("medical", 1, billed=20_000.0), claim("medical", 2, billed=5_000.0)]
    proposal = by_subject(propose(hits, claims))[("provider", PROV)]
    assert proposal["risk_score"] == 80.0
    assert proposal["risk_level"] == "high"
    score = proposal["explanation"]["score"]
    assert score["max_claim_score"] == 70.0
    assert score["dollar_points"] == pytest.approx(10.0)
    assert "entity_dollar_scale" in score["formula"]


def test_dollar_points_are_capped_and_the_score_never_exceeds_the_maximum() -> None:
    hits = [hit("RULE-MED-006", "medical", 1, weight=9.0)]
    proposal = propose(hits, [claim("medical", 1, billed=10_000_000.0)])
    assert proposal["risk_score"].tolist() == [100.0]  # 90 + 20 (capped), then the ceiling


def test_flagged_dollars_raise_a_medium_subject_to_a_case() -> None:
    hits = [hit("RULE-MED-003", "medical", pk, weight=6.0) for pk in (1, 2)]
    cheap = [claim("medical", pk, billed=10.0) for pk in (1, 2)]
    costly = [claim("medical", pk, billed=50_000.0) for pk in (1, 2)]
    assert propose(hits, cheap).empty  # 60 + ~0: medium
    assert propose(hits, costly)["risk_score"].tolist() == [80.0]


def test_dollar_blend_is_configurable() -> None:
    cfg = default_config(scoring={"entity_dollar_weight": 0.0})
    hits = [hit("RULE-MED-003", "medical", 1, weight=6.0)]
    assert propose(hits, [claim("medical", 1, billed=1e9)], cfg).empty


def test_below_case_min_level_no_proposal() -> None:
    hits = [hit("RULE-MED-003", "medical", 1, severity=0.5)]  # 35: low
    assert propose(hits, [claim("medical", 1)]).empty
    cfg = default_config(scoring={"case_min_level": "low"})
    assert propose(hits, [claim("medical", 1)], cfg)["risk_level"].tolist() == ["low"]


def test_below_case_min_level_an_open_cases_subject_is_still_proposed_to_rescore_it() -> None:
    hits = [
        hit("RULE-MED-003", "medical", 1, severity=0.5),  # the provider: 35, low
        hit("RULE-MED-003", "medical", 2),  # the other provider: 70, high
    ]
    claims = [claim("medical", 1), claim("medical", 2, provider_id=PROV2)]
    open_subjects = pd.DataFrame({"subject_type": ["provider"], "subject_id": [PROV]})
    proposals = by_subject(propose(hits, claims, open_subjects=open_subjects))
    assert {s: (p["risk_level"], p["qualifies"]) for s, p in proposals.items()} == {
        ("provider", PROV): ("low", False),  # its open case is rescored, none would open
        ("provider", PROV2): ("high", True),
    }
    # Without an open case the low subject is not proposed at all.
    assert list(by_subject(propose(hits, claims))) == [("provider", PROV2)]


def test_critical_override_opens_a_case_whatever_the_score() -> None:
    hits = [hit("RULE-MED-009", "medical", 1, severity=0.1, weight=10.0)]  # score 10
    proposals = propose(hits, [claim("medical", 1, billed=100.0)])  # + 0.04 dollar points
    assert proposals[["risk_score", "risk_level", "override"]].values.tolist() == [
        [10.04, "critical", "RULE-MED-009"]
    ]
    assert proposals["explanation"].iloc[0]["override"] == "RULE-MED-009"


def test_no_override_is_none() -> None:
    proposals = propose([hit("RULE-MED-003", "medical", 1)], [claim("medical", 1)])
    assert proposals["override"].tolist() == [None]


# --------------------------------------------------------------------------- content


def test_each_claim_line_counts_once_in_flagged_dollars() -> None:
    hits = [
        hit("RULE-MED-003", "medical", 1),
        hit("RULE-MED-002", "medical", 1),
        hit("RULE-MED-005", "medical", 1, subject=("provider", PROV)),
        hit("RULE-MED-003", "medical", 2),
    ]
    claims = [claim("medical", 1, billed=100.0, paid=90.0), claim("medical", 2, 50.0, None)]
    proposal = by_subject(propose(hits, claims))[("provider", PROV)]
    assert proposal["flagged_billed"] == 150.0
    assert proposal["flagged_paid"] == 90.0  # a missing paid amount counts as nothing
    assert proposal["claims"] == [
        {"claim_type": "medical", "claim_pk": 1, "claim_id": "M1"},
        {"claim_type": "medical", "claim_pk": 2, "claim_id": "M2"},
    ]


def test_explanation_itemises_rules_with_thresholds_and_strongest_samples() -> None:
    hits = [
        hit("RULE-MED-005", "medical", pk, severity=s, subject=("provider", PROV), evidence=e)
        for pk, s, e in [
            (1, 0.2, {"z": 3.6, "peer_median": 0.3}),
            (2, 0.9, {"z": 6.5, "peer_median": 0.3}),
            (3, 0.5, {"z": 4.9, "peer_median": 0.3}),
            (4, 0.7, {"z": 5.2, "peer_median": 0.3}),
        ]
    ] + [hit("RULE-MED-003", "medical", 2)]
    claims = [claim("medical", pk) for pk in (1, 2, 3, 4)]
    explanation = propose(hits, claims)["explanation"].iloc[0]
    json.dumps(explanation, allow_nan=False)
    rules = {r["rule_id"]: r for r in explanation["rules"]}
    assert [r["rule_id"] for r in explanation["rules"]] == ["RULE-MED-003", "RULE-MED-005"]
    upcoding = rules["RULE-MED-005"]
    assert upcoding["name"] == "E/M upcoding"
    assert upcoding["claims"] == 4
    assert upcoding["max_severity"] == 0.9
    assert upcoding["weight"] == 7.0
    assert upcoding["cap"] == 7.0
    assert upcoding["max_claim_points"] == pytest.approx(63.0)
    assert upcoding["thresholds"]["min_robust_z"] == 3.5
    assert len(upcoding["samples"]) == EVIDENCE_SAMPLES
    assert [s["severity"] for s in upcoding["samples"]] == [0.9, 0.7, 0.5]
    assert upcoding["samples"][0]["evidence"] == {"z": 6.5, "peer_median": 0.3}
    assert explanation["claim_count"] == 4


def test_proposal_shape_and_order() -> None:
    hits = [
        hit("RULE-MED-003", "medical", 1),
        hit("RULE-MED-006", "medical", 2, weight=9.0),
    ]
    claims = [claim("medical", 1), claim("medical", 2, provider_id=PROV2)]
    proposals = propose(hits, claims)
    assert list(proposals.columns) == PROPOSAL_COLUMNS
    assert proposals["subject_id"].tolist() == [PROV2, PROV]  # highest score first


def test_subjects_filter_limits_the_proposals() -> None:
    hits = [hit("RULE-MED-003", "medical", 1), hit("RULE-MED-003", "medical", 2)]
    claims = [claim("medical", 1), claim("medical", 2, provider_id=PROV2)]
    only = pd.DataFrame({"subject_type": ["provider"], "subject_id": [PROV2]})
    assert propose(hits, claims, subjects=only)["subject_id"].tolist() == [PROV2]


def test_no_hits_no_proposals() -> None:
    proposals = propose([], [])
    assert proposals.empty
    assert list(proposals.columns) == PROPOSAL_COLUMNS


# --------------------------------------------------------------------------- evidence hash


def test_evidence_hash_ignores_order_and_changes_with_the_evidence() -> None:
    hits = [
        hit("RULE-MED-003", "medical", 1),
        hit("RULE-MED-002", "medical", 2),
        hit("RULE-MED-005", "medical", 3, subject=("provider", PROV)),
    ]
    claims = [claim("medical", pk) for pk in (1, 2, 3)]
    cfg = default_config(scoring={"case_min_level": "low"})

    def evidence_hash(found: list[dict[str, object]], on: list[dict[str, object]]) -> str:
        return str(propose(found, on, cfg)["evidence_hash"].iloc[0])

    first = evidence_hash(hits, claims)
    assert len(first) == 64
    assert evidence_hash(hits[::-1], claims[::-1]) == first
    # The same findings at another severity are the same evidence (the score tells them apart).
    assert evidence_hash([{**h, "severity": 0.3} for h in hits], claims) == first
    assert evidence_hash([*hits, hit("RULE-MED-012", "medical", 2)], claims) != first


def test_evidence_hash_is_a_documented_function_of_rule_and_claim_pairs() -> None:
    hits = [hit("RULE-MED-003", "medical", 10), hit("RULE-MED-003", "medical", 9)]
    claims = [claim("medical", 9), claim("medical", 10)]
    expected = hashlib.sha256(b"RULE-MED-003|medical|10\nRULE-MED-003|medical|9").hexdigest()
    assert propose(hits, claims)["evidence_hash"].iloc[0] == expected


# --------------------------------------------------------------------------- json_safe


def test_json_safe() -> None:
    value = {
        "a": np.int64(3),
        "b": np.float64("nan"),
        "c": [float("inf"), pd.Timestamp("2024-01-02"), pd.NaT],
        "d": (1, None),
        5: np.bool_(True),
        "plain": ["x", 2, False, 0.5, float("nan"), dt.date(2024, 1, 3)],
    }
    assert json_safe(value) == {
        "a": 3,
        "b": None,
        "c": [None, "2024-01-02T00:00:00", None],
        "d": [1, None],
        "5": True,
        "plain": ["x", 2, False, 0.5, None, "2024-01-03"],
    }


def test_claim_columns_are_what_the_store_loader_provides() -> None:
    assert CLAIM_COLUMNS == [
        "claim_type",
        "claim_pk",
        "claim_id",
        "provider_id",
        "member_id",
        "pharmacy_id",
        "prescriber_id",
        "amount_billed",
        "amount_paid",
    ]
