"""A weak or misbehaving model, scripted on the tests' Ollama-compatible server: template text
echoed back, raw JSON for an answer, the same tool call again and again, output without end, a
turn that runs out of time, a junk answer in the session's history, tool-step text while
streaming. Each turn ends bounded, with the data gathered so far under an honest note, at low
confidence, and marked degraded so that later turns do not replay it."""

from __future__ import annotations

import json
from typing import Any

import pytest
from sqlalchemy import Engine

from fwa_api.agents import budget
from fwa_api.agents.llm import Message
from fwa_pipeline.store.db import session_scope
from fwa_pipeline.store.models import ChatMessage, InvestigationCase
from tests.agents.conftest import Api, World, agent_settings
from tests.agents.fake_llm import MODEL, Call, Fail, FakeLLM, Runaway, Say

pytestmark = pytest.mark.postgres

PROMPT_FORMAT = {MODEL: ["completion"]}  # a model without native tool calling
CASES_TABLE = "| [CASE-000001](/cases/CASE-000001) | provider 1234567893 | critical |"
CASE_DATA = "Flagged $1,000.00 billed and $12,345.00 paid across 3 claims."


def _degraded(reply: dict[str, Any], note: str) -> None:
    assert reply["response"].startswith(f"_{note}"), reply["response"]
    assert (reply["confidence"], reply["degraded"], reply["model_used"]) == ("low", True, MODEL)


def _shows_the_gathered_data(reply: dict[str, Any], reason: str) -> None:
    """A degraded answer that says why, then shows the cases the tools found."""
    _degraded(reply, f"{reason} Here is the data gathered so far._")
    assert CASES_TABLE in reply["response"]


def test_template_text_echoed_back_is_not_an_answer(api_for: Any) -> None:
    with FakeLLM(models=PROMPT_FORMAT) as llm:
        api = api_for(agent_settings(llm.url))
        llm.script(Say(['{"action": "answer", "answer": "<your answer>"}']))
        reply = api.chat("Why was CASE-000001 flagged, in plain words?").json()
        prompt = json.dumps(llm.chat_requests[0]["messages"])
    assert "<your answer>" not in prompt and "<tool name>" not in prompt
    assert "<your answer>" not in reply["response"]
    _degraded(
        reply,
        "The model did not give a usable answer (it repeated template text). Here is the data "
        "gathered so far._",
    )
    assert CASE_DATA in reply["response"]


@pytest.mark.parametrize("native", [True, False], ids=["native", "prompt-format"])
def test_raw_json_is_not_shown_as_the_answer(api_for: Any, native: bool) -> None:
    raw = '{"action": "answer", "arguments": {"text": "One critical case."}}'
    call = (
        Call([("query_cases", {"risk_level": "critical"})])
        if native
        else Say(['{"action": "tool", "tool": "query_cases", "arguments": {"risk_level": "crit'])
    )
    with FakeLLM(models=None if native else PROMPT_FORMAT) as llm:
        api = api_for(agent_settings(llm.url))
        if not native:  # the tool step cut short is junk too: nothing gathered
            llm.script(call)
            reply = api.chat("Which cases are critical at the moment?").json()
            _degraded(reply, "The model did not give a usable answer (it sent a raw JSON step")
            assert "No data was gathered for this question." in reply["response"]
            call = Say([json.dumps({"action": "tool", "tool": "query_cases", "arguments": {}})])
        llm.script(call, Say([raw]))
        reply = api.chat("Which cases are critical at the moment?").json()
    assert '"action"' not in reply["response"]
    _shows_the_gathered_data(
        reply, "The model did not give a usable answer (it sent a raw JSON step instead of text)."
    )


def test_an_identical_tool_call_runs_once_a_turn(api: Api, llm: FakeLLM) -> None:
    same = ("query_cases", {"risk_level": "critical"})
    llm.script(Call([same]), Call([same]), Say(["The only critical case is CASE-000001."]))
    reply = api.chat("Which cases are critical, and is that all of them?").json()
    assert reply["tool_calls"] == [
        {"name": "query_cases", "arguments": {"risk_level": "critical"}, "ok": True}
    ]
    last = llm.chat_requests[-1]["messages"]
    results = [m["content"] for m in last if m["role"] == "tool"]
    assert len(results) == 2 and "CASE-000001" in results[0]
    assert "already called with these arguments" in results[1]
    assert "CASE-000001" not in results[1]  # the result is not appended again
    assert (reply["confidence"], reply["degraded"]) == ("medium", False)


