"""The metadata every asset attaches in Dagster's terms: row count and column schema."""

from collections.abc import Mapping

import dagster as dg
import pandas as pd
from sqlalchemy import Table

from fwa_pipeline.steps.claim_shards import ClaimShards
from fwa_pipeline.steps.claims import CLAIM_TYPES


def column_schema(frames: Mapping[str, pd.DataFrame] | pd.DataFrame) -> dg.TableSchema:
    """The columns of a frame, or of each named frame as ``name.column``."""
    named = {"": frames} if isinstance(frames, pd.DataFrame) else frames
    return dg.TableSchema(
        columns=[
            dg.TableColumn(f"{name}.{column}" if name else str(column), str(dtype))
            for name, frame in named.items()
            for column, dtype in frame.dtypes.items()
        ]
    )


def table_schema(table: Table) -> dg.TableSchema:
    return dg.TableSchema(columns=[dg.TableColumn(c.name, str(c.type)) for c in table.columns])


def frame_metadata(frames: Mapping[str, pd.DataFrame] | pd.DataFrame) -> dict[str, object]:
    rows = len(frames) if isinstance(frames, pd.DataFrame) else sum(map(len, frames.values()))
    return {
        "dagster/row_count": dg.MetadataValue.int(rows),
        "dagster/column_schema": column_schema(frames),
    }


def claims_metadata(claims: Mapping[str, pd.DataFrame] | ClaimShards) -> dict[str, object]:
    """:func:`frame_metadata` of a run's claims per claim type, held as frames or as shard files
    (whose columns are read from their files, not their rows)."""
    if isinstance(claims, ClaimShards):
        return {
            "dagster/row_count": dg.MetadataValue.int(sum(claims.counts().values())),
            "dagster/column_schema": column_schema(claims.empty_frames()),
        }
    return frame_metadata({t: claims[t] for t in CLAIM_TYPES})
