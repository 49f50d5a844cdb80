"""Enrichment of claims split into shards by member, each shard a task on the run's ``Compute``.

Enrichment joins each line with its member, providers and codes, so lines enrich alone: each
task gets its shard's claims, its shard's members and the reference data it joins (small, so
sent to every task whole). The enriched shards come back in the claims' row order, so the frame
is the one a single pass gives. With one shard, ``enrich`` runs once on the whole frame.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from fwa_pipeline.compute.base import Compute
from fwa_pipeline.compute.shards import shard_of
from fwa_pipeline.steps.claims import enrich
from fwa_pipeline.steps.frame_files import Frames

SHARD_COLUMN = "member_id"
# The reference frames each claim type is joined with.
REFERENCE_OF = {
    "medical": ("providers", "cpt_reference"),
    "pharmacy": ("providers", "ndc_reference"),
}
ROW = "_row"  # a line's position in the claims given, only ever inside this module


@dataclass(frozen=True)
class _Enrich:
    """One shard's claims of ``claim_type`` enriched with its ``members`` and ``reference``."""

    claim_type: str
    claims: pd.DataFrame
    members: pd.DataFrame | None
    reference: Frames

    def run(self) -> pd.DataFrame:
        return enrich(self.claim_type, self.claims, self.members, self.reference)


def _run(task: _Enrich) -> pd.DataFrame:
    """What ``Compute.map`` runs (a module-level function ships by name)."""
    return task.run()


def enrich_sharded(
    claim_type: str,
    claims: pd.DataFrame,
    members: pd.DataFrame | None,
    reference: Frames,
    compute: Compute,
) -> pd.DataFrame:
    """``enrich(claim_type, claims, members, reference)``, run in ``compute.shards`` shards on
    ``compute``."""
    if compute.shards == 1 or claims.empty:
        return enrich(claim_type, claims, members, reference)
    owner = shard_of(claims[SHARD_COLUMN], compute.shards)
    member_owner = None if members is None else shard_of(members["member_id"], compute.shards)
    joined = {name: reference[name] for name in REFERENCE_OF[claim_type]}
    # Each line carries its position, to put the enriched shards back in the claims' order.
    numbered = claims.assign(**{ROW: np.arange(len(claims))})
    tasks = [
        _Enrich(
            claim_type,
            numbered[owner == shard],
            None if members is None else members[member_owner == shard],
            joined,
        )
        for shard in np.unique(owner)
    ]
    parts = compute.map(_run, tasks)
    return (
        pd.concat(parts, ignore_index=True)
        .sort_values(ROW, kind="stable")
        .drop(columns=ROW)
        .reset_index(drop=True)
    )
