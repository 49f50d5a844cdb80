"""``POST /api/agents/chat/stream``: Server-Sent Events over a real socket."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.agents.conftest import Api, agent_settings
from tests.agents.fake_llm import MODEL, Call, FakeLLM, Say
from tests.agents.harness import FOREIGN_CASE

pytestmark = pytest.mark.postgres


def tokens(events: list[dict[str, Any]]) -> list[str]:
    return [e["token"] for e in events if e["type"] == "token"]


def test_tokens_arrive_in_order_then_the_final_event(prompt_api: Api, prompt_llm: FakeLLM) -> None:
    pieces = ["The ", "riskiest ", "case ", "in this workspace ", "is ", "CASE-000001", ", by "]
    pieces += ["far.", " It ", "leads ", "on ", "score."]
    prompt_llm.script(Say(['{"action": "answer", "answer": "', *pieces, '"}']))
    events = prompt_api.stream("Which case is the riskiest, and by how much?")
    assert "".join(tokens(events)) == "".join(pieces)
    # The answer's first characters are held until they can be told from junk; then each
    # piece streams as it comes.
    assert tokens(events)[-4:] == [" It ", "leads ", "on ", "score."]
    assert all(e["done"] is False for e in events[:-1])
    final = events[-1]
    assert final["type"] == "final" and final["done"] is True
    assert final["response"] == (
        "The riskiest case in this workspace is [CASE-000001](/cases/CASE-000001), by far. "
        "It leads on score."
    )
    assert (final["confidence"], final["model_used"]) == ("low", MODEL)
    assert final["sources_cited"] == [{"type": "case", "id": "CASE-000001"}]


def test_tool_calls_and_results_are_events_of_their_own(api: Api, llm: FakeLLM) -> None:
    llm.script(Call([("query_cases", {"risk_level": "critical"})]), Say(["One: CASE-000001."]))
    events = api.stream("Which cases are critical and what do they have in common?")
    assert [e["type"] for e in events] == ["tool_call", "tool_result", "token", "final"]
    call, result = events[0], events[1]
    assert (call["tool"], call["arguments"]) == ("query_cases", {"risk_level": "critical"})
    assert result["ok"] is True
    assert [c["case_id"] for c in result["result"]["cases"]] == ["CASE-000001"]
    assert events[-1]["confidence"] == "medium"
    assert events[-1]["tool_calls"] == [
        {"name": "query_cases", "arguments": {"risk_level": "critical"}, "ok": True}
    ]


def test_a_foreign_id_never_reaches_the_client_even_mid_stream(api: Api, llm: FakeLLM) -> None:
    llm.script(Say(["Compare with ", "CA", "SE-00", "0004", " and ", "CASE-000001", "."]))
    events = api.stream("Compare the top case with the others, briefly.")
    assert all("000004" not in json.dumps(e) for e in events[:-1])
    assert "".join(tokens(events)) == "Compare with [removed] and CASE-000001."
    assert events[-1]["removed_ids"] == [FOREIGN_CASE]


def test_the_prompt_format_streams_only_the_answer_text(
    prompt_api: Api, prompt_llm: FakeLLM
) -> None:
    prompt_llm.script(
        Say(
            [
                '{"action": "answer", ',
                '"answer": "Two ',
                "open cases\\n",
                'remain, both high risk and both unassigned",',
                ' "note": "not this"}',
            ]
        )
    )
    events = prompt_api.stream("How many cases remain open, roughly speaking?")
    assert "".join(tokens(events)) == "Two open cases\nremain, both high risk and both unassigned"
    assert events[-1]["response"] == "Two open cases\nremain, both high risk and both unassigned"


def test_the_fast_path_streams_one_answer(api: Api, llm: FakeLLM) -> None:
    events = api.stream("top critical cases")
    assert [e["type"] for e in events] == ["token", "final"]
    assert events[-1]["confidence"] == "high"
    assert llm.records == []


def test_llm_down_streams_a_low_confidence_answer(api_for: Any, llm: FakeLLM) -> None:
    api = api_for(agent_settings(llm.url, llm_model="not-installed:1b"))
    events = api.stream("Explain the rule hits from yesterday, please.")
    assert [e["type"] for e in events] == ["token", "final"]
    assert (events[-1]["confidence"], events[-1]["llm_error"]) == ("low", "model_not_found")


def test_a_client_that_disconnects_stops_the_llm_and_nothing_is_stored(
    prompt_api: Api, prompt_llm: FakeLLM
) -> None:
    session = prompt_api.new_session()
    prompt_llm.script(Say(['{"action": "answer", "answer": "', *["word "] * 500], delay_s=0.02))
    seen = 0
    with prompt_api.http.stream(
        "POST",
        "/api/agents/chat/stream",
        headers=prompt_api.headers("alice"),
        params={"workspace": "acme"},
        json={"message": "Write me a very long essay about claims.", "session_id": session},
    ) as response:
        for line in response.iter_lines():
            if line.startswith("data:") and json.loads(line[5:])["type"] == "token":
                seen += 1
                if seen == 3:
                    break
    assert prompt_llm.disconnected.wait(10), "the LLM call went on after the client left"
    assert not prompt_llm.records[0].finished
    stored = prompt_api.request("GET", f"/api/agents/sessions/{session}").json()
    assert stored["messages"] == []


def test_a_streamed_session_turn_is_stored(api: Api, llm: FakeLLM) -> None:
    session = api.new_session()
    llm.script(Say(["Stored ", "answer."]))
    events = api.stream("Please remember this question.", session_id=session)
    assert events[-1]["session_id"] == session
    stored = api.request("GET", f"/api/agents/sessions/{session}").json()
    assert [m["content"] for m in stored["messages"]] == [
        "Please remember this question.",
        "Stored answer.",
    ]


def test_stream_errors_before_the_stream_are_plain_http_errors(api: Api) -> None:
    response = api.request(
        "POST",
        "/api/agents/chat/stream",
        json={"message": "hi", "session_id": "00000000-0000-4000-8000-000000000000"},
    )
    assert (response.status_code, response.json()["detail"]) == (404, "session not found")
    assert api.request("POST", "/api/agents/chat/stream", json={"message": ""}).status_code == 422
