"""Runs in four shards leave what runs in one leave: hits, scores, cases and claim statuses, on
the small batches (a full run, then an incremental one) and on a generated batch with every
scheme planted, peer rules included; and the same quality report and held claims on a generated
batch with quality defects planted."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from fwa_pipeline.domain.config import default_config
from fwa_pipeline.store.runs import get_run
from fwa_pipeline.synth import generate
from tests.pipeline import batch
from tests.pipeline.conftest import WORKSPACE, Pipeline, materializations
from tests.pipeline.test_synthetic import PEER_RULES, split_latest

SHARDED = "sharded"


def run(
    pipeline: Pipeline, workspace: str, shards: int, overrides: dict[str, Any] | None = None
) -> str:
    """A run of ``workspace`` in ``shards`` shards, as the environment sets them; its id."""
    with pytest.MonkeyPatch.context() as env:
        env.setenv("FWA_SHARDS", str(shards))
        result = pipeline.run(workspace, pipeline=overrides)
    assert result.success
    row = get_run(pipeline.engine, result.run_id)
    assert row is not None and row.config_snapshot["compute"]["shards"] == shards
    return result.run_id


def test_four_shards_leave_what_one_leaves(pipeline: Pipeline) -> None:
    for workspace, shards in ((WORKSPACE, 1), (SHARDED, 4)):
        pipeline.land(batch.batch_one(), workspace)
        run(pipeline, workspace, shards)
        pipeline.land(batch.batch_two(), workspace)
        run(pipeline, workspace, shards)  # incremental: the peer rules on the peers' copy

    assert pipeline.outcome(SHARDED) == pipeline.outcome(WORKSPACE)
    assert pipeline.outcome(WORKSPACE)["hits"]


def test_four_shards_judge_quality_as_one_does(pipeline: Pipeline, tmp_path: Path) -> None:
    # A generated batch with quality defects planted: claim ids reused across members, unknown
    # members, bad NPIs, negative amounts, future dates; and its amount outliers.
    generate(tmp_path / "defects", n_claims=1500, seed=13, quality_defects=True)
    reports = {}
    for workspace, shards in ((WORKSPACE, 1), (SHARDED, 4)):
        pipeline.land_directory(tmp_path / "defects", workspace)
        row = get_run(pipeline.engine, run(pipeline, workspace, shards))
        assert row is not None
        reports[workspace] = row.quality_report

    assert reports[SHARDED] == reports[WORKSPACE]
    assert reports[WORKSPACE]["failed"] > 0
    assert {"duplicate_claim_id", "amount_outlier"} <= set(reports[WORKSPACE]["counts_by_type"])
    assert pipeline.outcome(SHARDED) == pipeline.outcome(WORKSPACE)


@pytest.mark.slow
def test_four_shards_find_what_one_finds_on_every_scheme(
    pipeline: Pipeline, tmp_path: Path
) -> None:
    generate(tmp_path / "all", n_claims=6000, seed=11)
    first, second, _ = split_latest(tmp_path / "all", tmp_path, share=0.1)
    wide = {"rules": {rule_id: {"lookback_days": 3650} for rule_id in default_config().rules}}
    last = {}
    for workspace, shards in ((WORKSPACE, 1), (SHARDED, 4)):
        pipeline.land_directory(first, workspace)
        run(pipeline, workspace, shards, wide)
        pipeline.land_directory(second, workspace)
        last[workspace] = run(pipeline, workspace, shards, wide)

    assert pipeline.outcome(SHARDED) == pipeline.outcome(WORKSPACE)
    hits_by_rule = materializations(pipeline.instance, last[SHARDED])["rule_hits"]["hits_by_rule"]
    assert set(hits_by_rule) & PEER_RULES, "no peer rule fired on the new claims"


def test_four_shards_recompute_changed_peer_statistics_from_the_store(
    pipeline: Pipeline, tmp_path: Path
) -> None:
    # The second run counts other modifiers: the kept statistics of RULE-MED-010 no longer
    # match, so each shard's task reads its members' processed claims from the store again.
    generate(tmp_path / "all", n_claims=3000, seed=5)
    first, second, _ = split_latest(tmp_path / "all", tmp_path, share=0.2)
    changed = {"rules": {"RULE-MED-010": {"thresholds": {"modifiers": ["25"]}}}}
    found = {}
    for workspace, shards in ((WORKSPACE, 1), (SHARDED, 4)):
        pipeline.land_directory(first, workspace)
        run(pipeline, workspace, shards)
        pipeline.land_directory(second, workspace)
        last = run(pipeline, workspace, shards, changed)
        found[workspace] = materializations(pipeline.instance, last)["peer_statistics"]

    assert pipeline.outcome(SHARDED) == pipeline.outcome(WORKSPACE)
    for statistics in found.values():
        assert set(statistics["recomputed"]) == {"RULE-MED-010"}
        assert statistics["subjects_by_rule"] == found[WORKSPACE]["subjects_by_rule"]
    assert found[SHARDED]["processed_claims_read"] == found[WORKSPACE]["processed_claims_read"] > 0
