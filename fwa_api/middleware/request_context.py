"""Request id, timing and the one JSON access-log line per request.

The id comes from a well-formed ``X-Request-ID`` (1-64 of ``[A-Za-z0-9._-]``) or is a new uuid4;
it is set in a contextvar (every log line and audit row picks it up) and returned in the
response's ``X-Request-ID``. The access line names the route template, never the raw path or query
string, which may carry member or claim identifiers. Successful probes (``PROBE_PATHS``: health
and metrics, polled every few seconds) get no line: they would drown the rest, cost a fifth of
such a request's time, and are counted in ``http_requests_total`` anyway.
"""

from __future__ import annotations

import logging
import os
import re
import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from fwa_api.middleware.route_templates import PROBE_PATHS, RouteTemplates, route_path
from fwa_pipeline.kit.logging import request_id_var

access_log = logging.getLogger("fwa_api.access")

_WELL_FORMED_ID = re.compile(rb"[A-Za-z0-9._-]{1,64}")


def new_request_id() -> str:
    """A random uuid4 in its usual text form: ``str(uuid.uuid4())`` builds a UUID object on the
    way, which is 2.5 us of a health probe's 100; this is 1 us."""
    raw = bytearray(os.urandom(16))
    raw[6] = (raw[6] & 0x0F) | 0x40  # version 4
    raw[8] = (raw[8] & 0x3F) | 0x80  # RFC 4122 variant
    h = raw.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def incoming_request_id(scope: Scope) -> str | None:
    for name, value in scope["headers"]:
        if name == b"x-request-id":
            return value.decode("ascii") if _WELL_FORMED_ID.fullmatch(value) else None
    return None


class RequestContextMiddleware:
    def __init__(self, app: ASGIApp, *, templates: RouteTemplates) -> None:
        self.app = app
        self.templates = templates

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
            if access_log.isEnabledFor(logging.INFO) and (
                status >= 400 or route_path(scope) not in PROBE_PATHS
            ):
                self._log(scope, status, time.perf_counter() - start)
            request_id_var.reset(token)

    def _log(self, scope: Scope, status: int, seconds: float) -> None:
        method = scope["method"]
        route = self.templates.resolve(method, route_path(scope))
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