@pytest.mark.parametrize("backend", ["ollama", "openai"])
def test_output_without_end_stops_at_the_token_limit(
    api_for: Any, llm: FakeLLM, backend: str
) -> None:
    if backend == "ollama":
        settings = agent_settings(llm.url, llm_max_tokens=64)
    else:
        settings = agent_settings(
            f"{llm.url}/v1", llm_backend="openai", llm_native_tools=True, llm_max_tokens=64
        )
    api = api_for(settings)
    llm.script(Call([("query_cases", {"risk_level": "critical"})]), Runaway())
    reply = api.chat("Describe every critical case in as much detail as you can.").json()
    for body in llm.chat_requests:  # each backend's own wire format
        limit = body["options"]["num_predict"] if backend == "ollama" else body["max_tokens"]
        assert limit == 64
        if backend == "ollama":  # a context with room for the prompt's budget and the answer
            assert body["options"]["num_ctx"] == settings.agent_prompt_tokens + 64
    assert reply["llm_error"] is None
    _shows_the_gathered_data(
        reply, "The model's answer ran past its length limit (64 tokens) and was cut off."
    )
    assert "claim claim" not in reply["response"]


def test_a_turn_over_its_time_limit_ends_with_what_was_gathered(api_for: Any, llm: FakeLLM) -> None:
    api = api_for(agent_settings(llm.url, agent_turn_timeout_s=2.0, llm_read_timeout_s=3.0))
    llm.script(
        Call([("query_cases", {"risk_level": "critical"})]),
        Say(["slowly "] * 100, delay_s=0.5),
    )
    reply = api.chat("Think hard about the critical cases and tell me everything.").json()
    assert llm.disconnected.wait(10), "the LLM call went on after the turn ended"
    assert reply["llm_error"] is None
    _shows_the_gathered_data(
        reply, "This answer was cut short: the turn reached its time limit (2 s)."
    )
    assert "slowly" not in reply["response"]


def test_a_model_failing_after_the_tools_ran_still_shows_their_data(api: Api, llm: FakeLLM) -> None:
    llm.script(
        Call([("query_cases", {"risk_level": "critical"})]),
        Fail(500, "llama runner process has terminated: signal: killed"),
    )
    reply = api.chat("Which cases are critical, and what do they share?").json()
    assert reply["response"].startswith(
        "_The language model cannot answer now (it reported an error). Here is the data "
        "gathered so far._"
    )
    assert CASES_TABLE in reply["response"]
    assert (reply["confidence"], reply["degraded"], reply["llm_error"]) == (
        "low",
        True,
        "server_error",
    )


def test_a_degraded_answer_is_never_replayed(api: Api, llm: FakeLLM, pg_engine: Engine) -> None:
    session = api.new_session()
    with session_scope(pg_engine) as s:  # an exchange stored before answers were marked
        s.add(ChatMessage(session_id=session, role="user", content="What is open?"))
        s.add(ChatMessage(session_id=session, role="assistant", content="<your answer>"))
    llm.script(Say(['{"action":"answer","arguments":{"text":"x"}}']))
    first = api.chat("Which providers look odd this month?", session_id=session).json()
    assert first["degraded"] is True
    llm.script(Say(["Nothing else stands out."]))
    second = api.chat("Anything else worth a look?", session_id=session).json()
    assert (second["degraded"], second["confidence"]) == (False, "low")
    sent = llm.chat_requests[-1]["messages"]
    assert [m["role"] for m in sent] == ["system", "user"]
    assert sent[-1]["content"] == "Anything else worth a look?"
    stored = api.request("GET", f"/api/agents/sessions/{session}").json()["messages"]
    assert [m["degraded"] for m in stored] == [False, False, True, True, False, False]
    # A good exchange is replayed.
    llm.script(Say(["Still nothing."]))
    api.chat("And now?", session_id=session)
    replayed = [m["content"] for m in llm.chat_requests[-1]["messages"][1:]]
    assert replayed == ["Anything else worth a look?", "Nothing else stands out.", "And now?"]


