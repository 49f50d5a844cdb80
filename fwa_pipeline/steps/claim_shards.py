"""A run's claims kept as shard files: one Arrow file per claim type and member shard, written and
read by the shards' tasks themselves, so that in a run of several shards no process holds every
claim (the run's own process holds the list of files).

The files of an asset live under ``<io dir>/<workspace>/_claim_shards/<asset>/<run id>/`` on
storage every worker shares (the data volume), owner-only, as the frames between assets are
(``steps.frame_files``). Writing a run's shards of an asset removes that asset's shards of other
runs, so disk use stays at one copy per asset.

Claims are split by member (``compute.shards``: a member's bucket, a contiguous range of buckets
per shard). A step that needs them by another column (a provider, a code) reads, from every
member shard's file, the rows of its own shard of that column: enrichment stores each such
column's bucket beside the claims (:func:`with_buckets`), so the filter is a range on a stored
integer column of a memory-mapped file.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.feather as feather

from fwa_pipeline.compute.shards import Shard, bucket_of, split
from fwa_pipeline.steps.frame_files import private_dir, private_file, table_frame, to_table

ROOT = "_claim_shards"
MEMBER = "member_id"  # the column claims are split by in their files
BUCKET_PREFIX = "_bucket_"  # a stored bucket column: BUCKET_PREFIX + the column it buckets


def shards_dir(io_dir: Path, workspace: str, asset: str, run_id: str) -> Path:
    """Where run ``run_id`` keeps its shards of ``asset`` for ``workspace`` (created, owner-only,
    with other runs' shards of the asset removed)."""
    asset_dir = io_dir / workspace / ROOT / asset
    if asset_dir.is_dir():
        for stale in asset_dir.iterdir():
            if stale.name != run_id:
                shutil.rmtree(stale, ignore_errors=True)
    return private_dir(asset_dir / run_id)


def bucket_column(column: str) -> str:
    return f"{BUCKET_PREFIX}{column}"


def with_buckets(frame: pd.DataFrame, columns: Iterable[str]) -> pd.DataFrame:
    """``frame`` with the bucket of each of ``columns`` stored beside it."""
    return frame.assign(**{bucket_column(c): bucket_of(frame[c]) for c in columns})


@dataclass(frozen=True)
class ShardFile:
    """One member shard of one claim type: its file, its rows and how many are new."""

    claim_type: str
    number: int
    path: str
    rows: int
    new_rows: int

    def read(
        self, columns: Sequence[str] | None = None, where: tuple[str, Shard] | None = None
    ) -> pd.DataFrame:
        """The shard's claims (only ``columns``, when given); ``where`` (column, shard): only
        the rows of that shard of the column (its bucket stored by :func:`with_buckets`)."""
        return table_frame(self._table(where), columns)

    def columns(self) -> list[str]:
        return feather.read_table(self.path, memory_map=True).column_names

    def _table(self, where: tuple[str, Shard] | None) -> pa.Table:
        table = feather.read_table(self.path, memory_map=True)
        if where is None:
            return table
        column, shard = where
        low, high = shard.buckets
        buckets = table.column(bucket_column(column))
        return table.filter(pc.and_(pc.greater_equal(buckets, low), pc.less_equal(buckets, high)))


def read_rows(files: Sequence[ShardFile], where: tuple[str, Shard] | None = None) -> pd.DataFrame:
    """The claims of ``files`` (``where``: only one shard of a column) as one frame: a single
    file's in its order, several files' new claims first, each part in ``claim_pk`` order (the
    order one pass reads them in)."""
    if len(files) == 1:
        return files[0].read(where=where)
    # Joined as Arrow: a column no row of one file fills takes the type of the others'.
    table = pa.concat_tables([f._table(where) for f in files], promote_options="permissive")
    frame = table_frame(table)
    return frame.sort_values(
        ["in_scope", "claim_pk"], ascending=[False, True], kind="stable", ignore_index=True
    )


def write_shard(path: Path, claim_type: str, number: int, frame: pd.DataFrame) -> ShardFile:
    """Write ``frame`` (claims with ``in_scope``) as shard ``number`` of ``claim_type`` at
    ``path`` (0600)."""
    table: pa.Table = to_table(frame)
    feather.write_feather(table, private_file(path), compression="uncompressed")
    new = int(frame["in_scope"].sum()) if len(frame) else 0
    return ShardFile(claim_type, number, str(path), len(frame), new)


@dataclass(frozen=True)
class ClaimShards:
    """Every claim of a run's step as member shard files, ``count`` shards per claim type."""

    count: int
    files: tuple[ShardFile, ...]

    def of(self, claim_type: str) -> list[ShardFile]:
        """``claim_type``'s shards with rows, in shard order."""
        return [f for f in self.files if f.claim_type == claim_type and f.rows]

    def frames(self) -> dict[str, pd.DataFrame]:
        """Every claim per claim type, in one process: for what needs them whole."""
        return {
            t: read_rows([f for f in self.files if f.claim_type == t])
            for t in dict.fromkeys(f.claim_type for f in self.files)
        }

    def new_rows(self, columns: Sequence[str], among: pd.DataFrame | None = None) -> pd.DataFrame:
        """``columns`` (those a claim type has) of the new claims of every shard (only those
        whose ``claim_type, claim_pk`` are ``among``, when given) with their ``claim_type``, one
        file at a time: the run's own process reads a few columns, never every claim whole."""
        parts = []
        for f in self.files:
            present = [c for c in columns if c in f.columns()]
            claims = f.read([*dict.fromkeys([*present, "claim_pk", "in_scope"])])
            keep = claims["in_scope"].astype(bool)
            if among is not None:
                keep &= claims["claim_pk"].isin(
                    among.loc[among["claim_type"] == f.claim_type, "claim_pk"]
                )
            parts.append(claims.loc[keep, present].assign(claim_type=f.claim_type))
        return pd.concat(parts, ignore_index=True)

    def empty_frames(self) -> dict[str, pd.DataFrame]:
        """Per claim type, its claims' columns without a row."""
        first = {f.claim_type: f for f in reversed(self.files)}
        return {t: table_frame(f._table(None).slice(0, 0)) for t, f in first.items()}

    def new_counts(self) -> dict[str, int]:
        """New claims per claim type."""
        found: dict[str, int] = {}
        for f in self.files:
            found[f.claim_type] = found.get(f.claim_type, 0) + f.new_rows
        return found

    def counts(self) -> dict[str, int]:
        """Claims (new and history) per claim type."""
        found: dict[str, int] = {}
        for f in self.files:
            found[f.claim_type] = found.get(f.claim_type, 0) + f.rows
        return found

    def frame(self) -> pd.DataFrame:
        """As a frame, to pass between assets."""
        return pd.DataFrame(
            {
                "claim_type": [f.claim_type for f in self.files],
                "shard": [f.number for f in self.files],
                "path": [f.path for f in self.files],
                "rows": [f.rows for f in self.files],
                "new_rows": [f.new_rows for f in self.files],
                "count": self.count,
            }
        )

    @classmethod
    def of_frame(cls, frame: pd.DataFrame) -> ClaimShards:
        """The shards :meth:`frame` encoded."""
        files = tuple(
            ShardFile(str(t), int(n), str(p), int(r), int(w))
            for t, n, p, r, w in zip(
                frame["claim_type"],
                frame["shard"],
                frame["path"],
                frame["rows"],
                frame["new_rows"],
                strict=True,
            )
        )
        return cls(int(frame["count"].iloc[0]) if len(frame) else 1, files)

    @classmethod
    def split(cls, frames: dict[str, pd.DataFrame], directory: Path, count: int) -> ClaimShards:
        """``frames`` (per claim type) split by member into ``count`` shard files in
        ``directory``: for claims already in memory (tests, small runs)."""
        files = [
            write_shard(directory / f"{t}-{n}.arrow", t, n, part)
            for t, frame in frames.items()
            for n, part in enumerate(split(frame, MEMBER, count))
        ]
        return cls(count, tuple(files))
