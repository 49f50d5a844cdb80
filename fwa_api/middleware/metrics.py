"""Prometheus metrics: the plan's names, one registry per app (tests stay isolated), and the
middleware that records every HTTP request under its route template.

The pipeline metrics and ``active_cases_by_risk_level`` are read from the store at scrape time
(``fwa_api.routes.metrics.StoreCollector``): pipeline runs happen in Dagster's processes, so the
database, not this process, knows them.
"""

from __future__ import annotations

import time

from prometheus_client import (
    GC_COLLECTOR,
    PLATFORM_COLLECTOR,
    PROCESS_COLLECTOR,
    CollectorRegistry,
    Counter,
    Histogram,
)
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from fwa_api.middleware.route_templates import RouteTemplates, route_path

# Anything else is counted as OTHER so invented methods cannot add label values.
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


class ApiMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        for collector in (PROCESS_COLLECTOR, PLATFORM_COLLECTOR, GC_COLLECTOR):
            self.registry.register(collector)
        self.http_requests = Counter(
            "http_requests_total",
            "HTTP requests by method, route template and status code.",
            ["method", "path", "status_code"],
            registry=self.registry,
        )
        self.http_duration = Histogram(
            "http_request_duration_seconds",
            "HTTP request duration by method and route template.",
            ["method", "path"],
            registry=self.registry,
        )
        self.agent_chat_requests = Counter(
            "agent_chat_requests_total",
            "Assistant chat requests by the model that answered.",
            ["model_used"],
            registry=self.registry,
        )
        self.agent_chat_duration = Histogram(
            "agent_chat_duration_seconds",
            "Assistant chat duration.",
            registry=self.registry,
            buckets=(0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120),
        )
        self.rate_limit_backend_errors = Counter(
            "rate_limit_backend_errors_total",
            "Rate-limit checks that failed open because Redis did not answer.",
            registry=self.registry,
        )


class MetricsMiddleware:
    def __init__(self, app: ASGIApp, *, metrics: ApiMetrics, templates: RouteTemplates) -> None:
        self.app = app
        self.metrics = metrics
        self.templates = templates
        # prometheus_client's labels() takes a lock and builds a tuple per call; the set of
        # (method, template, status) is small and bounded, so keep the children.
        self._counters: dict[tuple[str, str, int], Counter] = {}
        self._histograms: dict[tuple[str, str], Histogram] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def send_observed(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_observed)
        finally:
            self._observe(scope, status, time.perf_counter() - start)

    def _observe(self, scope: Scope, status: int, seconds: float) -> None:
        method = scope["method"] if scope["method"] in _METHODS else "OTHER"
        path = self.templates.resolve(method, route_path(scope))
        counter = self._counters.get((method, path, status))
        if counter is None:
            counter = self.metrics.http_requests.labels(method, path, str(status))
            self._counters[(method, path, status)] = counter
        counter.inc()
        histogram = self._histograms.get((method, path))
        if histogram is None:
            histogram = self.metrics.http_duration.labels(method, path)
            self._histograms[(method, path)] = histogram
        histogram.observe(seconds)
