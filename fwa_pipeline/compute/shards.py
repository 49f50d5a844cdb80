"""Which shard a claim belongs to, the same in every process and on every machine.

A key's shard is its string's hash (pandas' ``hash_array`` with its fixed default key, not
Python's salted ``hash``) modulo the shard count, so a worker reading its shard and the process
that split the frame agree. Missing keys (NaN, None) all go to shard 0.
"""

from __future__ import annotations

import numpy as np
import pandas as pd


def shard_of(keys: pd.Series, shards: int) -> np.ndarray:
    """The shard (0 .. shards - 1) of each key, as an int64 array in the series' order."""
    if shards < 1:
        raise ValueError(f"shards must be at least 1, got {shards}")
    missing = keys.isna().to_numpy()
    hashed = pd.util.hash_array(keys.astype(str).to_numpy(object))
    found = (hashed % np.uint64(shards)).astype(np.int64)
    found[missing] = 0
    return found


def split(frame: pd.DataFrame, column: str, shards: int) -> list[pd.DataFrame]:
    """``frame`` cut into ``shards`` frames by the shard of ``column``: every shard is present
    (possibly empty, with the frame's columns and dtypes), each row in exactly one, in the
    frame's order within it."""
    owner = shard_of(frame[column], shards)
    return [frame[owner == shard] for shard in range(shards)]
