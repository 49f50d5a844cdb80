"""What the workspace routes answer."""

from __future__ import annotations

import datetime as dt

from pydantic import BaseModel, ConfigDict


class WorkspaceOut(BaseModel):
    # Read from a ``Workspace`` row: the fields are its columns of the same names.
    model_config = ConfigDict(from_attributes=True)

    name: str
    created_at: dt.datetime
    last_pipeline_run_at: dt.datetime | None
    last_pipeline_run_id: str | None
    needs_reprocessing: bool


class WorkspaceList(BaseModel):
    workspaces: list[WorkspaceOut]
