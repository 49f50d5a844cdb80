"""What the store metrics read from the database at scrape time, in one read-only session."""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import Engine, func, select

from fwa_pipeline.store.db import read_scope
from fwa_pipeline.store.models import InvestigationCase, PipelineRun, Workspace
from fwa_pipeline.store.runs import FINAL_STATUSES, claims_processed


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
