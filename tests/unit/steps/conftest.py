"""The sharded steps' tests run their shards on a real Dask cluster of two worker processes,
started once per test module (each module keeps to one xdist worker)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from fwa_pipeline.compute.base import Compute

SHARDS = 4


@pytest.fixture(scope="module")
def dask() -> Iterator[Compute]:
    """A ``LocalCluster`` of two worker processes computing in ``SHARDS`` shards."""
    from fwa_pipeline.compute.dask import DaskCompute

    compute = DaskCompute.start_local(workers=2, shards=SHARDS)
    try:
        yield compute
    finally:
        compute.close()
