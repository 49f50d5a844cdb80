"""The rules over a run's enriched claims. The peer rules with phases compare the run's new claims
from the peer statistics (``steps.peer_statistics``); a run over every claim evaluates the other
rules on its claims; an incremental run evaluates a peer rule without phases apart, on its new
claims together with the processed claims of its look-back (``steps.peer_history``), and the
other rules on its claims and the history read for them.

A run in one shard evaluates the frames it holds; a run in several evaluates the enriched shard
files in tasks on its ``Compute`` (``steps.sharded_rules``)."""

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from fwa_pipeline.compute.base import Compute
from fwa_pipeline.domain.config import PipelineConfig
from fwa_pipeline.domain.rules import RuleContext, combined, evaluate
from fwa_pipeline.steps.claim_shards import ClaimShards
from fwa_pipeline.steps.claims import CLAIM_TYPES
from fwa_pipeline.steps.frame_files import Frames
from fwa_pipeline.steps.peer_history import peer_frames
from fwa_pipeline.steps.peer_statistics import compared_rules
from fwa_pipeline.steps.scope import RunScope
from fwa_pipeline.steps.selection import plan_history, split_rules
from fwa_pipeline.steps.sharded_rules import compare, compare_shards, evaluate_shards
from fwa_pipeline.store.claims import Source


@dataclass(frozen=True)
class Detection:
    hits: pd.DataFrame
    # Processed claims the peer rules without phases compared the new claims with.
    peer_claims: int


def detect(
    source: Source,
    peer_directory: Path,
    scope: RunScope,
    config: PipelineConfig,
    enriched_claims: Frames | ClaimShards,
    reference_data: Frames,
    peer_statistics: Frames,
    compute: Compute,
) -> Detection:
    """Every enabled rule's hits on the run's new claims (``enriched_claims``: frames, or shard
    files evaluated on ``compute``; ``peer_directory``: where the peers' copy is kept;
    ``peer_statistics``: per compared peer rule, its statistics with the subject's id as a
    column)."""
    ncci = reference_data["ncci_edits"]
    phases = compared_rules(config)
    rest, compared = split_rules(config, phases)
    statistics = {r: peer_statistics[r].set_index(p.subject) for r, p in phases.items()}

    def run(frames: Frames | ClaimShards, rules_config: PipelineConfig) -> pd.DataFrame:
        if isinstance(frames, ClaimShards):
            return evaluate_shards(frames, ncci, scope.as_of, rules_config, compute)
        ctx = RuleContext(frames["medical"], frames["pharmacy"], ncci, scope.as_of)
        return evaluate(ctx, rules_config)

    if isinstance(enriched_claims, ClaimShards):
        hits = [compare_shards(enriched_claims, statistics, compared, compute)]
    else:
        hits = [compare(enriched_claims, statistics, compared)]
    if scope.covers_all:
        return Detection(combined([*hits, run(enriched_claims, rest)]), 0)
    peer_rules = [r for t in CLAIM_TYPES for r in plan_history(rest, t).peer_rules]
    own, peers_only = split_rules(rest, peer_rules)
    hits.append(run(enriched_claims, own))
    if not peer_rules:
        return Detection(combined(hits), 0)
    # A peer rule without phases compares the new claims with their processed peers in this
    # process (the catalogue's peer rules all have phases).
    new = enriched_claims.frames() if isinstance(enriched_claims, ClaimShards) else enriched_claims
    peers = peer_frames(source, peer_directory, peers_only, new, reference_data, scope)
    hits.append(run(peers, peers_only))
    return Detection(combined(hits), sum(int((~peers[t]["in_scope"]).sum()) for t in CLAIM_TYPES))
