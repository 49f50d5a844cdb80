"""The compute on a real Dask cluster (worker processes on this machine): the same results as in
process, a task's error reaching the caller, a worker dying mid-task failing cleanly with the
task's name, and a pipeline run pointed at a cluster recording where it computed.

One cluster of two workers serves the module: starting one costs seconds."""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Iterator

import dagster as dg
import pytest
from distributed import Client, LocalCluster

from fwa_pipeline.compute import dask as dask_compute
from fwa_pipeline.compute.base import ComputeError, LocalCompute
from fwa_pipeline.compute.dask import DaskCompute, local_cluster
from fwa_pipeline.compute.factory import compute_from_settings
from fwa_pipeline.runs.ledger import UNSTATED
from fwa_pipeline.settings import Settings
from fwa_pipeline.store.runs import get_run
from tests.pipeline import batch
from tests.pipeline.conftest import Pipeline, materializations

pytestmark = [pytest.mark.dask, pytest.mark.xdist_group("dask")]


def triple(n: int) -> tuple[int, int]:
    return n, 3 * n


def scaled(n: int, shared: dict[str, int]) -> int:
    return n * shared["factor"]


def refuse_three(n: int) -> int:
    if n == 3:
        raise ValueError(f"item {n} is not wanted")
    return n


def die(n: int) -> int:
    os._exit(1)  # the worker process ends here, as if killed


@pytest.fixture(scope="module")
def cluster() -> Iterator[LocalCluster]:
    with local_cluster(workers=2) as started:
        yield started


@pytest.fixture
def client(cluster: LocalCluster) -> Iterator[Client]:
    with Client(cluster, set_as_default=False) as connected:
        connected.wait_for_workers(2, timeout=60)  # again two, after a test killed one
        yield connected


def test_the_cluster_gives_what_the_process_gives_in_item_order(client: Client) -> None:
    items = list(range(25))
    compute = DaskCompute(client)
    assert compute.map(triple, items) == LocalCompute().map(triple, items)
    assert compute.map(triple, []) == []


def test_what_every_task_shares_reaches_each_task_sent_once(client: Client) -> None:
    compute = DaskCompute(client)
    shared = {"factor": 7}
    assert compute.map(scaled, [1, 2, 3], shared) == LocalCompute().map(scaled, [1, 2, 3], shared)
    assert compute.map(scaled, [1, 2, 3], shared) == [7, 14, 21]


def test_a_tasks_error_reaches_the_caller_with_its_message(client: Client) -> None:
    with pytest.raises(ValueError, match="item 3 is not wanted"):
        DaskCompute(client).map(refuse_three, [1, 2, 3, 4])


def test_shards_default_to_twice_the_workers(client: Client) -> None:
    assert DaskCompute(client).describe() == {
        "mode": "dask",
        "shards": 4,
        "workers": 2,
        "address": None,
    }
    assert DaskCompute(client, shards=3).shards == 3


def test_a_worker_dying_mid_task_fails_the_map_naming_the_task(client: Client) -> None:
    with pytest.raises(ComputeError) as info:
        DaskCompute(client).map(die, [1])
    assert str(info.value) == (
        "task die(int) 1 of 1 failed: the Dask worker running it died, 2 times in a row; the "
        "workers' logs say why (often their memory limit)"
    )
    # The nannies start new workers: the cluster serves the next map.
    client.wait_for_workers(2, timeout=60)
    assert DaskCompute(client).map(triple, [2]) == [(2, 6)]


@pytest.mark.slow
def test_a_task_left_without_any_worker_fails_the_map_naming_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(dask_compute, "NO_WORKERS_TIMEOUT", "1s")
    with local_cluster(workers=1) as lonely, Client(lonely, set_as_default=False) as client:
        lonely.scale(0)
        for _ in range(100):
            if not client.nthreads():
                break
            time.sleep(0.1)
        assert not client.nthreads()
        with pytest.raises(ComputeError) as info:
            DaskCompute(client).map(triple, [1, 2])
    assert str(info.value) in {
        f"task triple(int) {n} of 2 failed: the Dask cluster had no worker to run it for 1 s"
        for n in (1, 2)
    }


