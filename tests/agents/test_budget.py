"""The prompt's token budget: estimates, tool results trimmed to their first rows, history cut
from its oldest end."""

from __future__ import annotations

from fwa_api.agents import budget
from fwa_api.agents.llm import Message


def test_a_result_that_fits_is_sent_as_it_is() -> None:
    data = {"count": 1, "cases": [{"case_id": "CASE-000001"}]}
    assert budget.shrink(data, 1000) is data


def test_a_large_result_keeps_its_first_rows_and_says_it_was_trimmed() -> None:
    rows = [{"case_id": f"CASE-{n:06d}", "summary": "x" * 40} for n in range(1, 51)]
    data = {"count": 50, "cases": rows, "explanation": "y" * 2000}
    out = budget.shrink(data, 1500)
    assert len(budget.dump(out)) <= 1500
    assert out["trimmed"] == budget.TRIMMED
    assert out["cases"] == rows[: len(out["cases"])] and out["cases"]
    assert out["count"] == 50  # the figures stay
    assert len(data["cases"]) == 50  # the original is untouched


def test_history_keeps_its_newest_exchanges_starting_with_a_question() -> None:
    history = []
    for n in range(5):
        history += [Message("user", f"q{n} " * 30), Message("assistant", f"a{n} " * 30)]
    kept = budget.fit_history(history, 150)
    assert kept == history[-len(kept) :] and kept
    assert kept[0].role == "user"
    assert budget.estimate_messages(kept) <= 150
    assert budget.fit_history(history, 10) == []
