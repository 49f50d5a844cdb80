"""The rules in shards find what one pass finds: on a generated batch of both families, four
shards in process and four shards on a real Dask cluster of two worker processes give the same
hits, frame for frame, and so the same scores and cases; one shard is the one pass itself, and an
empty shard is no task."""

from __future__ import annotations

import datetime as dt
from dataclasses import replace
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from fwa_pipeline.compute.base import Compute, LocalCompute
from fwa_pipeline.compute.shards import split
from fwa_pipeline.domain.cases import case_proposals
from fwa_pipeline.domain.config import PipelineConfig, default_config
from fwa_pipeline.domain.rules import HIT_ORDER, REGISTRY, Key, RuleContext, evaluate
from fwa_pipeline.domain.scoring import score_claims
from fwa_pipeline.steps.claims import CLAIM_TYPES, enrich, flagged_claims
from fwa_pipeline.steps.sharded_rules import evaluate_sharded
from fwa_pipeline.synth import generate
from tests.unit.domain.rules.batch_files import read_batch_csv
from tests.unit.steps.recording import Recording

AS_OF = dt.date(2026, 6, 30)
SHARDS = 4
REFERENCE = ["providers", "cpt_reference", "ndc_reference", "ncci_edits"]

# The generated batch and the cluster are made once for the module.
pytestmark = pytest.mark.xdist_group("sharded_rules")


@pytest.fixture(scope="module")
def batch(tmp_path_factory: pytest.TempPathFactory) -> RuleContext:
    """A ~20,000-claim generated batch, both families enriched as a run enriches them, every
    claim new."""
    directory: Path = tmp_path_factory.mktemp("sharded-synth")
    generate(directory, 20_000, 5)
    reference = {name: read_batch_csv(directory, name) for name in REFERENCE}
    members = read_batch_csv(directory, "members")
    frames = {}
    for t in CLAIM_TYPES:
        claims = read_batch_csv(directory, f"{t}_claims")
        claims = claims.assign(claim_pk=range(1, len(claims) + 1), in_scope=True)
        frames[t] = enrich(t, claims, members, reference)
    return RuleContext(frames["medical"], frames["pharmacy"], reference["ncci_edits"], AS_OF)


def partly_new(ctx: RuleContext) -> RuleContext:
    """``ctx`` as an incremental run sees it: some claims new, the others history."""
    medical, pharmacy = ctx.medical, ctx.pharmacy
    return replace(
        ctx,
        medical=medical.assign(in_scope=medical["claim_pk"] % 2 == 0),
        pharmacy=pharmacy.assign(in_scope=pharmacy["claim_pk"] % 3 == 0),
    )


def outcome(ctx: RuleContext, hits: pd.DataFrame, config: PipelineConfig) -> dict[str, Any]:
    """The hits and what a run makes of them: claim scores and case proposals."""
    scores = score_claims(hits, config)
    frames = {"medical": ctx.medical, "pharmacy": ctx.pharmacy}
    cases = case_proposals(hits, flagged_claims(frames, hits), scores, config)
    return {"hits": hits, "scores": scores, "cases": cases}


def assert_same(found: dict[str, Any], expected: dict[str, Any]) -> None:
    for name, frame in expected.items():
        pd.testing.assert_frame_equal(found[name], frame, check_exact=True, obj=name)


@pytest.fixture(scope="module", params=[False, True], ids=["full", "incremental"])
def one_pass(request: pytest.FixtureRequest, batch: RuleContext) -> tuple[RuleContext, dict]:
    ctx = partly_new(batch) if request.param else batch
    config = default_config()
    return ctx, outcome(ctx, evaluate(ctx, config), config)


def test_four_shards_find_what_one_pass_finds(one_pass: tuple[RuleContext, dict]) -> None:
    ctx, expected = one_pass
    hits = expected["hits"]
    assert set(hits["rule_id"]) == set(default_config().enabled_rules())
    # One pass gives its hits in HIT_ORDER, which names each hit once: a total order.
    assert not hits.duplicated(HIT_ORDER).any()
    pd.testing.assert_frame_equal(hits, hits.sort_values(HIT_ORDER, ignore_index=True))
    config = default_config()

    found = evaluate_sharded(ctx, config, LocalCompute(SHARDS))

    assert_same(outcome(ctx, found, config), expected)


def test_one_shard_is_one_pass_without_tasks(batch: RuleContext) -> None:
    compute = Recording(shards=1)

    found = evaluate_sharded(batch, default_config(), compute)

    assert compute.batches == []
    pd.testing.assert_frame_equal(found, evaluate(batch, default_config()), check_exact=True)


def test_a_task_per_non_empty_shard(batch: RuleContext) -> None:
    # The medical claims of two members at one provider: most of 16 shards hold none of them.
    few = batch.medical[batch.medical["member_id"].isin(batch.medical["member_id"].iloc[:2])]
    few = few.assign(provider_id=few["provider_id"].iloc[0])
    ctx = replace(batch, medical=few, pharmacy=batch.pharmacy.iloc[:0])
    compute = Recording(shards=16)

    found = evaluate_sharded(ctx, default_config(), compute)

    def shards(column: str) -> int:
        return sum(not part.empty for part in split(few, column, 16))

    rules, compare = compute.batches
    # By member, by provider (the provider's day), by peer subject: provider and code.
    peers = shards("provider_id") + shards("cpt_code")
    assert len(rules) == shards("member_id") + shards("provider_id") + peers
    assert len(compare) == peers
    assert all(not shipped(task).empty for task in rules + compare)
    pd.testing.assert_frame_equal(found, evaluate(ctx, default_config()), check_exact=True)


def test_a_peer_rule_without_phases_runs_on_its_whole_family(
    batch: RuleContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A rule that needs every claim at once cannot be split: one task with the whole frame.
    whole = replace(REGISTRY["RULE-MED-001"], key=Key.PEERS)
    monkeypatch.setitem(REGISTRY, "RULE-MED-001", whole)
    compute = Recording(shards=SHARDS)

    found = evaluate_sharded(batch, default_config(), compute)

    sizes = [len(shipped(task)) for task in compute.batches[0]]
    assert sizes.count(len(batch.medical)) == 1
    pd.testing.assert_frame_equal(found, evaluate(batch, default_config()), check_exact=True)


def test_an_unknown_rule_fails_before_any_task(batch: RuleContext) -> None:
    config = default_config()
    unknown = config.rules["RULE-MED-001"].model_copy()
    config = config.model_copy(update={"rules": {**config.rules, "RULE-MED-999": unknown}})
    compute = Recording(shards=SHARDS)

    with pytest.raises(KeyError, match="RULE-MED-999 is configured but no rule implements it"):
        evaluate_sharded(batch, config, compute)
    assert compute.batches == []


@pytest.mark.slow
@pytest.mark.dask
def test_four_shards_on_a_dask_cluster_find_what_one_pass_finds(
    one_pass: tuple[RuleContext, dict], dask: Compute
) -> None:
    ctx, expected = one_pass
    config = default_config()

    found = evaluate_sharded(ctx, config, dask)

    assert_same(outcome(ctx, found, config), expected)


def shipped(task: Any) -> pd.DataFrame:
    """The claims a task carries: a peer task's, or those of its context's families."""
    if hasattr(task, "ctx"):
        return pd.concat([task.ctx.medical, task.ctx.pharmacy])
    return task.claims
