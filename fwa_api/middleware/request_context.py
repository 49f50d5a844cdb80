"""Request id, timing, and the record of every request: its HTTP metrics and its JSON access-log
line.

The id comes from a well-formed ``X-Request-ID`` (1-64 of ``[A-Za-z0-9._-]``) or is a new uuid4;
it is set in a contextvar (every log line and audit row picks it up) and returned in the
response's ``X-Request-ID``. The request is timed once, its route template resolved once, and
both records use them: ``http_requests_total`` and ``http_request_duration_seconds``
(``fwa_api.middleware.metrics.HttpRequestStats``) and the access line. The access line names the
route template, never the raw path or query string, which may carry member or claim identifiers.
Successful probes (``PROBE_PATHS``: health and metrics, polled every few seconds) get no line:
they would drown the rest, cost a fifth of such a request's time, and are counted in
``http_requests_total`` anyway.
"""

from __future__ import annotations

import logging
import random
import re
import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from fwa_api.middleware.metrics import HttpRequestStats
from fwa_api.middleware.route_templates import PROBE_PATHS, RouteTemplates, route_path
from fwa_pipeline.kit.logging import request_id_var

access_log = logging.getLogger("fwa_api.access")

_WELL_FORMED_ID = re.compile(rb"[A-Za-z0-9._-]{1,64}")
# uuid4's version (4) and RFC 4122 variant bits.
_UUID4_MASK = ~((0xF << 76) | (0xC << 60)) & ((1 << 128) - 1)
_UUID4_BITS = (0x4 << 76) | (0x8 << 60)
_random_bits = random.getrandbits


def new_request_id() -> str:
    """A random uuid4 in its usual text form. A request id correlates log lines, it guards
    nothing (the client sees it), so it is drawn from ``random`` rather than ``os.urandom``: a
    syscall and a UUID object were a tenth of the middleware's cost on a health probe."""
    h = f"{_random_bits(128) & _UUID4_MASK | _UUID4_BITS:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def incoming_request_id(scope: Scope) -> str | None:
    for name, value in scope["headers"]:
        if name == b"x-request-id":
            return value.decode("ascii") if _WELL_FORMED_ID.fullmatch(value) else None
    return None


class RequestContextMiddleware:
    def __init__(self, app: ASGIApp, *, templates: RouteTemplates, stats: HttpRequestStats) -> None:
        self.app = app
        self.templates = templates
        self.stats = stats

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        request_id = incoming_request_id(scope) or new_request_id()
        header = (b"x-request-id", request_id.encode("ascii"))
        token = request_id_var.set(request_id)
        status = 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", ()), header]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            self._record(scope, route_path(scope), status, time.perf_counter() - start)
            request_id_var.reset(token)

    def _record(self, scope: Scope, path: str, status: int, seconds: float) -> None:
        method = scope["method"]
        route = self.templates.resolve(method, path)
        self.stats.record(method, route, status, seconds)
        if (status < 400 and path in PROBE_PATHS) or not access_log.isEnabledFor(logging.INFO):
            return
        extra: dict[str, object] = {
            "method": method,
            "route": route,
            "status": status,
            "duration_ms": round(seconds * 1000, 3),
        }
        # Set by the auth dependency: the token's name, so access lines say who.
        actor = scope.get("state", {}).get("actor")
        if actor is not None:
            extra["actor"] = actor
        # makeRecord + handle is what Logger.info does, minus the stack walk that finds the
        # caller's file and line (always this spot): about a quarter of the cost of a line.
        record = access_log.makeRecord(
            access_log.name,
            logging.INFO,
            __file__,
            0,
            "%s %s %s",
            (method, route, status),
            None,
            extra=extra,
        )
        access_log.handle(record)
