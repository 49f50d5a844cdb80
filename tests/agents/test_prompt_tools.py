"""The prompt-based tool format: lenient JSON parsing, decisions, and the streamed answer."""

from __future__ import annotations

import json

import pytest

from fwa_api.agents.prompt_tools import (
    AnswerDecision,
    AnswerStreamer,
    ToolDecision,
    decision_schema,
    parse_decision,
    parse_json_object,
)


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


def test_the_last_step_schema_allows_only_an_answer() -> None:
    schema = decision_schema([])
    assert schema["properties"]["action"]["enum"] == ["answer"]
    assert schema["required"] == ["action", "answer"]
    assert decision_schema(["query_cases"])["properties"]["tool"]["enum"] == ["query_cases"]


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


def test_answer_streamer_stops_at_the_closing_quote() -> None:
    assert _stream(['{"answer": "done", "extra": "not this"}']) == "done"
