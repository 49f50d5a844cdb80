"""What the rule routes answer: each rule with its parameters in effect and its hits."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from fwa_api.kit.pagination import Page


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


class RuleCatalogue(BaseModel):
    parameters_run_id: str | None
    rules: list[RuleOut]


class RulePage(Page[RuleOut]):
    parameters_run_id: str | None
