"""The pipeline against the real PostgreSQL: the store, the production dagster.yaml (run and
event storage in PostgreSQL, queued runs limited per workspace), sensors ticked on it, and a run
killed mid-way then run again."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import psycopg
import pytest
from dagster import DagsterEventType
from sqlalchemy import text

from fwa_pipeline.definitions import build_defs
from fwa_pipeline.defs.jobs import PIPELINE_JOB
from fwa_pipeline.defs.partitions import ensure_partition
from fwa_pipeline.defs.sensors import landed_batch_sensor, pipeline_run_ending
from fwa_pipeline.runs.config import run_config
from fwa_pipeline.runs.ending import end_run, sweep
from fwa_pipeline.runs.tags import STORE_TAG
from fwa_pipeline.settings import Settings
from fwa_pipeline.store.claims import store_id
from fwa_pipeline.store.runs import get_run
from fwa_pipeline.synth import generate
from tests.conftest import PG_ADMIN_DSN, scratch_database
from tests.pipeline import batch
from tests.pipeline.conftest import (
    WORKSPACE,
    Pipeline,
    materializations,
)
from tests.pipeline.test_automation import tick
from tests.pipeline.test_synthetic import split_latest

pytestmark = pytest.mark.postgres
ROOT = Path(__file__).resolve().parents[2]
# Longest a test waits for a call that should fail fast before calling it hung.
HANG_GUARD_S = 120


def test_incremental_and_forced_runs_on_postgres(pg_pipeline: Pipeline) -> None:
    pg_pipeline.land(batch.batch_one())
    first = pg_pipeline.run()
    pg_pipeline.land(batch.batch_two())
    second = pg_pipeline.run()

    assert first.success and second.success
    assert {("RULE-MED-001", "MC-11"), ("RULE-RX-001", "RX-11")} <= pg_pipeline.hits()
    assert set(pg_pipeline.statuses().values()) == {"processed", "held"}
    incremental = pg_pipeline.outcome()

    forced = pg_pipeline.run(force_reprocess=True)

    assert forced.success
    assert pg_pipeline.outcome() == incremental
    row = get_run(pg_pipeline.engine, second.run_id)
    assert row is not None and row.status == "success"
    assert row.stats["claims_in"] == 3 and row.quality_report["total_claims"] == 3


def test_a_small_run_leaves_the_planner_statistics_of_a_large_one(
    pg_pipeline: Pipeline, tmp_path: Path
) -> None:
    generate(tmp_path / "all", n_claims=4000, seed=5)
    first, second, _ = split_latest(tmp_path / "all", tmp_path, share=0.01)
    pg_pipeline.land_directory(first)
    assert pg_pipeline.run().success

    def estimated_rows() -> dict[str, float]:
        return dict(
            pg_pipeline.query(
                "SELECT relname, reltuples FROM pg_class "
                "WHERE relname IN ('rule_hits', 'claim_scores')"
            )
        )

    # The first run analysed the tables it filled: the planner's estimate is their size.
    after_first = estimated_rows()
    assert after_first["rule_hits"] == pg_pipeline.query("SELECT count(*) FROM rule_hits")[0][0]
    pg_pipeline.land_directory(second)
    assert pg_pipeline.run().success

    # A batch of 1% writes a few hits: no second ANALYZE (the previous run's own rows, counted
    # in n_mod_since_analyze after its ANALYZE, used to trigger one on every run).
    assert estimated_rows() == after_first
    assert pg_pipeline.query("SELECT count(*) FROM rule_hits")[0][0] > after_first["rule_hits"]


# --------------------------------------------------------------------------- production instance


@pytest.fixture
def production_instance(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[dg.DagsterInstance]:
    """An instance from dagster_home/production/dagster.yaml on a PostgreSQL database of its
    own, configured through the same environment variables as docker-compose."""
    info = psycopg.conninfo.conninfo_to_dict(PG_ADMIN_DSN)
    monkeypatch.setenv("DAGSTER_PG_HOST", str(info.get("host", "127.0.0.1")))
    monkeypatch.setenv("DAGSTER_PG_PORT", str(info.get("port", "5432")))
    monkeypatch.setenv("DAGSTER_PG_USERNAME", str(info.get("user", "postgres")))
    monkeypatch.setenv("DAGSTER_PG_PASSWORD", str(info.get("password", "")))
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(ROOT / "dagster_home" / "production" / "dagster.yaml", home / "dagster.yaml")
    with scratch_database("dagster_test") as url:
        monkeypatch.setenv("DAGSTER_PG_DB", url.rsplit("/", 1)[1])
        with dg.DagsterInstance.from_config(str(home)) as instance:
            yield instance


def test_the_production_instance_runs_the_pipeline_and_the_sensors(
    pg_pipeline: Pipeline, production_instance: dg.DagsterInstance
) -> None:
    coordinator = production_instance.run_coordinator
    assert type(coordinator).__name__ == "QueuedRunCoordinator"
    (limit,) = coordinator.get_run_queue_config().tag_concurrency_limits
    assert limit["key"] == "dagster/partition" and limit["limit"] == 1
    pipeline = Pipeline(
        pg_pipeline.engine, pg_pipeline.settings, production_instance, pg_pipeline._tmp
    )
    batch_id = pipeline.land(batch.batch_one())
    with dg.build_sensor_context(
        instance=production_instance, resources={"store": pipeline.store}
    ) as context:  # closed here, not when collected (see test_automation.tick)
        requested = landed_batch_sensor(context)
        assert isinstance(requested, dg.SensorResult)
        assert requested.run_requests[0].run_key == f"batch-{batch_id}"

        result = pipeline.run()

        assert result.success and result.status == "success"
        # Runs and events live in PostgreSQL: a second instance on the same database sees them.
        with dg.DagsterInstance.from_config(str(production_instance.root_directory)) as other:
            (record,) = other.get_run_records()
            assert record.dagster_run.run_id == result.run_id
            assert "investigation_cases" in materializations(other, result.run_id)
            assert production_instance.has_dynamic_partition("workspaces", WORKSPACE)
        assert isinstance(landed_batch_sensor(context), dg.SkipReason)
    # The run recorded itself; the ending sensor, as the daemon runs it, ends a row left open.
    row = get_run(pipeline.engine, result.run_id)
    assert row is not None and row.status == "success" and row.stats["claims_in"] == 9
    with pipeline.engine.begin() as connection:
        connection.exec_driver_sql("UPDATE pipeline_runs SET status = 'running'")
    with dg.build_sensor_context(
        instance=production_instance, resources={"store": pipeline.store}
    ) as context:
        ended = pipeline_run_ending(context)
    assert isinstance(ended, dg.SkipReason)
    assert get_run(pipeline.engine, result.run_id).status == "success"


# --------------------------------------------------------------------------- a killed run


def _started_steps(instance: dg.DagsterInstance) -> set[str]:
    records = instance.get_run_records()
    if not records:
        return set()
    run_id = records[0].dagster_run.run_id
    return {
        e.step_key or "" for e in instance.all_logs(run_id, of_type=DagsterEventType.STEP_START)
    }


def test_a_killed_run_run_again_gives_the_clean_result(
    pg_pipeline: Pipeline, pg_settings: Settings, tmp_path: Path
) -> None:
    pg_pipeline.land(batch.batch_one(), workspace="clean")
    assert pg_pipeline.run(workspace="clean").success
    pg_pipeline.land(batch.batch_one())
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(ROOT / "dagster_home" / "dagster.yaml", home / "dagster.yaml")
    env = {
        **os.environ,
        "FWA_ENVIRONMENT": "test",
        "FWA_DATABASE_URL": pg_settings.database_url.get_secret_value(),
        "FWA_DATA_DIR": str(pg_settings.data_dir),
        "FWA_ENCRYPTION_KEY": pg_settings.encryption_key.get_secret_value(),
        "DAGSTER_HOME": str(home),
    }
    command = [sys.executable, "-m", "fwa_pipeline.cli", "run", "--workspace", WORKSPACE]
    process = subprocess.Popen(
        command, env=env, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        with dg.DagsterInstance.from_config(str(home)) as instance:
            deadline = time.monotonic() + 120
            # Kill it once the claims are selected and enriched, before anything is committed.
            while "rule_hits" not in _started_steps(instance):
                assert process.poll() is None, "the run ended before it could be killed"
                assert time.monotonic() < deadline
                time.sleep(0.05)
            process.send_signal(signal.SIGKILL)
            process.wait(timeout=30)

            assert set(pg_pipeline.statuses().values()) == {"pending"}
            assert pg_pipeline.query(
                "SELECT count(*) FROM rule_hits WHERE workspace_id = "
                "(SELECT id FROM workspaces WHERE name = :ws)",
                ws=WORKSPACE,
            ) == [(0,)]
            # Without a daemon, the ending sensor's sweep notices the dead process.
            sweep(pg_pipeline.engine, instance)
            (killed,) = instance.get_run_records()
            assert killed.dagster_run.status == dg.DagsterRunStatus.FAILURE
            assert get_run(pg_pipeline.engine, killed.dagster_run.run_id).status == "failure"
    finally:
        if process.poll() is None:
            process.kill()

    again = subprocess.run(
        command, env=env, cwd=tmp_path, capture_output=True, text=True, check=False
    )

    assert again.returncode == 0, again.stderr
    assert pg_pipeline.outcome() == pg_pipeline.outcome("clean")


def test_a_batch_committed_after_a_later_one_still_gets_its_run(pg_pipeline: Pipeline) -> None:
    """Batch ids are taken when a load starts and seen when it commits: a slow load into one
    workspace can commit after a quick one into another took the next id."""
    pg_pipeline.land(batch.batch_one(), workspace="globex")
    pg_pipeline.run("globex")
    with pg_pipeline.engine.connect() as slow:  # a load into globex, still going
        transaction = slow.begin()
        slow_batch = slow.execute(
            text(
                "INSERT INTO batches (workspace_id, source, landed_at, files, warnings) "
                "SELECT id, 'cli', now(), '{}', '[]' FROM workspaces WHERE name = 'globex' "
                "RETURNING id"
            )
        ).scalar_one()
        quick_batch = pg_pipeline.land(batch.batch_one())  # into acme, committed first
        assert quick_batch > slow_batch
        seen = tick(landed_batch_sensor, pg_pipeline)
        assert isinstance(seen, dg.SensorResult)
        assert [r.run_key for r in seen.run_requests] == [f"batch-{quick_batch}"]
        transaction.commit()

    # The next tick as the daemon runs it: with whatever cursor the last one left.
    with dg.build_sensor_context(
        instance=pg_pipeline.instance, cursor=seen.cursor, resources={"store": pg_pipeline.store}
    ) as context:
        later = landed_batch_sensor(context)

    assert isinstance(later, dg.SensorResult)
    assert sorted(r.run_key for r in later.run_requests) == sorted(
        [f"batch-{quick_batch}", f"batch-{slow_batch}"]
    )


def test_two_stores_sharing_a_dagster_home_never_record_each_others_runs(
    pipeline: Pipeline, pg_pipeline: Pipeline
) -> None:
    # The README's path: the demo on SQLite, then PostgreSQL, one Dagster home, the same
    # workspace name in both.
    assert pipeline.instance is pg_pipeline.instance
    pipeline.land(batch.batch_one())
    pg_pipeline.land(batch.batch_one())
    on_sqlite, on_postgres = pipeline.run(), pg_pipeline.run()
    # Refused before its first step: only its store tag says whose it is.
    refused = pg_pipeline.run(pipeline={"quality": {"mode": "sometimes"}})

    for store in (pipeline, pg_pipeline):
        sweep(store.engine, store.instance)

    assert pipeline.query("SELECT run_id FROM pipeline_runs") == [(on_sqlite.run_id,)]
    assert sorted(pg_pipeline.query("SELECT run_id, status FROM pipeline_runs")) == sorted(
        [(on_postgres.run_id, "success"), (refused.run_id, "failure")]
    )
    # A run of the other store is not this store's to record, whoever asks.
    for other in (on_postgres, refused):
        assert end_run(pipeline.engine, pipeline.instance, other.run_id) is None


def test_a_run_started_elsewhere_is_recorded_by_the_store_it_ran_on(
    pipeline: Pipeline, pg_pipeline: Pipeline
) -> None:
    # Started from the Dagster UI: no store tag at all, or (a re-execution of the other
    # store's run) a copied one. The run records itself in the store its resource points at.
    pg_pipeline.land(batch.batch_one())
    pipeline.land(batch.batch_one())
    ensure_partition(pg_pipeline.instance, WORKSPACE)
    job = build_defs(resource_overrides={"store": pg_pipeline.store}).resolve_job_def(PIPELINE_JOB)
    runs = [
        job.execute_in_process(
            instance=pg_pipeline.instance,
            partition_key=WORKSPACE,
            run_config=run_config(force_reprocess=True),
            tags=tags,
        ).run_id
        for tags in ({}, {STORE_TAG: store_id(pipeline.engine)})
    ]

    for store in (pipeline, pg_pipeline):
        sweep(store.engine, store.instance)

    assert pipeline.query("SELECT run_id FROM pipeline_runs") == []
    assert sorted(pg_pipeline.query("SELECT run_id, status FROM pipeline_runs")) == sorted(
        (run_id, "success") for run_id in runs
    )


@pytest.mark.slow
def test_the_production_instance_gives_up_on_a_database_that_never_answers(
    silent_database: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The daemon, the webserver and the API's job routes open this instance: a hung server
    must be an error they can report, not a wait without end."""
    for var, value in {
        "DAGSTER_PG_HOST": "127.0.0.1",
        "DAGSTER_PG_PORT": str(silent_database),
        "DAGSTER_PG_USERNAME": "postgres",
        "DAGSTER_PG_PASSWORD": "",
        "DAGSTER_PG_DB": "hung",
    }.items():
        monkeypatch.setenv(var, value)
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(ROOT / "dagster_home" / "production" / "dagster.yaml", home / "dagster.yaml")
    outcome: list[BaseException | None] = []

    def open_instance() -> None:
        try:
            with dg.DagsterInstance.from_config(str(home)):
                outcome.append(None)
        except Exception as exc:
            outcome.append(exc)

    opener = threading.Thread(target=open_instance, daemon=True)
    opener.start()
    opener.join(HANG_GUARD_S)
    assert outcome, "opening the production instance hung on a silent database"
    # Each connection attempt gives up after connect_timeout; dagster-postgres retries a few.
    assert isinstance(outcome[0], Exception) and "DB connection" in str(outcome[0])
