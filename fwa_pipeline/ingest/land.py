"""Landing a validated batch: one transaction that creates the workspace if new, records the
batch, upserts reference files, appends claims (``COPY`` on PostgreSQL) and marks the workspace
as needing reprocessing. Any failure rolls all of it back.

On PostgreSQL, claims large next to what their tables hold go in without the tables' secondary
indexes, rebuilt before the commit (``store.bulk.indexes_rebuilt_after``), and the tables a batch
grew by a fifth or more are vacuumed and analysed after it (``store.bulk.vacuum_after_load``)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import pandas as pd
from sqlalchemy import Connection, Engine, exists, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import SQLAlchemyError

from fwa_pipeline.ingest.contract import FILES, MEMBERS, FileSpec, Role
from fwa_pipeline.ingest.parse import ParsedFile
from fwa_pipeline.settings import Settings
from fwa_pipeline.store.bulk import (
    copy_frames,
    indexes_rebuilt_after,
    upsert_frame,
    vacuum_after_load,
)
from fwa_pipeline.store.crypto import FieldCipher
from fwa_pipeline.store.models import Base, Batch, Workspace
from fwa_pipeline.store.pii import cipher_from_settings, encrypt_member_frame

log = logging.getLogger(__name__)

# Members are encrypted and sent this many rows at a time (see _store).
MEMBER_SLICE_ROWS = 10_000


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
    engine: Engine,
    settings: Settings,
    workspace: str,
    parsed: Sequence[ParsedFile],
    claims: Callable[[], Sequence[ParsedFile]],
    source: str,
) -> LoadResult:
    """Store ``parsed`` files, then the claims files ``claims()`` returns, as one batch of
    ``workspace``, all or nothing. ``claims`` is called once the other files are sent (it may
    still be checking them, and may raise :class:`BatchRejected`)."""
    cipher = cipher_from_settings(settings)
    with engine.begin() as connection:
        workspace_id = _workspace_needing_reprocessing(connection, workspace)
        batch_id = connection.execute(
            insert(Batch).values(workspace_id=workspace_id, source=source).returning(Batch.id)
        ).scalar_one()
        for file in _in_landing_order(parsed):
            _store(connection, file, workspace_id, batch_id, cipher)
        claims_files = _in_landing_order(claims())
        appended = {file.spec.table: len(file.frame) for file in claims_files}
        with indexes_rebuilt_after(connection, appended) as rebuilt:
            for file in claims_files:
                _store(connection, file, workspace_id, batch_id, cipher)
            started = time.perf_counter()
        if rebuilt:
            log.debug(
                "batch %d: indexes of %s rebuilt in %.2f s",
                batch_id,
                ", ".join(rebuilt),
                time.perf_counter() - started,
            )
        landed = _in_landing_order([*parsed, *claims_files])
        files = {p.spec.name: len(p.frame) for p in landed}
        warnings = [w for p in landed for w in p.warnings]
        connection.execute(
            update(Batch).where(Batch.id == batch_id).values(files=files, warnings=warnings)
        )
    try:
        vacuum_after_load(engine, {p.spec.table: len(p.frame) for p in landed})
    except SQLAlchemyError as exc:
        # The batch is in: its tables are left to autovacuum, and the load still succeeds.
        log.warning("batch %d: VACUUM ANALYZE after landing failed: %s", batch_id, exc)
    log.info(
        "landed batch %d in workspace %s (%s): %s",
        batch_id,
        workspace,
        source,
        ", ".join(f"{name} {rows}" for name, rows in files.items()),
    )
    return LoadResult(workspace, workspace_id, batch_id, source, files, warnings)


def _in_landing_order(files: Sequence[ParsedFile]) -> list[ParsedFile]:
    order = list(FILES)
    return sorted(files, key=lambda p: order.index(p.spec.name))


def _store(
    connection: Connection,
    file: ParsedFile,
    workspace_id: int,
    batch_id: int,
    cipher: FieldCipher | None,
) -> None:
    started = time.perf_counter()
    frame = file.frame
    if file.spec.role is Role.CLAIMS or not _has_rows(connection, file.spec.table, workspace_id):
        # Appended; for a reference file this means nothing to replace (keys are unique within
        # a file, and the workspace row lock keeps it so until commit): no staging table.
        # Members go in slices, encrypted in a thread ahead of the COPY sending them, so that
        # encryption overlaps the server's work (mostly foreign-key checks) on earlier slices.
        size = MEMBER_SLICE_ROWS if file.spec is MEMBERS else max(1, len(frame))
        with ThreadPoolExecutor(max_workers=1) as pool:
            stamped = [
                pool.submit(
                    _stamped, file.spec, frame.iloc[i : i + size], workspace_id, batch_id, cipher
                )
                for i in range(0, len(frame), size)
            ]
            copy_frames(connection, file.spec.table, (part.result() for part in stamped))
    else:
        stamped_frame = _stamped(file.spec, frame, workspace_id, batch_id, cipher)
        upsert_frame(connection, file.spec.table, stamped_frame)
    # Where a slow load spends its time.
    log.debug(
        "batch %d: %s, %d rows in %.2f s",
        batch_id,
        file.spec.name,
        len(frame),
        time.perf_counter() - started,
    )


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


def _has_rows(connection: Connection, table: str, workspace_id: int) -> bool:
    rows = Base.metadata.tables[table]
    return connection.execute(
        select(exists().where(rows.c.workspace_id == workspace_id))
    ).scalar_one()


def _stamped(
    spec: FileSpec,
    frame: pd.DataFrame,
    workspace_id: int,
    batch_id: int,
    cipher: FieldCipher | None,
) -> pd.DataFrame:
    """``frame`` as its table stores it: workspace and batch columns where the table has them,
    member PHI encrypted."""
    if spec is MEMBERS:
        frame = encrypt_member_frame(frame, cipher, workspace_id)
    stamps = {"workspace_id": workspace_id}
    if "batch_id" in Base.metadata.tables[spec.table].c:
        stamps["batch_id"] = batch_id
    return frame.assign(**stamps)
