"""The Dagster definitions (loaded by ``workspace.yaml``): assets, checks, the pipeline job,
sensors, the nightly schedule and resources.

:func:`build_defs` is the seam tests use: ``resource_overrides`` replaces resources by key (a
``StoreResource`` pointing at a test database, a ``PipelineRunConfig`` with another quality
mode, a ``ComputeResource`` with more shards). Resources are chosen from the environment
through ``Settings`` (``FWA_ENVIRONMENT``, ``FWA_DATABASE_URL``, ``FWA_COMPUTE``...): the
embedded default uses SQLite under the data directory, production PostgreSQL, with one code
path for both.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import dagster as dg

from fwa_pipeline.defs.assets import ASSETS
from fwa_pipeline.defs.compute import COMPUTE_KEY, ComputeResource
from fwa_pipeline.defs.io import ArrowFramesIOManager
from fwa_pipeline.defs.jobs import pipeline_job
from fwa_pipeline.defs.resources import StoreResource
from fwa_pipeline.defs.schedules import SCHEDULES
from fwa_pipeline.defs.sensors import SENSORS
from fwa_pipeline.runs.config import PIPELINE_CONFIG_KEY, PipelineRunConfig


def default_resources(store: StoreResource | None = None) -> dict[str, Any]:
    store = store or StoreResource()
    return {
        "store": store,
        "io_manager": ArrowFramesIOManager(store=store),
        PIPELINE_CONFIG_KEY: PipelineRunConfig(),
        COMPUTE_KEY: ComputeResource(),
    }


def build_defs(resource_overrides: Mapping[str, Any] | None = None) -> dg.Definitions:
    overrides = dict(resource_overrides or {})
    # The IO manager keeps its frames under the (possibly overridden) store's data directory.
    resources = {**default_resources(overrides.get("store")), **overrides}
    return dg.Definitions(
        assets=ASSETS,
        jobs=[pipeline_job],
        sensors=SENSORS,
        schedules=SCHEDULES,
        resources=resources,
    )


defs = build_defs()
