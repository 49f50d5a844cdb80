"""What the workspace routes answer."""

from __future__ import annotations

import datetime as dt

from pydantic import BaseModel

from fwa_pipeline.store.models import Workspace


class WorkspaceOut(BaseModel):
    name: str
    created_at: dt.datetime
    last_pipeline_run_at: dt.datetime | None
    last_pipeline_run_id: str | None
    needs_reprocessing: bool

    @classmethod
    def of(cls, row: Workspace) -> WorkspaceOut:
        return cls(
            name=row.name,
            created_at=row.created_at,
            last_pipeline_run_at=row.last_pipeline_run_at,
            last_pipeline_run_id=row.last_pipeline_run_id,
            needs_reprocessing=row.needs_reprocessing,
        )


class WorkspaceList(BaseModel):
    workspaces: list[WorkspaceOut]
