"""What a rule is: a function from the enriched claims to hit rows, registered under its id.

A rule sees every claim it is given (new claims plus the history its look-back needs) and returns
one row per (claim, finding) with the columns of ``HIT_COLUMNS``; ``evaluate`` then keeps the hits
on claims in scope and stamps rule id, version and weight from the run's config.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass

import pandas as pd

from fwa_pipeline.domain.config import RuleParams

# What a rule function returns. ``evidence`` holds a dict per hit: the values and the threshold
# they crossed (and peer statistics for peer rules).
HIT_COLUMNS = [
    "claim_type",  # medical | pharmacy
    "claim_pk",
    "claim_id",
    "subject_type",  # claim | provider | pharmacy | prescriber | member
    "subject_id",
    "severity",  # in [0, 1]
    "evidence",
]


@dataclass(frozen=True)
class RuleContext:
    """The inputs every rule reads. Frames are the outputs of ``domain.enrich``."""

    medical: pd.DataFrame
    pharmacy: pd.DataFrame
    ncci: pd.DataFrame  # column1_code, column2_code, modifier_allowed
    as_of: dt.date


RuleFn = Callable[[RuleContext, RuleParams], pd.DataFrame]
REGISTRY: dict[str, RuleFn] = {}


def rule(rule_id: str) -> Callable[[RuleFn], RuleFn]:
    def register(fn: RuleFn) -> RuleFn:
        if rule_id in REGISTRY:
            raise ValueError(f"{rule_id} registered twice")
        REGISTRY[rule_id] = fn
        return fn

    return register


def empty_hits() -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series(dtype=object) for c in HIT_COLUMNS})


def hits_from(
    claims: pd.DataFrame,
    *,
    claim_type: str,
    subject_type: str,
    subject_column: str | None,
    severity: pd.Series | float,
    evidence: pd.DataFrame,
) -> pd.DataFrame:
    """Build hit rows for ``claims`` (rows of an enriched frame). ``evidence`` is aligned with
    ``claims``; each row becomes that hit's evidence dict (NaN/NaT become None)."""
    if claims.empty:
        return empty_hits()
    clean = evidence.astype(object).where(evidence.notna(), None)
    for column in clean.columns:  # dates to ISO strings so evidence is JSON
        if pd.api.types.is_datetime64_any_dtype(evidence[column]):
            clean[column] = evidence[column].dt.strftime("%Y-%m-%d").astype(object)
            clean[column] = clean[column].where(evidence[column].notna(), None)
    subject = claims["claim_id"] if subject_column is None else claims[subject_column].astype(str)
    # Zipping column lists is a few times faster than to_dict(orient="records"), same records.
    names = list(clean.columns)
    columns = [clean[c].tolist() for c in names]
    rows = zip(*columns, strict=True) if names else ([] for _ in range(len(clean)))
    records = [dict(zip(names, row, strict=True)) for row in rows]
    return pd.DataFrame(
        {
            "claim_type": claim_type,
            "claim_pk": claims["claim_pk"].to_numpy(),
            "claim_id": claims["claim_id"].to_numpy(),
            "subject_type": subject_type,
            "subject_id": subject.to_numpy(),
            "severity": severity.to_numpy() if isinstance(severity, pd.Series) else severity,
            "evidence": records,
        }
    )


def robust_z(values: pd.Series, groups: pd.Series | None = None) -> pd.Series:
    """0.6745 (x - median) / MAD, within ``groups`` when given; NaN where MAD is 0."""
    if groups is None:
        median = values.median()
        mad = (values - median).abs().median()
        return 0.6745 * (values - median) / (mad if mad else float("nan"))
    median = values.groupby(groups).transform("median")
    mad = (values - median).abs().groupby(groups).transform("median")
    return 0.6745 * (values - median) / mad.where(mad > 0)
