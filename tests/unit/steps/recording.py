"""A ``Compute`` for the sharded steps' tests: runs tasks here and keeps what it was given."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from fwa_pipeline.compute.base import Description


class Recording:
    """A ``Compute`` running tasks here and keeping every batch of items it was given."""

    def __init__(self, shards: int) -> None:
        self.shards = shards
        self.batches: list[list[Any]] = []

    def map(self, fn: Callable[[Any], Any], items: Sequence[Any]) -> list[Any]:
        self.batches.append(list(items))
        return [fn(item) for item in items]

    def describe(self) -> Description:
        return {"mode": "local", "shards": self.shards, "workers": 1, "address": None}
