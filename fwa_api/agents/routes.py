"""The assistant's API and the chat page.

Every ``/api/agents`` route takes ``?workspace=NAME`` (one of the token's workspaces, else 404)
except ``status``; tools, sessions and guardrails all work within that workspace.

* ``POST /api/agents/sessions`` (``{"title"?, "case_id"?}``), ``GET /api/agents/sessions``,
  ``GET|DELETE /api/agents/sessions/{session_id}``: conversation memory. Deleting needs the
  session's creator or an admin.
* ``POST /api/agents/chat`` (``{"message", "session_id"?, "case_id"?}``): one answer with its
  sources, model and confidence; with a session the last 20 messages go along as history and
  both turns are stored. A pipeline run the assistant proposes waits with the session: only a
  yes as its next message queues it.
* ``POST /api/agents/chat/stream``: the same as Server-Sent Events, ``data:`` JSON each:
  ``{"type": "token", "token": "...", "done": false}``, ``{"type": "tool_call", ...}``,
  ``{"type": "tool_result", ...}``, then ``{"type": "final", "done": true, "response": ...,
  "sources_cited": [...], "confidence": ..., "model_used": ..., "degraded": ...}``. Tokens are
  provisional plain text, and only ever an answer's (never a tool step's); the final
  ``response`` (ids checked, citations linked) replaces them. A client
  that disconnects stops the LLM call, and nothing is stored.
* ``POST /api/agents/investigate`` (``{"case_id", "session_id"?}``): a case summary with its
  evidence through the same path (404 for a case outside the workspace).
* ``GET /api/agents/status``: the configured backend and model, and whether it is reachable,
  installed, loaded and able to call tools.
* ``GET /chat``: the chat page (public: it holds no data and asks for a token).
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Request, Response
from fastapi.responses import FileResponse
from pydantic import BaseModel, Field, StringConstraints
from sse_starlette.sse import EventSourceResponse
from starlette.concurrency import run_in_threadpool

from fwa_api.agents import sessions
from fwa_api.agents.loop import (
    AgentEvent,
    AgentRequest,
    Assistant,
    Reply,
    Token,
    ToolCallEvent,
    ToolResultEvent,
)
from fwa_api.agents.tools import Scope, WorkspaceTools
from fwa_api.deps import CurrentPrincipal, WorkspaceId
from fwa_api.kit.case_numbers import case_number
from fwa_api.services import services
from fwa_pipeline.kit.validation import FREE_TEXT

logger = logging.getLogger(__name__)

router = APIRouter(prefix="/api/agents", tags=["agents"])
page_router = APIRouter(tags=["chat page"])

STATIC = Path(__file__).resolve().parent.parent / "static"
MAX_MESSAGE_CHARS = 4000
SSE_PING_S = 15
CASE_ID = r"^[Cc][Aa][Ss][Ee]-\d{1,12}$"


# --------------------------------------------------------------------------- runtime


def assistant(request: Request) -> Assistant:
    """The app's assistant, built from ``settings.assistant`` as the app started."""
    return services(request).assistant


Runtime = Annotated[Assistant, Depends(assistant)]


async def agent_scope(
    principal: CurrentPrincipal, workspace_id: WorkspaceId, workspace: str
) -> Scope:
    # ``workspace`` is the same query parameter WorkspaceId has just checked against the token.
    return Scope(workspace_id, workspace, principal.name, principal.role)


AgentScope = Annotated[Scope, Depends(agent_scope)]


# --------------------------------------------------------------------------- schemas


class SessionCreate(BaseModel):
    title: Annotated[str, StringConstraints(max_length=200), FREE_TEXT] | None = None
    case_id: str | None = Field(None, pattern=CASE_ID, description="Pin the session to a case.")


class SessionList(BaseModel):
    sessions: list[sessions.SessionOut]


class ChatRequest(BaseModel):
    message: Annotated[str, StringConstraints(max_length=MAX_MESSAGE_CHARS), FREE_TEXT]
    session_id: uuid.UUID | None = None
    case_id: str | None = Field(None, pattern=CASE_ID, description="Ask about this case.")


class InvestigateRequest(BaseModel):
    case_id: str = Field(pattern=CASE_ID)
    session_id: uuid.UUID | None = None


class ToolCallOut(BaseModel):
    name: str
    arguments: dict[str, Any]
    ok: bool


class ChatResponse(BaseModel):
    response: str
    sources_cited: list[dict[str, str]]
    confidence: Literal["high", "medium", "low"]
    model_used: str
    session_id: str | None
    removed_ids: list[str]
    llm_error: str | None
    # Not the model's answer: the data gathered under a note saying why (kept out of history).
    degraded: bool
    tool_calls: list[ToolCallOut]


class StatusOut(BaseModel):
    backend: str
    model: str
    reachable: bool
    installed: bool | None
    loaded: bool | None
    tools: bool
    reason: str | None


