"""The FastAPI app: ``create_app()`` wires settings, middleware, routers and the lifespan.

    uvicorn --factory fwa_api.app:create_app      (or: fwa serve)

Middleware, outermost first: request context (request id, metrics and access log, security
headers, and CORS for requests with an Origin) → rate limit → routes (with the catch-all error
middleware just outside the router). ``middleware=False`` builds the same routes without that
stack, as the benchmark's baseline.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
from collections.abc import AsyncIterator

from fastapi import Depends, FastAPI

from fwa_api import routers
from fwa_api.auth import (
    REDIS_PREFIX,
    revocation_channel,
    token_key,
    verified_token_id,
    watch_revocations,
)
from fwa_api.deps import current_principal
from fwa_api.errors import install_error_handling
from fwa_api.health.checker import HealthChecker
from fwa_api.metrics.collector import StoreCollector
from fwa_api.middleware.cors import CorsPolicy
from fwa_api.middleware.metrics import ApiMetrics
from fwa_api.middleware.rate_limit import ClientAddress, RateLimiter, RateLimitMiddleware
from fwa_api.middleware.request_context import RequestContextMiddleware
from fwa_api.middleware.route_templates import RouteTemplates
from fwa_api.openapi import install_openapi
from fwa_api.services import Clients, Services
from fwa_api.signin.store import DatabaseBackend, RedisBackend, SessionStore
from fwa_pipeline.kit.logging import configure_logging
from fwa_pipeline.settings import Settings, get_settings

logger = logging.getLogger(__name__)

# uvicorn installs handlers of its own when it is started from its CLI; route its records through
# the JSON handler instead. Its access log is replaced by ours (which omits raw paths).
UVICORN_LOGGERS = ("uvicorn", "uvicorn.error", "uvicorn.access")
# At INFO these log a line per outgoing request (the health check's Ollama probes, say).
QUIET_LOGGERS = ("uvicorn.access", "httpx", "httpcore")

CORS_METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE"]
CORS_HEADERS = ["Content-Type", "Authorization", "X-Request-ID", "Idempotency-Key"]
CORS_EXPOSE = ["X-Request-ID", "Retry-After"]


async def _stop(task: asyncio.Task[None]) -> None:
    # Python 3.11's asyncio.wait_for (redis-py uses it while connecting) can swallow a
    # cancellation, leaving the task running: cancel until it is really done.
    while not task.done():
        task.cancel()
        await asyncio.wait([task], timeout=0.1)


@contextlib.asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    services: Services = app.state.services
    settings = services.settings
    configure_logging(settings.log_level, reroute=UVICORN_LOGGERS)
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
    clients = services.clients = Clients.open(settings)
    watcher = None
    if not settings.rate_limit_enabled:
        logger.warning("FWA_RATE_LIMIT_ENABLED is false: rate limiting is off")
    elif clients.redis is None:
        logger.warning("FWA_REDIS_URL is not set: rate limiting is off")
    if clients.redis is not None:
        if settings.rate_limit_enabled:
            services.rate_limiter = RateLimiter(
                clients.redis,
                limit=settings.rate_limit_per_minute,
                key_prefix=services.redis_prefix,
                metrics=services.metrics,
            )
        watcher = asyncio.create_task(
            watch_revocations(
                clients.redis, revocation_channel(services.redis_prefix), services.tokens
            )
        )
    backend = (
        DatabaseBackend(clients.engine)
        if clients.redis is None
        else RedisBackend(clients.redis, services.redis_prefix)
    )
    services.session_store = SessionStore(
        backend,
        idle=dt.timedelta(minutes=settings.session_idle_minutes),
        max_age=dt.timedelta(hours=settings.session_max_hours),
    )
    logger.info("api started", extra={"environment": settings.environment.value})
    try:
        yield
    finally:
        if watcher is not None:
            await _stop(watcher)
        services.rate_limiter = None
        services.session_store = None
        services.clients = None
        await clients.close()


def create_app(
    settings: Settings | None = None, *, middleware: bool = True, redis_prefix: str = REDIS_PREFIX
) -> FastAPI:
    """``redis_prefix`` namespaces every Redis key and channel (a shared Redis, the tests)."""
    settings = settings or get_settings()
    app = FastAPI(
        title="FWA detection API",
        lifespan=lifespan,
        # Swagger UI and ReDoc need inline scripts and a CDN, which the CSP forbids; the schema
        # stays available.
        docs_url=None,
        redoc_url=None,
    )
    templates = RouteTemplates(lambda: app.routes)
    services = Services(
        settings=settings,
        metrics=ApiMetrics(),
        redis_prefix=redis_prefix,
        health=HealthChecker(),
        client_address=ClientAddress(settings.trusted_proxies),
    )
    app.state.services = services
    services.metrics.registry.register(StoreCollector(lambda: services.engine))

    for router in routers.PUBLIC:
        app.include_router(router)
    for router in routers.PROTECTED:
        app.include_router(router, dependencies=[Depends(current_principal)])

    install_error_handling(app)
    install_openapi(app)
    if middleware:
        key = token_key(settings)
        # add_middleware wraps what is there already: add them innermost first.
        app.add_middleware(
            RateLimitMiddleware,
            limiter=lambda: services.rate_limiter,
            client_address=services.client_address,
            verified_token=lambda scope: verified_token_id(scope, services.tokens, key),
        )
        app.add_middleware(
            RequestContextMiddleware,
            templates=templates,
            stats=services.metrics.http,
            cors=CorsPolicy(
                allow_origins=settings.allowed_origins,
                allow_methods=CORS_METHODS,
                allow_headers=CORS_HEADERS,
                expose_headers=CORS_EXPOSE,
                max_age=600,
            ),
        )
    return app
