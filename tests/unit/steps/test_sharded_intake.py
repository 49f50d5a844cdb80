"""The quality checks and the enrichment in shards give what one pass gives: on a generated batch
with quality defects planted, four shards in process and four shards on a real Dask cluster of
two worker processes give the same issues, report and enriched frames; one shard is the one pass
itself."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from fwa_pipeline.compute.base import Compute, LocalCompute
from fwa_pipeline.domain.config import QualityConfig
from fwa_pipeline.domain.quality import QualityResult, assess_quality
from fwa_pipeline.steps.claims import CLAIM_TYPES, enrich
from fwa_pipeline.steps.sharded_enrichment import enrich_sharded
from fwa_pipeline.steps.sharded_quality import assess_quality_sharded
from fwa_pipeline.synth import generate
from tests.unit.domain.rules.batch_files import read_batch_csv
from tests.unit.steps.recording import Recording

AS_OF = dt.date(2026, 6, 30)
SHARDS = 4
CONFIG = QualityConfig()
REFERENCE = ["providers", "cpt_reference", "ndc_reference", "ncci_edits"]

# The generated batch and the cluster are made once for the module.
pytestmark = pytest.mark.xdist_group("sharded_intake")


@pytest.fixture(scope="module")
def batch(tmp_path_factory: pytest.TempPathFactory) -> dict[str, pd.DataFrame]:
    """A ~10,000-claim generated batch with quality defects: claims of both types (``claim_pk``
    in landing order), members and the reference frames."""
    directory: Path = tmp_path_factory.mktemp("sharded-intake")
    generate(directory, 10_000, 7, quality_defects=True)
    frames = {name: read_batch_csv(directory, name) for name in [*REFERENCE, "members"]}
    for t in CLAIM_TYPES:
        claims = read_batch_csv(directory, f"{t}_claims")
        frames[t] = claims.assign(claim_pk=range(1, len(claims) + 1), in_scope=True)
    # A code billed at one amount only: no line of it is above its mean.
    medical = frames["medical"]
    medical.loc[medical["cpt_code"] == medical["cpt_code"].iloc[0], "amount_billed"] = 123.45
    return frames


def quality(batch: dict[str, pd.DataFrame], compute: Compute | None = None, **kwargs: Any):
    """The batch's quality, in one pass or on ``compute``; ``kwargs`` replace claim frames."""
    frames = {**{t: batch[t] for t in CLAIM_TYPES}, **kwargs}
    arguments: dict[str, Any] = {
        "member_ids": set(batch["members"]["member_id"]),
        "provider_ids": set(batch["providers"]["provider_id"]),
        "config": CONFIG,
        "as_of": AS_OF,
        # Ids of claims judged before: one the batch reuses, one it does not.
        "taken_claim_ids": {"medical": [frames["medical"]["claim_id"].iloc[5], "GONE"]},
    }
    if compute is None:
        return assess_quality(frames["medical"], frames["pharmacy"], **arguments)
    return assess_quality_sharded(
        frames["medical"], frames["pharmacy"], compute=compute, **arguments
    )


def assert_same(found: QualityResult, expected: QualityResult) -> None:
    pd.testing.assert_frame_equal(found.issues, expected.issues, check_exact=True)
    assert found.report == expected.report


@pytest.fixture(scope="module")
def one_pass(batch: dict[str, pd.DataFrame]) -> QualityResult:
    return quality(batch)


def test_the_batch_has_every_kind_of_issue(one_pass: QualityResult) -> None:
    assert {
        "unknown_member",
        "invalid_npi",
        "invalid_amount",
        "future_date",
        "duplicate_claim_id",
        "amount_outlier",
    } <= set(one_pass.issues["issue_type"])


def test_four_shards_judge_what_one_pass_judges(
    batch: dict[str, pd.DataFrame], one_pass: QualityResult
) -> None:
    assert_same(quality(batch, LocalCompute(SHARDS)), one_pass)


