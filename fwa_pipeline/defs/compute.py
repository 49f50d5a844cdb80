"""The run's compute as a Dagster resource (key ``compute``): in process or on Dask, as the
``FWA_`` settings say (``FWA_COMPUTE``, ``FWA_DASK_SCHEDULER_ADDRESS``, ``FWA_SHARDS``,
``FWA_DASK_WORKERS``); fields set on the resource (tests) take precedence.

An asset asks ``compute.get()`` for its :class:`~fwa_pipeline.compute.base.Compute`: made at
the run's first call (``landed_batches`` records ``describe()`` in the run's config snapshot),
kept for the rest of the run, and closed when the run's resources are torn down. The pipeline
job runs its steps in one process, so one cluster serves the whole run.
"""

from __future__ import annotations

from contextlib import ExitStack

import dagster as dg
from pydantic import PrivateAttr

from fwa_pipeline.compute.base import Compute, Description
from fwa_pipeline.compute.factory import compute_from_settings
from fwa_pipeline.settings import Settings

COMPUTE_KEY = "compute"


class ComputeResource(dg.ConfigurableResource):
    """Where the run computes. Unset fields are read from the environment (``FWA_*``)."""

    compute: str | None = None  # "local" or "dask", checked by Settings
    dask_scheduler_address: str | None = None
    shards: int | None = None
    dask_workers: int | None = None

    _made: Compute | None = PrivateAttr(default=None)
    _open: ExitStack = PrivateAttr(default_factory=ExitStack)

    def get(self) -> Compute:
        if self._made is None:
            self._made = self._open.enter_context(compute_from_settings(self._settings()))
        return self._made

    def describe(self) -> Description:
        return self.get().describe()

    def teardown_after_execution(self, context: dg.InitResourceContext) -> None:
        self._made = None
        self._open.close()

    def _settings(self) -> Settings:
        # Each field is named as the setting it overrides.
        set_here = {name: getattr(self, name) for name in type(self).model_fields}
        return Settings(**{k: v for k, v in set_here.items() if v is not None})
