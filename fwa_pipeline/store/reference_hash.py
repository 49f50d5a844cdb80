"""A content hash of each code-reference table as a workspace holds it in the store, recorded in
every run's config snapshot: two runs whose hashes (and code version, which fixes the shipped
defaults the workspace's rows are laid over) match read the same reference data."""

from __future__ import annotations

import hashlib
import json

from sqlalchemy import Connection, Engine, Table, select

from fwa_pipeline.store.bulk import connection_of
from fwa_pipeline.store.models import CptReference, NcciEdit, NdcReference

TABLES: tuple[Table, ...] = (
    CptReference.__table__,  # type: ignore[assignment]
    NcciEdit.__table__,  # type: ignore[assignment]
    NdcReference.__table__,  # type: ignore[assignment]
)


def reference_hashes(
    source: Engine | Connection, workspace_id: int
) -> dict[str, dict[str, object]]:
    """``{table: {"rows": n, "sha256": hex}}`` of the workspace's rows of each reference table,
    read in primary-key order (so the hash does not depend on load order or the database)."""
    found: dict[str, dict[str, object]] = {}
    with connection_of(source) as connection:
        for table in TABLES:
            columns = [c for c in table.c if c.name != "workspace_id"]
            rows = connection.execute(
                select(*columns)
                .where(table.c.workspace_id == workspace_id)
                .order_by(*(c for c in table.primary_key.columns if c.name != "workspace_id"))
            )
            digest = hashlib.sha256(json.dumps([c.name for c in columns]).encode())
            count = 0
            for row in rows:
                digest.update(b"\n" + json.dumps(list(row), default=str).encode())
                count += 1
            found[table.name] = {"rows": count, "sha256": digest.hexdigest()}
    return found
