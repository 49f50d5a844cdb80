"""Pipeline runs and requests in the store: the ``PipelineRun`` row a run leaves, what a
finished run marks on its workspace and batches, and the ``PipelineRequest`` queue another process
(the API) asks for runs through."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

from sqlalchemy import Connection, Engine, case, exists, insert, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from fwa_pipeline.store.models import Batch, PipelineRequest, PipelineRun, Workspace, utcnow

FINAL_STATUSES = frozenset({"success", "failure", "canceled"})
# A run's row before it ends: waiting for a slot, or executing.
ACTIVE_STATUSES = ("queued", "running")


def claims_processed(stats: Mapping[str, Any]) -> int:
    """The claims a run recorded an outcome for (scored, or held by the quality gate), from its
    ``written`` statistics: 0 for a run that committed nothing."""
    written = stats.get("written") or {}
    return int(written.get("processed", 0) + written.get("held", 0))


def upsert_run(connection: Connection, run_id: str, workspace_id: int, **fields: Any) -> None:
    """Create the run's row or update the given fields of it. A final status is never replaced
    (whoever records a run's end first wins), and a run being canceled goes back to running or
    queued no more (termination may be asked for before the run records its start)."""
    dialect_insert = postgresql.insert if connection.dialect.name == "postgresql" else sqlite.insert
    statement = dialect_insert(PipelineRun).values(
        run_id=run_id, workspace_id=workspace_id, **fields
    )
    updates = {k: statement.excluded[k] for k in fields if k != "status"}
    if "status" in fields:
        updates["status"] = _status_update(statement)
    if updates:
        connection.execute(statement.on_conflict_do_update(index_elements=["run_id"], set_=updates))
    else:
        connection.execute(statement.on_conflict_do_nothing(index_elements=["run_id"]))


def _status_update(statement: Any) -> Any:
    final = PipelineRun.status.in_(sorted(FINAL_STATUSES))
    canceling = PipelineRun.status == "canceling"
    return case(
        (final, PipelineRun.status),
        (canceling & statement.excluded.status.in_(ACTIVE_STATUSES), PipelineRun.status),
        else_=statement.excluded.status,
    )


def get_run(source: Engine | Connection, run_id: str) -> PipelineRun | None:
    with Session(source) as session:
        return session.get(PipelineRun, run_id)


class RunSupersededError(RuntimeError):
    """Another run of the workspace committed after this one fixed its batches."""


def finish_workspace_run(
    connection: Connection,
    workspace_id: int,
    run_id: str,
    batch_ids: Sequence[int],
    *,
    after: str | None,
) -> None:
    """Mark ``batch_ids`` consumed by ``run_id`` and record it as the workspace's last run; the
    workspace still needs reprocessing if another batch landed meanwhile.

    ``after`` is the workspace's last run when ``run_id`` chose its batches. If another run
    has committed since (two runs of one workspace at once, or part of the graph materialised
    again after a later run), this raises :class:`RunSupersededError` and the caller's
    transaction rolls back: the run's results rest on a history that is no longer the
    store's. The check and the update are one statement, so of two concurrent commits the
    second waits for the first and then finds the workspace moved on."""
    if batch_ids:
        connection.execute(
            update(Batch)
            .where(Batch.workspace_id == workspace_id, Batch.id.in_(list(batch_ids)))
            .values(processed_run_id=run_id)
        )
    # Read after the batches above: reprocessing is due only for a batch no run consumed.
    waiting = exists().where(Batch.workspace_id == workspace_id, Batch.processed_run_id.is_(None))
    moved = connection.execute(
        update(Workspace)
        .where(
            Workspace.id == workspace_id,
            # Or this run itself: a retried step re-commits the same run's results.
            or_(
                Workspace.last_pipeline_run_id.is_not_distinct_from(after),
                Workspace.last_pipeline_run_id == run_id,
            ),
        )
        .values(
            last_pipeline_run_at=utcnow(),
            last_pipeline_run_id=run_id,
            needs_reprocessing=select(waiting).scalar_subquery(),
        )
    )
    if moved.rowcount != 1:  # raising rolls the batches above back with the caller's commit
        raise RunSupersededError(
            f"another run of this workspace committed after run {run_id} chose its batches "
            "(the workspace's last run is no longer "
            f"{after or 'none'}): nothing of this run was kept; run the whole pipeline again"
        )


# --------------------------------------------------------------------------- requests


def enqueue_request(
    engine: Engine,
    workspace_id: int,
    *,
    force_reprocess: bool,
    requested_by: str | None,
    quality_mode: str | None = None,
    idempotency: tuple[str, str] | None = None,
) -> str:
    """Queue a run request for the request sensor; returns its job id. ``quality_mode``
    overrides the workspace's for that run only. ``idempotency`` (the key, the request's hash):
    see :func:`enqueue_once`."""
    job_id = str(uuid.uuid4())
    with engine.begin() as connection:
        connection.execute(
            insert(PipelineRequest).values(
                job_id=job_id,
                workspace_id=workspace_id,
                force_reprocess=force_reprocess,
                requested_by=requested_by,
                quality_mode=quality_mode,
                idempotency_key=idempotency[0] if idempotency else None,
                request_hash=idempotency[1] if idempotency else None,
                status="queued",
            )
        )
    return job_id


class QueuedRequest(NamedTuple):
    job_id: str
    workspace: str
    force_reprocess: bool
    quality_mode: str | None

    def override(self) -> dict[str, Any]:
        """The run's pipeline override the request asks for ({}: none)."""
        return {"quality": {"mode": self.quality_mode}} if self.quality_mode else {}


