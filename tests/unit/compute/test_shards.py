"""A key's shard is the same in every process and on every machine, shards are balanced, and a
split keeps every row exactly once with the frame's columns and dtypes."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from fwa_pipeline.compute.shards import BUCKETS, Shard, bucket_of, shard_of, split

KEYS = ["P001", "P002", "M-77", "claim-9", "1234567890"]
# Fixed here so that a change of hash (and with it every shard a worker reads) fails a test.
BUCKETS_OF_KEYS = [950, 2793, 2168, 2697, 3660]
SHARDS_OF_KEYS = [1, 5, 4, 5, 7]


def test_a_keys_shard_is_fixed_whatever_the_series_dtype() -> None:
    for dtype in (object, "str"):
        assert shard_of(pd.Series(KEYS, dtype=dtype), 8).tolist() == SHARDS_OF_KEYS


def test_a_keys_bucket_is_fixed_and_small() -> None:
    found = bucket_of(pd.Series(KEYS))
    assert found.dtype == np.int16
    assert found.tolist() == BUCKETS_OF_KEYS


def test_another_process_with_another_hash_seed_finds_the_same_shards() -> None:
    script = (
        "import pandas as pd; from fwa_pipeline.compute.shards import shard_of; "
        f"print(shard_of(pd.Series({KEYS!r}), 8).tolist())"
    )
    for seed in ("1", "2"):
        found = subprocess.run(
            [sys.executable, "-c", script],
            env={**os.environ, "PYTHONHASHSEED": seed},
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        assert found.strip() == str(SHARDS_OF_KEYS)


def test_shards_are_balanced() -> None:
    keys = pd.Series([f"P{n:07d}" for n in range(20_000)])
    sizes = np.bincount(shard_of(keys, 8), minlength=8)
    assert len(sizes) == 8
    assert sizes.min() > 0.9 * 2_500 and sizes.max() < 1.1 * 2_500


def test_missing_keys_go_to_shard_zero() -> None:
    keys = pd.Series(["P001", None, float("nan"), pd.NA], dtype=object)
    assert shard_of(keys, 8).tolist() == [1, 0, 0, 0]
    assert bucket_of(keys).tolist() == [950, 0, 0, 0]


def test_one_shard_holds_everything() -> None:
    assert shard_of(pd.Series(KEYS), 1).tolist() == [0] * len(KEYS)


@pytest.mark.parametrize("shards", [0, -1])
def test_fewer_than_one_shard_is_refused(shards: int) -> None:
    with pytest.raises(ValueError, match="at least 1"):
        shard_of(pd.Series(KEYS), shards)
    with pytest.raises(ValueError, match="at least 1"):
        Shard(0, shards)


def test_more_shards_than_buckets_are_refused() -> None:
    with pytest.raises(ValueError, match="at most 4096"):
        shard_of(pd.Series(KEYS), BUCKETS + 1)
    with pytest.raises(ValueError, match="at most 4096"):
        Shard.all(BUCKETS + 1)


@pytest.mark.parametrize("number", [-1, 4])
def test_a_shard_outside_its_count_is_refused(number: int) -> None:
    with pytest.raises(ValueError, match="shard number"):
        Shard(number, 4)


@pytest.mark.parametrize("count", [1, 2, 3, 4, 7, BUCKETS])
def test_every_bucket_is_in_exactly_one_shards_range(count: int) -> None:
    owners = np.full(BUCKETS, -1)
    for shard in Shard.all(count):
        low, high = shard.buckets
        assert low <= high
        assert (owners[low : high + 1] == -1).all()
        owners[low : high + 1] = shard.number
    assert (owners == np.arange(BUCKETS) * count // BUCKETS).all()


def test_shard_of_puts_a_key_in_the_shard_whose_buckets_hold_its_bucket() -> None:
    keys = pd.Series([f"M{n:06d}" for n in range(5_000)])
    buckets = bucket_of(keys)
    for count in (3, 7):
        owner = shard_of(keys, count)
        for shard in Shard.all(count):
            low, high = shard.buckets
            assert ((owner == shard.number) == ((buckets >= low) & (buckets <= high))).all()


def claims(n: int) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "claim_id": [f"C{i}" for i in range(n)],
            "subject": [f"S{i % 7}" for i in range(n)],
            "billed": np.arange(n, dtype="float64"),
            "service_date": pd.date_range("2026-01-01", periods=n, freq="D"),
        }
    )


def test_split_keeps_every_row_once_in_its_keys_shard() -> None:
    frame = claims(200)
    parts = split(frame, "subject", 4)
    assert len(parts) == 4
    together = pd.concat(parts).sort_index()
    pd.testing.assert_frame_equal(together, frame)
    for shard, part in enumerate(parts):
        assert (shard_of(part["subject"], 4) == shard).all()
        # A subject's claims sit in one shard, in the frame's order.
        assert part.index.is_monotonic_increasing


def test_split_gives_every_shard_even_when_empty_with_the_frames_dtypes() -> None:
    frame = claims(3)
    for source in (frame, frame.iloc[0:0]):
        parts = split(source, "subject", 16)
        assert len(parts) == 16
        assert sum(len(part) for part in parts) == len(source)
        for part in parts:
            pd.testing.assert_series_equal(part.dtypes, frame.dtypes)
