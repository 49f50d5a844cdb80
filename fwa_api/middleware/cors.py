"""CORS from settings: Starlette's ``CORSMiddleware`` for cross-origin requests only.

Starlette's middleware wraps every response it sees, parsing its headers into ``MutableHeaders``
only to add ``Vary: Origin``; on a health probe that was a third of the whole stack's cost. So
the request context (``fwa_api.middleware.request_context``), which scans the request headers
anyway, sends only requests with an ``Origin`` header (preflights included) through it. The rest
(probes, server-to-server calls, same-origin page loads) get ``Vary: Origin`` from the request
context, except under ``/api``: those responses are ``no-store``, never cached, so there is
nothing for ``Vary`` to key.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp

VARY_ORIGIN = (b"vary", b"Origin")


@dataclass(frozen=True)
class CorsPolicy:
    allow_origins: Sequence[str]
    allow_methods: Sequence[str]
    allow_headers: Sequence[str]
    expose_headers: Sequence[str]
    max_age: int

    def wrap(self, app: ASGIApp) -> ASGIApp:
        """``app`` behind Starlette's CORS handling, for the requests that carry an Origin."""
        return CORSMiddleware(
            app,
            allow_origins=self.allow_origins,
            allow_methods=self.allow_methods,
            allow_headers=self.allow_headers,
            expose_headers=self.expose_headers,
            max_age=self.max_age,
        )
