"""Turning the integer-coded frames into contract CSV text, byte-for-byte reproducibly.

Money is written from integer cents with exactly two decimals, dates as ISO days, quantities with
at most one decimal; claims files contain no characters that need quoting and go through
pyarrow's writer unquoted; only providers.csv (names such as "Ann Lee, MD") needs pandas' quoting.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from fwa_pipeline.synth.population import NO_DAY


def ids(prefix: str, n: int, width: int) -> pa.Array:
    """prefix + zero-padded 1..n, so lexicographic order is generation order."""
    numbers = pa.array(np.arange(1, n + 1, dtype=np.int64)).cast(pa.string())
    return pc.binary_join_element_wise(prefix, pc.utf8_lpad(numbers, width, "0"), "")


def money(amount_cents: np.ndarray) -> pa.Array:
    """Cents -> 'D.CC' (a leading '-' for negative amounts)."""
    value = np.asarray(amount_cents, dtype=np.int64)
    magnitude = np.abs(value)
    whole = pa.array(magnitude // 100).cast(pa.string())
    fraction = pc.utf8_lpad(pa.array(magnitude % 100).cast(pa.string()), 2, "0")
    sign = pa.array(np.where(value < 0, "-", ""))
    return pc.binary_join_element_wise(sign, whole, ".", fraction, "")


def dates(days: np.ndarray) -> pa.Array:
    """Day numbers -> date32; NO_DAY -> blank."""
    days = np.asarray(days, dtype=np.int64)
    missing = days == NO_DAY
    return pa.array(np.where(missing, 0, days).astype(np.int32), mask=missing).cast(pa.date32())


def tenths(values: np.ndarray) -> pa.Array:
    """Decimal quantities with at most one decimal place: 30, 8.5."""
    scaled = np.rint(np.asarray(values, dtype=np.float64) * 10).astype(np.int64)
    whole = pa.array(scaled // 10).cast(pa.string())
    digit = pa.array(scaled % 10).cast(pa.string())
    decimal = pc.binary_join_element_wise(whole, digit, ".")
    return pc.if_else(pa.array(scaled % 10 == 0), whole, decimal)


def lookup(vocabulary: np.ndarray, index: np.ndarray) -> pa.Array:
    """Small-vocabulary codes -> strings ('' becomes blank)."""
    values = pa.array(np.asarray(vocabulary, dtype=object))
    decoded = pa.DictionaryArray.from_arrays(pa.array(np.asarray(index, dtype=np.int32)), values)
    decoded = decoded.cast(pa.string())
    return pc.if_else(pc.equal(decoded, ""), pa.scalar(None, pa.string()), decoded)


def write_csv(table: pa.Table, path: Path) -> None:
    """Unquoted CSV; pyarrow refuses (rather than corrupts) a value needing quotes."""
    options = pacsv.WriteOptions(quoting_style="none", quoting_header="none")
    pacsv.write_csv(table, path, write_options=options)


def write_frame(frame: pd.DataFrame, path: Path) -> None:
    """CSV with quotes where needed (provider names such as "Ann Lee, MD")."""
    frame.to_csv(path, index=False, lineterminator="\n")
