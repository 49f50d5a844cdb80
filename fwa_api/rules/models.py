"""What the rule routes answer: each rule with its parameters in effect, its hits, and what
investigators' verdicts on the cases citing it say."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from fwa_api.kit.pagination import Page
from fwa_pipeline.domain.feedback import Verdicts, summary


class RuleFeedback(BaseModel):
    """The workspace's closed cases citing the rule, by disposition (``fwa_pipeline.domain.
    feedback`` has the formulas)."""

    closed_cases: int
    confirmed: int = Field(description="confirmed_fraud and confirmed_waste_abuse.")
    no_issue: int
    inconclusive: int = Field(description="insufficient_evidence.")
    precision: float | None = Field(
        description="confirmed / (confirmed + no_issue); null before either."
    )
    precision_interval: tuple[float, float] | None = Field(
        description="The precision's 95% Wilson score interval, [low, high]."
    )
    proposed_weight: float | None = Field(
        description="weight x (interval low / 0.5), within [0, cap], from 10 confirmed or "
        "no-issue cases on; a proposal, never applied by itself."
    )

    @classmethod
    def of(cls, verdicts: Verdicts, weight: float, cap: float) -> RuleFeedback:
        return cls(**summary(verdicts, weight, cap))


class RuleOut(BaseModel):
    rule_id: str
    name: str
    family: str
    version: str
    enabled: bool
    weight: float
    cap: float
    lookback_days: int
    thresholds: dict[str, Any]
    hits: int
    claims_hit: int
    feedback: RuleFeedback


class RuleCatalogue(BaseModel):
    parameters_run_id: str | None
    rules: list[RuleOut]


class RulePage(Page[RuleOut]):
    parameters_run_id: str | None
