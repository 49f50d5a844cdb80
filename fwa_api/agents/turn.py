"""One chat turn: prepared (the session's history and pinned case, every refusal before any answer
starts), answered (the assistant's events) and recorded (both messages in the session, marked
degraded or not, and the metrics), as one stream of events. The streaming route forwards the
stream as it comes; the other routes read it to its end.

The stream ends with a ``ChatResponse`` (the answer with its sources and the tool calls made),
sent once the exchange is stored. A proposed pipeline run waits with the session (the assistant's
tools store it); only a yes as the session's next message queues it.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import aclosing
from dataclasses import dataclass

from starlette.concurrency import run_in_threadpool

from fwa_api.agents import sessions
from fwa_api.agents.loop import AgentRequest, Reply, Token, ToolCallEvent, ToolResultEvent
from fwa_api.agents.models import ChatResponse, ToolCallOut
from fwa_api.agents.tools import Scope, WorkspaceTools
from fwa_api.kit.case_numbers import case_number
from fwa_api.services import Services

logger = logging.getLogger(__name__)

TurnEvent = Token | ToolCallEvent | ToolResultEvent | ChatResponse


class CaseNotFound(LookupError):
    """The case asked about is not this workspace's (or does not exist: the same answer)."""


def investigation(case_id: str) -> str:
    """The question an investigation of ``case_id`` asks."""
    return (
        f"Investigate case {case_id}: summarise why it was flagged, the evidence behind each "
        "rule that fired, the amounts at stake, and the next steps an investigator should take."
    )


@dataclass
class ChatTurn:
    app: Services
    request: AgentRequest
    session_id: uuid.UUID | None

    @classmethod
    async def prepare(
        cls,
        app: Services,
        scope: Scope,
        message: str,
        session_id: uuid.UUID | None,
        case_id: str | None,
        *,
        investigate: bool = False,
    ) -> ChatTurn:
        """The turn, once everything that can refuse it has been checked: ``sessions.NotFound``
        for a session outside the workspace, ``PermissionError`` for another caller's,
        ``CaseNotFound`` for a case outside the workspace."""
        history = []
        if session_id is not None:
            conversation = await run_in_threadpool(
                sessions.conversation,
                app.engine,
                scope.workspace_id,
                str(session_id),
                history=app.assistant.settings.agent_history_messages,
                actor=scope.actor,
            )
            history = conversation.history
            case_id = case_id or conversation.case_id
        if case_id is not None:
            number = case_number(case_id)
            tools = WorkspaceTools(app.engine, scope)
            known = await tools.known_ids({number} if number else set(), set())
            if number not in known:
                raise CaseNotFound(case_id)
            case_id = number
        request = AgentRequest(
            scope,
            message,
            history,
            case_id,
            investigate=investigate,
            session_id=None if session_id is None else str(session_id),
        )
        return cls(app, request, session_id)

    async def events(self) -> AsyncIterator[TurnEvent]:
        """The assistant's tokens and tool steps as they come, then the recorded answer."""
        started = time.perf_counter()
        calls: list[ToolCallOut] = []
        # Closed as soon as this stream is (a client gone mid-answer): the LLM call stops.
        async with aclosing(self.app.assistant.run(self.request)) as events:
            async for event in events:
                if isinstance(event, Reply):  # always the last
                    await self._record(event, started)
                    yield self._response(event, calls)
                    return
                if isinstance(event, ToolCallEvent):
                    # Not ok until its result says so: a call cut off by the time limit is not.
                    calls.append(ToolCallOut(name=event.name, arguments=event.arguments, ok=False))
                elif isinstance(event, ToolResultEvent) and calls:
                    calls[-1].ok = event.ok
                yield event

    async def answer(self) -> ChatResponse:
        """The whole turn, read to its end."""
        final = None
        async for event in self.events():
            final = event
        assert isinstance(final, ChatResponse)  # the assistant always ends with a reply
        return final

    async def _record(self, reply: Reply, started: float) -> None:
        metrics = self.app.metrics
        metrics.agent_chat_requests.labels(reply.model_used).inc()
        metrics.agent_chat_duration.observe(time.perf_counter() - started)
        if self.session_id is None:
            return
        turn = sessions.Turn(
            question=self.request.message,
            answer=reply.response,
            sources_cited=reply.sources_cited,
            model_used=reply.model_used,
            confidence=reply.confidence.value,
            degraded=reply.degraded,
        )
        try:
            await run_in_threadpool(
                sessions.record_turn,
                self.app.engine,
                self.request.scope.workspace_id,
                str(self.session_id),
                turn,
            )
        except sessions.NotFound:
            logger.info("assistant: the session was deleted while it was answering")

    def _response(self, reply: Reply, calls: list[ToolCallOut]) -> ChatResponse:
        return ChatResponse(
            response=reply.response,
            sources_cited=reply.sources_cited,
            confidence=reply.confidence.value,
            model_used=reply.model_used,
            session_id=str(self.session_id) if self.session_id else None,
            removed_ids=reply.removed_ids,
            llm_error=reply.llm_error,
            degraded=reply.degraded,
            tool_calls=calls,
        )
