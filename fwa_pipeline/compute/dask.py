"""The pipeline's tasks on a Dask cluster: an existing one (``FWA_DASK_SCHEDULER_ADDRESS``) or a
``LocalCluster`` of worker processes that the run starts and stops.

A worker process that dies while running a task (killed for memory, crashed) fails the run with
a :class:`~fwa_pipeline.compute.base.ComputeError` naming the task, after the scheduler has seen
``ALLOWED_FAILURES + 1`` workers die on it, rather than retrying it indefinitely; so does a task
left without any worker for ``NO_WORKERS_TIMEOUT``, rather than waiting for one forever. On a
cluster of its own the run sets both limits; a shared scheduler reads them from its own
configuration (``DASK_DISTRIBUTED__SCHEDULER__ALLOWED_FAILURES`` and ``..._NO_WORKERS_TIMEOUT``,
set in docker-compose.yml).

Workers unpickle the task's function by its module path: it must be a module-level function
of an installed package, and a ``LocalCluster`` must be created from an importable module or
under ``if __name__ == "__main__"`` (its workers are spawned processes).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import ExitStack
from typing import Any

import dask
from distributed import Client, LocalCluster
from distributed.scheduler import KilledWorker, NoWorkerError

from fwa_pipeline.compute.base import ComputeError, Description

# One retry on another worker (a worker may die for a reason of its own), then the run fails.
ALLOWED_FAILURES = 1
NO_WORKERS_TIMEOUT = "5 minutes"
CONNECT_TIMEOUT_S = 10
# A scheduler started with its workers may have none yet: how long a run waits for the first.
WORKER_WAIT_S = 60


def local_cluster(workers: int = 0, memory_limit: str = "auto") -> LocalCluster:
    """Worker processes on this machine, one thread each (pandas holds the GIL); ``workers`` 0:
    one per core; each limited to ``memory_limit`` ("3GB"; "auto": the machine's memory shared
    between them). No dashboard, and the scheduler's HTTP server on a free port: clusters side
    by side must not contend for 8787."""
    limits = {
        "distributed.scheduler.allowed-failures": ALLOWED_FAILURES,
        "distributed.scheduler.no-workers-timeout": NO_WORKERS_TIMEOUT,
    }
    with dask.config.set(limits):
        return LocalCluster(
            n_workers=workers or dask.system.CPU_COUNT,
            threads_per_worker=1,
            processes=True,
            memory_limit=memory_limit,
            dashboard_address=None,
            scheduler_kwargs={"dashboard_address": ":0"},
        )


class DaskCompute:
    """Tasks on the cluster ``client`` is connected to; ``shards`` 0: twice its workers.

    Built from a client, it closes nothing; :meth:`connect` and :meth:`start_local` make a
    client (and a cluster) that :meth:`close` closes.
    """

    def __init__(self, client: Client, shards: int = 0, *, address: str | None = None) -> None:
        if shards < 0:
            raise ValueError(f"shards must be 0 (automatic) or more, got {shards}")
        self.client = client
        self.address = address
        self.workers = len(client.nthreads())
        self.shards = shards or 2 * max(self.workers, 1)
        self._owned = ExitStack()

    @classmethod
    def connect(cls, address: str, shards: int = 0) -> DaskCompute:
        """A client of the scheduler at ``address``, once at least one worker has joined it."""
        try:
            client = Client(address, timeout=CONNECT_TIMEOUT_S, set_as_default=False)
        except OSError as exc:  # refused, unresolvable, or timed out (TimeoutError)
            raise ComputeError(f"cannot reach the Dask scheduler at {address}") from exc
        try:
            client.wait_for_workers(1, timeout=WORKER_WAIT_S)
        except TimeoutError as exc:
            client.close()
            raise ComputeError(
                f"no Dask worker joined the scheduler at {address} within {WORKER_WAIT_S} s"
            ) from exc
        compute = cls(client, shards, address=address)
        compute._owned.callback(client.close)
        return compute

    @classmethod
    def start_local(
        cls, workers: int = 0, shards: int = 0, memory_limit: str = "auto"
    ) -> DaskCompute:
        """A ``LocalCluster`` of ``workers`` processes (0: one per core), each limited to
        ``memory_limit``, and a client of it."""
        cluster = local_cluster(workers, memory_limit)
        try:
            client = Client(cluster, set_as_default=False)
        except BaseException:
            cluster.close()
            raise
        compute = cls(client, shards)
        compute._owned.callback(cluster.close)
        compute._owned.callback(client.close)  # last in, first out: the client closes first
        return compute

    def map(self, fn: Callable[..., Any], items: Sequence[Any], shared: object = None) -> list[Any]:
        items = list(items)
        if not items:
            return []
        common = []
        if shared is None:
            futures = self.client.map(fn, items, pure=False)
        else:
            # On every worker once; each task is given it by reference.
            common = self.client.scatter([shared], broadcast=True, hash=False)
            futures = self.client.map(fn, items, common * len(items), pure=False)
        position = {future.key: n for n, future in enumerate(futures)}

        def task(key: Any) -> str:
            n = position.get(key)
            if n is None:
                return f"a task of {fn.__name__}"
            return f"task {fn.__name__}({type(items[n]).__name__}) {n + 1} of {len(items)}"

        try:
            return self.client.gather(futures)
        except KilledWorker as exc:
            raise ComputeError(
                f"{task(exc.task)} failed: the Dask worker running it died, "
                f"{exc.allowed_failures + 1} times in a row; the workers' logs say why (often "
                "their memory limit)"
            ) from exc
        except NoWorkerError as exc:
            raise ComputeError(
                f"{task(exc.task)} failed: the Dask cluster had no worker to run it for "
                f"{exc.timeout:.0f} s"
            ) from exc
        finally:
            # Released whatever happened; after a failure, the tasks still running are not wanted.
            self.client.cancel([*futures, *common])

    def describe(self) -> Description:
        return {
            "mode": "dask",
            "shards": self.shards,
            "workers": self.workers,
            "address": self.address,
        }

    def close(self) -> None:
        self._owned.close()
