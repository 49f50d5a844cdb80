"""The assistant API's bodies: sessions, chat turns and the status of the LLM backend."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from fwa_pipeline.kit.validation import FREE_TEXT

MAX_MESSAGE_CHARS = 4000
CASE_ID = r"^[Cc][Aa][Ss][Ee]-\d{1,12}$"


class MessageOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    role: str
    content: str
    sources_cited: list[Any]
    model_used: str | None
    confidence: str | None
    degraded: bool
    created_at: dt.datetime


class SessionOut(BaseModel):
    session_id: str
    title: str | None
    case_id: str | None
    created_by: str | None
    created_at: dt.datetime
    updated_at: dt.datetime
    message_count: int


class SessionDetail(SessionOut):
    messages: list[MessageOut]


class SessionCreate(BaseModel):
    title: Annotated[str, StringConstraints(max_length=200), FREE_TEXT] | None = None
    case_id: str | None = Field(None, pattern=CASE_ID, description="Pin the session to a case.")


class SessionList(BaseModel):
    sessions: list[SessionOut]


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
