"""Optional quality defects (``generate(..., quality_defects=True)``): about 0.1% extra claim rows
that parse but break the data contract, for the demo's quality report.

Each defect row is a copy of a random claim with one thing broken: an unknown member id, an NPI
with a wrong check digit, a negative amount, a date after the anchor ("in the future"), or a claim
id that already exists. They are appended after the generated claims and never labelled, so the
rule evaluation against labels.csv should run on a batch without them.
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import pyarrow as pa

from fwa_pipeline.synth.common import ANCHOR_DATE

KINDS = ("unknown_member", "bad_npi", "negative_amount", "future_date", "duplicate_claim_id")
DEFECT_RATE = 0.001


def add_defects(
    table: pa.Table,
    date_column: str,
    npi_column: str,
    prefix: str,
    width: int,
    rng: np.random.Generator,
) -> tuple[pa.Table, dict[str, int]]:
    """``table`` with defect rows appended, and how many of each kind."""
    n = max(len(KINDS), round(len(table) * DEFECT_RATE))
    rows = table.take(pa.array(rng.choice(len(table), size=n, replace=False))).to_pandas()
    kind = np.arange(n) % len(KINDS)
    rows["claim_id"] = [f"{prefix}{i:0{width}d}" for i in range(len(table) + 1, len(table) + n + 1)]
    for k, name in enumerate(KINDS):
        at = rows.index[kind == k]
        if name == "unknown_member":
            rows.loc[at, "member_id"] = [f"UNKNOWN{i:05d}" for i in range(len(at))]
        elif name == "bad_npi":
            rows.loc[at, npi_column] = [
                npi[:9] + str((int(npi[9]) + 1 + int(r)) % 10)
                for npi, r in zip(
                    rows.loc[at, npi_column], rng.integers(0, 8, len(at)), strict=True
                )
            ]
        elif name == "negative_amount":
            rows.loc[at, "amount_billed"] = ["-" + a for a in rows.loc[at, "amount_billed"]]
        elif name == "future_date":
            future = ANCHOR_DATE + dt.timedelta(days=1)
            rows.loc[at, date_column] = [
                future + dt.timedelta(days=int(d)) for d in rng.integers(0, 60, len(at))
            ]
        else:
            rows.loc[at, "claim_id"] = [
                table["claim_id"][int(i)].as_py() for i in rng.integers(0, len(table), len(at))
            ]
    extra = pa.Table.from_pandas(rows, schema=table.schema, preserve_index=False)
    counts = {name: int((kind == k).sum()) for k, name in enumerate(KINDS)}
    return pa.concat_tables([table, extra]), counts
