"""In process, tasks run in order and a task's error reaches the caller as it was raised; the
settings choose in process or Dask, and the Dagster resource gives a run one compute, closed at
its end. (The Dask side on a real cluster: ``tests/pipeline/test_compute_dask.py``.)"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import dagster as dg
import pytest

from fwa_pipeline.compute import dask as dask_compute
from fwa_pipeline.compute.base import LocalCompute
from fwa_pipeline.compute.factory import compute_from_settings
from fwa_pipeline.defs.compute import ComputeResource
from fwa_pipeline.settings import Settings

ran: list[int] = []


def square(n: int) -> int:
    ran.append(n)
    return n * n


def refuse_three(n: int) -> int:
    if n == 3:
        raise ValueError(f"item {n} is not wanted")
    return n


def test_local_compute_runs_each_item_in_order() -> None:
    ran.clear()
    assert LocalCompute().map(square, [3, 1, 2]) == [9, 1, 4]
    assert ran == [3, 1, 2]
    assert LocalCompute().map(square, []) == []


def test_a_tasks_error_reaches_the_caller_with_its_message() -> None:
    with pytest.raises(ValueError, match="item 3 is not wanted"):
        LocalCompute(shards=4).map(refuse_three, [1, 2, 3, 4])


def test_local_compute_describes_itself() -> None:
    assert LocalCompute(shards=3).describe() == {
        "mode": "local",
        "shards": 3,
        "workers": 1,
        "address": None,
    }
    with pytest.raises(ValueError, match="at least 1"):
        LocalCompute(shards=0)


def settings(**fields: Any) -> Settings:
    return Settings(_env_file=None, **fields)  # type: ignore[call-arg]


def test_the_settings_default_to_one_shard_in_process() -> None:
    with compute_from_settings(settings()) as compute:
        assert isinstance(compute, LocalCompute)
        assert compute.shards == 1
    with compute_from_settings(settings(shards=6)) as compute:
        assert isinstance(compute, LocalCompute) and compute.shards == 6


class Made:
    """What a DaskCompute constructor was asked for, and whether it was closed."""

    def __init__(self, how: str, *args: Any) -> None:
        self.how, self.args, self.closed = how, args, False

    def close(self) -> None:
        self.closed = True


@pytest.fixture
def made(monkeypatch: pytest.MonkeyPatch) -> list[Made]:
    found: list[Made] = []

    def record(how: str):
        def make(*args: Any) -> Made:
            found.append(Made(how, *args))
            return found[-1]

        return make

    monkeypatch.setattr(dask_compute.DaskCompute, "connect", record("connect"))
    monkeypatch.setattr(dask_compute.DaskCompute, "start_local", record("start_local"))
    return found


def test_dask_without_an_address_starts_a_cluster_of_the_workers_asked_and_closes_it(
    made: list[Made],
) -> None:
    asked = settings(compute="dask", dask_workers=3, shards=5, dask_worker_memory="2GB")
    with compute_from_settings(asked) as compute:
        assert compute is made[0]
    assert (made[0].how, made[0].args, made[0].closed) == ("start_local", (3, 5, "2GB"), True)


def test_a_scheduler_address_means_dask_on_that_cluster(made: list[Made]) -> None:
    address = "tcp://dask-scheduler:8786"
    with compute_from_settings(settings(dask_scheduler_address=address)):
        pass
    assert (made[0].how, made[0].args, made[0].closed) == ("connect", (address, 0), True)


def test_an_error_in_the_run_still_closes_the_cluster(made: list[Made]) -> None:
    with (
        pytest.raises(RuntimeError, match="boom"),
        compute_from_settings(settings(compute="dask")),
    ):
        raise RuntimeError("boom")
    assert made[0].closed


def test_the_resource_reads_the_environment_under_its_own_fields(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("FWA_SHARDS", "4")
    assert ComputeResource().get().describe()["shards"] == 4
    assert ComputeResource(shards=2).get().describe()["shards"] == 2


def test_a_run_gets_one_compute_closed_when_the_run_ends(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    events: list[str] = []

    @contextmanager
    def recorded(settings: Settings) -> Iterator[LocalCompute]:
        events.append("made")
        yield LocalCompute(settings.shards or 1)
        events.append("closed")

    monkeypatch.setattr("fwa_pipeline.defs.compute.compute_from_settings", recorded)
    seen: list[int] = []

    @dg.op
    def first(compute: ComputeResource) -> int:
        seen.append(id(compute.get()))
        return compute.describe()["shards"]

    @dg.op
    def second(compute: ComputeResource, shards: int) -> None:
        seen.append(id(compute.get()))
        assert events == ["made"]

    @dg.job(executor_def=dg.in_process_executor)
    def job() -> None:
        second(first())

    result = job.execute_in_process(resources={"compute": ComputeResource(shards=3)})
    assert result.success
    assert result.output_for_node("first") == 3
    assert len(set(seen)) == 1
    assert events == ["made", "closed"]


def test_a_run_in_process_does_not_import_dask() -> None:
    # Importing distributed takes about half a second, which a run in process does not pay.
    script = (
        "import sys; from fwa_pipeline.definitions import defs; "
        "from fwa_pipeline.compute.factory import compute_from_settings; "
        "from fwa_pipeline.settings import Settings\n"
        "with compute_from_settings(Settings(_env_file=None)) as compute: compute.map(abs, [-1])\n"
        "print(sorted({'dask', 'distributed'} & set(sys.modules)))"
    )
    found = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True
    ).stdout
    assert found.strip() == "[]"