def test_connecting_to_a_scheduler_records_its_address_and_closes_its_client(
    cluster: LocalCluster,
) -> None:
    address = cluster.scheduler_address
    compute = DaskCompute.connect(address)
    try:
        assert compute.describe() == {
            "mode": "dask",
            "shards": 4,
            "workers": 2,
            "address": address,
        }
        assert compute.map(triple, [1, 2]) == [(1, 3), (2, 6)]
    finally:
        compute.close()
    assert compute.client.status == "closed"


def unused_address() -> str:
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        return f"tcp://127.0.0.1:{unused.getsockname()[1]}"


def test_a_scheduler_that_cannot_be_reached_fails_cleanly(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(dask_compute, "CONNECT_TIMEOUT_S", 1)
    address = unused_address()
    with pytest.raises(ComputeError, match=f"cannot reach the Dask scheduler at {address}$"):
        DaskCompute.connect(address)


@pytest.mark.slow
def test_dask_without_an_address_runs_on_a_cluster_of_its_own_closed_after() -> None:
    settings = Settings(  # type: ignore[call-arg]
        compute="dask", dask_workers=1, dask_worker_memory="1GB", _env_file=None
    )
    with compute_from_settings(settings) as compute:
        assert isinstance(compute, DaskCompute)
        assert compute.describe() == {"mode": "dask", "shards": 2, "workers": 1, "address": None}
        assert compute.map(triple, [5]) == [(5, 15)]
        workers = compute.client.scheduler_info()["workers"].values()
        assert [w["memory_limit"] for w in workers] == [10**9]
        cluster = compute.client.cluster
    assert compute.client.status == "closed"
    assert cluster is not None and cluster.status.name == "closed"


def test_a_pipeline_run_on_a_cluster_leaves_what_one_in_process_leaves_and_says_where(
    cluster: LocalCluster, pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    pipeline.land(batch.batch_one(), workspace="here")
    assert pipeline.run("here").success
    # What every launcher does: the run's compute comes from the FWA_ environment.
    monkeypatch.setenv("FWA_DASK_SCHEDULER_ADDRESS", cluster.scheduler_address)
    pipeline.land(batch.batch_one())
    transitions = cluster.scheduler.transition_counter
    result = pipeline.run()
    assert cluster.scheduler.transition_counter > transitions  # its tasks went through it
    row = get_run(pipeline.engine, result.run_id)
    assert row is not None and row.status == "success"
    assert row.config_snapshot["compute"] == {
        "mode": "dask",
        "shards": 4,
        "workers": 2,
        "address": cluster.scheduler_address,
    }
    outcome = pipeline.outcome()
    assert outcome["hits"] and outcome == pipeline.outcome("here")


def test_a_run_that_cannot_reach_its_scheduler_fails_at_its_first_step(
    pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(dask_compute, "CONNECT_TIMEOUT_S", 1)
    address = unused_address()
    monkeypatch.setenv("FWA_DASK_SCHEDULER_ADDRESS", address)
    batch_id = pipeline.land(batch.batch_one())
    result = pipeline.run()
    assert not result.success and result.status == "failure"
    # Nothing after the first step ran (the reference data does not depend on it).
    assert set(materializations(pipeline.instance, result.run_id)) == {"reference_data"}
    # Operators read why in the run's event log; the requester, that the step failed.
    failures = [
        entry.dagster_event.step_failure_data.error
        for entry in pipeline.instance.all_logs(
            result.run_id, of_type=dg.DagsterEventType.STEP_FAILURE
        )
        if entry.dagster_event and entry.dagster_event.step_failure_data
    ]
    assert [error.cause.message for error in failures if error and error.cause] == [
        f"fwa_pipeline.compute.base.ComputeError: cannot reach the Dask scheduler at {address}\n"
    ]
    row = get_run(pipeline.engine, result.run_id)
    assert row is not None and row.errors == [f"landed_batches: {UNSTATED}"]
    # Nothing was consumed: the batch waits for the next run.
    assert pipeline.query("SELECT processed_run_id FROM batches WHERE id = :b", b=batch_id) == [
        (None,)
    ]
