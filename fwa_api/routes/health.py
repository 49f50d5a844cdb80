"""``GET /api/health`` (plan 4D): database, Redis and Ollama, checked concurrently with short
timeouts and cached for ``CACHE_TTL_S``; no token needed.

* ``healthy``: everything answers; ``degraded``: Redis or Ollama is down, or the rate limiter is
  failing open (the API still serves); ``unhealthy`` (503): the database is down.
* Ollama: the configured model installed and loaded (``/api/ps``) is ``ready``; installed but not
  loaded, or ``/api/ps`` too slow (it can block while a model loads), is ``loading``; anything
  else is ``unavailable``.
* The body names states only: error details go to the log, not to an unauthenticated caller.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from sqlalchemy import text

from fwa_api.services import Services, services
from fwa_pipeline.kit.logging import LogThrottle

logger = logging.getLogger(__name__)

router = APIRouter(tags=["health"])

CACHE_TTL_S = 10.0
DB_TIMEOUT_S = 2.0
REDIS_TIMEOUT_S = 1.0
OLLAMA_TIMEOUT_S = 1.5
OLLAMA_PS_TIMEOUT_S = 1.0

Component = dict[str, Any]


class HealthChecker:
    def __init__(
        self, *, ttl: float = CACHE_TTL_S, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.ttl = ttl
        self._clock = clock
        self._cached: tuple[float, dict[str, Component]] | None = None
        self._lock: asyncio.Lock | None = None
        # A dependency that stays down would otherwise log a warning every CACHE_TTL_S.
        self._warn = {name: LogThrottle(60.0, clock) for name in ("database", "redis", "ollama")}

    async def report(self, app: Services) -> tuple[int, dict[str, Any]]:
        components = dict(await self._components(app))
        # Read live, not cached: a limiter that has just started failing open shows at once.
        limiter = app.rate_limiter
        if limiter is None:
            limiter_state = "off"
        else:
            limiter_state = "failing_open" if limiter.failing_open else "enforcing"
        components["redis"] = {**components["redis"], "rate_limiter": limiter_state}
        if components["database"]["status"] != "connected":
            status = "unhealthy"
        elif (
            components["redis"]["status"] == "disconnected"
            or limiter_state == "failing_open"
            or components["ollama"]["status"] == "unavailable"
        ):
            status = "degraded"
        else:
            status = "healthy"
        return (503 if status == "unhealthy" else 200), {"status": status, "components": components}

    async def _components(self, app: Services) -> dict[str, Component]:
        cached = self._fresh()
        if cached is not None:
            return cached
        # One check at a time: callers arriving meanwhile wait for it and share its result.
        self._lock = self._lock or asyncio.Lock()
        async with self._lock:
            cached = self._fresh()
            if cached is not None:
                return cached
            database, redis, ollama = await asyncio.gather(
                self._timed("database", check_database(app), DB_TIMEOUT_S, "disconnected"),
                self._timed("redis", check_redis(app), REDIS_TIMEOUT_S, "disconnected"),
                self._timed("ollama", check_ollama(app), OLLAMA_TIMEOUT_S * 2, "unavailable"),
            )
            ollama["model"] = app.settings.ollama_model
            checked_at = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
            components = {"database": database, "redis": redis, "ollama": ollama}
            for component in components.values():
                component["checked_at"] = checked_at
            self._cached = (self._clock(), components)
            return components

    def _fresh(self) -> dict[str, Component] | None:
        if self._cached is not None and self._clock() - self._cached[0] < self.ttl:
            return self._cached[1]
        return None

    async def _timed(
        self, name: str, check: Awaitable[Component], timeout: float, down: str
    ) -> Component:
        start = time.perf_counter()
        try:
            component = await asyncio.wait_for(check, timeout)
        except Exception as exc:  # a dependency's failure is a state to report, not a 500
            if self._warn[name].ready() is not None:
                logger.warning("health: %s is %s (%s)", name, down, type(exc).__name__)
            component = {"status": down}
        component["latency_ms"] = round((time.perf_counter() - start) * 1000, 1)
        return component


async def check_database(app: Services) -> Component:
    def ping() -> None:
        with app.engine.connect() as connection:
            connection.execute(text("SELECT 1"))

    # Its own thread (not the request thread pool): a hung connect must not starve requests,
    # and wait_for abandons it after DB_TIMEOUT_S.
    await asyncio.to_thread(ping)
    return {"status": "connected"}


async def check_redis(app: Services) -> Component:
    if app.redis is None:
        return {"status": "not_configured"}
    await app.redis.ping()
    return {"status": "connected"}


def _model_key(name: str) -> str:
    # Ollama reads a model name without a tag as ":latest".
    return name if ":" in name else f"{name}:latest"


def _lists_model(response: httpx.Response, wanted: str) -> bool:
    response.raise_for_status()
    return any(
        _model_key(str(entry.get(key, ""))) == wanted
        for entry in response.json().get("models", [])
        for key in ("name", "model")
    )


async def check_ollama(app: Services) -> Component:
    """Raises when Ollama is unreachable or answers nonsense (reported as unavailable)."""
    base = app.settings.ollama_url.rstrip("/")
    wanted = _model_key(app.settings.ollama_model)
    tags = await app.http.get(f"{base}/api/tags", timeout=OLLAMA_TIMEOUT_S)
    if not _lists_model(tags, wanted):
        return {"status": "unavailable", "installed": False}
    try:
        loaded = await app.http.get(f"{base}/api/ps", timeout=OLLAMA_PS_TIMEOUT_S)
        ready = _lists_model(loaded, wanted)
    except (httpx.HTTPError, ValueError):
        ready = False  # /api/ps can block while a model loads
    return {"status": "ready" if ready else "loading", "installed": True}


@router.get("/api/health")
async def health(request: Request) -> JSONResponse:
    app = services(request)
    status_code, body = await app.health.report(app)
    return JSONResponse(body, status_code=status_code)
