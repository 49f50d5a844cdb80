"""Doctor and pharmacy shopping (RULE-RX-002)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from fwa_pipeline.domain.config import RuleParams
from fwa_pipeline.domain.rules.base import Key, RuleContext, empty_hits, rule
from fwa_pipeline.domain.rules.pharmacy._common import (
    dates_from_days,
    day_numbers,
    flag,
    pharmacy_hits,
    ramp,
)


@rule(
    "RULE-RX-002",
    key=Key.MEMBER_WINDOW,
    reads=("member_id", "prescriber_id", "pharmacy_id", "fill_date", "ndc_code"),
)
def doctor_and_pharmacy_shopping(ctx: RuleContext, params: RuleParams) -> pd.DataFrame:
    """A member's controlled-substance fills (schedule 2-5) from at least ``min_prescribers``
    distinct prescribers and ``min_pharmacies`` distinct pharmacies within ``window_days`` days.

    Every controlled fill ends a window ``[fill_date - window_days + 1, fill_date]``; a window
    meeting both counts makes all of its fills hits. Windows come from a self-join of each
    member's controlled fills, kept cheap by joining only members whose fills reach both counts
    over all their history. A hit's evidence is the qualifying window with the most distinct
    parties it belongs to; severity grows with the smaller of the two counts' ratios to their
    thresholds."""
    thresholds = params.thresholds
    min_prescribers, min_pharmacies = thresholds["min_prescribers"], thresholds["min_pharmacies"]
    frame = ctx.pharmacy
    fills = frame.loc[
        flag(frame, "is_controlled") & frame["member_id"].notna() & frame["fill_date"].notna()
    ]
    reach = fills.groupby("member_id").agg(
        prescribers=("prescriber_id", "nunique"), pharmacies=("pharmacy_id", "nunique")
    )
    candidates = reach.index[
        (reach["prescribers"] >= min_prescribers) & (reach["pharmacies"] >= min_pharmacies)
    ]
    fills = fills.loc[fills["member_id"].isin(candidates)]
    if fills.empty:
        return empty_hits()
    fills = fills.assign(_row=np.arange(len(fills)), _day=day_numbers(fills["fill_date"]))
    pairs = fills[["member_id", "_row", "_day"]].merge(
        fills[["member_id", "_row", "_day", "prescriber_id", "pharmacy_id"]],
        on="member_id",
        suffixes=("_end", ""),
    )
    pairs = pairs.loc[
        (pairs["_day"] <= pairs["_day_end"])
        & (pairs["_day"] > pairs["_day_end"] - thresholds["window_days"])
    ]
    windows = pairs.groupby("_row_end").agg(
        prescribers=("prescriber_id", "nunique"), pharmacies=("pharmacy_id", "nunique")
    )
    windows["ratio"] = np.minimum(
        windows["prescribers"] / min_prescribers, windows["pharmacies"] / min_pharmacies
    )
    windows = windows.loc[windows["ratio"] >= 1]
    best = (
        pairs[["_row", "_row_end", "_day_end"]]
        .merge(windows, left_on="_row_end", right_index=True)
        .assign(_parties=lambda d: d["prescribers"] + d["pharmacies"])
        .sort_values(["_row", "_parties", "_day_end"])
        .drop_duplicates("_row", keep="last")
    )
    rows = fills.iloc[best["_row"].to_numpy()]
    return pharmacy_hits(
        rows,
        subject_type="member",
        subject_column="member_id",
        severity=ramp(
            best["ratio"], 1.0, thresholds["full_severity_ratio"], thresholds["min_severity"]
        ),
        evidence={
            "window_start": dates_from_days(best["_day_end"] - thresholds["window_days"] + 1),
            "window_end": dates_from_days(best["_day_end"]),
            "prescribers": best["prescribers"],
            "pharmacies": best["pharmacies"],
            "min_prescribers": min_prescribers,
            "min_pharmacies": min_pharmacies,
            "window_days": thresholds["window_days"],
        },
    )