# --------------------------------------------------------------------------- sessions

CASE_NOT_FOUND = {"description": "No such case in this workspace."}
SESSION_NOT_FOUND = {"description": "No such session in this workspace."}
# What the answering routes refuse before any answer starts.
ANSWER_ERRORS: dict[int | str, dict[str, Any]] = {
    403: {"description": "The session is another caller's: only its creator continues it."},
    404: {"description": "No such session or case in this workspace."},
}


def _not_found(detail: str) -> HTTPException:
    return HTTPException(404, detail)


@router.post("/sessions", status_code=201, responses={404: CASE_NOT_FOUND})
async def create_session(
    request: Request, scope: AgentScope, body: SessionCreate | None = None
) -> sessions.SessionOut:
    body = body or SessionCreate(title=None, case_id=None)
    try:
        return await run_in_threadpool(
            sessions.create_session,
            services(request).engine,
            scope.workspace_id,
            created_by=scope.actor,
            title=body.title,
            case_id=case_number(body.case_id) if body.case_id else None,
        )
    except sessions.NotFound as exc:
        raise _not_found("case not found") from exc


@router.get("/sessions")
async def list_sessions(request: Request, scope: AgentScope) -> SessionList:
    rows = await run_in_threadpool(
        sessions.list_sessions, services(request).engine, scope.workspace_id
    )
    return SessionList(sessions=rows)


@router.get("/sessions/{session_id}", responses={404: SESSION_NOT_FOUND})
async def get_session(
    request: Request, scope: AgentScope, session_id: uuid.UUID
) -> sessions.SessionDetail:
    try:
        return await run_in_threadpool(
            sessions.get_session, services(request).engine, scope.workspace_id, str(session_id)
        )
    except sessions.NotFound as exc:
        raise _not_found("session not found") from exc


@router.delete(
    "/sessions/{session_id}",
    status_code=204,
    responses={
        403: {"description": "Only the session's creator or an admin may delete it."},
        404: SESSION_NOT_FOUND,
    },
)
async def delete_session(request: Request, scope: AgentScope, session_id: uuid.UUID) -> Response:
    try:
        await run_in_threadpool(
            sessions.delete_session,
            services(request).engine,
            scope.workspace_id,
            str(session_id),
            actor=scope.actor,
            admin=scope.has_role("admin"),
        )
    except sessions.NotFound as exc:
        raise _not_found("session not found") from exc
    except PermissionError as exc:
        raise HTTPException(403, str(exc)) from exc
    return Response(status_code=204)


# --------------------------------------------------------------------------- chat


async def _agent_request(
    request: Request,
    rt: Assistant,
    scope: AgentScope,
    message: str,
    session_id: uuid.UUID | None,
    case_id: str | None,
    *,
    investigate: bool = False,
) -> AgentRequest:
    """Everything that can fail with an HTTP error, checked before any answer starts."""
    engine = services(request).engine
    history = []
    if session_id is not None:
        try:
            conversation = await run_in_threadpool(
                sessions.conversation,
                engine,
                scope.workspace_id,
                str(session_id),
                history=rt.settings.agent_history_messages,
                actor=scope.actor,
            )
        except sessions.NotFound as exc:
            raise _not_found("session not found") from exc
        except PermissionError as exc:
            raise HTTPException(403, str(exc)) from exc
        history = conversation.history
        case_id = case_id or conversation.case_id
    if case_id is not None:
        number = case_number(case_id)
        known = await WorkspaceTools(engine, scope).known_ids({number} if number else set(), set())
        if number not in known:
            # Also for another workspace's case: the same answer as for no case at all.
            raise _not_found("case not found")
        case_id = number
    return AgentRequest(
        scope,
        message,
        history,
        case_id,
        investigate=investigate,
        session_id=None if session_id is None else str(session_id),
    )


async def _record(
    request: Request,
    scope: Scope,
    session_id: uuid.UUID | None,
    question: str,
    reply: Reply,
    started: float,
) -> None:
    metrics = services(request).metrics
    metrics.agent_chat_requests.labels(reply.model_used).inc()
    metrics.agent_chat_duration.observe(time.perf_counter() - started)
    if session_id is None:
        return
    turn = sessions.Turn(
        question=question,
        answer=reply.response,
        sources_cited=reply.sources_cited,
        model_used=reply.model_used,
        confidence=reply.confidence.value,
        degraded=reply.degraded,
    )
    try:
        await run_in_threadpool(
            sessions.record_turn,
            services(request).engine,
            scope.workspace_id,
            str(session_id),
            turn,
        )
    except sessions.NotFound:
        logger.info("assistant: the session was deleted while it was answering")


