"""Conversation memory: chat sessions and their messages, always read and written
within one workspace. A session of another workspace is treated as one that does not exist.
Within the workspace a session is shared for reading (the team sees what was asked), but only
its creator continues it, and only its creator or an admin deletes it.

The LLM sees the last ``history`` messages (20 by default) as alternating user and assistant
turns; both turns of an exchange are stored together once the answer is complete, with the
assistant's sources, model and confidence. An exchange whose answer was degraded (the data
gathered under a note, not the model's answer) is marked so and never replayed: a model shown a
junk answer in its history copies it.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine, delete, func, select

from fwa_api.agents.llm import Message
from fwa_api.agents.models import MessageOut, SessionDetail, SessionOut
from fwa_api.agents.prompt_tools import unusable
from fwa_pipeline.kit.validation import clean_text
from fwa_pipeline.store.db import session_scope
from fwa_pipeline.store.models import ChatMessage, ChatSession, InvestigationCase, utcnow

TITLE_CHARS = 60


@dataclass(frozen=True, slots=True)
class Conversation:
    """What a chat request needs of its session."""

    session_id: str
    case_id: str | None
    history: list[Message]


@dataclass(frozen=True, slots=True)
class Turn:
    """One answered exchange, as stored."""

    question: str
    answer: str
    sources_cited: list[dict[str, str]]
    model_used: str
    confidence: str
    degraded: bool = False


class NotFound(LookupError):
    pass


def title_from(text: str) -> str:
    """The first message, on one line, cut at a word boundary."""
    line = re.sub(r"\s+", " ", text).strip()
    if len(line) <= TITLE_CHARS:
        return line
    cut = line[:TITLE_CHARS].rsplit(" ", 1)[0] or line[:TITLE_CHARS]
    return cut.rstrip(" ,.;:") + "…"


def _case_number(session: Any, case_pk: int | None) -> str | None:
    if case_pk is None:
        return None
    return session.scalar(
        select(InvestigationCase.case_number).where(InvestigationCase.id == case_pk)
    )


def _out(session: Any, row: ChatSession, count: int) -> SessionOut:
    return SessionOut(
        session_id=row.session_id,
        title=row.title,
        case_id=_case_number(session, row.case_id),
        created_by=row.created_by,
        created_at=row.created_at,
        updated_at=row.updated_at,
        message_count=count,
    )


def create_session(
    engine: Engine,
    workspace_id: int,
    *,
    created_by: str,
    title: str | None = None,
    case_id: str | None = None,
) -> SessionOut:
    """A new session, pinned to ``case_id`` (a case number of this workspace) when given;
    ``NotFound`` for a case this workspace does not have."""
    with session_scope(engine) as session:
        case_pk = None
        if case_id is not None:
            case_pk = session.scalar(
                select(InvestigationCase.id).where(
                    InvestigationCase.workspace_id == workspace_id,
                    InvestigationCase.case_number == case_id,
                )
            )
            if case_pk is None:
                raise NotFound(f"no case {case_id} in this workspace")
        row = ChatSession(
            session_id=str(uuid.uuid4()),
            workspace_id=workspace_id,
            title=None if title is None else title_from(clean_text(title, "title")),
            case_id=case_pk,
            created_by=created_by,
        )
        session.add(row)
        session.flush()
        return _out(session, row, 0)


def list_sessions(engine: Engine, workspace_id: int, *, limit: int = 100) -> list[SessionOut]:
    with session_scope(engine) as session:
        counts = (
            select(ChatMessage.session_id, func.count().label("n"))
            .group_by(ChatMessage.session_id)
            .subquery()
        )
        rows = session.execute(
            select(ChatSession, func.coalesce(counts.c.n, 0))
            .outerjoin(counts, counts.c.session_id == ChatSession.session_id)
            .where(ChatSession.workspace_id == workspace_id)
            .order_by(ChatSession.updated_at.desc(), ChatSession.session_id)
            .limit(limit)
        ).all()
        return [_out(session, row, count) for row, count in rows]


def _owned(session: Any, workspace_id: int, session_id: str) -> ChatSession:
    row = session.get(ChatSession, session_id)
    if row is None or row.workspace_id != workspace_id:
        raise NotFound("session not found")
    return row


def get_session(engine: Engine, workspace_id: int, session_id: str) -> SessionDetail:
    with session_scope(engine) as session:
        row = _owned(session, workspace_id, session_id)
        messages = [MessageOut.model_validate(m) for m in row.messages]
        return SessionDetail(**_out(session, row, len(messages)).model_dump(), messages=messages)


def delete_session(
    engine: Engine, workspace_id: int, session_id: str, *, actor: str, admin: bool
) -> None:
    """``NotFound`` outside the workspace; ``PermissionError`` for someone else's session."""
    with session_scope(engine) as session:
        row = _owned(session, workspace_id, session_id)
        if not admin and row.created_by != actor:
            raise PermissionError("only the session's creator or an admin may delete it")
        # Two bulk deletes: the ORM's cascade would load every message first.
        session.execute(delete(ChatMessage).where(ChatMessage.session_id == session_id))
        session.execute(delete(ChatSession).where(ChatSession.session_id == session_id))


def conversation(
    engine: Engine, workspace_id: int, session_id: str, *, history: int, actor: str
) -> Conversation:
    """The session's pinned case and its last ``history`` messages, oldest first, for ``actor``
    to continue it: ``NotFound`` outside the workspace, ``PermissionError`` when ``actor`` did
    not create it."""
    with session_scope(engine) as session:
        row = _owned(session, workspace_id, session_id)
        if row.created_by != actor:
            raise PermissionError("only the session's creator may continue it")
        recent = session.scalars(
            select(ChatMessage)
            .where(ChatMessage.session_id == session_id, ChatMessage.degraded.is_(False))
            .order_by(ChatMessage.id.desc())
            .limit(history)
        ).all()
        return Conversation(
            session_id=session_id,
            case_id=_case_number(session, row.case_id),
            history=_replayable(list(reversed(recent))),
        )


def _replayable(messages: list[ChatMessage]) -> list[Message]:
    """The messages as history, less any exchange whose answer is junk all the same (one stored
    before degraded answers were marked)."""
    out: list[Message] = []
    for message in messages:
        if message.role == "assistant" and unusable(message.content):
            if out and out[-1].role == "user":
                out.pop()
            continue
        out.append(Message(message.role, message.content))
    return out


def record_turn(engine: Engine, workspace_id: int, session_id: str, turn: Turn) -> None:
    """Store both sides of an exchange; the first question names an untitled session."""
    with session_scope(engine) as session:
        row = _owned(session, workspace_id, session_id)
        if not row.title:
            row.title = title_from(turn.question)
        row.updated_at = utcnow()
        # Both sides carry the exchange's degraded mark: a degraded exchange is never replayed.
        both = {"session_id": session_id, "degraded": turn.degraded}
        session.add(ChatMessage(role="user", content=turn.question, **both))
        session.add(
            ChatMessage(
                role="assistant",
                content=turn.answer,
                sources_cited=turn.sources_cited,
                model_used=turn.model_used,
                confidence=turn.confidence,
                **both,
            )
        )
