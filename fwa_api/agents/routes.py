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
import uuid
from collections.abc import AsyncIterator, Awaitable
from contextlib import aclosing
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Request, Response
from fastapi.responses import FileResponse
from sse_starlette.sse import EventSourceResponse
from starlette.concurrency import run_in_threadpool

from fwa_api.agents import sessions
from fwa_api.agents.loop import Token, ToolCallEvent, ToolResultEvent
from fwa_api.agents.models import (
    ChatRequest,
    ChatResponse,
    InvestigateRequest,
    SessionCreate,
    SessionDetail,
    SessionList,
    SessionOut,
    StatusOut,
)
from fwa_api.agents.tools import Scope
from fwa_api.agents.turn import CaseNotFound, ChatTurn, TurnEvent, investigation
from fwa_api.deps import CurrentPrincipal, WorkspaceId
from fwa_api.kit.case_numbers import case_number
from fwa_api.services import services

logger = logging.getLogger(__name__)

router = APIRouter(prefix="/api/agents", tags=["agents"])
page_router = APIRouter(tags=["chat page"])

STATIC = Path(__file__).resolve().parent.parent / "static"
SSE_PING_S = 15


async def agent_scope(
    principal: CurrentPrincipal, workspace_id: WorkspaceId, workspace: str
) -> Scope:
    # ``workspace`` is the same query parameter WorkspaceId has just checked against the token.
    return Scope(workspace_id, workspace, principal.name, principal.role)


AgentScope = Annotated[Scope, Depends(agent_scope)]

CASE_NOT_FOUND = {"description": "No such case in this workspace."}
SESSION_NOT_FOUND = {"description": "No such session in this workspace."}
# What the answering routes refuse before any answer starts.
ANSWER_ERRORS: dict[int | str, dict[str, Any]] = {
    403: {"description": "The session is another caller's: only its creator continues it."},
    404: {"description": "No such session or case in this workspace."},
}


# --------------------------------------------------------------------------- sessions


@router.post("/sessions", status_code=201, responses={404: CASE_NOT_FOUND})
async def create_session(
    request: Request, scope: AgentScope, body: SessionCreate | None = None
) -> SessionOut:
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
        raise HTTPException(404, "case not found") from exc


@router.get("/sessions")
async def list_sessions(request: Request, scope: AgentScope) -> SessionList:
    rows = await run_in_threadpool(
        sessions.list_sessions, services(request).engine, scope.workspace_id
    )
    return SessionList(sessions=rows)


@router.get("/sessions/{session_id}", responses={404: SESSION_NOT_FOUND})
async def get_session(request: Request, scope: AgentScope, session_id: uuid.UUID) -> SessionDetail:
    try:
        return await run_in_threadpool(
            sessions.get_session, services(request).engine, scope.workspace_id, str(session_id)
        )
    except sessions.NotFound as exc:
        raise HTTPException(404, "session not found") from exc


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
        raise HTTPException(404, "session not found") from exc
    except PermissionError as exc:
        raise HTTPException(403, str(exc)) from exc
    return Response(status_code=204)


# --------------------------------------------------------------------------- chat


async def _refusing(prepare: Awaitable[ChatTurn]) -> ChatTurn:
    """The prepared turn, or the HTTP error that refuses it before any answer starts."""
    try:
        return await prepare
    except sessions.NotFound as exc:
        raise HTTPException(404, "session not found") from exc
    except CaseNotFound as exc:
        # Also for another workspace's case: the same answer as for no case at all.
        raise HTTPException(404, "case not found") from exc
    except PermissionError as exc:
        raise HTTPException(403, str(exc)) from exc


@router.post("/chat", responses=ANSWER_ERRORS)
async def chat(request: Request, scope: AgentScope, body: ChatRequest) -> ChatResponse:
    turn = await _refusing(
        ChatTurn.prepare(services(request), scope, body.message, body.session_id, body.case_id)
    )
    return await turn.answer()


def _sse(event: TurnEvent) -> dict[str, str]:
    payload: dict[str, Any]
    if isinstance(event, Token):
        payload = {"type": "token", "token": event.text, "done": False}
    elif isinstance(event, ToolCallEvent):
        payload = {
            "type": "tool_call",
            "tool": event.name,
            "arguments": event.arguments,
            "done": False,
        }
    elif isinstance(event, ToolResultEvent):
        payload = {
            "type": "tool_result",
            "tool": event.name,
            "ok": event.ok,
            "result": event.data,
            "done": False,
        }
    else:
        payload = {"type": "final", "done": True, **event.model_dump()}
    return {"data": json.dumps(payload, default=str, separators=(",", ":"))}


@router.post("/chat/stream", response_class=EventSourceResponse, responses=ANSWER_ERRORS)
async def chat_stream(
    request: Request, scope: AgentScope, body: ChatRequest
) -> EventSourceResponse:
    turn = await _refusing(
        ChatTurn.prepare(services(request), scope, body.message, body.session_id, body.case_id)
    )

    async def events() -> AsyncIterator[dict[str, str]]:
        try:
            async with aclosing(turn.events()) as stream:
                async for event in stream:
                    yield _sse(event)
        except Exception:
            # The response has started: an error can only be reported as an event.
            logger.exception("assistant: the stream failed")
            error = {"type": "error", "done": True, "error": "internal error"}
            yield {"data": json.dumps(error, separators=(",", ":"))}

    return EventSourceResponse(events(), ping=SSE_PING_S)


@router.post("/investigate", responses=ANSWER_ERRORS)
async def investigate(
    request: Request, scope: AgentScope, body: InvestigateRequest
) -> ChatResponse:
    case_id = case_number(body.case_id)
    assert case_id is not None  # the body's pattern is a case number's
    turn = await _refusing(
        ChatTurn.prepare(
            services(request),
            scope,
            investigation(case_id),
            body.session_id,
            case_id,
            investigate=True,
        )
    )
    return await turn.answer()


@router.get("/status")
async def status(request: Request) -> StatusOut:
    backend = services(request).assistant.backend
    found = await backend.status()
    return StatusOut(
        backend=backend.kind,
        model=backend.model,
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