def test_duplicates_across_shards_are_found(batch: dict[str, pd.DataFrame]) -> None:
    # Every claim's copy is a later row of another member: a duplicate only two shards see.
    medical = batch["medical"]
    copies = medical.head(200).assign(
        claim_pk=medical["claim_pk"] + len(medical),
        member_id=medical["member_id"].sample(200, random_state=1).to_numpy(),
    )
    both = pd.concat([medical, copies], ignore_index=True)
    # In an order other than landing order, with an index other than positions.
    shuffled = both.sample(frac=1, random_state=2).set_axis(np.arange(len(both)) * 3)
    expected = quality(batch, medical=shuffled)
    duplicates = expected.issues[expected.issues["issue_type"] == "duplicate_claim_id"]
    assert set(copies["claim_pk"]) <= set(duplicates["claim_pk"])

    assert_same(quality(batch, LocalCompute(SHARDS), medical=shuffled), expected)


def test_one_shard_is_one_pass_without_tasks(
    batch: dict[str, pd.DataFrame], one_pass: QualityResult
) -> None:
    compute = Recording(shards=1)

    assert_same(quality(batch, compute), one_pass)
    assert compute.batches == []


def test_a_check_task_gets_its_shard_and_its_members_only(
    batch: dict[str, pd.DataFrame], one_pass: QualityResult
) -> None:
    compute = Recording(shards=SHARDS)

    assert_same(quality(batch, compute), one_pass)
    figures, checks = compute.batches
    assert len(figures) == len(checks) == SHARDS * len(CLAIM_TYPES)
    for task in checks:
        assert set(task.claims["member_id"].dropna()) - set(task.member_ids) <= {
            m for m in task.claims["member_id"] if m.startswith("UNKNOWN")
        }
        assert len(task.member_ids) < len(batch["members"])


def test_empty_frames_make_no_task(batch: dict[str, pd.DataFrame]) -> None:
    compute = Recording(shards=SHARDS)
    empty = batch["pharmacy"].iloc[:0]

    found = quality(batch, compute, pharmacy=empty)

    assert all(task.claim_type == "medical" for tasks in compute.batches for task in tasks)
    assert_same(found, quality(batch, pharmacy=empty))


@pytest.mark.parametrize("with_members", [True, False], ids=["members", "without-members"])
def test_four_shards_enrich_as_one_pass(batch: dict[str, pd.DataFrame], with_members: bool) -> None:
    members = batch["members"] if with_members else None
    reference = {name: batch[name] for name in REFERENCE}
    for t in CLAIM_TYPES:
        # In an order other than landing order: the shards come back in the claims' order.
        claims = batch[t].sample(frac=1, random_state=3)
        expected = enrich(t, claims, members, reference)

        found = enrich_sharded(t, claims, members, reference, LocalCompute(SHARDS))

        pd.testing.assert_frame_equal(found, expected, check_exact=True, obj=t)


def test_one_shard_enriches_without_tasks(batch: dict[str, pd.DataFrame]) -> None:
    compute = Recording(shards=1)
    reference = {name: batch[name] for name in REFERENCE}

    found = enrich_sharded("medical", batch["medical"], batch["members"], reference, compute)

    assert compute.batches == []
    expected = enrich("medical", batch["medical"], batch["members"], reference)
    pd.testing.assert_frame_equal(found, expected, check_exact=True)


@pytest.mark.slow
@pytest.mark.dask
def test_four_shards_on_a_dask_cluster_judge_and_enrich_as_one_pass(
    batch: dict[str, pd.DataFrame], one_pass: QualityResult, dask: Compute
) -> None:
    assert_same(quality(batch, dask), one_pass)
    reference = {name: batch[name] for name in REFERENCE}
    for t in CLAIM_TYPES:
        expected = enrich(t, batch[t], batch["members"], reference)

        found = enrich_sharded(t, batch[t], batch["members"], reference, dask)

        pd.testing.assert_frame_equal(found, expected, check_exact=True, obj=t)
