"""``GET /metrics``: Prometheus text format, outside ``/api`` and without a token (nginx keeps it
off the public side).

``StoreCollector`` adds what only the database knows, read at scrape time and cached for
``STORE_TTL_S``: ``active_cases_by_risk_level`` (cases not closed), and, from the pipeline runs
Dagster mirrors into ``pipeline_runs``, per workspace:

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
from dataclasses import dataclass, field

from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector
from sqlalchemy import Engine, func, select

from fwa_api.services import services
from fwa_pipeline.kit.logging import LogThrottle
from fwa_pipeline.store.db import read_scope
from fwa_pipeline.store.models import RISK_LEVELS, InvestigationCase, PipelineRun, Workspace
from fwa_pipeline.store.runs import ACTIVE_STATUSES, FINAL_STATUSES, claims_processed

logger = logging.getLogger(__name__)

router = APIRouter(tags=["metrics"])

STORE_TTL_S = 15.0
DURATION_BUCKETS = (1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0)


@dataclass
class StoreSnapshot:
    active_cases: dict[str, int] = field(default_factory=dict)
    workspaces: list[str] = field(default_factory=list)
    runs: dict[tuple[str, str], int] = field(default_factory=dict)  # (workspace, status)
    durations: dict[str, list[float]] = field(default_factory=dict)  # finished runs
    claims_processed: dict[str, int] = field(default_factory=dict)  # finished runs


def read_snapshot(engine: Engine) -> StoreSnapshot:
    snapshot = StoreSnapshot()
    with read_scope(engine) as session:
        cases = session.execute(
            select(InvestigationCase.risk_level, func.count())
            .where(InvestigationCase.status != "closed")
            .group_by(InvestigationCase.risk_level)
        )
        snapshot.active_cases = {level: count for level, count in cases}
        snapshot.workspaces = list(session.scalars(select(Workspace.name).order_by(Workspace.name)))
        runs = session.execute(
            select(Workspace.name, PipelineRun.status, func.count())
            .join(Workspace, Workspace.id == PipelineRun.workspace_id)
            .group_by(Workspace.name, PipelineRun.status)
        )
        snapshot.runs = {(name, status): count for name, status, count in runs}
        finished = session.execute(
            select(
                Workspace.name, PipelineRun.started_at, PipelineRun.completed_at, PipelineRun.stats
            )
            .join(Workspace, Workspace.id == PipelineRun.workspace_id)
            .where(PipelineRun.status.in_(sorted(FINAL_STATUSES)))
        )
        for name, started, completed, stats in finished:
            if started is not None and completed is not None:
                duration = max(0.0, (completed - started).total_seconds())
                snapshot.durations.setdefault(name, []).append(duration)
            processed = claims_processed(stats or {})
            snapshot.claims_processed[name] = snapshot.claims_processed.get(name, 0) + processed
    return snapshot


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
            held = self._warn.ready()
            if held is not None:
                logger.warning(
                    "metrics: store unavailable (%s); serving the last snapshot",
                    type(exc).__name__,
                    extra={"suppressed_warnings": held},
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


@router.get("/metrics", include_in_schema=False)
def metrics(request: Request) -> Response:
    # A plain def: FastAPI runs it in a worker thread, so the store query cannot block the loop.
    registry = services(request).metrics.registry
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)
