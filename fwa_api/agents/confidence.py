"""How far to trust an answer, shown as a dot next to it: green, yellow, orange.

* ``high``: rendered from the workspace's data without the LLM (the fast path, a confirmed run).
* ``medium``: written by the LLM with evidence in front of it (what a tool returned about this
  workspace's cases, claims, providers, rules or stats; not an action's acknowledgement, an
  error or an empty list) and every figure and id in it found in that evidence.
* ``low``: no evidence behind it (the LLM on its own, an id that was not found), a fallback
  because the LLM could not answer, an answer in which the guardrails had to remove ids, or one
  with an amount, count, percentage or id the evidence does not hold: a model that invents one
  figure may have invented more.

``unsupported`` is the figure check: pure, data in, the answer's unsupported figures out.
Figures match the data after formatting and rounding: ``$18,812.40``, ``18812.4``, ``$18.8k``
and ``about $19,000`` all stand for 18,812.40; a count may also be the length of a list, an
amount the sum of a field over a list's rows, and a percentage a share of one count in another
(3 of 4 hits: 75%).
"""

from __future__ import annotations

import json
import math
import re
from bisect import bisect_left
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Literal

from fwa_api.agents.guardrails import find_ids

AnsweredBy = Literal["data", "llm", "fallback"]


class Confidence(StrEnum):
    high = "high"
    medium = "medium"
    low = "low"


def assess(
    answered_by: AnsweredBy,
    *,
    had_data: bool,
    removed_ids: bool = False,
    unsupported: Sequence[str] = (),
) -> Confidence:
    if answered_by == "fallback" or not had_data:
        return Confidence.low
    if answered_by == "data":
        return Confidence.high
    return Confidence.low if removed_ids or unsupported else Confidence.medium


# --------------------------------------------------------------------------- the figure check

_SCALE = {
    "k": 1e3,
    "thousand": 1e3,
    "m": 1e6,
    "mn": 1e6,
    "mm": 1e6,
    "million": 1e6,
    "b": 1e9,
    "bn": 1e9,
    "billion": 1e9,
}
# What is not a figure: ids (CASE-000001, RULE-MED-004, ACME-CLM-0), dates and times.
_NOT_FIGURES = re.compile(
    r"\b[A-Za-z][\w]*[-_][\w-]*\d[\w-]*|\b\d{4}-\d{2}-\d{2}(?:[T ][\d:.]+)?|\b\d{1,2}:\d{2}\b"
)
_FIGURE = re.compile(
    r"(?P<currency>\$|usd\s?|us\$)?\s?"
    r"(?P<number>\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?)"
    r"(?:\s?(?P<scale>k|mm|mn|m|bn|b|thousand|million|billion)\b)?"
    r"(?P<rest>\s?(?:%|percent\b|per cent\b)|\s(?:dollars|usd)\b"
    r"|\s+(?:[a-z-]+\s+){0,2}?(?:claims?|cases?|hits?|rules?|providers?|members?|runs?|"
    r"visits?|services?|prescriptions?|batches?|patients?|lines?|units?)\b)?",
    re.IGNORECASE,
)
_DATA_NUMBER = re.compile(r"\d+(?:,\d{3})*(?:\.\d+)?")


@dataclass(frozen=True, slots=True)
class Figure:
    text: str
    value: float
    tolerance: float  # half the unit it was written to: $18.8k is 18,800 +- 50
    percent: bool


def figures(answer: str) -> list[Figure]:
    """The amounts, percentages and counts an answer states, and any number written with
    thousands separators or decimals. Plain small numbers (a list's "1.", "top 5") are not
    figures."""
    found = []
    for match in _FIGURE.finditer(_NOT_FIGURES.sub(" ", answer)):
        number, scale = match["number"], (match["scale"] or "").lower()
        rest = (match["rest"] or "").strip().lower()
        percent = rest.startswith(("%", "percent", "per cent"))
        grouped = "," in number or "." in number
        if not (match["currency"] or scale or rest or grouped):
            continue
        digits = number.replace(",", "")
        whole, _, decimals = digits.partition(".")
        unit = 10.0 ** -len(decimals) if decimals else 10.0 ** (len(whole) - len(whole.rstrip("0")))
        if whole.strip("0") == "":  # 0, 0.0: "no claims" needs no evidence
            continue
        multiplier = _SCALE.get(scale, 1.0)
        # An amount is quoted as written ("$2.5 million"), a count or percentage with its word.
        end = match.end("scale") if scale else match.end("number")
        amount = bool(match["currency"] or scale) and not percent
        text = match.string[match.start() : end] if amount else match.group(0)
        found.append(
            Figure(text.strip(), float(digits) * multiplier, unit * multiplier / 2, percent)
        )
    return found


def data_numbers(evidence: Iterable[Any]) -> list[float]:
    """Every number the evidence holds: values, numbers inside text, list lengths, and the sum
    of each numeric field over a list's rows."""
    return sorted(set(_numbers(list(evidence))))


def _numbers(node: Any) -> Iterator[float]:
    if isinstance(node, bool) or node is None:
        return
    if isinstance(node, int | float):
        if math.isfinite(node):
            yield float(node)
    elif isinstance(node, str):
        for number in _DATA_NUMBER.findall(node):
            yield float(number.replace(",", ""))
    elif isinstance(node, dict):
        for value in node.values():
            yield from _numbers(value)
    elif isinstance(node, list | tuple):
        yield float(len(node))
        totals: dict[str, float] = {}
        for item in node:
            yield from _numbers(item)
            if isinstance(item, dict):
                for key, value in item.items():
                    if isinstance(value, int | float) and not isinstance(value, bool):
                        totals[key] = totals.get(key, 0.0) + value
        yield from totals.values()


def _near(numbers: Sequence[float], value: float, tolerance: float) -> bool:
    """Whether sorted ``numbers`` hold ``value``, give or take ``tolerance``."""
    slack = tolerance + 1e-9 * max(1.0, abs(value))  # binary floats: 0.1 + 0.2 is written 0.3
    at = bisect_left(numbers, value - slack)
    return at < len(numbers) and numbers[at] <= value + slack


def _supported(figure: Figure, numbers: Sequence[float]) -> bool:
    if _near(numbers, figure.value, figure.tolerance):
        return True
    if not figure.percent:
        return False
    share, tolerance = figure.value / 100, figure.tolerance / 100
    if share == 1 or _near(numbers, share, tolerance):  # "100%" is "all"; 0.45 is 45%
        return True
    # A share of one count in another (3 of 4 hits); counts only, or a share of any two of
    # many amounts would match nearly every percentage.
    counts = [number for number in numbers if number.is_integer()]
    return any(_near(counts, share * whole, tolerance * whole) for whole in counts if whole > 0)


def unsupported(answer: str, evidence: Iterable[Any]) -> list[str]:
    """The figures and case or rule ids in ``answer`` that ``evidence`` (the tools' results,
    as JSON-like data) does not hold."""
    gathered = list(evidence)
    numbers = data_numbers(gathered)
    missing = [figure.text for figure in figures(answer) if not _supported(figure, numbers)]
    cases, rules = find_ids(answer)
    if cases or rules:
        held = find_ids(json.dumps(gathered, default=str))
        missing += sorted(cases - held[0]) + sorted(rules - held[1])
    return missing
