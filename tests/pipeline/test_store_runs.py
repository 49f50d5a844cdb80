"""The run record's store operations: a final status is never replaced, and a run marks only the
batches it consumed."""

from __future__ import annotations

from sqlalchemy import Engine, insert, select

from fwa_pipeline.store.models import Batch, Workspace
from fwa_pipeline.store.runs import finish_workspace_run, get_run, upsert_run


def workspace(engine: Engine) -> int:
    with engine.begin() as connection:
        return connection.execute(
            insert(Workspace).values(name="acme").returning(Workspace.id)
        ).scalar_one()


def test_a_final_status_is_never_replaced_by_an_earlier_one(sqlite_engine: Engine) -> None:
    ws = workspace(sqlite_engine)
    with sqlite_engine.begin() as connection:
        upsert_run(connection, "r1", ws, status="running", config_snapshot={"a": 1})
        upsert_run(connection, "r1", ws, status="failure")
        upsert_run(connection, "r1", ws, status="running", stats={"claims_in": 3})

    row = get_run(sqlite_engine, "r1")
    assert row is not None
    assert (row.status, row.config_snapshot, row.stats) == ("failure", {"a": 1}, {"claims_in": 3})


def test_a_run_being_canceled_goes_back_to_running_no_more(sqlite_engine: Engine) -> None:
    ws = workspace(sqlite_engine)
    with sqlite_engine.begin() as connection:
        upsert_run(connection, "r1", ws, status="canceling")
        upsert_run(connection, "r1", ws, status="running", config_snapshot={"a": 1})
    assert get_run(sqlite_engine, "r1").status == "canceling"
    with sqlite_engine.begin() as connection:
        upsert_run(connection, "r1", ws, status="canceled")
    assert get_run(sqlite_engine, "r1").status == "canceled"


def test_a_run_consumes_its_batches_and_leaves_later_ones_waiting(sqlite_engine: Engine) -> None:
    ws = workspace(sqlite_engine)
    with sqlite_engine.begin() as connection:
        first, later = (
            connection.execute(
                insert(Batch).values(workspace_id=ws, source="cli").returning(Batch.id)
            ).scalar_one()
            for _ in range(2)
        )
        finish_workspace_run(connection, ws, "r1", [first], after=None)

    with sqlite_engine.connect() as connection:
        batches = dict(connection.execute(select(Batch.id, Batch.processed_run_id)).all())
        state = connection.execute(
            select(Workspace.last_pipeline_run_id, Workspace.needs_reprocessing)
        ).one()
    assert batches == {first: "r1", later: None}
    assert tuple(state) == ("r1", True)
