"""Workspaces read from the store."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from fwa_api.workspaces.models import WorkspaceList, WorkspaceOut
from fwa_pipeline.store.models import Workspace


def workspace_list(session: Session, names: frozenset[str]) -> WorkspaceList:
    """Those of ``names`` that exist, by name."""
    rows = session.scalars(
        select(Workspace).where(Workspace.name.in_(names)).order_by(Workspace.name)
    )
    return WorkspaceList(workspaces=[WorkspaceOut.model_validate(row) for row in rows])


def find_workspace(session: Session, workspace_id: int) -> WorkspaceOut | None:
    row = session.get(Workspace, workspace_id)
    return None if row is None else WorkspaceOut.model_validate(row)
