"""A ``Compute`` for the sharded steps' tests: runs tasks here and keeps what it was given."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from fwa_pipeline.compute.base import Description, LocalCompute


class Recording:
    """A ``Compute`` running tasks here and keeping every batch of items it was given."""

    def __init__(self, shards: int) -> None:
        self.shards = shards
        self.batches: list[list[Any]] = []
        self.shared: list[object] = []  # what each batch's tasks shared

    def map(self, fn: Callable[..., Any], items: Sequence[Any], shared: object = None) -> list[Any]:
        self.batches.append(list(items))
        self.shared.append(shared)
        return LocalCompute(self.shards).map(fn, items, shared)

    def describe(self) -> Description:
        return {"mode": "local", "shards": self.shards, "workers": 1, "address": None}
