"""Pieces the pharmacy rules share: hit rows, severity ramps, day numbers, the fills that put
supply in a member's hands, and a per-member supply timeline."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd

from fwa_pipeline.domain.rules.base import hits_from

# Summed daily doses are floats; rounding the running totals removes the residue of adding and
# subtracting the same amounts, so a level of exactly the threshold compares as such.
LEVEL_DECIMALS = 6

# Same member, NDC, fill date and pharmacy: one dispensing billed more than once (RULE-RX-009).
DUPLICATE_KEY = ["member_id", "ndc_code", "fill_date", "pharmacy_id"]


def pharmacy_hits(
    rows: pd.DataFrame,
    *,
    subject_type: str,
    subject_column: str | None,
    severity: pd.Series | np.ndarray | float,
    evidence: dict[str, pd.Series | np.ndarray | object],
) -> pd.DataFrame:
    """Hit rows for ``rows`` of the enriched pharmacy frame; ``evidence`` columns align with
    ``rows`` (a scalar, such as a threshold, repeats on every hit)."""
    frame = pd.DataFrame(
        {k: v.to_numpy() if isinstance(v, pd.Series) else v for k, v in evidence.items()},
        index=range(len(rows)),
    )
    if isinstance(severity, np.ndarray):
        severity = pd.Series(severity)
    elif isinstance(severity, pd.Series):
        severity = severity.reset_index(drop=True)
    return hits_from(
        rows,
        claim_type="pharmacy",
        subject_type=subject_type,
        subject_column=subject_column,
        severity=severity,
        evidence=frame,
    )


def ramp(
    value: pd.Series | np.ndarray, at_threshold: float, at_full: float, floor: float
) -> np.ndarray:
    """Severity ``floor`` where ``value`` sits at the threshold, rising linearly to 1 at
    ``at_full`` (which may lie on either side of the threshold), clipped to [floor, 1]."""
    span = (np.asarray(value, dtype=np.float64) - at_threshold) / (at_full - at_threshold)
    return floor + (1.0 - floor) * np.clip(span, 0.0, 1.0)


def numeric(frame: pd.DataFrame, column: str) -> pd.Series:
    """A column as float64 (NaN where missing or unparseable), whatever the reader made of it."""
    return pd.to_numeric(frame[column], errors="coerce").astype(np.float64)


def flag(frame: pd.DataFrame, column: str) -> pd.Series:
    """A boolean column with missing values as False."""
    return frame[column].astype("boolean").fillna(False).astype(bool)


def day_numbers(dates: pd.Series) -> np.ndarray:
    """Days since 1970-01-01 (dates must not be missing)."""
    return dates.to_numpy().astype("datetime64[D]").astype(np.int64)


def dates_from_days(days: pd.Series | np.ndarray) -> pd.Series:
    """The inverse of ``day_numbers``."""
    return pd.Series(np.asarray(days, dtype=np.int64).astype("datetime64[D]"))


def duplicate_copies(frame: pd.DataFrame) -> tuple[pd.Series, pd.Series]:
    """(is a copy, the group's original claim id): the original of a group of same member, NDC,
    fill date and pharmacy is its smallest claim id; rows missing a key are never copies."""
    # Hashing finds the few rows in a group; only they need the (slow) string minimum.
    grouped = frame.duplicated(DUPLICATE_KEY, keep=False) & frame[DUPLICATE_KEY].notna().all(axis=1)
    original = pd.Series(None, index=frame.index, dtype=object)
    in_group = frame.loc[grouped]
    original.loc[grouped] = in_group.groupby(DUPLICATE_KEY)["claim_id"].transform("min")
    return original.notna() & (frame["claim_id"] != original), original


def dispensed(frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """(mask, whole days supply) of the fills that put supply in a member's hands: dated, for a
    known member id, with a positive days supply, and not a duplicate copy (a billing duplicate
    is RULE-RX-009's finding, not a second dispensing to count)."""
    supply = np.ceil(numeric(frame, "days_supply").to_numpy())
    copy, _ = duplicate_copies(frame)
    known = frame["member_id"].notna() & frame["fill_date"].notna() & ~copy
    return known.to_numpy() & (supply > 0), supply


def dispensings(frame: pd.DataFrame) -> pd.DataFrame:
    """The ``dispensed`` rows of ``frame``, ``days_supply`` in whole days (as a float). A copy
    has the same NDC as its original, so a frame cut to some drugs keeps copies with originals:
    cut first, the cheaper."""
    mask, supply = dispensed(frame)
    return frame.loc[mask].assign(days_supply=supply[mask])


@dataclass(frozen=True)
class Timeline:
    """Supply levels per member over time. The members' event days (fill dates and supply ends)
    are sorted by member and day; each opens a segment lasting until the member's next event day,
    at a constant level per weight. Interval ``i`` covers the segments ``first[i]:stop[i]``."""

    length: np.ndarray  # days per segment (0 for a member's last event)
    levels: dict[str, np.ndarray]  # summed weights of the intervals active in each segment
    segment_member: np.ndarray
    first: np.ndarray
    stop: np.ndarray
    interval_member: np.ndarray

    def range_sum(self, values: np.ndarray) -> np.ndarray:
        """Per interval, the sum of a per-segment value over the segments it covers."""
        total = np.concatenate([[0.0], np.cumsum(values, dtype=np.float64)])
        return total[self.stop] - total[self.first]

    def range_max(self, values: np.ndarray) -> np.ndarray:
        """Per interval, the largest per-segment value over the segments it covers. reduceat over
        interleaved (first, stop) pairs reduces each [first, stop) slice at the even positions;
        every interval covers at least one segment and its stop is an event, so a valid index."""
        bounds = np.column_stack([self.first, self.stop]).ravel()
        return np.maximum.reduceat(values, bounds)[::2]

    def member_total(self, values: np.ndarray) -> np.ndarray:
        """Per interval, the sum of a per-segment value over all its member's segments."""
        totals = np.bincount(self.segment_member, weights=values)
        return totals[self.interval_member]


def supply_timeline(fills: pd.DataFrame, weights: Mapping[str, pd.Series]) -> Timeline:
    """The timeline of ``fills`` (rows of ``dispensings``): each fill is active from its fill day
    for ``days_supply`` days, adding its weights to the level of every weight name."""
    member, _ = pd.factorize(fills["member_id"])
    start = day_numbers(fills["fill_date"])
    end = start + fills["days_supply"].to_numpy(dtype=np.int64)
    # One sortable integer per (member, day): starts first, then ends, in one array.
    origin = start.min()
    width = end.max() - origin + 1
    keys = np.concatenate([member * width + (start - origin), member * width + (end - origin)])
    points, inverse = np.unique(keys, return_inverse=True)
    segment_member = points // width
    day = points % width
    length = np.zeros(len(points), dtype=np.float64)
    same_member = segment_member[1:] == segment_member[:-1]
    length[:-1] = np.where(same_member, np.diff(day), 0)
    levels = {}
    for name, weight in weights.items():
        values = weight.to_numpy(dtype=np.float64)
        delta = np.bincount(inverse, weights=np.concatenate([values, -values]))
        running = pd.Series(delta).groupby(segment_member, sort=False).cumsum().to_numpy()
        levels[name] = np.round(running, LEVEL_DECIMALS)
    n = len(fills)
    return Timeline(length, levels, segment_member, inverse[:n], inverse[n:], member)
