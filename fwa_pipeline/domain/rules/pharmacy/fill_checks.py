"""Checks of a single fill against its references: quantity limit (RULE-RX-005), illegal refill
(RULE-RX-006), excluded or invalid prescriber (RULE-RX-007), fill after death (RULE-RX-008), and
duplicate fills (RULE-RX-009). Each hit names the claim; the scoring config names the party a
case opens on. A missing reference value never makes a hit."""

from __future__ import annotations

import numpy as np
import pandas as pd

from fwa_pipeline.domain.config import RuleParams
from fwa_pipeline.domain.rules.base import Key, RuleContext, empty_hits, rule
from fwa_pipeline.domain.rules.pharmacy._common import (
    duplicate_copies,
    flag,
    numeric,
    pharmacy_hits,
    ramp,
)

# These findings hold or not; there is no degree.
FULL = 1.0


def claim_hits(
    frame: pd.DataFrame,
    hit: pd.Series,
    evidence: dict[str, pd.Series | object],
    severity: pd.Series | np.ndarray | float = FULL,
) -> pd.DataFrame:
    """Hits on the claims where ``hit``; Series in ``evidence`` and ``severity`` align with
    ``frame`` and are cut to the hits here."""
    if not hit.any():
        return empty_hits()
    if not np.isscalar(severity):
        severity = np.asarray(severity)[hit.to_numpy()]
    return pharmacy_hits(
        frame.loc[hit],
        subject_type="claim",
        subject_column=None,
        severity=severity,
        evidence={k: v.loc[hit] if isinstance(v, pd.Series) else v for k, v in evidence.items()},
    )


@rule("RULE-RX-005", key=Key.LINE, reads=("ndc_code", "quantity", "days_supply"))
def quantity_limit(ctx: RuleContext, params: RuleParams) -> pd.DataFrame:
    """quantity / days supply above the NDC's ``max_daily_quantity``; severity grows with the
    ratio of the two."""
    thresholds = params.thresholds
    frame = ctx.pharmacy
    daily = numeric(frame, "quantity") / numeric(frame, "days_supply").where(lambda s: s > 0)
    limit = numeric(frame, "ndc_max_daily_quantity")
    ratio = daily / limit.where(limit > 0)
    return claim_hits(
        frame,
        ratio > 1,
        {
            "quantity": numeric(frame, "quantity"),
            "days_supply": numeric(frame, "days_supply"),
            "daily_quantity": daily.round(4),
            "max_daily_quantity": limit,
        },
        ramp(ratio, 1.0, thresholds["full_severity_ratio"], thresholds["min_severity"]),
    )


@rule("RULE-RX-006", key=Key.LINE, reads=("ndc_code", "refill_number"))
def illegal_refill(ctx: RuleContext, params: RuleParams) -> pd.DataFrame:
    """A refill number above what the schedule allows: schedule 2 none (``max_refills_c2``),
    schedules 3-4 ``max_refills_c34``; schedule 5 and non-controlled drugs have no federal
    limit. A missing refill number is the contract's default, 0."""
    thresholds = params.thresholds
    frame = ctx.pharmacy
    schedule = numeric(frame, "ndc_dea_schedule")
    refills = numeric(frame, "refill_number").fillna(0)
    limit = pd.Series(
        np.select(
            [schedule.eq(2).to_numpy(), schedule.isin([3, 4]).to_numpy()],
            [thresholds["max_refills_c2"], thresholds["max_refills_c34"]],
            np.nan,
        ),
        index=frame.index,
    )
    return claim_hits(
        frame,
        refills > limit,
        {"dea_schedule": schedule, "refill_number": refills, "max_refills": limit},
    )


@rule("RULE-RX-007", key=Key.LINE, reads=("prescriber_id", "fill_date"))
def excluded_or_invalid_prescriber(ctx: RuleContext, params: RuleParams) -> pd.DataFrame:
    """The prescriber is excluded on or before the fill date (an exclusion without a date counts
    from always), or is a known provider whose type is not one that may prescribe. An unknown
    prescriber id is a data-quality issue, not this finding."""
    frame = ctx.pharmacy
    exclusion_date = frame["prescriber_exclusion_date"]
    excluded = flag(frame, "prescriber_excluded") & (
        exclusion_date.isna() | (exclusion_date <= frame["fill_date"])
    )
    invalid = flag(frame, "prescriber_known") & ~frame["prescriber_type"].isin(
        params.thresholds["valid_prescriber_types"]
    )
    return claim_hits(
        frame,
        excluded | invalid,
        {
            "prescriber_id": frame["prescriber_id"],
            "excluded": excluded,
            "exclusion_date": exclusion_date,
            "invalid_type": invalid,
            "prescriber_type": frame["prescriber_type"],
            "fill_date": frame["fill_date"],
        },
    )


@rule("RULE-RX-008", key=Key.LINE, reads=("member_id", "fill_date"))
def fill_after_death(ctx: RuleContext, params: RuleParams) -> pd.DataFrame:
    """A fill dated after the member's date of death. The evidence says how many days after,
    not the date of death (PHI, shown only on the member record)."""
    frame = ctx.pharmacy
    days = frame["member_days_after_death"]
    return claim_hits(
        frame,
        days.notna(),
        {"fill_date": frame["fill_date"], "days_after_death": days},
    )


@rule(
    "RULE-RX-009", key=Key.MEMBER_DAY, reads=("member_id", "pharmacy_id", "fill_date", "ndc_code")
)
def duplicate_fill(ctx: RuleContext, params: RuleParams) -> pd.DataFrame:
    """Same member, NDC, fill date and pharmacy under another claim id: every copy but the
    first (smallest claim id) is a hit."""
    frame = ctx.pharmacy
    copy, original = duplicate_copies(frame)
    return claim_hits(frame, copy, {"original_claim_id": original})
