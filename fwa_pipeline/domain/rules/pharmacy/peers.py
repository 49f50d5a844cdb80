"""The pharmacy outlier among its peers (RULE-RX-010), in two phases (``base.PeerPhases``): per
pharmacy counts and sums of its fills (merging exactly, ``aggregates.PeerAggregates``), then each
pharmacy against all of them."""

from __future__ import annotations

import pandas as pd

from fwa_pipeline.domain.config import RuleParams
from fwa_pipeline.domain.rules.aggregates import PeerAggregates, cents
from fwa_pipeline.domain.rules.base import (
    Key,
    PeerPhases,
    RuleContext,
    empty_hits,
    robust_z,
    rule,
)
from fwa_pipeline.domain.rules.pharmacy._common import numeric, pharmacy_hits, ramp

# The measures a pharmacy is compared on.
METRICS = ["schedule2_share", "cost_per_member"]


def pharmacy_aggregates(frame: pd.DataFrame, params: RuleParams) -> PeerAggregates:
    """Per pharmacy (of any provider type: compare keeps those of type ``pharmacy``): fills,
    schedule-2 fills, billed cents, and its members' pairs."""
    fills = frame[["pharmacy_id", "member_id"]]
    totals = (
        fills.assign(
            _c2=numeric(frame, "ndc_dea_schedule").eq(2),
            _cents=cents(numeric(frame, "amount_billed")),
        )
        .groupby("pharmacy_id")
        .agg(
            fills=("_c2", "size"),
            schedule2_fills=("_c2", "sum"),
            billed_cents=("_cents", "sum"),
        )
    )
    return PeerAggregates.of(totals, fills)


def pharmacy_measures(statistics: pd.DataFrame, min_fills: int) -> pd.DataFrame:
    """The pharmacies of provider type ``pharmacy`` with at least ``min_fills`` fills (and a
    member) of ``statistics``, with their share of schedule-2 fills and billed amount per
    member."""
    measures = statistics.sort_index()  # concatenated shards come in any order
    kept = measures["type"].eq("pharmacy").fillna(False).astype(bool)
    measures = measures.loc[kept & (measures["fills"] >= min_fills) & (measures["members"] > 0)]
    billed = measures["billed_cents"] / 100
    return measures[["fills", "members", "schedule2_fills"]].assign(
        billed=billed,
        schedule2_share=measures["schedule2_fills"] / measures["fills"],
        cost_per_member=billed / measures["members"],
    )


def pharmacy_compare(
    frame: pd.DataFrame, statistics: pd.DataFrame, params: RuleParams
) -> pd.DataFrame:
    """Hits on every fill of the pharmacies whose measures are outliers among all of them."""
    thresholds = params.thresholds
    measures = pharmacy_measures(statistics, thresholds["min_fills"])
    if len(measures) < thresholds["min_peers"]:
        return empty_hits()
    z = pd.DataFrame({metric: robust_z(measures[metric]) for metric in METRICS})
    evidence = {}
    for metric in METRICS:
        values = measures[metric]
        median = values.median()
        evidence[metric] = values.round(4)
        evidence[f"{metric}_peer_median"] = round(median, 4)
        evidence[f"{metric}_peer_mad"] = round((values - median).abs().median(), 4)
        evidence[f"{metric}_z"] = z[metric].round(2)
    crossed = z.ge(thresholds["min_robust_z"])  # NaN z (MAD 0) never crosses
    flagged = crossed.any(axis=1)
    if not flagged.any():
        return empty_hits()
    stats = (
        pd.DataFrame(evidence)
        .loc[flagged]
        .assign(
            **{f"{m}_flagged": crossed.loc[flagged, m] for m in METRICS},
            fills=measures["fills"],
            members=measures["members"],
            peers=len(measures),
            min_robust_z=thresholds["min_robust_z"],
        )
    )
    severity = ramp(
        z.loc[flagged].max(axis=1),
        thresholds["min_robust_z"],
        thresholds["full_severity_z"],
        thresholds["min_severity"],
    )
    rows = frame.loc[frame["pharmacy_id"].isin(stats.index)]
    position = stats.index.get_indexer(rows["pharmacy_id"])
    per_fill = stats.iloc[position]
    return pharmacy_hits(
        rows,
        subject_type="pharmacy",
        subject_column="pharmacy_id",
        severity=severity[position],
        evidence={c: per_fill[c] for c in per_fill.columns},
    )


PHARMACY_OUTLIER = PeerPhases(
    "pharmacy_id",
    pharmacy_aggregates,
    pharmacy_compare,
    attributes=("type",),
    reference=("ndc_reference",),  # a drug's DEA schedule
)


@rule(
    "RULE-RX-010",
    key=Key.PEERS,
    reads=("member_id", "pharmacy_id", "ndc_code", "amount_billed"),
    phases=PHARMACY_OUTLIER,
)
def pharmacy_outlier(ctx: RuleContext, params: RuleParams) -> pd.DataFrame:
    """A pharmacy whose schedule-2 share of fills, or billed amount per member, has robust
    z = 0.6745 (x - median) / MAD >= ``min_robust_z`` among all pharmacies with at least
    ``min_fills`` fills (when there are at least ``min_peers`` of them); every fill of the
    pharmacy is a hit. Severity grows with the larger z, up to ``full_severity_z``."""
    return PHARMACY_OUTLIER.run(ctx.pharmacy, params)
