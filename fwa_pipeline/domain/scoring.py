"""Claim scores and risk levels (rules.md, "Scoring and cases").

A claim's score is ``min(max_score, multiplier x sum over rules of min(cap, weight x severity))``.
A rule counts once per claim, at the highest severity among its hits there: one finding stored
under two subjects (say, the member's and the provider's) is one finding, not two. The weight is
the one each hit was stamped with when its rule ran; the cap is the run config's (rules no longer
in the config keep ``weight x severity``, which is at most the weight).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from fwa_pipeline.domain.config import PipelineConfig

SCORE_COLUMNS = ["claim_type", "claim_pk", "claim_id", "score", "risk_level", "hit_count"]
CLAIM_KEY = ["claim_type", "claim_pk"]
# Scores are kept to cents-like precision so 10 x 0.7 x 10 lands on 70, not 69.99999.
SCORE_DECIMALS = 2


def ordered_levels(bands: Mapping[str, float]) -> list[str]:
    """Risk levels from lowest to highest band."""
    return [level for level, _ in sorted(bands.items(), key=lambda item: item[1])]


def risk_level(scores: pd.Series, bands: Mapping[str, float]) -> pd.Series:
    """The risk level of each score: the highest band whose lower bound it reaches (scores below
    the lowest bound get the lowest level; missing scores stay missing)."""
    levels = ordered_levels(bands)
    edges = [float(bands[level]) for level in levels] + [np.inf]
    cut = pd.cut(scores.clip(lower=edges[0]), bins=edges, right=False, labels=levels)
    return pd.Series(cut.astype(object), index=scores.index, name="risk_level")


def empty_scores() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "claim_type": pd.Series(dtype=object),
            "claim_pk": pd.Series(dtype="int64"),
            "claim_id": pd.Series(dtype=object),
            "score": pd.Series(dtype="float64"),
            "risk_level": pd.Series(dtype=object),
            "hit_count": pd.Series(dtype="int64"),
        }
    )


def capped_contribution(
    rule_ids: pd.Series, weight: pd.Series, severity: pd.Series, config: PipelineConfig
) -> pd.Series:
    """``min(cap, weight x severity)`` per row, the cap looked up by rule id (before the
    multiplier)."""
    caps = rule_ids.map({rid: p.cap for rid, p in config.rules.items()}).astype("float64")
    # fmin ignores the NaN cap of a rule the config no longer has.
    raw = weight.astype("float64") * severity.astype("float64")
    return pd.Series(np.fmin(raw, caps), index=rule_ids.index)


# What score_claims reads of the rule hits.
HIT_COLUMNS = [*CLAIM_KEY, "rule_id", "claim_id", "weight", "severity"]


def score_claims(hits: pd.DataFrame, config: PipelineConfig) -> pd.DataFrame:
    """Score every claim with at least one hit (``SCORE_COLUMNS``; ``hit_count`` is the number of
    distinct rules that hit the claim)."""
    if hits.empty:
        return empty_scores()
    scoring = config.scoring
    per_rule = (
        hits.groupby([*CLAIM_KEY, "rule_id"], sort=False)
        .agg(
            claim_id=("claim_id", "first"),
            weight=("weight", "max"),
            severity=("severity", "max"),
        )
        .reset_index()
    )
    per_rule["contribution"] = capped_contribution(
        per_rule["rule_id"], per_rule["weight"], per_rule["severity"], config
    )
    claims = (
        per_rule.groupby(CLAIM_KEY, sort=False)
        .agg(
            claim_id=("claim_id", "first"),
            total=("contribution", "sum"),
            hit_count=("rule_id", "size"),
        )
        .reset_index()
    )
    claims["score"] = (
        (scoring.multiplier * claims.pop("total"))
        .clip(upper=scoring.max_score)
        .round(SCORE_DECIMALS)
    )
    claims["risk_level"] = risk_level(claims["score"], scoring.bands)
    claims = claims.astype({"claim_pk": "int64", "hit_count": "int64"})
    return claims[SCORE_COLUMNS].sort_values(CLAIM_KEY, kind="stable").reset_index(drop=True)
