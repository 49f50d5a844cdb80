"""Id checks, citation links and confidence: pure functions over a fixed set of known ids."""

from __future__ import annotations

import pytest

from fwa_api.agents.citations import linkify
from fwa_api.agents.confidence import Confidence, assess
from fwa_api.agents.fastpath import classify
from fwa_api.agents.guardrails import REMOVED, IdChecker, StreamGuard, find_ids

KNOWN = {"CASE-000001", "RULE-MED-001"}

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class Lookups:
    def __init__(self) -> None:
        self.asked: list[tuple[set[str], set[str]]] = []

    async def __call__(self, cases: set[str], rules: set[str]) -> set[str]:
        self.asked.append((cases, rules))
        return (cases | rules) & KNOWN


def test_find_ids_is_case_insensitive_and_canonical() -> None:
    assert find_ids("see case-000001, RULE-med-001 and x-CASE-000009y") == (
        {"CASE-000001", "CASE-000009"},
        {"RULE-MED-001"},
    )


async def test_unknown_ids_are_removed_and_reported_once_each() -> None:
    lookups = Lookups()
    checker = IdChecker(lookups)
    text = await checker.clean(
        "CASE-000001 fine; CASE-000004 foreign; case-000004 again; RULE-MED-099"
    )
    assert text == f"CASE-000001 fine; {REMOVED} foreign; {REMOVED} again; {REMOVED}"
    assert checker.removed == ["CASE-000004", "RULE-MED-099"]
    await checker.clean("CASE-000001 and CASE-000004")
    assert len(lookups.asked) == 1  # each id is looked up once per answer


async def test_short_ids_are_checked_in_their_canonical_form() -> None:
    lookups = Lookups()
    checker = IdChecker(lookups)
    assert await checker.clean("see case-1 and CASE-0001") == "see CASE-000001 and CASE-000001"
    assert lookups.asked == [({"CASE-000001"}, set())]
    assert checker.removed == []


async def test_the_examples_case_id_is_refused_without_asking() -> None:
    lookups = Lookups()
    checker = IdChecker(lookups)
    assert await checker.clean("CASE-000000 or case-0") == f"{REMOVED} or {REMOVED}"
    assert lookups.asked == [] and checker.removed == ["CASE-000000"]


async def test_an_id_hidden_in_a_link_target_is_checked() -> None:
    checker = IdChecker(Lookups())
    text = await checker.clean(
        "[see this](/cases/CASE-000004) and [CASE-000001](/cases/CASE-000001)"
    )
    assert text == f"see this ({REMOVED}) and CASE-000001"
    assert checker.removed == ["CASE-000004"]


async def test_linkify_links_cleaned_ids() -> None:
    checker = IdChecker(Lookups())
    text = linkify(await checker.clean("CASE-000001 fired rule-med-001; CASE-000777 did not"))
    assert text == (
        "[CASE-000001](/cases/CASE-000001) fired [RULE-MED-001](/rules/RULE-MED-001); "
        f"{REMOVED} did not"
    )


async def test_stream_guard_never_lets_a_foreign_id_out_whatever_the_chunking() -> None:
    message = "Top: CASE-000001 then CASE-000004, see RULE-MED-001 and [x](/cases/CASE-000004)."
    for size in (1, 2, 3, 5, 7, 11):
        guard = StreamGuard(IdChecker(Lookups()))
        out = []
        for start in range(0, len(message), size):
            out.append(await guard.feed(message[start : start + size]))
        out.append(await guard.flush())
        for piece in out:
            assert "000004" not in piece
        assert "".join(out) == (
            f"Top: CASE-000001 then {REMOVED}, see RULE-MED-001 and x ({REMOVED})."
        )


async def test_stream_guard_passes_plain_text_straight_through() -> None:
    guard = StreamGuard(IdChecker(Lookups()))
    assert await guard.feed("The answer is ") == "The answer is "
    assert await guard.feed("42 claims.") == "42 claims."


@pytest.mark.parametrize(
    ("answered_by", "had_data", "removed", "expected"),
    [
        ("data", True, False, Confidence.high),
        ("data", False, False, Confidence.low),
        ("llm", True, False, Confidence.medium),
        ("llm", True, True, Confidence.low),
        ("llm", False, False, Confidence.low),
        ("fallback", True, False, Confidence.low),
    ],
)
def test_confidence(answered_by: str, had_data: bool, removed: bool, expected: Confidence) -> None:
    assert assess(answered_by, had_data=had_data, removed_ids=removed) == expected  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("message", "kind", "arguments"),
    [
        ("pipeline stats", "stats", {}),
        ("Show me the workspace overview?", "stats", {}),
        ("how many claims are there", "stats", {}),
        ("top 5 critical cases", "cases", {"limit": 5, "risk_level": "critical"}),
        ("show the top risk cases", "cases", {"limit": 10}),
        (
            "what are the open high risk cases",
            "cases",
            {"limit": 10, "risk_level": "high", "status": "open"},
        ),
        ("CASE-000123", "case", {"case_id": "CASE-000123"}),
        ("tell me about case-000123", "case", {"case_id": "CASE-000123"}),
        ("RULE-MED-001", "rule", {"limit": 50}),
        ("riskiest providers", "providers", {}),
    ],
)
def test_fast_path_patterns(message: str, kind: str, arguments: dict[str, object]) -> None:
    intent = classify(message)
    assert intent is not None
    assert (intent.kind, intent.arguments) == (kind, arguments)


@pytest.mark.parametrize(
    "message",
    [
        "why was CASE-000123 flagged and what should I do next?",
        "cases",
        "summarise the trend in upcoding across specialties this quarter",
        "stats " * 40,
    ],
)
def test_other_questions_go_to_the_model(message: str) -> None:
    assert classify(message) is None
