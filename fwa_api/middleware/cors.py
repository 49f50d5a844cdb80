"""CORS from settings: Starlette's ``CORSMiddleware`` for cross-origin requests, and a cheap path
for the rest.

Starlette's middleware wraps every response, parsing its headers into ``MutableHeaders`` only to
add ``Vary: Origin``; that was a third of the whole stack's cost on a health probe. A request with
no ``Origin`` header (probes, server-to-server calls, same-origin page loads) gets the same
``Vary: Origin`` appended directly, except under ``/api``: those responses are ``no-store``, never
cached, so there is nothing for ``Vary`` to key. Everything cross-origin, preflights included, is
Starlette's.
"""

from __future__ import annotations

from collections.abc import Sequence

from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from fwa_api.middleware.route_templates import route_path, under_api

_VARY_ORIGIN = (b"vary", b"Origin")


class CorsMiddleware:
    def __init__(
        self,
        app: ASGIApp,
        *,
        allow_origins: Sequence[str],
        allow_methods: Sequence[str],
        allow_headers: Sequence[str],
        expose_headers: Sequence[str],
        max_age: int,
    ) -> None:
        self.app = app
        self.cors = CORSMiddleware(
            app,
            allow_origins=allow_origins,
            allow_methods=allow_methods,
            allow_headers=allow_headers,
            expose_headers=expose_headers,
            max_age=max_age,
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or any(name == b"origin" for name, _ in scope["headers"]):
            await self.cors(scope, receive, send)
            return
        if under_api(route_path(scope)):
            await self.app(scope, receive, send)
            return

        async def send_with_vary(message: Message) -> None:
            if message["type"] == "http.response.start":
                # Vary is a list field: a second line is read as one more entry.
                message["headers"] = [*message.get("headers", ()), _VARY_ORIGIN]
            await send(message)

        await self.app(scope, receive, send_with_vary)
