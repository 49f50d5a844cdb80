"""How far to trust an answer, shown as a dot next to it: green, yellow, orange.

* ``high``: rendered from the workspace's data without the LLM (the fast path).
* ``medium``: written by the LLM with data from this workspace in front of it.
* ``low``: no data behind it (the LLM on its own, an id that was not found), a fallback because
  the LLM could not answer, or an answer in which the guardrails had to remove ids: a model that
  invents one id may have invented more.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Literal

AnsweredBy = Literal["data", "llm", "fallback"]


class Confidence(StrEnum):
    high = "high"
    medium = "medium"
    low = "low"


def assess(answered_by: AnsweredBy, *, had_data: bool, removed_ids: bool = False) -> Confidence:
    if answered_by == "fallback" or not had_data:
        return Confidence.low
    if answered_by == "data":
        return Confidence.high
    return Confidence.low if removed_ids else Confidence.medium
