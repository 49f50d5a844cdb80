"""The rules over shard files find what one pass finds: on a generated batch of both families,
enriched in one pass and written as four member shards, the rules evaluated and the peer rules
compared from statistics aggregated in shards, in process and on a real Dask cluster of two
worker processes, give the same hits, frame for frame, and so the same scores and cases."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from sqlalchemy import create_engine

from fwa_pipeline.compute.base import Compute, LocalCompute
from fwa_pipeline.compute.shards import shard_of
from fwa_pipeline.domain.cases import case_proposals
from fwa_pipeline.domain.config import PipelineConfig, default_config
from fwa_pipeline.domain.rules import HIT_ORDER, REGISTRY, Key, RuleContext, combined, evaluate
from fwa_pipeline.domain.scoring import score_claims
from fwa_pipeline.steps.claim_shards import ClaimShards, read_rows, with_buckets
from fwa_pipeline.steps.claims import CLAIM_TYPES, enrich, flagged_claims
from fwa_pipeline.steps.frame_files import Frames
from fwa_pipeline.steps.peer_statistics import (
    InMemory,
    InShards,
    StatisticsUpdate,
    compared_rules,
    update_statistics,
)
from fwa_pipeline.steps.scope import RunScope
from fwa_pipeline.steps.selection import split_rules
from fwa_pipeline.steps.sharded_rules import compare_shards, evaluate_shards, split_columns
from fwa_pipeline.synth import generate
from tests.unit.domain.rules.batch_files import read_batch_csv
from tests.unit.steps.recording import Recording

AS_OF = dt.date(2026, 6, 30)
SHARDS = 4
REFERENCE = ["providers", "cpt_reference", "ndc_reference", "ncci_edits"]
# A run over every claim: its statistics aggregate its claims, it reads nothing of a store.
SCOPE = RunScope(1, (1,), AS_OF, fresh=True, last_run_id=None, force=False)

# The generated batch and the cluster are made once for the module.
pytestmark = pytest.mark.xdist_group("sharded_rules")


@dataclass(frozen=True)
class Batch:
    ctx: RuleContext
    reference: Frames


@pytest.fixture(scope="module")
def batch(tmp_path_factory: pytest.TempPathFactory) -> Batch:
    """A ~20,000-claim generated batch, both families enriched in one pass, every claim new."""
    directory: Path = tmp_path_factory.mktemp("sharded-synth")
    generate(directory, 20_000, 5)
    reference = {name: read_batch_csv(directory, name) for name in REFERENCE}
    members = read_batch_csv(directory, "members")
    frames = {}
    for t in CLAIM_TYPES:
        claims = read_batch_csv(directory, f"{t}_claims")
        claims = claims.assign(claim_pk=range(1, len(claims) + 1), in_scope=True)
        frames[t] = enrich(t, claims, members, reference)
    ctx = RuleContext(frames["medical"], frames["pharmacy"], reference["ncci_edits"], AS_OF)
    return Batch(ctx, reference)


def partly_new(ctx: RuleContext) -> RuleContext:
    """``ctx`` as an incremental run sees it: some claims new, the others history."""
    medical, pharmacy = ctx.medical, ctx.pharmacy
    return replace(
        ctx,
        medical=medical.assign(in_scope=medical["claim_pk"] % 2 == 0),
        pharmacy=pharmacy.assign(in_scope=pharmacy["claim_pk"] % 3 == 0),
    )


def shard_files(ctx: RuleContext, directory: Path, count: int = SHARDS) -> ClaimShards:
    """The claims of ``ctx`` as enrichment writes them: member shard files holding the buckets
    of the columns the rules split them by."""
    directory.mkdir(exist_ok=True)
    split_by = split_columns(default_config())
    frames = {"medical": ctx.medical, "pharmacy": ctx.pharmacy}
    return ClaimShards.split(
        {t: with_buckets(frame, split_by.get(t, ())) for t, frame in frames.items()},
        directory,
        count,
    )


def statistics_of(update: StatisticsUpdate, batch: Batch) -> dict[str, pd.DataFrame]:
    """Per compared rule, the statistics its comparison reads (indexed by subject)."""
    phases = compared_rules(default_config())
    frames = update.compared(phases, batch.reference["providers"])
    return {r: frames[r].set_index(p.subject) for r, p in phases.items()}


def aggregated_in_shards(batch: Batch, compute: Compute, directory: Path) -> StatisticsUpdate:
    """The peer statistics of every claim of ``batch``, aggregated a task per shard file."""
    config = default_config()
    shards = shard_files(batch.ctx, directory / "every-claim")
    # The run covers every claim: no task reads the store its engine names.
    engine = create_engine(f"sqlite:///{directory / 'unread.db'}")
    aggregate = InShards(engine, SCOPE, config, shards, batch.reference, compute)
    return update_statistics(directory / "peers", SCOPE, config, batch.reference, aggregate)


def in_shards(batch: Batch, ctx: RuleContext, compute: Compute, directory: Path) -> pd.DataFrame:
    """Every enabled rule's hits on the new claims of ``ctx`` written as shard files: the peer
    rules with phases compared from statistics of every claim aggregated in shards, the others
    evaluated, all on ``compute``."""
    config = default_config()
    rest, compared = split_rules(config, compared_rules(config))
    statistics = statistics_of(aggregated_in_shards(batch, compute, directory), batch)
    shards = shard_files(ctx, directory / "claims")
    return combined(
        [
            compare_shards(shards, statistics, compared, compute),
            evaluate_shards(shards, ctx.ncci, ctx.as_of, rest, compute),
        ]
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
def one_pass(request: pytest.FixtureRequest, batch: Batch) -> tuple[RuleContext, dict]:
    ctx = partly_new(batch.ctx) if request.param else batch.ctx
    config = default_config()
    return ctx, outcome(ctx, evaluate(ctx, config), config)


def test_four_shards_find_what_one_pass_finds(
    batch: Batch, one_pass: tuple[RuleContext, dict], tmp_path: Path
) -> None:
    ctx, expected = one_pass
    hits = expected["hits"]
    config = default_config()
    assert set(hits["rule_id"]) == set(config.enabled_rules())
    assert set(hits["rule_id"]) >= set(compared_rules(config))
    # One pass gives its hits in HIT_ORDER, which names each hit once: a total order.
    assert not hits.duplicated(HIT_ORDER).any()
    pd.testing.assert_frame_equal(hits, hits.sort_values(HIT_ORDER, ignore_index=True))

    found = in_shards(batch, ctx, LocalCompute(SHARDS), tmp_path)

    assert_same(outcome(ctx, found, config), expected)


def test_statistics_aggregated_in_shards_are_those_of_one_pass(
    batch: Batch, tmp_path: Path
) -> None:
    config = default_config()
    claims = {"medical": batch.ctx.medical, "pharmacy": batch.ctx.pharmacy}
    engine = create_engine(f"sqlite:///{tmp_path / 'unread.db'}")
    aggregate = InMemory(engine, tmp_path / "peers", SCOPE, config, claims, batch.reference)
    expected = update_statistics(tmp_path / "peers", SCOPE, config, batch.reference, aggregate)

    found = aggregated_in_shards(batch, LocalCompute(SHARDS), tmp_path)

    assert found.recomputed == expected.recomputed
    assert found.subjects_updated == expected.subjects_updated
    for rule_id, frame in statistics_of(expected, batch).items():
        pd.testing.assert_frame_equal(
            statistics_of(found, batch)[rule_id], frame, check_exact=True, obj=rule_id
        )


def test_a_task_reads_its_shard_only(batch: Batch, tmp_path: Path) -> None:
    # The medical claims of two members at one provider: most of 16 shards hold none of them.
    medical = batch.ctx.medical
    few = medical[medical["member_id"].isin(medical["member_id"].iloc[:2])]
    few = few.assign(provider_id=few["provider_id"].iloc[0])
    ctx = replace(batch.ctx, medical=few, pharmacy=batch.ctx.pharmacy.iloc[:0])
    rest, _ = split_rules(default_config(), compared_rules(default_config()))
    compute = Recording(shards=16)

    found = evaluate_shards(shard_files(ctx, tmp_path, 16), ctx.ncci, AS_OF, rest, compute)

    (tasks,) = compute.batches
    members = shard_of(few["member_id"], 16)
    read = [(task, read_rows(task.files, task.where)) for task in tasks]
    # A member shard's task reads that shard's file only; an empty shard has no task.
    by_member = [task for task in tasks if task.where is None]
    assert {f.number for task in by_member for f in task.files} == set(members)
    assert all(len(task.files) == 1 for task in by_member)
    # A provider shard's task reads only the rows of its providers, of every member's file.
    for task, rows in read:
        if task.where is not None:
            column, shard = task.where
            assert (shard_of(rows[column], 16) == shard.number).all()
    assert sum(len(rows) for task, rows in read if task.where is not None) == len(few)
    pd.testing.assert_frame_equal(found, evaluate(ctx, rest), check_exact=True)


def test_a_peer_rule_without_phases_runs_on_its_whole_family(
    batch: Batch, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A rule that needs every claim at once cannot be split: one task with the whole frame.
    whole = replace(REGISTRY["RULE-MED-001"], key=Key.PEERS)
    monkeypatch.setitem(REGISTRY, "RULE-MED-001", whole)
    rest, _ = split_rules(default_config(), compared_rules(default_config()))
    compute = Recording(shards=SHARDS)

    found = evaluate_shards(shard_files(batch.ctx, tmp_path), batch.ctx.ncci, AS_OF, rest, compute)

    (tasks,) = compute.batches
    sizes = [len(read_rows(task.files, task.where)) for task in tasks]
    assert sizes.count(len(batch.ctx.medical)) == 1
    pd.testing.assert_frame_equal(found, evaluate(batch.ctx, rest), check_exact=True)


def test_an_unknown_rule_fails_before_any_task(batch: Batch, tmp_path: Path) -> None:
    config, _ = split_rules(default_config(), compared_rules(default_config()))
    unknown = config.rules["RULE-MED-001"].model_copy()
    config = config.model_copy(update={"rules": {**config.rules, "RULE-MED-999": unknown}})
    shards = shard_files(batch.ctx, tmp_path)
    compute = Recording(shards=SHARDS)

    with pytest.raises(KeyError, match="RULE-MED-999 is configured but no rule implements it"):
        evaluate_shards(shards, batch.ctx.ncci, AS_OF, config, compute)
    assert compute.batches == []


def test_a_peer_rule_with_phases_is_refused_by_the_evaluation(batch: Batch, tmp_path: Path) -> None:
    compute = Recording(shards=SHARDS)
    shards = shard_files(batch.ctx, tmp_path)

    with pytest.raises(ValueError, match="RULE-MED-005 compares from statistics"):
        evaluate_shards(shards, batch.ctx.ncci, AS_OF, default_config(), compute)
    assert compute.batches == []


@pytest.mark.slow
@pytest.mark.dask
def test_four_shards_on_a_dask_cluster_find_what_one_pass_finds(
    batch: Batch, one_pass: tuple[RuleContext, dict], dask: Compute, tmp_path: Path
) -> None:
    ctx, expected = one_pass

    found = in_shards(batch, ctx, dask, tmp_path)

    assert_same(outcome(ctx, found, default_config()), expected)
