"""Landing a validated batch: one transaction that creates the workspace if new, records the
batch, upserts reference files, appends claims (``COPY`` on PostgreSQL) and marks the workspace
as needing reprocessing. Any failure rolls all of it back."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import pandas as pd
from sqlalchemy import Connection, Engine, insert, update
from sqlalchemy.dialects import postgresql, sqlite

from fwa_pipeline.ingest.contract import FILES, MEMBERS, Role
from fwa_pipeline.ingest.parse import ParsedFile
from fwa_pipeline.settings import Settings
from fwa_pipeline.store.bulk import copy_frame, upsert_frame
from fwa_pipeline.store.crypto import FieldCipher
from fwa_pipeline.store.models import Base, Batch, Workspace
from fwa_pipeline.store.pii import cipher_from_settings, encrypt_member_frame

log = logging.getLogger(__name__)

LANDED_STATUS = "pending"


@dataclass
class LoadResult:
    workspace: str
    workspace_id: int
    batch_id: int
    source: str
    # {file name: rows landed}
    files: dict[str, int]
    warnings: list[str] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        return {
            "workspace": self.workspace,
            "workspace_id": self.workspace_id,
            "batch_id": self.batch_id,
            "source": self.source,
            "files": self.files,
            "rows": sum(self.files.values()),
            "warnings": self.warnings,
        }


def land(
    engine: Engine, settings: Settings, workspace: str, parsed: Sequence[ParsedFile], source: str
) -> LoadResult:
    """Store ``parsed`` files as one batch of ``workspace``, all or nothing."""
    cipher = cipher_from_settings(settings)
    order = list(FILES)
    parsed = sorted(parsed, key=lambda p: order.index(p.spec.name))
    files = {p.spec.name: len(p.frame) for p in parsed}
    warnings = [w for p in parsed for w in p.warnings]
    with engine.begin() as connection:
        workspace_id = _workspace_needing_reprocessing(connection, workspace)
        batch_id = connection.execute(
            insert(Batch)
            .values(workspace_id=workspace_id, source=source, files=files, warnings=warnings)
            .returning(Batch.id)
        ).scalar_one()
        for file in parsed:
            started = time.perf_counter()
            frame = _stamped(file, workspace_id, batch_id, cipher)
            if file.spec.role is Role.REFERENCE:
                upsert_frame(connection, file.spec.table, frame)
            else:
                copy_frame(connection, file.spec.table, frame)
            # Where a slow load spends its time (encryption, index and foreign-key upkeep).
            log.debug(
                "batch %d: %s, %d rows in %.2f s",
                batch_id,
                file.spec.name,
                len(frame),
                time.perf_counter() - started,
            )
    log.info(
        "landed batch %d in workspace %s (%s): %s",
        batch_id,
        workspace,
        source,
        ", ".join(f"{name} {rows}" for name, rows in files.items()),
    )
    return LoadResult(workspace, workspace_id, batch_id, source, files, warnings)


def _workspace_needing_reprocessing(connection: Connection, name: str) -> int:
    """The workspace's id, created if new, marked as needing reprocessing (the row lock this
    takes on PostgreSQL also serialises concurrent loads into one workspace)."""
    dialect_insert = postgresql.insert if connection.dialect.name == "postgresql" else sqlite.insert
    connection.execute(
        dialect_insert(Workspace)
        .values(name=name, needs_reprocessing=True)
        .on_conflict_do_nothing(index_elements=["name"])
    )
    return connection.execute(
        update(Workspace)
        .where(Workspace.name == name)
        .values(needs_reprocessing=True)
        .returning(Workspace.id)
    ).scalar_one()


def _stamped(
    file: ParsedFile, workspace_id: int, batch_id: int, cipher: FieldCipher | None
) -> pd.DataFrame:
    """The frame as its table stores it: workspace, batch and status columns where the table
    has them, member PHI encrypted."""
    frame = file.frame
    if file.spec is MEMBERS:
        frame = encrypt_member_frame(frame, cipher, workspace_id)
    columns = Base.metadata.tables[file.spec.table].c
    stamps: dict[str, Any] = {"workspace_id": workspace_id}
    if "batch_id" in columns:
        stamps["batch_id"] = batch_id
    if file.spec.role is Role.CLAIMS:
        stamps["status"] = LANDED_STATUS
    return frame.assign(**stamps)
