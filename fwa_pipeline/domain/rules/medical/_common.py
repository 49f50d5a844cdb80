"""Helpers the medical rules share: typed column access, hit building and peer statistics."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Literal

import numpy as np
import pandas as pd

from fwa_pipeline.domain.rules.base import empty_hits, hits_from

# A hit is about the line itself or about the rendering provider behind it.
Subject = Literal["claim", "provider"]
_SUBJECT_COLUMN: dict[Subject, str | None] = {"claim": None, "provider": "provider_id"}

# Consistency constant of the mean absolute deviation (sqrt(pi / 2)): the robust z falls back to
# it where more than half of a peer group share one value and the MAD is 0.
MEAN_AD_SCALE = 1.253314


def numeric(values: pd.Series) -> pd.Series:
    """``values`` as float64, anything unparseable (or missing) as NaN: reference columns arrive
    as Int64, float or text depending on the reader."""
    return pd.to_numeric(values, errors="coerce").astype("float64")


def flags(values: pd.Series) -> pd.Series:
    """A boolean column that may arrive as bool, 0/1 or ``true``/``false`` text; missing is
    false."""
    if pd.api.types.is_bool_dtype(values):
        return values.fillna(False).astype(bool)
    text = values.astype("string").str.strip().str.lower()
    return text.isin(["true", "t", "1", "1.0", "yes", "y"]).fillna(False).astype(bool)


def codes(values: pd.Series) -> pd.Series:
    """Codes as trimmed upper-case text (missing stays missing) so ``59`` matches ``"59"``."""
    return values.astype("string").str.strip().str.upper()


def code_set(values: Iterable[object]) -> list[str]:
    return [str(v).strip().upper() for v in values]


def medical_hits(
    claims: pd.DataFrame,
    *,
    subject: Subject,
    severity: pd.Series | float,
    evidence: pd.DataFrame,
) -> pd.DataFrame:
    """Hit rows for ``claims`` (an enriched medical frame's rows), ``evidence`` aligned with it."""
    if claims.empty:
        return empty_hits()
    return hits_from(
        claims,
        claim_type="medical",
        subject_type=subject,
        subject_column=_SUBJECT_COLUMN[subject],
        severity=severity,
        evidence=evidence,
    )


def z_severity(z: pd.Series, full_severity_z: float) -> pd.Series:
    """Severity growing linearly with z, reaching 1 at ``full_severity_z``."""
    return (z / full_severity_z).clip(lower=0.0, upper=1.0)


def peer_stats(
    values: pd.Series, groups: pd.Series, percentile: float | None = None
) -> pd.DataFrame:
    """Per row of ``values``: its peer group's size, median, MAD, the value at ``percentile`` (when
    given), the row's percentile rank and its robust z = 0.6745 (x - median) / MAD.

    Where the MAD is 0 (more than half the peers share one value, e.g. most providers never bill
    a modifier) z falls back to (x - median) / (1.2533 x mean absolute deviation) instead of
    being undefined; it stays NaN only when every peer has the same value. Rows with a missing
    value or group get NaN statistics.
    """
    values = values.astype("float64")
    valid = values.notna() & groups.notna()
    x = values[valid]
    by_group = groups[valid]
    grouped = x.groupby(by_group)
    median = grouped.transform("median")
    deviation = (x - median).abs()
    mad = deviation.groupby(by_group).transform("median")
    mean_ad = deviation.groupby(by_group).transform("mean")
    scale = (mad / 0.6745).where(mad > 0, MEAN_AD_SCALE * mean_ad)
    stats = pd.DataFrame(
        {
            "peers": grouped.transform("size").astype("float64"),
            "peer_median": median,
            "peer_mad": mad,
            "percentile_rank": grouped.rank(pct=True),
            "z": (x - median) / scale.where(scale > 0),
        }
    )
    if percentile is not None:
        stats["peer_percentile_value"] = grouped.transform("quantile", percentile)
    return stats.reindex(values.index)


def group_ids(frame: pd.DataFrame, columns: list[str]) -> pd.Series:
    """One int64 id per distinct combination of ``columns``, for the rows where none is missing
    (the others are left out). Grouping, de-duplicating and joining on one integer is far cheaper
    than on several text columns."""
    ids = np.zeros(len(frame), dtype=np.int64)
    size = 1  # ids are below this
    complete = np.ones(len(frame), dtype=bool)
    for column in columns:
        codes, uniques = pd.factorize(frame[column])
        complete &= codes >= 0
        if size * (len(uniques) + 1) >= 2**62:  # compact the ids first so the product fits
            ids, seen = pd.factorize(ids)
            size = len(seen)
        ids = ids * (len(uniques) + 1) + (codes + 1)
        size *= len(uniques) + 1
    return pd.Series(ids[complete], index=frame.index[complete])


def repeated(frame: pd.DataFrame, columns: list[str]) -> pd.Series:
    """``group_ids`` of the rows whose combination of ``columns`` occurs more than once."""
    ids = group_ids(frame, columns)
    return ids[ids.duplicated(keep=False)]


def group_sum(values: pd.Series, frame: pd.DataFrame, columns: list[str]) -> pd.Series:
    """``values`` summed within each combination of ``frame[columns]``, on every row of
    ``frame`` where none of them is missing (``values`` aligned by index)."""
    ids = group_ids(frame, columns)
    return values[ids.index].groupby(ids, sort=False).transform("sum")


def duplicate_copies(frame: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """The second and later copies among rows equal on ``keys`` (rows missing a key are never
    copies), ordered by ``claim_id``: per copy the group's first claim id, the copy's number
    (2, 3, ...) and the group's size."""
    ids = repeated(frame, keys)
    claim_ids = frame.loc[ids.index, "claim_id"].sort_values(kind="stable")
    grouped = claim_ids.groupby(ids[claim_ids.index], sort=False)
    order = grouped.cumcount()
    out = pd.DataFrame(
        {
            "first_claim_id": grouped.transform("first"),
            "copy_number": order + 1,
            "copies": grouped.transform("size"),
        }
    )
    return out[order > 0]