def test_history_and_tool_results_are_kept_within_the_prompt_budget(
    api_for: Any, llm: FakeLLM, pg_engine: Engine
) -> None:
    api = api_for(agent_settings(llm.url, agent_prompt_tokens=1000))
    session = api.new_session()
    with session_scope(pg_engine) as s:
        for n in range(10):
            s.add(ChatMessage(session_id=session, role="user", content=f"question {n} " * 150))
            s.add(ChatMessage(session_id=session, role="assistant", content=f"answer {n} " * 150))
    llm.script(
        Call([("query_rules", {"limit": 50})]),
        Call([("query_pipeline_stats", {})]),
        Say(["RULE-MED-004 fired most."]),
    )
    reply = api.chat("Which rules fire most, and how busy is the workspace?", session_id=session)
    assert reply.json()["degraded"] is False
    for body in llm.chat_requests:
        messages = [Message(m["role"], m["content"]) for m in body["messages"]]
        assert budget.estimate_messages(messages) <= 1000
    rules = json.loads(llm.chat_requests[1]["messages"][-1]["content"])
    assert rules["trimmed"] == budget.TRIMMED
    assert 0 < len(rules["rules"]) < rules["count"]  # the first rows, not a broken document


@pytest.mark.parametrize("native", [True, False], ids=["native", "prompt-format"])
def test_tool_step_text_never_streams_as_answer_tokens(api_for: Any, native: bool) -> None:
    answer = "The only critical case is CASE-000001, with $12,345.00 paid on 3 claims."
    preamble = "Let me look up the critical cases first, one moment."
    if native:
        steps = [
            Call([("query_cases", {"risk_level": "critical"})], tokens=[preamble]),
            Say([answer]),
        ]
    else:
        tool_step = {
            "action": "tool",
            "tool": "query_cases",
            "answer": preamble,
            "arguments": {"risk_level": "critical"},
        }
        steps = [
            Say([json.dumps(tool_step)]),
            Say([json.dumps({"action": "answer", "answer": answer})]),
        ]
    with FakeLLM(models=None if native else PROMPT_FORMAT) as llm:
        api = api_for(agent_settings(llm.url))
        llm.script(*steps)
        events = api.stream("Which cases are critical, and how much was paid?")
    tokens = "".join(e["token"] for e in events if e["type"] == "token")
    assert "Let me look" not in tokens
    assert tokens == answer
    assert events[-1]["degraded"] is False


def test_the_example_id_is_never_linked_and_short_ids_are(
    api: Api, llm: FakeLLM, pg_engine: Engine, world: World
) -> None:
    with session_scope(pg_engine) as s:  # even if a workspace had a case numbered 0
        s.add(
            InvestigationCase(
                case_number="CASE-000000",
                workspace_id=world.acme,
                subject_type="member",
                subject_id="M0",
                risk_score=10.0,
                risk_level="low",
                explanation={},
                flagged_billed=1.0,
                flagged_paid=1.0,
                status="open",
                run_id="run-1",
                evidence_hash="zero",
            )
        )
    llm.script(Say(["Compare CASE-000000 with case-1 and CASE-2."]))
    reply = api.chat("Compare the two riskiest cases for me, briefly.").json()
    assert reply["response"] == (
        "Compare [removed] with [CASE-000001](/cases/CASE-000001) and "
        "[CASE-000002](/cases/CASE-000002)."
    )
    assert reply["removed_ids"] == ["CASE-000000"]
    system = llm.chat_requests[0]["messages"][0]["content"]
    assert "CASE-000000" in system and "CASE-000123" not in system


@pytest.mark.parametrize(
    ("figures", "copied"),
    [(("91.5", "7", "$8,675.00"), True), (("95.5", "3", "$12,345.00"), False)],
    ids=["invented-figures", "the-data's-figures"],
)
def test_the_example_filled_with_figures_of_its_own_is_not_an_answer(
    api: Api, llm: FakeLLM, figures: tuple[str, str, str], copied: bool
) -> None:
    """A weak model copies the prompt's example sentence with this workspace's ids and figures it
    made up; the same sentence with the data's own figures is an answer."""
    score, claims, paid = figures
    answer = (
        f"[CASE-000001](/cases/CASE-000001) is the riskiest open case (score {score}): "
        f"RULE-MED-004 fired on {claims} of its claims, {paid} paid."
    )
    llm.script(Call([("query_case_detail", {"case_id": "CASE-000001"})]), Say([answer]))
    reply = api.chat("Why was CASE-000001 flagged, and what should I check first?").json()
    if copied:
        _degraded(
            reply,
            "The model did not give a usable answer (it copied the prompt's example). Here is "
            "the data gathered so far._",
        )
        assert "8,675" not in reply["response"]
    else:
        assert (reply["confidence"], reply["degraded"]) == ("medium", False)
        assert "$12,345.00 paid" in reply["response"]
