"""Runs apply the workspace's stored configuration version unless they override it, whoever
launches them (the batch and request sensors, the nightly schedule, the CLI), and each run's
snapshot names that version, the reference data it read and the code that ran."""

from __future__ import annotations

import datetime as dt
import logging
import re
from importlib.metadata import version

import dagster as dg
from sqlalchemy import insert

from fwa_pipeline.defs.partitions import WORKSPACES
from fwa_pipeline.defs.schedules import nightly_rescore
from fwa_pipeline.defs.sensors import landed_batch_sensor, pipeline_request_sensor
from fwa_pipeline.kit.version import code_version
from fwa_pipeline.runs.config import run_config
from fwa_pipeline.runs.jobs import job_status
from fwa_pipeline.store.claims import workspace_id
from fwa_pipeline.store.models import CptReference
from fwa_pipeline.store.runs import enqueue_request, get_run
from fwa_pipeline.store.workspace_config import set_config
from tests.pipeline import batch
from tests.pipeline.conftest import WORKSPACE, Pipeline
from tests.pipeline.test_automation import launch, tick

LIGHTER_DEATH = {"rules": {"RULE-MED-006": {"weight": 3.5}}}


def _configure(pipeline: Pipeline, document: dict, note: str = "tuning") -> int:
    ws_id = workspace_id(pipeline.engine, WORKSPACE)
    assert ws_id is not None
    version, _ = set_config(pipeline.engine, ws_id, document, created_by="admin", note=note)
    return version.version


def _death_weights(pipeline: Pipeline, run_id: str) -> set[float]:
    return {
        w
        for (w,) in pipeline.query(
            "SELECT weight FROM rule_hits WHERE rule_id = 'RULE-MED-006' AND run_id = :r",
            r=run_id,
        )
    }


def test_a_batch_sensor_run_applies_the_workspace_version(pipeline: Pipeline) -> None:
    pipeline.land(batch.batch_one())
    version = _configure(pipeline, LIGHTER_DEATH)

    result = tick(landed_batch_sensor, pipeline)
    assert isinstance(result, dg.SensorResult)
    run = launch(pipeline, result)

    assert run.success
    row = get_run(pipeline.engine, run.run_id)
    assert row is not None
    assert row.config_snapshot["config_version"] == version == 1
    assert row.config_snapshot["override"] == {}
    assert row.config_snapshot["rules"]["RULE-MED-006"]["weight"] == 3.5
    assert _death_weights(pipeline, run.run_id) == {3.5}  # what scored the claims


def test_a_change_is_adopted_by_the_next_run_only(pipeline: Pipeline) -> None:
    pipeline.land(batch.batch_one())
    first = pipeline.run()  # no version yet: the catalogue
    _configure(pipeline, LIGHTER_DEATH)

    before = get_run(pipeline.engine, first.run_id)
    assert before is not None and before.config_snapshot["config_version"] is None
    # Nothing rescored by the change itself: the stored hits are still the first run's.
    assert _death_weights(pipeline, first.run_id) == {9.0}

    second = pipeline.run(force_reprocess=True)  # the CLI's path (`fwa run`)

    after = get_run(pipeline.engine, second.run_id)
    assert after is not None and after.config_snapshot["config_version"] == 1
    assert _death_weights(pipeline, second.run_id) == {3.5}


def test_a_run_override_wins_over_the_version_for_that_run(pipeline: Pipeline) -> None:
    pipeline.land(batch.batch_one())
    _configure(pipeline, {**LIGHTER_DEATH, "scoring": {"multiplier": 8.0}})
    override = {"rules": {"RULE-MED-006": {"weight": 2.0}}}

    result = pipeline.run(pipeline=override)

    snapshot = get_run(pipeline.engine, result.run_id).config_snapshot
    assert snapshot["config_version"] == 1 and snapshot["override"] == override
    assert snapshot["rules"]["RULE-MED-006"]["weight"] == 2.0  # the override's
    assert snapshot["scoring"]["multiplier"] == 8.0  # the version's, not overridden
    assert _death_weights(pipeline, result.run_id) == {2.0}


def test_an_enqueued_job_applies_the_version_and_its_quality_mode(pipeline: Pipeline) -> None:
    pipeline.land(batch.batch_one())
    _configure(pipeline, {**LIGHTER_DEATH, "quality": {"mode": "halt_on_errors"}})
    ws_id = workspace_id(pipeline.engine, WORKSPACE)
    assert ws_id is not None
    # Version 1 halts on batch one's two invalid claims; the job asks to flag them instead.
    job_id = enqueue_request(
        pipeline.engine,
        ws_id,
        force_reprocess=False,
        requested_by="api:test",
        quality_mode="flag_only",
    )

    result = tick(pipeline_request_sensor, pipeline)
    assert isinstance(result, dg.SensorResult)
    run = launch(pipeline, result)

    assert run.success
    snapshot = get_run(pipeline.engine, run.run_id).config_snapshot
    assert snapshot["config_version"] == 1
    assert snapshot["quality"]["mode"] == "flag_only"
    assert snapshot["rules"]["RULE-MED-006"]["weight"] == 3.5
    status = job_status(pipeline.engine, job_id)
    assert status is not None and status.config_version == 1


