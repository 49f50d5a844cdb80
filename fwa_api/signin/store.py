"""Browser sessions: what a session cookie stands for, kept server-side so every worker sees it.

The cookie carries a random id (``secrets.token_urlsafe(32)``); the server keeps the SHA-256 of
it (a copy of the store signs nobody in) with the identity the token resolved to and the keyed
hash of the token (to check on each use that the token is still valid, through the same cache
and revocation feed as bearer requests), never the token itself. Redis holds sessions when it is
configured, the database otherwise.

A session ends when unused for ``FWA_SESSION_IDLE_MINUTES`` and, however busy, after
``FWA_SESSION_MAX_HOURS``. Use refreshes the idle deadline at most once per
``REFRESH_RESOLUTION`` (so a busy page costs a write a minute, not one a request).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import secrets
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from typing import Any, Protocol

from redis.asyncio import Redis
from sqlalchemy import Engine, delete
from starlette.concurrency import run_in_threadpool

from fwa_api.auth import Principal
from fwa_pipeline.store.db import session_scope
from fwa_pipeline.store.models import WebSession, utcnow

REFRESH_RESOLUTION = dt.timedelta(minutes=1)
SESSION_COOKIE = "fwa_session"
CSRF_HEADER = "X-CSRF-Token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


@dataclass(frozen=True, slots=True)
class SignedIn:
    """A session's record: who signed in, with which token (its keyed hash), and until when."""

    token_hash: str
    name: str
    role: str
    workspaces: tuple[str, ...]
    csrf_token: str
    created_at: dt.datetime
    last_seen_at: dt.datetime

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["created_at"] = self.created_at.isoformat()
        data["last_seen_at"] = self.last_seen_at.isoformat()
        data["workspaces"] = list(self.workspaces)
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> SignedIn:
        return cls(
            **{
                **data,
                "workspaces": tuple(data["workspaces"]),
                "created_at": dt.datetime.fromisoformat(data["created_at"]),
                "last_seen_at": dt.datetime.fromisoformat(data["last_seen_at"]),
            }
        )


def id_hash(session_id: str) -> str:
    return hashlib.sha256(session_id.encode()).hexdigest()


class Backend(Protocol):
    async def put(self, key: str, record: SignedIn, expires_at: dt.datetime) -> None: ...
    async def get(self, key: str) -> SignedIn | None: ...
    async def delete(self, key: str) -> None: ...


class RedisBackend:
    """One key per session, expiring with it (Redis forgets ended sessions by itself)."""

    def __init__(self, redis: Redis, key_prefix: str) -> None:
        self._redis = redis
        self._prefix = f"{key_prefix}session:"

    async def put(self, key: str, record: SignedIn, expires_at: dt.datetime) -> None:
        ttl_ms = max(1, int((expires_at - utcnow()).total_seconds() * 1000))
        await self._redis.set(self._prefix + key, json.dumps(record.to_json()), px=ttl_ms)

    async def get(self, key: str) -> SignedIn | None:
        raw = await self._redis.get(self._prefix + key)
        return None if raw is None else SignedIn.from_json(json.loads(raw))

    async def delete(self, key: str) -> None:
        await self._redis.delete(self._prefix + key)


class DatabaseBackend:
    """A row per session; a new session purges the rows that have expired."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    async def put(self, key: str, record: SignedIn, expires_at: dt.datetime) -> None:
        await run_in_threadpool(self._put, key, record, expires_at)

    def _put(self, key: str, record: SignedIn, expires_at: dt.datetime) -> None:
        with session_scope(self._engine) as session:
            row = session.get(WebSession, key)
            if row is None:
                session.execute(delete(WebSession).where(WebSession.expires_at <= utcnow()))
                session.add(WebSession(id_hash=key, data=record.to_json(), expires_at=expires_at))
            else:
                row.data, row.expires_at = record.to_json(), expires_at

    async def get(self, key: str) -> SignedIn | None:
        return await run_in_threadpool(self._get, key)

    def _get(self, key: str) -> SignedIn | None:
        with session_scope(self._engine) as session:
            row = session.get(WebSession, key)
            return None if row is None else SignedIn.from_json(row.data)

    async def delete(self, key: str) -> None:
        await run_in_threadpool(self._delete, key)

    def _delete(self, key: str) -> None:
        with session_scope(self._engine) as session:
            session.execute(delete(WebSession).where(WebSession.id_hash == key))


class SessionStore:
    def __init__(
        self,
        backend: Backend,
        *,
        idle: dt.timedelta,
        max_age: dt.timedelta,
        clock: Callable[[], dt.datetime] = utcnow,
    ) -> None:
        self.backend = backend
        self.idle = idle
        self.max_age = max_age
        self._clock = clock

    def ends_at(self, record: SignedIn) -> dt.datetime:
        """When the session ends unless it is used again."""
        return min(record.last_seen_at + self.idle, record.created_at + self.max_age)

    async def create(self, principal: Principal, token_hash: str) -> tuple[str, SignedIn]:
        """A new session for the token's holder: its id (the cookie's value) and record."""
        now = self._clock()
        session_id = secrets.token_urlsafe(32)
        record = SignedIn(
            token_hash=token_hash,
            name=principal.name,
            role=principal.role,
            workspaces=tuple(sorted(principal.workspaces)),
            csrf_token=secrets.token_urlsafe(32),
            created_at=now,
            last_seen_at=now,
        )
        await self.backend.put(id_hash(session_id), record, self.ends_at(record))
        return session_id, record

    async def use(self, session_id: str) -> SignedIn | None:
        """The live session with this id, its idle deadline pushed back; None when there is
        none (never was, signed out, idle too long or past the cap)."""
        key = id_hash(session_id)
        record = await self.backend.get(key)
        if record is None:
            return None
        now = self._clock()
        if self.ends_at(record) <= now:
            await self.backend.delete(key)
            return None
        if now - record.last_seen_at >= REFRESH_RESOLUTION:
            record = replace(record, last_seen_at=now)
            await self.backend.put(key, record, self.ends_at(record))
        return record

    async def end(self, session_id: str) -> None:
        await self.backend.delete(id_hash(session_id))
