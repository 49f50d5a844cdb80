"""Peer aggregates merge exactly: integer sums, squares of any stored amount, distinct pairs."""

from __future__ import annotations

import pandas as pd

from fwa_pipeline.domain.rules.aggregates import (
    PeerAggregates,
    cents,
    from_square_digits,
    square_digits,
)


def test_cents_are_exact_and_missing_amounts_count_nothing() -> None:
    amounts = pd.Series([0.1, 0.2, float("nan"), -12.34])
    assert cents(amounts).tolist() == [10, 20, 0, -1234]


def test_square_digits_sum_to_the_exact_sum_of_squares_of_the_largest_amounts() -> None:
    largest = 99_999_999_999_999  # the store's largest amount in cents (14 digits, 2 decimals)
    values = pd.Series([largest, -largest, 1, 0, 65_536, 2**32 + 7])
    digits = square_digits(values).sum()
    assert from_square_digits(digits) == sum(v * v for v in values.tolist())


def test_merging_counts_a_member_once_per_subject_and_adds_new_subjects() -> None:
    def of(rows: list[tuple[str, str, int]]) -> PeerAggregates:
        frame = pd.DataFrame(rows, columns=["provider_id", "member_id", "lines"])
        totals = frame.groupby("provider_id")[["lines"]].sum()
        return PeerAggregates.of(totals, frame)

    before = of([("P1", "M1", 1), ("P1", "M2", 1)])
    delta = of([("P1", "M1", 2), ("P2", "M1", 1)])

    merged = before.merged(delta).finished()

    assert merged.to_dict("index") == {
        "P1": {"lines": 4, "members": 2},
        "P2": {"lines": 1, "members": 1},
    }
    assert merged.dtypes.tolist() == ["int64", "int64"]
