"""Prometheus metrics: one registry per app (tests stay isolated).

HTTP requests are counted by ``HttpRequestStats``, which the request-context middleware feeds
(``fwa_api.middleware.request_context``). The pipeline metrics and
``active_cases_by_risk_level`` are read from the store at scrape time
(``fwa_api.metrics.collector.StoreCollector``): pipeline runs happen in Dagster's processes, so the
database, not this process, knows them.
"""

from __future__ import annotations

import math
from bisect import bisect_left
from collections.abc import Iterable
from itertools import accumulate

from prometheus_client import (
    GC_COLLECTOR,
    PLATFORM_COLLECTOR,
    PROCESS_COLLECTOR,
    CollectorRegistry,
    Counter,
    Histogram,
)
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

# Anything else is counted as OTHER so invented methods cannot add label values.
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


class HttpRequestStats(Collector):
    """``http_requests_total{method,path,status_code}`` and
    ``http_request_duration_seconds{method,path}`` (prometheus_client's default buckets).

    Kept as plain counts, not prometheus_client metrics: those take a lock per increment (three
    per request) to be thread-safe, while requests are recorded by the event loop's one thread.
    A scrape (in a worker thread) copies each dict in one C-level call, which the GIL makes
    atomic. Label values are bounded: the method set above and the route templates.
    """

    def __init__(self, buckets: Iterable[float] = Histogram.DEFAULT_BUCKETS) -> None:
        self._bounds = tuple(b for b in map(float, buckets) if b != math.inf)
        self._requests: dict[tuple[str, str, int], int] = {}
        # Per (method, path): a count per bucket (the last one +Inf), then the sum.
        self._durations: dict[tuple[str, str], list[float]] = {}

    def record(self, method: str, path: str, status: int, seconds: float) -> None:
        if method not in METHODS:
            method = "OTHER"
        key = (method, path, status)
        self._requests[key] = self._requests.get(key, 0) + 1
        durations = self._durations.get((method, path))
        if durations is None:
            durations = self._durations[(method, path)] = [0.0] * (len(self._bounds) + 2)
        durations[bisect_left(self._bounds, seconds)] += 1
        durations[-1] += seconds

    def describe(self) -> Iterable[Metric]:
        return self.collect()

    def collect(self) -> Iterable[Metric]:
        requests = CounterMetricFamily(
            "http_requests_total",
            "HTTP requests by method, route template and status code.",
            labels=["method", "path", "status_code"],
        )
        for (method, path, status), count in sorted(self._requests.copy().items()):
            requests.add_metric([method, path, str(status)], count)
        yield requests
        durations = HistogramMetricFamily(
            "http_request_duration_seconds",
            "HTTP request duration by method and route template.",
            labels=["method", "path"],
        )
        bounds = [*map(str, self._bounds), "+Inf"]
        for (method, path), values in sorted(self._durations.copy().items()):
            values = list(values)  # one copy: counts and sum from the same moment
            cumulative = list(zip(bounds, accumulate(values[:-1]), strict=True))
            durations.add_metric([method, path], cumulative, values[-1])
        yield durations


class ApiMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        for collector in (PROCESS_COLLECTOR, PLATFORM_COLLECTOR, GC_COLLECTOR):
            self.registry.register(collector)
        self.http = HttpRequestStats()
        self.registry.register(self.http)
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
