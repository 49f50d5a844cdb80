"""Map a request's method and path to the full route template that serves it
(``/api/cases/{case_id}``), for metric labels and access logs.

Since FastAPI ~0.137, ``scope["route"].path`` of a route included with ``prefix=`` lacks the
prefix, so the template is resolved here against the app's effective routes instead. Raw paths
never become labels: anything no route matches is ``<unmatched>``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from functools import lru_cache

from fastapi.routing import iter_route_contexts
from starlette.routing import BaseRoute
from starlette.types import Scope

UNMATCHED = "<unmatched>"
# Polled by load balancers, orchestrators and Prometheus: not rate limited, and access-logged
# only when they fail (their volume is in http_requests_total).
PROBE_PATHS = frozenset({"/api/health", "/metrics"})
_CACHE_SIZE = 4096

_Entry = tuple[re.Pattern[str], str, frozenset[str] | None]


class RouteTemplates:
    def __init__(self, routes: Callable[[], Sequence[BaseRoute]]) -> None:
        # Built on the first request, when every router is in (tests and plug-ins include theirs
        # after create_app returns); a router included after that would not be seen.
        self._routes = routes
        self._table: list[_Entry] | None = None
        self.resolve = lru_cache(maxsize=_CACHE_SIZE)(self._resolve)

    def _build(self) -> list[_Entry]:
        table: list[_Entry] = []
        # iter_route_contexts yields included routes with their prefixes applied.
        for context in iter_route_contexts(self._routes()):
            regex, template = context.path_regex, context.path_format
            if regex is None or template is None:
                continue
            methods = context.methods
            table.append((regex, template, frozenset(methods) if methods else None))
        return table

    def _resolve(self, method: str, path: str) -> str:
        if self._table is None:
            self._table = self._build()
        partial = None
        # Same order as the router: the first full match wins; a path match with the wrong
        # method (a 405) still gets its template.
        for regex, template, methods in self._table:
            if regex.match(path):
                if methods is None or method in methods:
                    return template
                partial = partial or template
        return partial or UNMATCHED


def route_path(scope: Scope) -> str:
    """The path the router matches: ``path`` without the ASGI ``root_path``."""
    path: str = scope["path"]
    root: str = scope.get("root_path") or ""
    if root and path.startswith(root):
        return path[len(root) :] or "/"
    return path


def under_api(path: str) -> bool:
    """The JSON API (``no-store``, rate limited), as opposed to pages, assets and ``/metrics``."""
    return path == "/api" or path.startswith("/api/")