async def _answer(
    request: Request, rt: Assistant, agent_request: AgentRequest, session_id: uuid.UUID | None
) -> ChatResponse:
    started = time.perf_counter()
    calls: list[ToolCallOut] = []
    pending: ToolCallEvent | None = None
    reply: Reply | None = None
    async for event in rt.run(agent_request):
        if isinstance(event, ToolCallEvent):
            pending = event
        elif isinstance(event, ToolResultEvent) and pending is not None:
            calls.append(ToolCallOut(name=pending.name, arguments=pending.arguments, ok=event.ok))
        elif isinstance(event, Reply):
            reply = event
    assert reply is not None  # the assistant always ends with one
    await _record(request, agent_request.scope, session_id, agent_request.message, reply, started)
    return _response(reply, session_id, calls)


def _response(reply: Reply, session_id: uuid.UUID | None, calls: list[ToolCallOut]) -> ChatResponse:
    return ChatResponse(
        response=reply.response,
        sources_cited=reply.sources_cited,
        confidence=reply.confidence.value,
        model_used=reply.model_used,
        session_id=str(session_id) if session_id else None,
        removed_ids=reply.removed_ids,
        llm_error=reply.llm_error,
        degraded=reply.degraded,
        tool_calls=calls,
    )


@router.post("/chat", responses=ANSWER_ERRORS)
async def chat(request: Request, rt: Runtime, scope: AgentScope, body: ChatRequest) -> ChatResponse:
    agent_request = await _agent_request(
        request, rt, scope, body.message, body.session_id, body.case_id
    )
    return await _answer(request, rt, agent_request, body.session_id)


def _event(payload: dict[str, Any]) -> dict[str, str]:
    return {"data": json.dumps(payload, default=str, separators=(",", ":"))}


@router.post("/chat/stream", response_class=EventSourceResponse, responses=ANSWER_ERRORS)
async def chat_stream(
    request: Request, rt: Runtime, scope: AgentScope, body: ChatRequest
) -> EventSourceResponse:
    agent_request = await _agent_request(
        request, rt, scope, body.message, body.session_id, body.case_id
    )

    async def events() -> AsyncIterator[dict[str, str]]:
        started = time.perf_counter()
        calls: list[ToolCallOut] = []
        event: AgentEvent
        try:
            async for event in rt.run(agent_request):
                if isinstance(event, Token):
                    yield _event({"type": "token", "token": event.text, "done": False})
                elif isinstance(event, ToolCallEvent):
                    calls.append(ToolCallOut(name=event.name, arguments=event.arguments, ok=False))
                    yield _event(
                        {
                            "type": "tool_call",
                            "tool": event.name,
                            "arguments": event.arguments,
                            "done": False,
                        }
                    )
                elif isinstance(event, ToolResultEvent):
                    if calls:
                        calls[-1].ok = event.ok
                    yield _event(
                        {
                            "type": "tool_result",
                            "tool": event.name,
                            "ok": event.ok,
                            "result": event.data,
                            "done": False,
                        }
                    )
                else:
                    await _record(request, scope, body.session_id, body.message, event, started)
                    final = _response(event, body.session_id, calls).model_dump()
                    yield _event({"type": "final", "done": True, **final})
        except Exception:
            # The response has started: an error can only be reported as an event.
            logger.exception("assistant: the stream failed")
            yield _event({"type": "error", "done": True, "error": "internal error"})

    return EventSourceResponse(events(), ping=SSE_PING_S)


@router.post("/investigate", responses=ANSWER_ERRORS)
async def investigate(
    request: Request, rt: Runtime, scope: AgentScope, body: InvestigateRequest
) -> ChatResponse:
    case_id = case_number(body.case_id)
    message = (
        f"Investigate case {case_id}: summarise why it was flagged, the evidence behind each "
        "rule that fired, the amounts at stake, and the next steps an investigator should take."
    )
    agent_request = await _agent_request(
        request, rt, scope, message, body.session_id, case_id, investigate=True
    )
    return await _answer(request, rt, agent_request, body.session_id)


@router.get("/status")
async def status(rt: Runtime) -> StatusOut:
    found = await rt.backend.status()
    return StatusOut(
        backend=rt.backend.kind,
        model=rt.backend.model,
        reachable=found.reachable,
        installed=found.installed,
        loaded=found.loaded,
        tools="tools" in found.capabilities,
        reason=found.reason,
    )


# --------------------------------------------------------------------------- the page

_ASSETS = {"app.js": "text/javascript", "app.css": "text/css"}


@page_router.get("/chat", include_in_schema=False)
def chat_page() -> FileResponse:
    return FileResponse(STATIC / "index.html", media_type="text/html")


@page_router.get("/chat/{asset}", include_in_schema=False)
def chat_asset(asset: str) -> FileResponse:
    media_type = _ASSETS.get(asset)
    if media_type is None:
        raise HTTPException(404, "not found")
    return FileResponse(STATIC / asset, media_type=media_type)
