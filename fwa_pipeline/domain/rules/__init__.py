"""The rule catalogue. Importing this package registers every rule family."""

from __future__ import annotations

import pandas as pd

from fwa_pipeline.domain.config import PipelineConfig
from fwa_pipeline.domain.rules import medical, pharmacy  # noqa: F401  (registration)
from fwa_pipeline.domain.rules.base import HIT_COLUMNS, REGISTRY, RuleContext, empty_hits

HIT_FRAME_COLUMNS = ["rule_id", "rule_version", "weight", *HIT_COLUMNS]


def evaluate(ctx: RuleContext, config: PipelineConfig) -> pd.DataFrame:
    """Every enabled rule over ``ctx``; hits only on claims whose ``in_scope`` is true."""
    frames = []
    for rule_id, params in config.enabled_rules().items():
        fn = REGISTRY.get(rule_id)
        if fn is None:
            raise KeyError(f"{rule_id} is configured but no rule implements it")
        hits = fn(ctx, params)
        if hits.empty:
            continue
        frames.append(
            hits.assign(rule_id=rule_id, rule_version=params.version, weight=params.weight)
        )
    if not frames:
        return empty_hits().assign(rule_id=[], rule_version=[], weight=[])[HIT_FRAME_COLUMNS]
    hits = pd.concat(frames, ignore_index=True)
    in_scope = pd.concat(
        [
            ctx.medical.loc[ctx.medical["in_scope"], ["claim_pk"]].assign(claim_type="medical"),
            ctx.pharmacy.loc[ctx.pharmacy["in_scope"], ["claim_pk"]].assign(claim_type="pharmacy"),
        ]
    )
    hits = hits.merge(in_scope, on=["claim_type", "claim_pk"], how="inner")
    return hits[HIT_FRAME_COLUMNS].reset_index(drop=True)


__all__ = ["HIT_FRAME_COLUMNS", "REGISTRY", "RuleContext", "evaluate"]
