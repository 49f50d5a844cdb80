"""Arrow views of pandas columns, for hash lookups (``is_in``, ``index_in``) at C speed."""

from __future__ import annotations

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc


def strings(values: pd.Series) -> pa.Array | pa.ChunkedArray:
    """``values`` as Arrow large strings (missing as null): zero-copy for Arrow-backed
    columns, where going through Python objects would cost a call per value."""
    return pc.cast(pa.array(values, from_pandas=True), pa.large_string())
