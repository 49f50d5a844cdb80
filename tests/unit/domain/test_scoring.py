"""Claim scores: weight x severity, per-rule caps, one count per rule, the x10 scale, the 100
ceiling and the risk bands."""

from __future__ import annotations

import pandas as pd
import pytest

from fwa_pipeline.domain.config import PipelineConfig, default_config
from fwa_pipeline.domain.rules import HIT_FRAME_COLUMNS
from fwa_pipeline.domain.scoring import SCORE_COLUMNS, ordered_levels, risk_level, score_claims
from tests.unit.domain.hits import hit

BANDS = {"low": 0.0, "medium": 40.0, "high": 70.0, "critical": 90.0}


def config(**rules: tuple[float, float]) -> PipelineConfig:
    """The default config with (weight, cap) overridden per rule."""
    base = default_config()
    for rule_id, (weight, cap) in rules.items():
        base.rules[rule_id] = base.rules[rule_id].model_copy(update={"weight": weight, "cap": cap})
    return base


def scores(*hits: dict[str, object], cfg: PipelineConfig | None = None) -> pd.DataFrame:
    frame = pd.DataFrame(list(hits), columns=HIT_FRAME_COLUMNS)
    return score_claims(frame, cfg or config())


def one(frame: pd.DataFrame, claim_pk: int, claim_type: str = "medical") -> pd.Series:
    row = frame[(frame["claim_pk"] == claim_pk) & (frame["claim_type"] == claim_type)]
    assert len(row) == 1
    return row.iloc[0]


def test_score_is_ten_times_weight_times_severity() -> None:
    result = scores(hit("RULE-MED-003", "medical", 1, 0.5, 7.0))
    assert list(result.columns) == SCORE_COLUMNS
    row = one(result, 1)
    assert row["score"] == 35.0
    assert row["risk_level"] == "low"
    assert row["hit_count"] == 1
    assert row["claim_id"] == "M1"


def test_a_rules_contribution_is_capped() -> None:
    cfg = config(**{"RULE-MED-004": (8.0, 5.0)})
    assert one(scores(hit("RULE-MED-004", "medical", 1, 1.0, 8.0), cfg=cfg), 1)["score"] == 50.0
    # Below the cap the cap does nothing.
    assert one(scores(hit("RULE-MED-004", "medical", 1, 0.5, 8.0), cfg=cfg), 1)["score"] == 40.0


def test_rules_add_up_to_the_ceiling() -> None:
    result = scores(
        hit("RULE-MED-003", "medical", 1, 1.0, 7.0),
        hit("RULE-MED-006", "medical", 1, 1.0, 9.0),
        hit("RULE-MED-012", "medical", 2, 0.5, 4.0),
        hit("RULE-MED-002", "medical", 2, 1.0, 3.0),
    )
    first = one(result, 1)
    assert first["score"] == 100.0  # 160 before the ceiling
    assert first["risk_level"] == "critical"
    assert first["hit_count"] == 2
    second = one(result, 2)
    assert second["score"] == 50.0
    assert second["risk_level"] == "medium"


def test_one_rule_counts_once_per_claim_at_its_highest_severity() -> None:
    result = scores(
        hit("RULE-RX-002", "pharmacy", 5, 0.4, 8.0, subject=("member", "M1")),
        hit("RULE-RX-002", "pharmacy", 5, 0.9, 8.0, subject=("prescriber", "P1")),
        hit("RULE-RX-002", "pharmacy", 5, 0.6, 8.0, subject=("pharmacy", "PH")),
    )
    row = one(result, 5, "pharmacy")
    assert row["score"] == 72.0
    assert row["hit_count"] == 1


def test_claim_keys_include_the_claim_type() -> None:
    result = scores(
        hit("RULE-MED-003", "medical", 1, 1.0, 7.0),
        hit("RULE-RX-005", "pharmacy", 1, 0.5, 6.0),
    )
    assert one(result, 1)["score"] == 70.0
    assert one(result, 1, "pharmacy")["score"] == 30.0


def test_a_band_boundary_is_not_missed_by_floating_point() -> None:
    # 10 x (6 x 0.6 + 1 x 0.4) is 39.99999999999999 in floating point.
    cfg = config(**{"RULE-MED-003": (6.0, 6.0), "RULE-MED-002": (1.0, 1.0)})
    result = scores(
        hit("RULE-MED-003", "medical", 1, 0.6, 6.0),
        hit("RULE-MED-002", "medical", 1, 0.4, 1.0),
        cfg=cfg,
    )
    row = one(result, 1)
    assert row["score"] == 40.0
    assert row["risk_level"] == "medium"


def test_a_rule_missing_from_the_config_is_not_capped_beyond_its_weight() -> None:
    result = scores(hit("RULE-OLD-001", "medical", 1, 1.0, 9.5))
    assert one(result, 1)["score"] == 95.0


def test_no_hits_no_scores() -> None:
    result = scores()
    assert result.empty
    assert list(result.columns) == SCORE_COLUMNS


@pytest.mark.parametrize(
    ("score", "level"),
    [
        (0.0, "low"),
        (39.99, "low"),
        (40.0, "medium"),
        (69.99, "medium"),
        (70.0, "high"),
        (89.99, "high"),
        (90.0, "critical"),
        (100.0, "critical"),
        (-5.0, "low"),
    ],
)
def test_risk_bands(score: float, level: str) -> None:
    assert risk_level(pd.Series([score]), BANDS).tolist() == [level]


def test_risk_level_follows_band_values_not_dict_order() -> None:
    shuffled = {"critical": 80.0, "low": 0.0, "high": 50.0, "medium": 20.0}
    assert ordered_levels(shuffled) == ["low", "medium", "high", "critical"]
    levels = risk_level(pd.Series([10.0, 25.0, 60.0, 85.0], index=[4, 3, 2, 1]), shuffled)
    assert levels.tolist() == ["low", "medium", "high", "critical"]
    assert levels.index.tolist() == [4, 3, 2, 1]


def test_missing_scores_have_no_level() -> None:
    assert risk_level(pd.Series([None, 50.0], dtype="float64"), BANDS).isna().tolist() == [
        True,
        False,
    ]


def test_bands_come_from_the_config() -> None:
    cfg = default_config(scoring={"bands": {"low": 0, "medium": 20, "high": 30, "critical": 95}})
    row = one(scores(hit("RULE-MED-003", "medical", 1, 0.5, 7.0), cfg=cfg), 1)
    assert row["risk_level"] == "high"
