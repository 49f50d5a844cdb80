"""What investigators' verdicts say about a rule: its observed precision over the closed cases
citing it, with a Wilson score interval, and the weight that precision suggests.

A case cites the rules that hit its claims. Its disposition counts as ``confirmed``
(``confirmed_fraud``, ``confirmed_waste_abuse``), ``no_issue`` or ``inconclusive``
(``insufficient_evidence``); inconclusive cases say nothing about precision, so

    precision = confirmed / (confirmed + no_issue)

The proposed weight scales the rule's weight by how its precision compares with a prior of
even odds, using the interval's lower bound so that few verdicts propose little:

    proposed = clamp(weight x wilson_low / PRIOR_PRECISION, 0, cap)

and only from ``MIN_VERDICTS`` confirmed or no-issue cases on. It is clamped to the rule's cap
because a weight above the cap adds nothing to a full-severity hit (raising the cap is a
separate decision). It is data for an admin to review, never applied by itself.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

# Dispositions by what they say about the finding.
CONFIRMED = ("confirmed_fraud", "confirmed_waste_abuse")
NO_ISSUE = ("no_issue",)
INCONCLUSIVE = ("insufficient_evidence",)

Z_95 = 1.959963984540054  # the standard normal's 97.5th percentile: a two-sided 95% interval
PRIOR_PRECISION = 0.5
MIN_VERDICTS = 10


@dataclass(frozen=True, slots=True)
class Verdicts:
    """Closed cases citing one rule, by what their disposition says."""

    confirmed: int = 0
    no_issue: int = 0
    inconclusive: int = 0

    @property
    def decided(self) -> int:
        return self.confirmed + self.no_issue

    @property
    def precision(self) -> float | None:
        return self.confirmed / self.decided if self.decided else None


def wilson_interval(successes: int, trials: int, z: float = Z_95) -> tuple[float, float] | None:
    """The Wilson score interval of a proportion ``successes / trials`` (None for no trials):

        centre = (p + z^2 / 2n) / (1 + z^2 / n)
        half   = z / (1 + z^2 / n) x sqrt(p (1 - p) / n + z^2 / 4n^2)

    Unlike the normal approximation it stays within [0, 1] and is not empty at 0 or n."""
    if not 0 <= successes <= trials:
        raise ValueError("successes must be between 0 and trials")
    if trials == 0:
        return None
    n, p, z2 = trials, successes / trials, z * z
    denominator = 1 + z2 / n
    centre = (p + z2 / (2 * n)) / denominator
    half = z / denominator * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n))
    return max(0.0, centre - half), min(1.0, centre + half)


def proposed_weight(verdicts: Verdicts, weight: float, cap: float) -> float | None:
    """The weight the verdicts suggest (see the module's docstring), to two decimals; None
    below ``MIN_VERDICTS`` confirmed or no-issue cases."""
    interval = wilson_interval(verdicts.confirmed, verdicts.decided)
    if interval is None or verdicts.decided < MIN_VERDICTS:
        return None
    return round(min(max(weight * interval[0] / PRIOR_PRECISION, 0.0), cap), 2)


def summary(verdicts: Verdicts, weight: float, cap: float) -> dict[str, Any]:
    """What the verdicts say of a rule of ``weight`` and ``cap``: its closed cases by verdict,
    the precision and its interval (to four decimals) and the proposed weight, as the API and
    the pipeline's ``rule_feedback`` asset report them."""
    interval = wilson_interval(verdicts.confirmed, verdicts.decided)
    return {
        "closed_cases": verdicts.decided + verdicts.inconclusive,
        "confirmed": verdicts.confirmed,
        "no_issue": verdicts.no_issue,
        "inconclusive": verdicts.inconclusive,
        "precision": None if verdicts.precision is None else round(verdicts.precision, 4),
        "precision_interval": None
        if interval is None
        else (round(interval[0], 4), round(interval[1], 4)),
        "proposed_weight": proposed_weight(verdicts, weight, cap),
    }
