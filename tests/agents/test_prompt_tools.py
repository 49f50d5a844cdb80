"""The prompt-based tool format: lenient JSON parsing, decisions, and the streamed answer."""

from __future__ import annotations

import json
import re

import pytest

from fwa_api.agents.prompt_tools import (
    EXAMPLE_ANSWER,
    AnswerDecision,
    AnswerStreamer,
    ToolDecision,
    decision_schema,
    follows_example,
    parse_decision,
    parse_json_object,
    tool_instructions,
    unusable,
)
from fwa_api.agents.tools import TOOLS


@pytest.mark.parametrize(
    "text",
    [
        '{"a": 1, "b": [1, 2]}',
        '```json\n{"a": 1, "b": [1, 2]}\n```',
        'Sure, here\'s the call: {"a": 1, "b": [1, 2]} hope that helps',
        '{"a": 1, "b": [1, 2,],}',  # trailing commas
        "{'a': 1, 'b': [1, 2]}",  # a Python literal
    ],
)
def test_parse_json_object_reads_what_small_models_write(text: str) -> None:
    assert parse_json_object(text) == {"a": 1, "b": [1, 2]}


@pytest.mark.parametrize(
    "text", ["", "no json here", "[1, 2]", "{broken", "{'a': __import__('os')}"]
)
def test_parse_json_object_gives_none_for_anything_else(text: str) -> None:
    assert parse_json_object(text) is None


def test_braces_inside_strings_do_not_end_the_object() -> None:
    text = 'prefix {"answer": "a } brace and a { brace", "n": 1} suffix'
    assert parse_json_object(text) == {"answer": "a } brace and a { brace", "n": 1}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            '{"action": "tool", "tool": "query_cases", "arguments": {"limit": 3}}',
            ToolDecision("query_cases", {"limit": 3}),
        ),
        (  # llama-style names, arguments as a JSON string
            '{"name": "query_case_detail", "parameters": "{\\"case_id\\": \\"CASE-000001\\"}"}',
            ToolDecision("query_case_detail", {"case_id": "CASE-000001"}),
        ),
        ('{"action": "answer", "answer": " Three cases. "}', AnswerDecision("Three cases.")),
        ('{"response": "From another key"}', AnswerDecision("From another key")),
        ("Plain prose, the format ignored.", AnswerDecision("Plain prose, the format ignored.")),
        ('{"unexpected": true}', AnswerDecision('{"unexpected": true}')),
    ],
)
def test_parse_decision(text: str, expected: object) -> None:
    assert parse_decision(text) == expected


def test_a_step_is_a_whole_tool_call_or_a_whole_answer() -> None:
    last = decision_schema([])
    assert last["properties"]["action"]["enum"] == ["answer"]
    assert last["required"] == ["action", "answer"]
    assert last["properties"]["answer"]["minLength"] == 1
    parameters = {"type": "object", "properties": {"limit": {"type": "integer"}}}
    call, answer = decision_schema([("query_cases", parameters)])["anyOf"]
    assert answer == last
    assert call["required"] == ["action", "tool", "arguments"]
    assert call["properties"]["tool"]["enum"] == ["query_cases"]
    assert call["properties"]["arguments"] == parameters
    # ``action`` first: a streamed answer is known to be one before its text arrives.
    assert [next(iter(alternative["properties"])) for alternative in (call, answer)] == [
        "action",
        "action",
    ]


def test_the_prompt_has_no_placeholder_and_a_real_example_call_per_tool() -> None:
    text = tool_instructions([(t.name, t.description, t.spec().parameters) for t in TOOLS.values()])
    assert not re.search(r"<[^<>]*>", text), "a placeholder a model can echo back"
    assert "..." not in text
    examples = re.findall(r"Example call: (\{.*\})", text)
    assert [json.loads(e)["tool"] for e in examples] == list(TOOLS)
    for example in map(json.loads, examples):
        TOOLS[example["tool"]].args.model_validate(example["arguments"], strict=True)
    assert "CASE-000000" in text and "CASE-000123" not in text
    assert unusable(json.loads(text.splitlines()[-1])["answer"]) == "example"


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("", "empty"),
        ("  \n ", "empty"),
        ("<your answer>", "placeholder"),
        ("Sure! <your answer here>", "placeholder"),
        ("[answer]", "placeholder"),
        ("...", "placeholder"),
        ('{"action": "answer", "arguments": {"text": "Three cases."}}', "json"),
        ('```json\n{"answer": "x"}\n```', "json"),
        ('["CASE-000001"]', "json"),
        ('I will call {"tool": "query_cases"} now', "json"),
        (f"{EXAMPLE_ANSWER}", "example"),
        ("Two open cases: [CASE-000001](/cases/CASE-000001) and CASE-000002.", None),
        ("**3** critical cases; the largest paid $12,345.00.", None),
    ],
)
def test_unusable_answers(text: str, why: str | None) -> None:
    assert unusable(text) == why


def test_the_start_of_a_streaming_answer_is_judged_without_its_end() -> None:
    assert unusable("", complete=False) is None  # nothing to judge yet
    assert unusable(EXAMPLE_ANSWER[:30], complete=False) == "example"
    assert unusable('{"action": "ans', complete=False) == "json"
    assert unusable("The riskiest case is", complete=False) is None


def _stream(pieces: list[str]) -> str:
    streamer = AnswerStreamer()
    return "".join(streamer.feed(piece) for piece in pieces)


def test_answer_streamer_decodes_the_answer_as_it_arrives() -> None:
    answer = 'Line one\nsays "hi" \\ tab\there é 😀 done'
    raw = json.dumps({"action": "answer", "answer": answer}, ensure_ascii=True)
    # One character at a time splits every escape, including the surrogate pair.
    assert _stream(list(raw)) == answer
    assert _stream([raw]) == answer
    assert _stream([raw[:17], raw[17:40], raw[40:]]) == answer


def test_answer_streamer_says_nothing_for_a_tool_call() -> None:
    raw = '{"action": "tool", "tool": "query_cases", "arguments": {"note": "answer"}}'
    assert _stream(list(raw)) == ""
    # A tool step that also carries an answer, top level or in its arguments, is still a tool
    # step: its text is not the answer.
    raw = (
        '{"action": "tool", "tool": "query_cases", "answer": "Let me look that up", '
        '"arguments": {"answer": "nested"}}'
    )
    assert _stream(list(raw)) == ""


def test_answer_streamer_waits_for_the_action() -> None:
    assert _stream(['{"answer": "said before its action", "action": "answer"}']) == ""


def test_answer_streamer_stops_at_the_closing_quote() -> None:
    assert _stream(['{"action": "answer", "answer": "done", "extra": "not this"}']) == "done"


def test_the_example_filled_with_other_ids_and_figures_is_held_while_it_streams() -> None:
    filled = (
        "[CASE-000001](/cases/CASE-000001) is the riskiest open case (score 95.2): RULE-MED-004 "
        "fired on 3 of its claims, $8,675.00 paid. Check the claims first."
    )
    # Every start of it past its first words (held back anyway), a link or a word cut in the
    # middle included ("RUL"), is held back ...
    assert all(unusable(filled[:n], complete=False) for n in range(20, len(filled) + 1))
    assert follows_example(filled)
    # ... while an answer of its own is let through once it parts from the example.
    own = "CASE-000001 is flagged because RULE-MED-004 fired on three of its claims."
    assert unusable(own, complete=False) is None and not follows_example(own)
