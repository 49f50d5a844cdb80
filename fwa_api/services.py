"""What the app shares between requests: settings, metrics, caches, and the clients (database
engine, Redis, HTTP, and the assistant built on them) that the lifespan opens at start-up and
closes at shutdown."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import httpx
from fastapi import Request
from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from sqlalchemy import Engine

from fwa_api.agents.llm import make_backend
from fwa_api.agents.loop import Assistant
from fwa_api.auth import TOKEN_TTL_S, Principal, TtlCache
from fwa_api.health.checker import HealthChecker
from fwa_api.middleware.metrics import ApiMetrics
from fwa_api.middleware.rate_limit import ClientAddress, RateLimiter
from fwa_api.signin.store import SessionStore
from fwa_pipeline.settings import Settings
from fwa_pipeline.store.db import get_engine

if TYPE_CHECKING:
    from dagster import DagsterInstance

# Redis sits on the request path (rate limit): no retries with back-off (redis-py's default)
# while the request waits; after this long the limiter fails open. Not much shorter: the timer
# also runs while this process's own event loop is busy, and a loaded server must not stop
# limiting because of its own load.
REDIS_TIMEOUT_S = 1.0
REDIS_MAX_CONNECTIONS = 64
# Workspace ids never change while a workspace exists; a deleted one may linger this long.
WORKSPACE_ID_TTL_S = 30.0


@dataclass
class Clients:
    engine: Engine
    redis: Redis | None
    http: httpx.AsyncClient
    # Built from ``settings.assistant``; its LLM backend speaks through ``http``.
    assistant: Assistant

    @classmethod
    def open(cls, settings: Settings) -> Clients:
        url = settings.redis_url.get_secret_value() if settings.redis_url else ""
        redis = None
        if url:
            pool = BlockingConnectionPool.from_url(
                url,
                max_connections=REDIS_MAX_CONNECTIONS,
                timeout=REDIS_TIMEOUT_S,
                socket_timeout=REDIS_TIMEOUT_S,
                socket_connect_timeout=REDIS_TIMEOUT_S,
                retry=Retry(NoBackoff(), 0),
            )
            redis = Redis.from_pool(pool)  # closing the client closes the pool
        # The engine's connect and statement timeouts are the settings' (store.db).
        engine, http = get_engine(settings), httpx.AsyncClient()
        backend = make_backend(settings.assistant, http)
        assistant = Assistant(settings.assistant, backend, engine)
        return cls(engine=engine, redis=redis, http=http, assistant=assistant)

    async def close(self) -> None:
        await self.http.aclose()
        if self.redis is not None:
            await self.redis.aclose()
        # The engine is shared per URL in this process (store.db.engine_for); dispose() only
        # closes its pooled connections, and the pool reopens them if it is used again.
        self.engine.dispose()


@dataclass
class Services:
    settings: Settings
    metrics: ApiMetrics
    redis_prefix: str
    health: HealthChecker
    tokens: TtlCache[str, Principal] = field(default_factory=lambda: TtlCache(TOKEN_TTL_S))
    workspace_ids: TtlCache[str, int] = field(default_factory=lambda: TtlCache(WORKSPACE_ID_TTL_S))
    # Who the client is, and whether it came over HTTPS, as FWA_TRUSTED_PROXIES lets us tell.
    client_address: ClientAddress = field(default_factory=lambda: ClientAddress([]))
    clients: Clients | None = None
    rate_limiter: RateLimiter | None = None
    # Browser sessions: in Redis when there is one, else in the database (the lifespan sets it).
    session_store: SessionStore | None = None
    # Canceling a pipeline job cancels or terminates its Dagster run. Opened on first use (it
    # reads DAGSTER_HOME's configuration and storage, which most requests never need) and kept
    # for the life of the process. Set it to use an instance of the caller's own.
    dagster: DagsterInstance | None = None
    _dagster_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def dagster_instance(self) -> DagsterInstance:
        """The instance of ``DAGSTER_HOME`` (``./dagster_home`` when unset), as the pipeline
        finds it. Blocking: call from a worker thread."""
        with self._dagster_lock:
            if self.dagster is None:
                from dagster import DagsterInstance

                from fwa_pipeline.runs.home import default_dagster_home

                default_dagster_home()
                self.dagster = DagsterInstance.get()
            return self.dagster

    def _clients(self) -> Clients:
        if self.clients is None:
            raise RuntimeError("the app has not started (its lifespan opens the clients)")
        return self.clients

    @property
    def engine(self) -> Engine:
        return self._clients().engine

    @property
    def redis(self) -> Redis | None:
        return self._clients().redis

    @property
    def http(self) -> httpx.AsyncClient:
        return self._clients().http

    @property
    def assistant(self) -> Assistant:
        return self._clients().assistant

    @property
    def web_sessions(self) -> SessionStore:
        if self.session_store is None:
            raise RuntimeError("the app has not started (its lifespan opens the session store)")
        return self.session_store


def services(request: Request) -> Services:
    return request.app.state.services  # type: ignore[no-any-return]
