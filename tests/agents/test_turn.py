"""The chat turn's one fold of the assistant's events, which both the streaming route (forwarding
the events) and the other routes (reading them to the end) use: the events pass through in
order, and the final answer lists each tool call with its outcome."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from types import SimpleNamespace
from typing import Any

from fwa_api.agents.confidence import Confidence
from fwa_api.agents.loop import (
    AgentEvent,
    AgentRequest,
    Reply,
    Token,
    ToolCallEvent,
    ToolResultEvent,
)
from fwa_api.agents.models import ChatResponse, ToolCallOut
from fwa_api.agents.tools import Scope
from fwa_api.agents.turn import ChatTurn
from fwa_api.middleware.metrics import ApiMetrics

REPLY = Reply(
    response="CASE-000001 is the only critical case.",
    sources_cited=[{"type": "case", "id": "CASE-000001"}],
    confidence=Confidence.medium,
    model_used="scripted",
    removed_ids=[],
)


class Scripted:
    """An assistant that says what it is told."""

    def __init__(self, *events: AgentEvent) -> None:
        self.events = events

    async def run(self, request: AgentRequest) -> AsyncIterator[AgentEvent]:
        for event in self.events:
            yield event


def turn(*events: AgentEvent) -> ChatTurn:
    app: Any = SimpleNamespace(assistant=Scripted(*events), metrics=ApiMetrics())
    scope = Scope(1, "acme", "alice", "investigator")
    return ChatTurn(app, AgentRequest(scope, "Which cases are critical?"), None)


async def _read(chat: ChatTurn) -> list[Any]:
    return [event async for event in chat.events()]


def test_the_events_pass_through_and_end_with_the_answer() -> None:
    call = ToolCallEvent("query_cases", {"risk_level": "critical"})
    result = ToolResultEvent("query_cases", True, {"cases": []})
    events = asyncio.run(_read(turn(call, result, Token("CASE-000001 is"), REPLY)))
    assert events[:3] == [call, result, Token("CASE-000001 is")]
    final = events[-1]
    assert isinstance(final, ChatResponse) and len(events) == 4
    assert (final.response, final.confidence, final.model_used) == (
        REPLY.response,
        "medium",
        "scripted",
    )
    assert final.tool_calls == [
        ToolCallOut(name="query_cases", arguments={"risk_level": "critical"}, ok=True)
    ]
    # The routes that do not stream read the same events to their end.
    answer = asyncio.run(turn(call, result, Token("CASE-000001 is"), REPLY).answer())
    assert answer == final


def test_a_failed_call_and_one_cut_off_before_its_result_are_not_ok() -> None:
    answer = asyncio.run(
        turn(
            ToolCallEvent("query_cases", {}),
            ToolResultEvent("query_cases", False, {"error": "the data store did not answer"}),
            ToolCallEvent("case_detail", {"case_id": "CASE-000001"}),
            REPLY,  # the turn's time limit came before the second call's result
        ).answer()
    )
    assert [(call.name, call.ok) for call in answer.tool_calls] == [
        ("query_cases", False),
        ("case_detail", False),
    ]
