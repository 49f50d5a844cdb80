"""The rules over a run's enriched claims. A run over every claim evaluates the catalogue on its
claims; an incremental run evaluates the peer rules apart, on its new claims together with the
processed claims of their look-back (``steps.peer_history``), and the other rules on its claims
and the history read for them. Each evaluation runs in the shards of the run's ``Compute``
(``steps.sharded_rules``)."""

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from fwa_pipeline.compute.base import Compute
from fwa_pipeline.domain.config import PipelineConfig
from fwa_pipeline.domain.rules import RuleContext, combined
from fwa_pipeline.steps.claims import CLAIM_TYPES
from fwa_pipeline.steps.frame_files import Frames
from fwa_pipeline.steps.peer_history import peer_frames
from fwa_pipeline.steps.scope import RunScope
from fwa_pipeline.steps.selection import plan_history, split_rules
from fwa_pipeline.steps.sharded_rules import evaluate_sharded
from fwa_pipeline.store.claims import Source


@dataclass(frozen=True)
class Detection:
    hits: pd.DataFrame
    # Processed claims the peer rules compared the new claims with.
    peer_claims: int


def detect(
    source: Source,
    peer_directory: Path,
    scope: RunScope,
    config: PipelineConfig,
    enriched_claims: Frames,
    reference_data: Frames,
    compute: Compute,
) -> Detection:
    """Every enabled rule's hits on the run's new claims (``peer_directory``: where the peers'
    copy is kept), run on ``compute``."""
    ncci = reference_data["ncci_edits"]

    def run(frames: Frames, rules_config: PipelineConfig) -> pd.DataFrame:
        ctx = RuleContext(frames["medical"], frames["pharmacy"], ncci, scope.as_of)
        return evaluate_sharded(ctx, rules_config, compute)

    if scope.covers_all:
        return Detection(run(enriched_claims, config), 0)
    peer_rules = [r for t in CLAIM_TYPES for r in plan_history(config, t).peer_rules]
    own, peers_only = split_rules(config, peer_rules)
    peers = peer_frames(source, peer_directory, config, enriched_claims, reference_data, scope)
    hits = combined([run(enriched_claims, own), run(peers, peers_only)])
    return Detection(hits, sum(int((~peers[t]["in_scope"]).sum()) for t in CLAIM_TYPES))