def test_the_nightly_rescore_applies_each_workspace_version(pipeline: Pipeline) -> None:
    pipeline.land(batch.batch_one())
    pipeline.land(batch.batch_one(), workspace="globex")
    _configure(pipeline, LIGHTER_DEATH)
    _configure(pipeline, {"scoring": {"multiplier": 8.0}})

    with dg.instance_for_test() as instance:  # a schedule context needs a persistent instance
        instance.add_dynamic_partitions(WORKSPACES.name, [WORKSPACE, "globex"])
        with dg.build_schedule_context(
            instance=instance,
            scheduled_execution_time=dt.datetime(2026, 11, 26, 2, tzinfo=dt.UTC),
            resources={"store": pipeline.store},
        ) as context:
            requests = {r.partition_key: r for r in nightly_rescore(context)}

    config = requests[WORKSPACE].run_config["resources"]["pipeline_config"]["config"]
    assert config["config_version"] == 2
    assert (
        "config_version"
        not in requests["globex"].run_config["resources"]["pipeline_config"]["config"]
    )
    nightly = dg.SensorResult(
        run_requests=[requests[WORKSPACE]],
        dynamic_partitions_requests=[WORKSPACES.build_add_request([WORKSPACE])],
    )
    run = launch(pipeline, nightly)
    assert run.success
    snapshot = get_run(pipeline.engine, run.run_id).config_snapshot
    assert snapshot["config_version"] == 2 and snapshot["force_reprocess"] is True
    assert snapshot["scoring"]["multiplier"] == 8.0
    assert snapshot["rules"]["RULE-MED-006"]["weight"] == 9.0  # version 2 undid version 1's


def test_the_snapshot_records_reference_hashes_and_code_version(pipeline: Pipeline) -> None:
    pipeline.land(batch.batch_one())
    first = pipeline.run()
    ws_id = workspace_id(pipeline.engine, WORKSPACE)
    with pipeline.engine.begin() as connection:  # the workspace loads a CPT row of its own
        connection.execute(
            insert(CptReference).values(
                workspace_id=ws_id, cpt_code="99213", description="Office visit", mue_limit=1
            )
        )
    second = pipeline.run(force_reprocess=True)

    one = get_run(pipeline.engine, first.run_id).config_snapshot
    two = get_run(pipeline.engine, second.run_id).config_snapshot
    assert set(one["reference"]) == {"cpt_reference", "ncci_edits", "ndc_reference"}
    assert one["reference"]["cpt_reference"]["rows"] == 0
    assert two["reference"]["cpt_reference"]["rows"] == 1
    assert (
        two["reference"]["cpt_reference"]["sha256"] != one["reference"]["cpt_reference"]["sha256"]
    )
    assert two["reference"]["ndc_reference"] == one["reference"]["ndc_reference"]
    assert one["code"] == code_version()
    assert one["code"]["package"] == version("fwa-platform")
    # This checkout is a git repository: a commit is recorded (the one checked out when the
    # process first read it).
    assert re.fullmatch(r"[0-9a-f]{40}", one["code"]["commit"] or "")


def test_a_run_launched_without_a_version_says_it_applies_the_catalogue(
    pipeline: Pipeline,
) -> None:
    pipeline.land(batch.batch_one())
    _configure(pipeline, LIGHTER_DEATH)
    # What Dagster's launchpad sends: the run config without the workspace's version.
    bare = dg.SensorResult(
        run_requests=[dg.RunRequest(partition_key=WORKSPACE, run_config=run_config())],
        dynamic_partitions_requests=[WORKSPACES.build_add_request([WORKSPACE])],
    )

    run = launch(pipeline, bare)

    assert run.success
    snapshot = get_run(pipeline.engine, run.run_id).config_snapshot
    assert snapshot["config_version"] is None
    assert snapshot["rules"]["RULE-MED-006"]["weight"] == 9.0
    warnings = [
        entry.user_message
        for entry in pipeline.instance.all_logs(run.run_id)
        if entry.level == logging.WARNING
    ]
    assert any("not the workspace's configuration version 1" in message for message in warnings), (
        warnings
    )
