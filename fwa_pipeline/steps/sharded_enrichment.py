"""Enrichment of a run's claim shards (``steps.claim_shards``), each shard a task on the run's
``Compute`` that reads its raw file and writes its enriched one.

Enrichment joins each line with its member, providers and codes, so lines enrich alone: each
task gets its shard's members (read, and their dates decrypted, by the run: workers hold no
key) and the reference data it joins (small, so sent to every task whole). A first round asks
each shard which members its claims need (:class:`~fwa_pipeline.steps.intake.MemberNeeds`). The
enriched files also store the bucket of every column a later step splits them by.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from fwa_pipeline.compute.base import Compute
from fwa_pipeline.compute.shards import shard_of
from fwa_pipeline.domain.config import PipelineConfig
from fwa_pipeline.domain.quality import passing
from fwa_pipeline.steps.claim_shards import ClaimShards, ShardFile, with_buckets, write_shard
from fwa_pipeline.steps.claims import CLAIM_TYPES, enrich
from fwa_pipeline.steps.frame_files import Frames
from fwa_pipeline.steps.intake import MemberNeeds

# The reference frames each claim type is joined with.
REFERENCE_OF = {
    "medical": ("providers", "cpt_reference"),
    "pharmacy": ("providers", "ndc_reference"),
}


def _gated(file: ShardFile, held: pd.DataFrame, columns: Sequence[str] | None = None) -> Frames:
    """The shard's claims the gate let on, as the frames of its claim type (the other type
    empty, with the columns it needs)."""
    claims = passing(file.read(columns), held, file.claim_type)  # type: ignore[arg-type]
    empty = pd.DataFrame({"member_id": [], "cpt_code": [], "in_scope": []}, dtype=object)
    return {t: claims if t == file.claim_type else empty for t in CLAIM_TYPES}


@dataclass(frozen=True)
class _Shared:
    """What every task of a round reads: the held claims, and the reference frames enrichment
    joins (sent to each worker once)."""

    held: pd.DataFrame
    reference: Frames


@dataclass(frozen=True)
class _Needs:
    file: ShardFile
    config: PipelineConfig
    every_member: bool

    def run(self, shared: _Shared) -> MemberNeeds:
        columns = ["claim_pk", "member_id", "in_scope"]
        if self.file.claim_type == "medical":
            columns.append("cpt_code")
        claims = _gated(self.file, shared.held, columns)
        cpt_reference = shared.reference["cpt_reference"]
        return MemberNeeds.of(claims, self.config, cpt_reference, every_member=self.every_member)


@dataclass(frozen=True)
class _Enrich:
    """One shard's gated claims enriched with its ``members`` and the reference frames, written
    to ``path`` with the buckets of ``split_by``."""

    file: ShardFile
    members: pd.DataFrame | None
    split_by: tuple[str, ...]
    path: Path

    def run(self, shared: _Shared) -> ShardFile:
        t = self.file.claim_type
        claims = _gated(self.file, shared.held)[t]
        reference = {name: shared.reference[name] for name in REFERENCE_OF[t]}
        enriched = with_buckets(enrich(t, claims, self.members, reference), self.split_by)
        return write_shard(self.path, t, self.file.number, enriched)


def _run(task: _Needs | _Enrich, shared: _Shared) -> object:
    """What ``Compute.map`` runs (a module-level function ships by name)."""
    return task.run(shared)


def member_needs(
    shards: ClaimShards,
    held: pd.DataFrame,
    config: PipelineConfig,
    cpt_reference: pd.DataFrame,
    every_member: bool,
    compute: Compute,
) -> MemberNeeds:
    """What the gated claims of ``shards`` need of the members (``every_member``: the run
    reads them all), one task per shard."""
    files = [f for t in CLAIM_TYPES for f in shards.of(t)]
    tasks = [_Needs(f, config, every_member) for f in files]
    shared = _Shared(held, {"cpt_reference": cpt_reference})
    return MemberNeeds.merged(compute.map(_run, tasks, shared))


def enrich_shards(
    shards: ClaimShards,
    held: pd.DataFrame,
    members: pd.DataFrame | None,
    reference: Frames,
    split_by: dict[str, tuple[str, ...]],
    directory: Path,
    compute: Compute,
) -> ClaimShards:
    """The gated claims of ``shards`` (``held`` left out) enriched as ``enrich`` does, into
    files in ``directory`` holding the buckets of ``split_by`` (per claim type)."""
    owner = None if members is None else shard_of(members["member_id"], shards.count)
    tasks = [
        _Enrich(
            f,
            None if members is None or owner is None else members[owner == f.number],
            split_by.get(f.claim_type, ()),
            directory / Path(f.path).name,
        )
        for f in shards.files
    ]
    joined = {name for names in REFERENCE_OF.values() for name in names}
    shared = _Shared(held, {name: reference[name] for name in sorted(joined)})
    return ClaimShards(shards.count, tuple(compute.map(_run, tasks, shared)))
