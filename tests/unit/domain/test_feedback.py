"""The feedback arithmetic: Wilson score intervals against published values, and the proposed
weight's prior, floor of verdicts and clamp."""

from __future__ import annotations

import pytest

from fwa_pipeline.domain.feedback import (
    MIN_VERDICTS,
    Verdicts,
    proposed_weight,
    wilson_interval,
)


@pytest.mark.parametrize(
    ("successes", "trials", "low", "high"),
    [
        (8, 10, 0.4902, 0.9433),
        (5, 10, 0.2366, 0.7634),
        (0, 10, 0.0, 0.2775),  # not empty at 0, unlike the normal approximation
        (10, 10, 0.7225, 1.0),
        (81, 263, 0.2553, 0.3662),
        (1, 1, 0.2065, 1.0),
    ],
)
def test_wilson_interval_matches_known_values(
    successes: int, trials: int, low: float, high: float
) -> None:
    interval = wilson_interval(successes, trials)
    assert interval == (pytest.approx(low, abs=1e-4), pytest.approx(high, abs=1e-4))


def test_wilson_interval_of_nothing_is_none_and_bad_counts_are_refused() -> None:
    assert wilson_interval(0, 0) is None
    for successes, trials in ((3, 2), (-1, 2)):
        with pytest.raises(ValueError, match="between 0 and trials"):
            wilson_interval(successes, trials)


def test_precision_leaves_out_inconclusive_verdicts() -> None:
    assert Verdicts(confirmed=3, no_issue=1, inconclusive=6).precision == 0.75
    assert Verdicts(inconclusive=4).precision is None


def test_proposed_weight_scales_by_the_lower_bound_from_enough_verdicts() -> None:
    # 8 of 10 confirmed: the lower bound 0.4902 is just under the 0.5 prior.
    assert proposed_weight(Verdicts(confirmed=8, no_issue=2), 8.0, 10.0) == 7.84
    # Inconclusive cases do not count towards the minimum.
    too_few = Verdicts(confirmed=MIN_VERDICTS - 1, inconclusive=50)
    assert proposed_weight(too_few, 8.0, 10.0) is None
    # All confirmed would raise it past the cap: clamped to the cap.
    assert proposed_weight(Verdicts(confirmed=40), 8.0, 9.0) == 9.0
    # None confirmed: the weight falls to 0.
    assert proposed_weight(Verdicts(no_issue=12), 8.0, 9.0) == 0.0
