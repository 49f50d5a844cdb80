"""What ``GET /api/health`` reports: the database, Redis and the rate limiter, the assistant's LLM
server and the Dagster daemon, checked concurrently with short timeouts and cached for
``CACHE_TTL_S``.

* ``healthy``: everything answers; ``degraded``: the API serves, but something it depends on is
  down and ``reasons`` says what that means, one sentence each; ``unhealthy`` (503): the database
  is down.
* Redis is pinged through the rate limiter when there is one, so the limiter's state is what Redis
  answers now (``enforcing`` or ``failing_open``), not what the last limited request saw.
* ``llm``: the backend and model the assistant is configured with (``FWA_LLM_*``, else
  ``FWA_OLLAMA_*``), asked the way the assistant asks. Ollama: the model installed
  (``/api/tags``) and loaded (``/api/ps``) is ``ready``; installed but not loaded, or
  ``/api/ps`` too slow (it can block while a model loads), is ``loading``. OpenAI-compatible: the
  model among those ``/v1/models`` lists is ``ready``. Anything else is ``unavailable``. (Settings
  the assistant refuses stop the API at start-up.)
* ``dagster_daemon``: the heartbeats of the daemons the Dagster instance needs (sensors, the run
  queue, schedules...), read from the instance the API uses (``DAGSTER_HOME``). Each daemon
  writes one every 30 s: all within ``FWA_DAEMON_HEARTBEAT_TOLERANCE_S`` is ``running``, some
  late or missing is ``stale`` (``late`` names them), none at all is ``not_running``; an instance
  that needs no daemon is ``not_required``.
* The body names states only: error details go to the log, not to an unauthenticated caller.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import functools
import logging
import threading
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Protocol

from sqlalchemy import text

from fwa_api.agents.llm import LLMBackend
from fwa_pipeline.kit.logging import LogThrottle

if TYPE_CHECKING:
    from dagster import DagsterInstance
    from redis.asyncio import Redis
    from sqlalchemy import Engine

    from fwa_api.agents.loop import Assistant
    from fwa_api.middleware.rate_limit import RateLimiter
    from fwa_pipeline.settings import Settings

logger = logging.getLogger(__name__)

CACHE_TTL_S = 10.0
DB_TIMEOUT_S = 2.0
REDIS_TIMEOUT_S = 1.0
# The first check opens the Dagster instance, which imports Dagster: seconds, once.
DAEMON_TIMEOUT_S = 5.0
# An Ollama status asks up to three things in turn (tags, ps, show), each within the
# assistant's own probe timeout.
LLM_PROBES = 3

Component = dict[str, Any]

# What each state that is not fine means to an operator; any of them makes the API degraded.
REASONS: dict[tuple[str, str], str] = {
    ("redis", "disconnected"): "Redis does not answer: requests are not rate limited",
    ("llm", "unavailable"): "the LLM server does not answer or does not have the configured "
    "model: the assistant cannot answer",
    ("dagster_daemon", "stale"): "a Dagster daemon's heartbeat is late: queued pipeline jobs "
    "may never start",
    ("dagster_daemon", "not_running"): "no Dagster daemon runs on this instance: queued "
    "pipeline jobs will not start",
    ("dagster_daemon", "unavailable"): "the Dagster instance could not be read: the daemon's "
    "state is unknown",
}
FAILING_OPEN = "the rate limiter cannot reach Redis: requests are not rate limited"
DATABASE_DOWN = "the database does not answer"


class Dependencies(Protocol):
    """What the checks read: the app's ``Services``, which hold the checker (so it cannot
    import them)."""

    settings: Settings
    rate_limiter: RateLimiter | None

    @property
    def engine(self) -> Engine: ...

    @property
    def redis(self) -> Redis | None: ...

    @property
    def assistant(self) -> Assistant: ...

    def dagster_instance(self) -> DagsterInstance: ...


class HealthChecker:
    def __init__(
        self, *, ttl: float = CACHE_TTL_S, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.ttl = ttl
        self._clock = clock
        self._cached: tuple[float, dict[str, Component]] | None = None
        self._lock: asyncio.Lock | None = None
        self._daemon_read: asyncio.Future[Component] | None = None
        # A dependency that stays down would otherwise log a warning every CACHE_TTL_S.
        self._warn = {
            name: LogThrottle(60.0, clock)
            for name in ("database", "redis", "llm", "dagster_daemon")
        }

    async def report(self, app: Dependencies) -> tuple[int, dict[str, Any]]:
        components = dict(await self._components(app))
        # Read live, not cached: a limiter that has just started failing open shows at once.
        limiter = app.rate_limiter
        if limiter is None:
            limiter_state = "off"
        else:
            limiter_state = "failing_open" if limiter.failing_open else "enforcing"
        components["redis"] = {**components["redis"], "rate_limiter": limiter_state}
        reasons = [
            REASONS[name, component["status"]]
            for name, component in components.items()
            if (name, component["status"]) in REASONS
        ]
        if limiter_state == "failing_open" and components["redis"]["status"] == "connected":
            reasons.append(FAILING_OPEN)
        if components["database"]["status"] != "connected":
            status = "unhealthy"
            reasons.insert(0, DATABASE_DOWN)
        else:
            status = "degraded" if reasons else "healthy"
        body = {"status": status, "reasons": reasons, "components": components}
        return (503 if status == "unhealthy" else 200), body

    async def _components(self, app: Dependencies) -> dict[str, Component]:
        cached = self._fresh()
        if cached is not None:
            return cached
        # One check at a time: callers arriving meanwhile wait for it and share its result.
        self._lock = self._lock or asyncio.Lock()
        async with self._lock:
            cached = self._fresh()
            if cached is not None:
                return cached
            assistant = app.assistant
            llm_timeout = LLM_PROBES * assistant.settings.llm_probe_timeout_s
            database, redis, model, daemon = await asyncio.gather(
                self._timed("database", check_database(app), DB_TIMEOUT_S, "disconnected"),
                self._timed("redis", check_redis(app), REDIS_TIMEOUT_S, "disconnected"),
                self._timed("llm", check_llm(assistant.backend), llm_timeout, "unavailable"),
                self._timed("dagster_daemon", self._daemon(app), DAEMON_TIMEOUT_S, "unavailable"),
            )
            model |= {"backend": assistant.backend.kind, "model": assistant.backend.model}
            checked_at = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
            components = {
                "database": database,
                "redis": redis,
                "llm": model,
                "dagster_daemon": daemon,
            }
            for component in components.values():
                component["checked_at"] = checked_at
            self._cached = (self._clock(), components)
            return components

    def _daemon(self, app: Dependencies) -> Awaitable[Component]:
        # One read at a time: a check that finds the last read still going (a Dagster storage
        # that hangs) waits on it rather than starting another thread.
        if self._daemon_read is None or self._daemon_read.done():
            tolerance_s = app.settings.daemon_heartbeat_tolerance_s
            self._daemon_read = in_daemon_thread(
                lambda: daemon_state(app.dagster_instance(), tolerance_s)
            )
        return asyncio.shield(self._daemon_read)

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


async def check_database(app: Dependencies) -> Component:
    def ping() -> None:
        with app.engine.connect() as connection:
            connection.execute(text("SELECT 1"))

    # Its own thread (not the request thread pool): a hung connect must not starve requests,
    # and wait_for abandons it after DB_TIMEOUT_S.
    await asyncio.to_thread(ping)
    return {"status": "connected"}


async def check_redis(app: Dependencies) -> Component:
    if app.redis is None:
        return {"status": "not_configured"}
    if app.rate_limiter is not None:
        await app.rate_limiter.probe()
    else:
        await app.redis.ping()
    return {"status": "connected"}


async def check_llm(backend: LLMBackend) -> Component:
    found = await backend.status()
    if not found.reachable:
        return {"status": "unavailable"}
    # An OpenAI-compatible server that does not list the model cannot say it has it (None).
    if found.installed is not True:
        return {"status": "unavailable", "installed": False}
    # An OpenAI-compatible server serves only models it has loaded; Ollama says (or, while it
    # loads one, does not answer /api/ps in time: None).
    ready = found.loaded is True or backend.kind == "openai"
    return {"status": "ready" if ready else "loading", "installed": True}


def in_daemon_thread(work: Callable[[], Component]) -> asyncio.Future[Component]:
    """``work()`` in a daemon thread of its own. Opening the Dagster instance and reading its
    storage block, and Dagster's PostgreSQL storage connects without a timeout: a thread stuck
    there must not hold up shutdown, which waits for the event loop's executor threads."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[Component] = loop.create_future()

    def settle(outcome: Callable[[], None]) -> None:
        if not future.done():
            outcome()

    def run() -> None:
        try:
            result = work()
        except Exception as exc:
            answer = functools.partial(settle, functools.partial(future.set_exception, exc))
        else:
            answer = functools.partial(settle, functools.partial(future.set_result, result))
        with contextlib.suppress(RuntimeError):  # the loop has closed: nobody is waiting
            loop.call_soon_threadsafe(answer)

    threading.Thread(target=run, name="health-dagster", daemon=True).start()
    return future


def daemon_state(instance: DagsterInstance, tolerance_s: float) -> Component:
    required = instance.get_required_daemon_types()
    if not required:
        return {"status": "not_required"}
    heartbeats = instance.get_daemon_heartbeats()
    # Heartbeats carry the daemon host's wall-clock time.
    now = time.time()
    beats = {kind: heartbeats[kind].timestamp for kind in required if kind in heartbeats}
    if not beats:
        return {"status": "not_running"}
    late = sorted(kind for kind in required if now - beats.get(kind, float("-inf")) > tolerance_s)
    last = dt.datetime.fromtimestamp(max(beats.values()), dt.UTC).isoformat(timespec="seconds")
    component: Component = {"status": "stale" if late else "running", "last_heartbeat": last}
    if late:
        component["late"] = late
    return component
