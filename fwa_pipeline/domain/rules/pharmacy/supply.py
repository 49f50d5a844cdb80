"""Rules over the supply a member has on hand: early refill (RULE-RX-001), high opioid dose
(RULE-RX-003) and opioid with benzodiazepine (RULE-RX-004). All count only ``dispensed`` fills:
a duplicate copy adds no supply."""

from __future__ import annotations

import numpy as np
import pandas as pd

from fwa_pipeline.domain.config import RuleParams
from fwa_pipeline.domain.rules.base import Key, RuleContext, empty_hits, rule
from fwa_pipeline.domain.rules.pharmacy._common import (
    day_numbers,
    dispensed,
    dispensings,
    flag,
    numeric,
    pharmacy_hits,
    ramp,
    supply_timeline,
)


def drug_codes(ndc_code: pd.Series, drug_name: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """(a code per fill, the drug per code) for what counts as the same drug: the reference drug
    name (trimmed, case-folded), so that switching between NDCs of one drug (package sizes,
    labelers) does not restart the supply; an NDC missing from the reference stands for itself.
    The name follows from the NDC, so it is normalised once per distinct NDC (none missing)."""
    codes, ndcs = pd.factorize(ndc_code)
    first = np.unique(codes, return_index=True)[1]
    name = drug_name.iloc[first].astype("string").str.strip().str.lower().fillna("")
    name = np.where(name == "", "ndc:" + np.asarray(ndcs, dtype=object), name)
    drug, drugs = pd.factorize(name)
    return drug[codes], np.asarray(drugs, dtype=object)


def chain_order(group: np.ndarray, day: np.ndarray, claim_id: pd.Series) -> np.ndarray:
    """Positions sorting fills by group, day, then claim id. Only fills sharing a group and day
    need the (slow) string order, so only they are ranked by claim id."""
    tied = pd.DataFrame({"group": group, "day": day}).duplicated(keep=False).to_numpy()
    tie_rank = np.zeros(len(day))
    tie_rank[tied] = claim_id.iloc[np.flatnonzero(tied)].rank(method="first").to_numpy()
    return np.lexsort((tie_rank, day, group))


def elapsed_share_threshold(schedule: np.ndarray, thresholds: dict) -> np.ndarray:
    """The share of the previous supply that must have elapsed, by DEA schedule."""
    return np.select(
        [schedule == 2, (schedule >= 3) & (schedule <= 5)],
        [thresholds["min_elapsed_share_c2"], thresholds["min_elapsed_share_c345"]],
        thresholds["min_elapsed_share"],
    )


@rule(
    "RULE-RX-001",
    key=Key.MEMBER_WINDOW,
    reads=("member_id", "pharmacy_id", "fill_date", "ndc_code", "days_supply"),
)
def early_refill(ctx: RuleContext, params: RuleParams) -> pd.DataFrame:
    """A fill of the same member and drug before the threshold share of the previous fill's
    supply has elapsed, counting supply carried over from earlier fills.

    Within a member and drug, fills in date order (then claim id) each run out at
    ``runs_out[i] = max(runs_out[i-1], fill[i]) + days[i]``: supply still on hand is used first.
    The previous fill's supply starts being used at ``runs_out[i-1] - days[i-1]`` (its fill date,
    or later when it was itself early), and fill ``i`` is early when
    ``(fill[i] - that start) / days[i-1]`` is below the threshold. Unrolled, ``runs_out[i]`` is
    ``supplied[i] + max over j <= i of (fill[j] - supplied[j-1])`` with ``supplied`` the running
    days supply, so a grouped cumsum and cummax compute it without a loop.
    """
    thresholds = params.thresholds
    frame = ctx.pharmacy
    # Positions and arrays rather than a sorted copy of the frame: only hits become rows.
    mask, supply = dispensed(frame)
    position = np.flatnonzero(mask & frame["ndc_code"].notna().to_numpy())
    if len(position) == 0:
        return empty_hits()
    member = pd.factorize(frame["member_id"])[0][position]
    drug, drugs = drug_codes(
        frame["ndc_code"].iloc[position], frame["ndc_drug_name"].iloc[position]
    )
    group = member.astype(np.int64) * (drug.max() + 1) + drug  # one code per member and drug
    day = day_numbers(frame["fill_date"].iloc[position])
    order = chain_order(group, day, frame["claim_id"].iloc[position])
    position, group, drug, day = position[order], group[order], drug[order], day[order]
    day = day.astype(np.float64)
    days = supply[position]
    supplied = pd.Series(days).groupby(group).cumsum().to_numpy()
    runs_out = supplied + pd.Series(day - (supplied - days)).groupby(group).cummax().to_numpy()
    in_use_from = runs_out - days

    later = np.flatnonzero(group[1:] == group[:-1]) + 1  # fills with a previous fill
    previous = later - 1
    share = (day[later] - in_use_from[previous]) / days[previous]
    schedule = numeric(frame, "ndc_dea_schedule").to_numpy()[position[later]]
    threshold = elapsed_share_threshold(schedule, thresholds)
    early = share < threshold
    hit, before = later[early], previous[early]
    return pharmacy_hits(
        frame.iloc[position[hit]],
        subject_type="member",
        subject_column="member_id",
        severity=ramp(
            share[early],
            threshold[early],
            thresholds["full_severity_elapsed_share"],
            thresholds["min_severity"],
        ),
        evidence={
            "drug": drugs[drug[hit]],
            "dea_schedule": schedule[early],
            "previous_claim_id": frame["claim_id"].iloc[position[before]],
            "previous_fill_date": frame["fill_date"].iloc[position[before]],
            "previous_days_supply": days[before].astype(np.int64),
            "carried_over_days": (in_use_from[before] - day[before]).astype(np.int64),
            "days_on_hand": (runs_out[before] - day[hit]).astype(np.int64),
            "elapsed_share": np.round(share[early], 4),
            "min_elapsed_share": threshold[early],
        },
    )


def daily_mme(fills: pd.DataFrame) -> pd.Series:
    """strength per unit x quantity / days supply x MME factor (NaN where any is missing)."""
    return (
        numeric(fills, "ndc_strength_per_unit")
        * numeric(fills, "quantity")
        / fills["days_supply"]
        * numeric(fills, "ndc_mme_factor")
    )


@rule(
    "RULE-RX-003",
    key=Key.MEMBER_WINDOW,
    reads=("member_id", "pharmacy_id", "fill_date", "ndc_code", "quantity", "days_supply"),
)
def high_opioid_dose(ctx: RuleContext, params: RuleParams) -> pd.DataFrame:
    """A member's daily MME, summed over the opioid fills whose supply covers the day, at or
    above the threshold on at least ``min_days`` days (not necessarily consecutive); hits are the
    opioid fills whose supply covers such a day. Severity grows with the highest summed MME
    during the fill's supply."""
    thresholds = params.thresholds
    fills = dispensings(ctx.pharmacy.loc[flag(ctx.pharmacy, "is_opioid")])
    fills = fills.assign(_mme=daily_mme(fills))
    fills = fills.loc[fills["_mme"].notna()]
    if fills.empty:
        return empty_hits()
    timeline = supply_timeline(fills, {"mme": fills["_mme"]})
    level = timeline.levels["mme"]
    high_days = timeline.length * (level >= thresholds["mme_threshold"])
    member_days = timeline.member_total(high_days)
    fill_days = timeline.range_sum(high_days)
    hit = (fill_days > 0) & (member_days >= thresholds["min_days"])
    peak = timeline.range_max(level)[hit]
    return pharmacy_hits(
        fills.loc[hit],
        subject_type="member",
        subject_column="member_id",
        severity=ramp(
            peak,
            thresholds["mme_threshold"],
            thresholds["full_severity_mme"],
            thresholds["min_severity"],
        ),
        evidence={
            "fill_daily_mme": fills["_mme"].loc[hit].round(2),
            "peak_daily_mme": np.round(peak, 2),
            "fill_days_at_or_above": fill_days[hit].astype(np.int64),
            "member_days_at_or_above": member_days[hit].astype(np.int64),
            "mme_threshold": thresholds["mme_threshold"],
            "min_days": thresholds["min_days"],
        },
    )


@rule(
    "RULE-RX-004",
    key=Key.MEMBER_WINDOW,
    reads=("member_id", "pharmacy_id", "fill_date", "ndc_code", "days_supply"),
)
def opioid_with_benzodiazepine(ctx: RuleContext, params: RuleParams) -> pd.DataFrame:
    """A member with opioid and benzodiazepine supply on the same days for at least
    ``min_overlap_days`` days in total, from at least ``min_benzo_fills`` benzodiazepine fills
    (on distinct fill dates, as the PQA measure counts them) that overlap opioid supply; hits are
    the benzodiazepine and opioid fills that overlap the other class. Severity grows with the
    member's overlap days."""
    thresholds = params.thresholds
    frame = ctx.pharmacy
    fills = dispensings(frame.loc[flag(frame, "is_opioid") | flag(frame, "is_benzodiazepine")])
    opioid, benzo = flag(fills, "is_opioid"), flag(fills, "is_benzodiazepine")
    if fills.empty:
        return empty_hits()
    timeline = supply_timeline(fills, {"opioid": opioid, "benzo": benzo})
    both = (timeline.levels["opioid"] > 0) & (timeline.levels["benzo"] > 0)
    overlap_days = timeline.length * both
    fill_overlap = timeline.range_sum(overlap_days)
    member_overlap = timeline.member_total(overlap_days)
    overlapping = fill_overlap > 0
    benzo_fills = (
        fills.loc[benzo.to_numpy() & overlapping]
        .groupby("member_id")["fill_date"]
        .nunique()
        .reindex(fills["member_id"], fill_value=0)
        .to_numpy()
    )
    hit = (
        overlapping
        & (member_overlap >= thresholds["min_overlap_days"])
        & (benzo_fills >= thresholds["min_benzo_fills"])
    )
    return pharmacy_hits(
        fills.loc[hit],
        subject_type="member",
        subject_column="member_id",
        severity=ramp(
            member_overlap[hit],
            thresholds["min_overlap_days"],
            thresholds["full_severity_overlap_days"],
            thresholds["min_severity"],
        ),
        evidence={
            "drug_class": np.where(benzo[hit], "benzodiazepine", "opioid"),
            "fill_overlap_days": fill_overlap[hit].astype(np.int64),
            "member_overlap_days": member_overlap[hit].astype(np.int64),
            "overlapping_benzo_fills": benzo_fills[hit],
            "min_overlap_days": thresholds["min_overlap_days"],
            "min_benzo_fills": thresholds["min_benzo_fills"],
        },
    )
