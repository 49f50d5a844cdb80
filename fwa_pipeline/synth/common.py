"""Shared pieces of the generator: the fixed calendar, seeded generators and the vectorised
helpers that keep clean data "tight but not degenerate" for the peer-comparison rules.

Clean per-provider and per-pharmacy statistics are driven by bounded, evenly spread factors rather
than by sampling noise: a uniform spread has robust z of at most about 1.35 at its edges, so no
clean entity reaches the rules' z >= 3.5, while the median absolute deviation stays well above 0.
"""

from __future__ import annotations

import datetime as dt
import zlib

import numpy as np

# The data's "today". Fixed so that the same (n_claims, seed) gives the same bytes on any day.
ANCHOR_DATE = dt.date(2026, 6, 30)
WINDOW_DAYS = 730
EPOCH = dt.date(1970, 1, 1)
ANCHOR = (ANCHOR_DATE - EPOCH).days  # days since 1970-01-01, the integer date used internally
WINDOW_START = ANCHOR - WINDOW_DAYS + 1

# Weyl sequence step: consecutive multiples of the golden ratio spread evenly over [0, 1).
GOLDEN = (np.sqrt(5.0) - 1.0) / 2.0


def rng_for(seed: int, component: str) -> np.random.Generator:
    """An independent, stable generator per component, so that changing one module's draws
    does not reshuffle every other module's output."""
    entropy = [seed & 0xFFFF_FFFF_FFFF_FFFF, zlib.crc32(component.encode("ascii"))]
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence(entropy)))


def business_days(start: int, end: int) -> np.ndarray:
    """Monday-Friday day numbers in [start, end]; 1970-01-01 was a Thursday."""
    days = np.arange(start, end + 1, dtype=np.int64)
    return days[(days + 3) % 7 < 5]


def ranks_within(groups: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A random rank 0..size-1 for every row within its group."""
    n = len(groups)
    order = np.lexsort((rng.random(n), groups))
    sorted_groups = groups[order]
    starts = np.flatnonzero(np.r_[True, sorted_groups[1:] != sorted_groups[:-1]])
    run_start = np.repeat(starts, np.diff(np.r_[starts, n]))
    ranks = np.empty(n, dtype=np.int64)
    ranks[order] = np.arange(n) - run_start
    return ranks


def group_sizes(groups: np.ndarray) -> np.ndarray:
    """The size of each row's group."""
    _, inverse, counts = np.unique(groups, return_inverse=True, return_counts=True)
    return counts[inverse]


def stratified(groups: np.ndarray, low: float, high: float, rng: np.random.Generator) -> np.ndarray:
    """Values evenly spread over [low, high] within each group, in random order: every group,
    however small, gets the full spread (so its MAD is never accidentally tiny)."""
    ranks = ranks_within(groups, rng)
    return low + (high - low) * (ranks + 0.5) / group_sizes(groups)


def weyl_take(ranks: np.ndarray, fraction: np.ndarray, phase: np.ndarray) -> np.ndarray:
    """Select rows so that each group of ranks 0..n-1 gets floor or ceil of n * fraction picks,
    evenly spread over the ranks (a low-discrepancy Bernoulli)."""
    return np.floor((ranks + 1) * fraction + phase) - np.floor(ranks * fraction + phase) >= 1


def weyl_positions(n: int, rng: np.random.Generator) -> np.ndarray:
    """n evenly spread points in [0, 1) (golden-ratio sequence with a random start)."""
    return (np.arange(n) * GOLDEN + rng.random()) % 1.0


def cents(amounts: np.ndarray) -> np.ndarray:
    """Round money to whole cents (money is kept as int64 cents until it is written)."""
    return np.rint(np.asarray(amounts, dtype=np.float64) * 100.0).astype(np.int64)


def age_on(dob: np.ndarray, day: np.ndarray) -> np.ndarray:
    """Whole years of age on ``day`` (both integer day numbers), by calendar birthdays."""
    birth = dob.astype("datetime64[D]")
    on = day.astype("datetime64[D]")
    by = birth.astype("datetime64[Y]").astype(np.int64)
    oy = on.astype("datetime64[Y]").astype(np.int64)
    # Day of year compared as (month, day) so leap years do not shift birthdays.
    bmd = _month_day(birth)
    omd = _month_day(on)
    return oy - by - (omd < bmd)


def near_birthday(dob: np.ndarray, day: np.ndarray, margin: int) -> np.ndarray:
    """True within ``margin`` days of a birthday: there, differently computed ages (calendar,
    days / 365.25, days / 365) may disagree, so age-limited codes are kept away from it."""
    birth = dob.astype("datetime64[D]")
    on = day.astype("datetime64[D]")
    years = on.astype("datetime64[Y]")
    this_year = _birthday_in(birth, years)
    distances = [
        np.abs((on - _birthday_in(birth, years + offset)).astype(np.int64)) for offset in (-1, 1)
    ]
    distance = np.minimum(np.abs((on - this_year).astype(np.int64)), np.minimum(*distances))
    return distance <= margin


def _month_day(dates: np.ndarray) -> np.ndarray:
    months = dates.astype("datetime64[M]")
    month = months.astype(np.int64) % 12
    return month * 100 + (dates - months.astype("datetime64[D]")).astype(np.int64)


def _birthday_in(birth: np.ndarray, years: np.ndarray) -> np.ndarray:
    """The birthday in each given year (29 February becomes 28 February in common years)."""
    month_offset = birth.astype("datetime64[M]") - birth.astype("datetime64[Y]").astype(
        "datetime64[M]"
    )
    month_start = years.astype("datetime64[M]") + month_offset
    day = (birth - birth.astype("datetime64[M]").astype("datetime64[D]")).astype(np.int64)
    month_len = (month_start + 1).astype("datetime64[D]") - month_start.astype("datetime64[D]")
    day = np.minimum(day, month_len.astype(np.int64) - 1)
    return month_start.astype("datetime64[D]") + day
