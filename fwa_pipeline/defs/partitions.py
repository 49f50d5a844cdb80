"""Workspaces are the partitions: every asset is materialised per workspace, and a workspace's
partition is added when its first batch is seen (a workspace name is a valid partition key: see
``ingest.loader.WORKSPACE_NAME``)."""

from __future__ import annotations

import dagster as dg

WORKSPACES = dg.DynamicPartitionsDefinition(name="workspaces")


def ensure_partition(instance: dg.DagsterInstance, workspace: str) -> None:
    """Add ``workspace``'s partition if it is new (for in-process runs; sensors request it)."""
    if not instance.has_dynamic_partition(WORKSPACES.name, workspace):
        instance.add_dynamic_partitions(WORKSPACES.name, [workspace])
