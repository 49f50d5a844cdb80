"""The run's :class:`~fwa_pipeline.compute.base.Compute`, chosen by the settings
(``FWA_COMPUTE``, ``FWA_DASK_SCHEDULER_ADDRESS``, ``FWA_SHARDS``, ``FWA_DASK_WORKERS``)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from fwa_pipeline.compute.base import Compute, LocalCompute
from fwa_pipeline.settings import Settings


@contextmanager
def compute_from_settings(settings: Settings) -> Iterator[Compute]:
    """In process (``shards`` 0: one), or on Dask: the scheduler at the address if one is set,
    else a ``LocalCluster`` of ``dask_workers`` processes; what it started is closed on exit."""
    if settings.compute == "local":
        yield LocalCompute(settings.shards or 1)
        return
    # Imported here: distributed takes half a second to import, which a local run never pays.
    from fwa_pipeline.compute.dask import DaskCompute

    if settings.dask_scheduler_address:
        compute = DaskCompute.connect(settings.dask_scheduler_address, settings.shards)
    else:
        compute = DaskCompute.start_local(
            settings.dask_workers, settings.shards, settings.dask_worker_memory
        )
    try:
        yield compute
    finally:
        compute.close()