class IdempotencyKeyReusedError(ValueError):
    """An idempotency key held by a request with a different body."""


def enqueue_once(
    engine: Engine,
    workspace_id: int,
    key: str,
    request_hash: str,
    window: dt.timedelta,
    **request: Any,
) -> tuple[str, bool]:
    """Queue a run request under an idempotency key: (job id, True) for a new request, or (the
    first request's job id, False) when the workspace's key was used within ``window`` with the
    same ``request_hash``. Raises :class:`IdempotencyKeyReusedError` for a different hash. A key
    older than ``window`` is released and starts a new request. ``request``: as
    :func:`enqueue_request` takes it."""
    found = _keyed_request(engine, workspace_id, key)
    if found is not None and found.requested_at < utcnow() - window:
        with engine.begin() as connection:
            connection.execute(
                update(PipelineRequest)
                .where(PipelineRequest.job_id == found.job_id)
                .values(idempotency_key=None)
            )
        found = None
    if found is None:
        try:
            job_id = enqueue_request(
                engine, workspace_id, idempotency=(key, request_hash), **request
            )
        except IntegrityError:  # a concurrent enqueue with this key committed first
            found = _keyed_request(engine, workspace_id, key)
            if found is None:
                raise
        else:
            return job_id, True
    if found.request_hash != request_hash:
        raise IdempotencyKeyReusedError(key)
    return found.job_id, False


def _keyed_request(engine: Engine, workspace_id: int, key: str) -> PipelineRequest | None:
    with Session(engine) as session:
        return session.scalars(
            select(PipelineRequest).where(
                PipelineRequest.workspace_id == workspace_id,
                PipelineRequest.idempotency_key == key,
            )
        ).one_or_none()


def cancel_queued_request(engine: Engine, job_id: str) -> bool:
    """Cancel the request if it is still queued (the sensor launches only queued requests);
    False if it is not."""
    with engine.begin() as connection:
        canceled = connection.execute(
            update(PipelineRequest)
            .where(PipelineRequest.job_id == job_id, PipelineRequest.status == "queued")
            .values(status="canceled")
        )
    return canceled.rowcount == 1


def queued_requests(engine: Engine, limit: int = 50) -> list[QueuedRequest]:
    """The queued requests, oldest first."""
    with engine.connect() as connection:
        rows = connection.execute(
            select(
                PipelineRequest.job_id,
                Workspace.name,
                PipelineRequest.force_reprocess,
                PipelineRequest.quality_mode,
            )
            .join(Workspace, Workspace.id == PipelineRequest.workspace_id)
            .where(PipelineRequest.status == "queued")
            .order_by(PipelineRequest.requested_at, PipelineRequest.job_id)
            .limit(limit)
        ).all()
    return [QueuedRequest(r[0], r[1], bool(r[2]), r[3]) for r in rows]


def mark_request(
    connection: Connection,
    job_id: str,
    *,
    status: str | None = None,
    dagster_run_id: str | None = None,
    error: str | None = None,
) -> None:
    values: dict[str, Any] = {}
    if status is not None:
        # A request canceled while its run was being created stays canceled.
        canceled = PipelineRequest.status == "canceled"
        values["status"] = case((canceled, PipelineRequest.status), else_=status)
    if dagster_run_id is not None:
        values["dagster_run_id"] = dagster_run_id
    if error is not None:
        values["error"] = error
    if values:
        connection.execute(
            update(PipelineRequest).where(PipelineRequest.job_id == job_id).values(**values)
        )


def get_request(engine: Engine, job_id: str) -> PipelineRequest | None:
    with Session(engine) as session:
        return session.get(PipelineRequest, job_id)


def as_utc(value: float | None) -> dt.datetime | None:
    """A Dagster timestamp (seconds since the epoch) as an aware datetime."""
    return None if value is None else dt.datetime.fromtimestamp(value, dt.UTC)
