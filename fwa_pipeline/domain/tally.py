"""Value counts in the shape the run report and the asset metadata store them."""

from __future__ import annotations

import pandas as pd


def counts(values: pd.Series) -> dict[str, int]:
    """How often each value occurs, as a ``{str: int}`` dict sorted by value (JSON-ready)."""
    return {str(k): int(v) for k, v in values.value_counts().sort_index().items()}
