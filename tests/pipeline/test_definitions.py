"""The definitions load the way Dagster tools load them, and every asset is documented."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest

from fwa_pipeline.definitions import build_defs, defs
from fwa_pipeline.defs.assets import ASSETS
from fwa_pipeline.defs.io import ArrowFramesIOManager
from fwa_pipeline.defs.jobs import PIPELINE_JOB
from fwa_pipeline.defs.partitions import WORKSPACES
from fwa_pipeline.defs.resources import StoreResource
from fwa_pipeline.runs.config import PipelineRunConfig
from fwa_pipeline.settings import Settings

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def resolved() -> dg.Definitions:
    """The definitions as a code server loads them: resolved with an instance in scope (Dagster
    reads its definitions state from the current instance while resolving)."""
    with dg.instance_for_test():
        built = build_defs()
        built.resolve_asset_graph()
        built.resolve_job_def(PIPELINE_JOB)
    return built


def test_dagster_definitions_validate_passes_on_the_workspace() -> None:
    dagster = Path(sys.executable).with_name("dagster")
    result = subprocess.run(
        [str(dagster), "definitions", "validate", "-w", str(ROOT / "workspace.yaml")],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_asset_is_partitioned_documented_grouped_and_kinded(
    resolved: dg.Definitions,
) -> None:
    graph = resolved.resolve_asset_graph()
    assert len(graph.get_all_asset_keys()) == len(ASSETS) == 11
    assert graph.get(dg.AssetKey("peer_statistics")).group_name == "detection"
    for key in graph.get_all_asset_keys():
        spec = graph.get(key)
        name = key.to_user_string()
        assert spec.partitions_def == WORKSPACES, name
        assert spec.description and len(spec.description) > 40, name
        assert spec.group_name in {"intake", "quality", "detection", "cases", "evaluation"}, name
        assert any(tag.startswith("dagster/kind/") for tag in spec.tags), name


def test_the_quality_checks_block_only_where_errors_can_halt(resolved: dg.Definitions) -> None:
    graph = resolved.resolve_asset_graph()
    specs = {key.name: graph.get_check_spec(key) for key in graph.asset_check_keys}
    assert set(specs) == {"conformance", "referential_integrity", "duplicates", "outliers"}
    assert {name for name, spec in specs.items() if spec.blocking} == {
        "conformance",
        "referential_integrity",
    }
    assert {spec.asset_key.to_user_string() for spec in specs.values()} == {"raw_claims"}


def test_the_job_runs_in_process_and_automation_is_on(resolved: dg.Definitions) -> None:
    job = resolved.resolve_job_def(PIPELINE_JOB)
    assert job.executor_def.name == "in_process"
    # Each step's end is recorded in the run's row as it happens.
    assert {hook.name for hook in job.hook_defs} == {"step_recorded", "step_failure_recorded"}
    sensors = {s.name: s for s in resolved.sensors or []}
    assert set(sensors) == {
        "landed_batch_sensor",
        "pipeline_request_sensor",
        "pipeline_run_ending",
    }
    assert all(s.default_status == dg.DefaultSensorStatus.RUNNING for s in sensors.values())
    (schedule,) = resolved.schedules or []
    assert schedule.cron_schedule == "0 2 * * *"


def test_build_defs_overrides_resources_and_the_io_manager_follows_the_store(
    settings: Settings,
) -> None:
    store = StoreResource.from_settings(settings)
    config = PipelineRunConfig(force_reprocess=True)
    built = build_defs(resource_overrides={"store": store, "pipeline_config": config})
    resources = built.resources
    assert resources["store"] is store
    assert resources["pipeline_config"] is config
    io_manager = resources["io_manager"]
    assert isinstance(io_manager, ArrowFramesIOManager)
    assert io_manager.store is store
    assert store.io_dir() == settings.data_dir / "dagster_io"


def test_the_default_store_takes_everything_from_the_environment(monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("FWA_DATA_DIR", str(tmp_path))
    monkeypatch.delenv("FWA_DATABASE_URL", raising=False)
    store = defs.resources["store"]
    assert store.database_url is None and store.encryption_key is None
    assert store.settings().sqlalchemy_url == f"sqlite:///{tmp_path / 'fwa.db'}"
