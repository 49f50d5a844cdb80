"""``StoreCollector``: what only the database knows, added to the API's Prometheus registry,
read at scrape time and cached for ``STORE_TTL_S``: ``active_cases_by_risk_level`` (cases not
closed), and, from the ``pipeline_runs`` rows the pipeline's runs record, per workspace:

* counters, which only rise (a finished run's row keeps its final status and statistics):
  ``pipeline_runs_total{status}`` (finished runs by final status), the histogram
  ``pipeline_duration_seconds`` (finished runs) and ``pipeline_claims_processed_total`` (the
  claims each finished run recorded an outcome for);
* the gauge ``pipeline_runs_active{status}``: runs queued or running now.

Every series carries its workspace, so deleting a workspace removes its series instead of
lowering a sum. Each workspace has every status's series, 0 included, so ``rate()`` sees a run
from its first one.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Iterable

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector
from sqlalchemy import Engine

from fwa_api.metrics.queries import StoreSnapshot, read_snapshot
from fwa_pipeline.kit.logging import LogThrottle
from fwa_pipeline.store.models import RISK_LEVELS
from fwa_pipeline.store.runs import ACTIVE_STATUSES, FINAL_STATUSES

logger = logging.getLogger(__name__)

STORE_TTL_S = 15.0
DURATION_BUCKETS = (1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0)


class StoreCollector(Collector):
    def __init__(
        self,
        engine: Callable[[], Engine],
        *,
        ttl: float = STORE_TTL_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        # A callable: the engine belongs to the app's clients, opened at start-up.
        self._engine = engine
        self.ttl = ttl
        self._clock = clock
        self._snapshot: StoreSnapshot | None = None
        self._read_at = float("-inf")
        self._warn = LogThrottle(60.0, clock)

    def describe(self) -> Iterable[Metric]:
        return []  # keeps registration from querying the database

    def collect(self) -> Iterable[Metric]:
        snapshot = self._current()
        if snapshot is None:  # database down and nothing read yet: leave these out
            return
        cases = GaugeMetricFamily(
            "active_cases_by_risk_level",
            "Investigation cases not closed, by risk level.",
            labels=["risk_level"],
        )
        for level in sorted(set(RISK_LEVELS) | set(snapshot.active_cases)):
            cases.add_metric([level], snapshot.active_cases.get(level, 0))
        yield cases
        finished = CounterMetricFamily(
            "pipeline_runs",
            "Finished pipeline runs by workspace and final status.",
            labels=["workspace", "status"],
        )
        active = GaugeMetricFamily(
            "pipeline_runs_active",
            "Pipeline runs queued or running now, by workspace.",
            labels=["workspace", "status"],
        )
        durations = HistogramMetricFamily(
            "pipeline_duration_seconds",
            "Duration of finished pipeline runs.",
            labels=["workspace"],
        )
        processed = CounterMetricFamily(
            "pipeline_claims_processed",
            "Claims finished pipeline runs recorded an outcome for.",
            labels=["workspace"],
        )
        for workspace in snapshot.workspaces:
            for status in sorted(FINAL_STATUSES):
                finished.add_metric([workspace, status], snapshot.runs.get((workspace, status), 0))
            for status in ACTIVE_STATUSES:
                active.add_metric([workspace, status], snapshot.runs.get((workspace, status), 0))
            seconds = snapshot.durations.get(workspace, [])
            durations.add_metric([workspace], _buckets(seconds), sum(seconds))
            processed.add_metric([workspace], snapshot.claims_processed.get(workspace, 0))
        yield from (finished, active, durations, processed)

    def _current(self) -> StoreSnapshot | None:
        if self._clock() - self._read_at < self.ttl:
            return self._snapshot
        try:
            self._snapshot = read_snapshot(self._engine())
        except Exception as exc:  # a scrape must not fail because the database did
            self._warn.warning(
                logger,
                "metrics: store unavailable (%s); serving the last snapshot",
                type(exc).__name__,
            )
        # Also after a failure: retry once per TTL, not on every scrape.
        self._read_at = self._clock()
        return self._snapshot


def _buckets(values: list[float]) -> list[tuple[str, float]]:
    bounds = [*DURATION_BUCKETS, math.inf]
    ordered = sorted(values)
    counts: list[tuple[str, float]] = []
    index = 0
    for bound in bounds:
        while index < len(ordered) and ordered[index] <= bound:
            index += 1
        counts.append(("+Inf" if bound == math.inf else str(bound), float(index)))
    return counts
