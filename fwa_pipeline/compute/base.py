"""Where the pipeline computes: the :class:`Compute` interface and its in-process version.

A step that scales out splits its claims into ``compute.shards`` parts (``compute.shards.split``)
and hands a module-level function and the parts to ``compute.map``; the results come back in
the parts' order. ``LocalCompute`` runs them here, one after another; ``DaskCompute``
(``compute.dask``) on a Dask cluster. ``describe()`` is what a run records of where it ran.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Literal, Protocol, TypedDict


class ComputeError(RuntimeError):
    """The cluster failed a task for a reason of its own (a worker died running it, the
    scheduler is unreachable), not because the task raised: its message is safe to show."""


class Description(TypedDict):
    mode: Literal["local", "dask"]
    shards: int
    workers: int
    address: str | None  # the scheduler's address; None in process or on a run's own cluster


class Compute(Protocol):
    shards: int

    def map(self, fn: Callable[..., Any], items: Sequence[Any], shared: object = None) -> list[Any]:
        """``fn`` over ``items``, results in the items' order; with ``shared``, ``fn(item,
        shared)``: what every task reads (reference data, statistics), sent to each worker once
        rather than with each task. ``fn`` must be a module-level function and the items and
        ``shared`` picklable (a cluster ships them); an exception raised by a task is raised
        here, its message kept."""
        ...

    def describe(self) -> Description: ...


class LocalCompute:
    """Every task in this process, in order: the default, and what tests use."""

    def __init__(self, shards: int = 1) -> None:
        if shards < 1:
            raise ValueError(f"shards must be at least 1, got {shards}")
        self.shards = shards

    def map(self, fn: Callable[..., Any], items: Sequence[Any], shared: object = None) -> list[Any]:
        if shared is None:
            return [fn(item) for item in items]
        return [fn(item, shared) for item in items]

    def describe(self) -> Description:
        return {"mode": "local", "shards": self.shards, "workers": 1, "address": None}
