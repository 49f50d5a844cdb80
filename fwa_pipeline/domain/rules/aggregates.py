"""A peer rule's statistics as data that merges exactly: per subject sums of integers and the
distinct (subject, member) pairs behind its distinct-member count.

Aggregates of two sets of claims, merged (:meth:`PeerAggregates.merged`), are exactly those of
both sets at once, whatever their order or split: sums of integers do not round, and a member
adds to a subject's distinct count only through a pair not yet seen. So a run adds its new
claims' aggregates to the last run's instead of reading every processed claim again. Money is
summed in integer cents (the store keeps two decimals) for the same reason: float sums depend on
the order of the terms.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

MEMBER = "member_id"
# The distinct members of a subject, counted from its pairs.
MEMBERS = "members"


def cents(amounts: pd.Series) -> pd.Series:
    """Amounts (float, NaN where missing) as int64 cents, missing as 0: summable exactly."""
    values = amounts.to_numpy(dtype=np.float64, na_value=np.nan)
    return pd.Series(
        np.rint(np.nan_to_num(values, nan=0.0) * 100).astype(np.int64), index=amounts.index
    )


def square_digits(values: pd.Series) -> pd.DataFrame:
    """The squares of int64 ``values`` (cents) as five base-2**16 digits, each summable in int64
    over hundreds of millions of lines (a square of cents itself overflows int64 from about
    $30M): digit k is the coefficient of 2**(16 k) (see :func:`from_square_digits`)."""
    magnitude = np.abs(values.to_numpy(dtype=np.int64))
    a, b, d = magnitude >> 32, (magnitude >> 16) & 0xFFFF, magnitude & 0xFFFF
    digits = [d * d, 2 * b * d, b * b + 2 * a * d, 2 * a * b, a * a]
    return pd.DataFrame({f"squares_{k}": v for k, v in enumerate(digits)}, index=values.index)


def from_square_digits(row: pd.Series) -> int:
    """The exact sum of squares (a Python int) that the digit sums of ``square_digits`` add up
    to."""
    return sum(int(row[f"squares_{k}"]) << (16 * k) for k in range(5))


@dataclass(frozen=True)
class PeerAggregates:
    """``totals``: int64 sums indexed by subject (named after the subject column); ``pairs``:
    the distinct (subject, member) pairs of a rule counting distinct members, else None."""

    totals: pd.DataFrame
    pairs: pd.DataFrame | None = None

    @classmethod
    def of(cls, totals: pd.DataFrame, pairs: pd.DataFrame | None = None) -> PeerAggregates:
        """Aggregates in their one canonical form: totals sorted by subject, pairs distinct and
        sorted, so equal aggregates are equal frames."""
        totals = totals.astype("int64").sort_index()
        if pairs is not None:
            subject = str(totals.index.name)
            pairs = (
                pairs[[subject, MEMBER]]
                .dropna()
                .astype(str)
                .drop_duplicates()
                .sort_values([subject, MEMBER], ignore_index=True)
            )
        return cls(totals, pairs)

    def merged(self, other: PeerAggregates) -> PeerAggregates:
        """The aggregates of both sets of claims."""
        return PeerAggregates.total([self, other])

    @classmethod
    def total(cls, parts: Sequence[PeerAggregates]) -> PeerAggregates:
        """The aggregates of every part's claims (the parts of claims no two of them share),
        merged at once."""
        totals = pd.concat([p.totals for p in parts])
        summed = totals.groupby(level=0).sum() if len(totals) else totals
        pairs = None
        if all(p.pairs is not None for p in parts):
            pairs = pd.concat([p.pairs for p in parts], ignore_index=True)  # type: ignore[misc]
        return cls.of(summed, pairs)

    def finished(self) -> pd.DataFrame:
        """The totals, with each subject's distinct members when pairs are kept."""
        if self.pairs is None:
            return self.totals.copy()
        subject = str(self.totals.index.name)
        members = self.pairs.groupby(subject).size().reindex(self.totals.index, fill_value=0)
        return self.totals.assign(**{MEMBERS: members.astype("int64")})
