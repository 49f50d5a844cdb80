"""Which shard a claim belongs to, the same in every process, on every machine and in the store.

A key's bucket (0 .. ``BUCKETS`` - 1) is its string's hash (pandas' ``hash_array`` with its
fixed default key, not Python's salted ``hash``) modulo ``BUCKETS``; missing keys (NaN, None)
are all in bucket 0. The store keeps each claim's and member's bucket (``member_bucket``,
indexed), and a shard is a contiguous range of buckets: bucket ``b`` of ``count`` shards is in
shard ``b * count // BUCKETS``. So the process that splits a frame and a worker reading its
shard from the store with ``member_bucket BETWEEN low AND high`` (:attr:`Shard.buckets`) agree.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

# Fixed for good: the store keeps buckets, so changing it means recomputing every stored row.
BUCKETS = 4096


def bucket_of(keys: pd.Series) -> np.ndarray:
    """The bucket (0 .. BUCKETS - 1) of each key, as an int16 array in the series' order."""
    hashed = pd.util.hash_array(keys.astype(str).to_numpy(object))
    found = (hashed % np.uint64(BUCKETS)).astype(np.int16)
    found[keys.isna().to_numpy()] = 0
    return found


def _check_count(shards: int) -> None:
    if shards < 1:
        raise ValueError(f"shards must be at least 1, got {shards}")
    if shards > BUCKETS:
        raise ValueError(f"shards must be at most {BUCKETS} (the buckets), got {shards}")


def shard_of(keys: pd.Series, shards: int) -> np.ndarray:
    """The shard (0 .. shards - 1) of each key, as an int64 array in the series' order."""
    _check_count(shards)
    return bucket_of(keys).astype(np.int64) * shards // BUCKETS


@dataclass(frozen=True)
class Shard:
    """Shard ``number`` of ``count``: the keys whose bucket lies in :attr:`buckets`."""

    number: int
    count: int

    def __post_init__(self) -> None:
        _check_count(self.count)
        if not 0 <= self.number < self.count:
            raise ValueError(f"shard number must be in 0 .. {self.count - 1}, got {self.number}")

    @property
    def buckets(self) -> tuple[int, int]:
        """The lowest and highest bucket of the shard (inclusive): the buckets ``b`` with
        ``b * count // BUCKETS == number``."""
        low = -(-self.number * BUCKETS // self.count)  # ceil(number * BUCKETS / count)
        high = -(-(self.number + 1) * BUCKETS // self.count) - 1
        return low, high

    @classmethod
    def all(cls, count: int) -> list[Shard]:
        """Every shard of ``count``, in order."""
        _check_count(count)
        return [cls(number, count) for number in range(count)]


def split(frame: pd.DataFrame, column: str, shards: int) -> list[pd.DataFrame]:
    """``frame`` cut into ``shards`` frames by the shard of ``column``: every shard is present
    (possibly empty, with the frame's columns and dtypes), each row in exactly one, in the
    frame's order within it."""
    owner = shard_of(frame[column], shards)
    return [frame[owner == shard] for shard in range(shards)]
