"""The intake in shards gives what one pass gives: on a generated batch with quality defects
planted, landed in a SQLite store, four member shards read from the store are the claims one
pass reads, and four shard files judged and enriched in process or on a real Dask cluster of two
worker processes give the same issues, report and enriched claims."""

from __future__ import annotations

import datetime as dt
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sqlalchemy import Engine

from fwa_pipeline.compute.base import Compute, LocalCompute
from fwa_pipeline.compute.shards import Shard, shard_of
from fwa_pipeline.domain.config import default_config
from fwa_pipeline.domain.quality import QualityResult, assess_quality, passing
from fwa_pipeline.ingest import load_directory
from fwa_pipeline.steps.claim_shards import ClaimShards, read_rows, with_buckets
from fwa_pipeline.steps.claims import CLAIM_TYPES, enrich
from fwa_pipeline.steps.frame_files import Frames, table_frame, to_table
from fwa_pipeline.steps.intake import (
    MemberNeeds,
    new_claims_quality,
    read_claim_shards,
    read_claims,
)
from fwa_pipeline.steps.scope import RunScope
from fwa_pipeline.steps.sharded_enrichment import enrich_shards, member_needs
from fwa_pipeline.steps.sharded_quality import StoreIds, judge_shards
from fwa_pipeline.steps.sharded_rules import split_columns
from fwa_pipeline.store.claims import reference_ids
from fwa_pipeline.store.db import engine_for
from fwa_pipeline.synth import generate
from tests.conftest import settings_for
from tests.unit.domain.rules.batch_files import read_batch_csv
from tests.unit.steps.recording import Recording

AS_OF = dt.date(2026, 6, 30)
SHARDS = 4
CONFIG = default_config()
REFERENCE = ["providers", "cpt_reference", "ndc_reference", "ncci_edits"]

# The landed batch and the cluster are made once for the module.
pytestmark = pytest.mark.xdist_group("sharded_intake")


@dataclass(frozen=True)
class Landed:
    """A generated batch landed in a store: the run over it, its claims as one pass reads them
    (a defect planted), and its members and reference frames as generated."""

    engine: Engine
    scope: RunScope
    claims: Frames
    members: pd.DataFrame
    reference: Frames

    def ids(self) -> StoreIds:
        """Where a check task reads its members' ids: the store, for the batch's named ones."""
        url = self.engine.url.render_as_string(hide_password=False)
        return StoreIds(url, self.scope.workspace_id, self.scope.batch_ids, every_member=False)


@pytest.fixture(scope="module")
def landed(tmp_path_factory: pytest.TempPathFactory, _sqlite_template: Path) -> Landed:
    """A ~10,000-claim generated batch with quality defects, landed in a migrated SQLite file."""
    root: Path = tmp_path_factory.mktemp("sharded-intake")
    generate(root / "batch", 10_000, 7, quality_defects=True)
    shutil.copy(_sqlite_template, root / "fwa.db")
    url = f"sqlite:///{root / 'fwa.db'}"
    engine = engine_for(url)
    loaded = load_directory(engine, settings_for(url, root), "ws", root / "batch")
    scope = RunScope(loaded.workspace_id, (loaded.batch_id,), AS_OF, True, None, False)
    claims = read_claims(engine, scope, CONFIG)
    # A code billed at one amount only: no line of it is above its mean.
    medical = claims["medical"]
    medical.loc[medical["cpt_code"] == medical["cpt_code"].iloc[0], "amount_billed"] = 123.45
    return Landed(
        engine,
        scope,
        claims,
        read_batch_csv(root / "batch", "members"),
        {name: read_batch_csv(root / "batch", name) for name in REFERENCE},
    )


def partly_new(claims: Frames) -> Frames:
    """``claims`` as an incremental run reads them: some new, the others history."""
    return {t: claims[t].assign(in_scope=claims[t]["claim_pk"] % 3 != 0) for t in CLAIM_TYPES}


def taken(claims: Frames) -> dict[str, list[str]]:
    """Ids of claims judged before: one the batch reuses, one it does not."""
    return {"medical": [claims["medical"]["claim_id"].iloc[5], "GONE"]}


def one_pass(landed: Landed, claims: Frames) -> QualityResult:
    """The quality of the new ``claims`` judged in one pass, as a run in one shard judges it."""
    s = landed.scope
    member_ids, provider_ids = reference_ids(
        landed.engine, s.workspace_id, s.batch_ids, every_member=False
    )
    assessed = assess_quality(
        claims["medical"],
        claims["pharmacy"],
        member_ids,
        provider_ids,
        CONFIG.quality,
        AS_OF,
        taken(claims),
    )
    return new_claims_quality(assessed.issues, claims)


def in_shards(landed: Landed, claims: Frames, compute: Compute, directory: Path) -> QualityResult:
    """The quality of the new ``claims`` written as four shard files, judged on ``compute``."""
    shards = ClaimShards.split(claims, directory, SHARDS)
    return judge_shards(shards, landed.ids(), CONFIG.quality, AS_OF, compute, taken(claims))


def assert_same(found: QualityResult, expected: QualityResult) -> None:
    pd.testing.assert_frame_equal(found.issues, expected.issues, check_exact=True)
    assert found.report == expected.report


@pytest.fixture(scope="module")
def judged(landed: Landed) -> QualityResult:
    return one_pass(landed, landed.claims)


def by_pk(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.sort_values("claim_pk", ignore_index=True)


def test_member_shards_read_from_the_store_are_the_claims_one_pass_reads(
    landed: Landed, tmp_path: Path
) -> None:
    expected = read_claims(landed.engine, landed.scope, CONFIG)

    shards = read_claim_shards(landed.engine, landed.scope, CONFIG, tmp_path, LocalCompute(SHARDS))

    assert shards.count == SHARDS and len(shards.files) == SHARDS * len(CLAIM_TYPES)
    for file in shards.files:
        members = file.read(["member_id"])["member_id"]
        assert (shard_of(members, SHARDS) == file.number).all()
    found = shards.frames()
    for t in CLAIM_TYPES:
        pd.testing.assert_frame_equal(by_pk(found[t]), by_pk(expected[t]), check_exact=True, obj=t)


def test_the_batch_has_every_kind_of_issue(judged: QualityResult) -> None:
    assert {
        "unknown_member",
        "invalid_npi",
        "invalid_amount",
        "future_date",
        "duplicate_claim_id",
        "amount_outlier",
    } <= set(judged.issues["issue_type"])


@pytest.mark.parametrize("incremental", [False, True], ids=["full", "incremental"])
def test_four_shards_judge_what_one_pass_judges(
    landed: Landed, tmp_path: Path, incremental: bool
) -> None:
    claims = partly_new(landed.claims) if incremental else landed.claims
    expected = one_pass(landed, claims)

    found = in_shards(landed, claims, LocalCompute(SHARDS), tmp_path)

    assert_same(found, expected)
    # History was judged when it was new: only new claims have issues.
    for t in CLAIM_TYPES:
        new = claims[t].loc[claims[t]["in_scope"], "claim_pk"]
        assert found.issues.loc[found.issues["claim_type"] == t, "claim_pk"].isin(new).all()


def test_duplicates_across_shards_are_found(landed: Landed, tmp_path: Path) -> None:
    # Every claim's copy is a later row of another member: a duplicate only two shards see.
    medical = landed.claims["medical"]
    copies = medical.head(200).assign(
        claim_pk=medical["claim_pk"] + len(medical),
        member_id=medical["member_id"].sample(200, random_state=1).to_numpy(),
    )
    assert (
        shard_of(copies["member_id"], SHARDS) != shard_of(medical["member_id"].head(200), SHARDS)
    ).any()
    both = pd.concat([medical, copies], ignore_index=True)
    # In an order other than landing order, with an index other than positions.
    shuffled = both.sample(frac=1, random_state=2).set_axis(np.arange(len(both)) * 3)
    claims = {**landed.claims, "medical": shuffled}
    expected = one_pass(landed, claims)
    duplicates = expected.issues[expected.issues["issue_type"] == "duplicate_claim_id"]
    assert set(copies["claim_pk"]) <= set(duplicates["claim_pk"])

    compute = Recording(shards=SHARDS)
    assert_same(in_shards(landed, claims, compute, tmp_path), expected)
    # The ids more than one shard holds are asked of the shards holding them, as hashes: the
    # run's process never gathers every claim id.
    figures, asked, _ = compute.batches
    assert 0 < len(asked) <= len(figures)
    assert all(len(task.hashes) < len(copies) + len(duplicates) for task in asked)


def test_a_check_task_gets_its_shard_and_its_members_only(
    landed: Landed, judged: QualityResult, tmp_path: Path
) -> None:
    compute = Recording(shards=SHARDS)

    assert_same(in_shards(landed, landed.claims, compute, tmp_path), judged)
    figures, *asked, checks = compute.batches
    assert len(figures) == len(checks) == SHARDS * len(CLAIM_TYPES)
    assert len(asked) <= 1  # a round for ids in more than one shard, when some are
    # What the other shards hold is shared by the check tasks, per claim type, not sent in each.
    assert set(compute.shared[-1]) == set(CLAIM_TYPES)
    every_member = set(landed.members["member_id"])
    for task in checks:
        claimed = task.file.read()["member_id"].dropna()
        assert (shard_of(claimed, SHARDS) == task.file.number).all()
        member_ids, _ = task.ids.of(Shard(task.file.number, task.count))
        assert set(claimed) - set(member_ids) == {m for m in claimed if m not in every_member}
        assert len(member_ids) < len(every_member)


def test_empty_shards_make_no_task(landed: Landed, tmp_path: Path) -> None:
    # The medical claims of two members and no pharmacy claim: most shards are empty.
    medical = landed.claims["medical"]
    few = medical[medical["member_id"].isin(medical["member_id"].iloc[:2])]
    claims = {"medical": few, "pharmacy": landed.claims["pharmacy"].iloc[:0]}
    compute = Recording(shards=SHARDS)

    found = in_shards(landed, claims, compute, tmp_path)

    for tasks in compute.batches:
        assert 1 <= len(tasks) <= 2
        assert all(task.file.claim_type == "medical" and task.file.rows for task in tasks)
    assert_same(found, one_pass(landed, claims))


def held_claims(claims: Frames) -> pd.DataFrame:
    """Some claims of each type the quality gate holds back."""
    return pd.concat(
        [claims[t][["claim_pk"]].iloc[::97].assign(claim_type=t) for t in CLAIM_TYPES],
        ignore_index=True,
    )


# What enrichment needs of the members, and the claims it gives (per claim type, by claim_pk).
Enriched = tuple[MemberNeeds, dict[str, pd.DataFrame]]


def enriched_in_shards(
    landed: Landed,
    claims: Frames,
    members: pd.DataFrame | None,
    compute: Compute,
    directory: Path,
) -> Enriched:
    """The enrichment of ``claims`` (some held) written as four shard files, on ``compute``,
    its files in ``directory``."""
    held = held_claims(claims)
    for name in ("raw", "enriched"):
        (directory / name).mkdir(parents=True)
    raw = ClaimShards.split(claims, directory / "raw", SHARDS)
    needs = member_needs(raw, held, CONFIG, landed.reference["cpt_reference"], False, compute)
    enriched = enrich_shards(
        raw, held, members, landed.reference, split_columns(CONFIG), directory / "enriched", compute
    )
    return needs, {t: by_pk(read_rows(enriched.of(t))) for t in CLAIM_TYPES if enriched.of(t)}


def enriched_in_one_pass(landed: Landed, claims: Frames, members: pd.DataFrame | None) -> Enriched:
    """The enrichment of ``claims`` (some held) in one pass, its claims as they read back from
    a file (as one pass's frames pass between the run's steps)."""
    held = held_claims(claims)
    gated = {t: passing(claims[t], held, t) for t in CLAIM_TYPES}
    split_by = split_columns(CONFIG)
    enriched = {
        t: with_buckets(enrich(t, gated[t], members, landed.reference), split_by.get(t, ()))
        for t in CLAIM_TYPES
        if not gated[t].empty
    }
    return MemberNeeds.of(gated, CONFIG, landed.reference["cpt_reference"]), {
        t: by_pk(table_frame(to_table(frame))) for t, frame in enriched.items()
    }


def assert_same_enrichment(found: Enriched, expected: Enriched) -> None:
    assert found[0] == expected[0]
    assert found[1].keys() == expected[1].keys()
    for t, frame in expected[1].items():
        pd.testing.assert_frame_equal(found[1][t], frame, check_exact=True, obj=t)


@pytest.mark.parametrize("with_members", [True, False], ids=["members", "without-members"])
def test_four_shards_enrich_as_one_pass(landed: Landed, tmp_path: Path, with_members: bool) -> None:
    members = landed.members if with_members else None
    claims = partly_new(landed.claims)

    found = enriched_in_shards(landed, claims, members, LocalCompute(SHARDS), tmp_path)

    assert_same_enrichment(found, enriched_in_one_pass(landed, claims, members))
    # The buckets of the columns the rules split by are stored.
    assert found[1]["medical"]["_bucket_provider_id"].notna().all()


def test_empty_shards_enrich_as_one_pass(landed: Landed, tmp_path: Path) -> None:
    # The medical claims of two members and no pharmacy claim: most shards are empty.
    medical = partly_new(landed.claims)["medical"]
    few = medical[medical["member_id"].isin(medical["member_id"].iloc[:2])]
    claims = {"medical": few, "pharmacy": landed.claims["pharmacy"].iloc[:0]}

    found = enriched_in_shards(landed, claims, landed.members, LocalCompute(SHARDS), tmp_path)

    assert_same_enrichment(found, enriched_in_one_pass(landed, claims, landed.members))


@pytest.mark.slow
@pytest.mark.dask
def test_four_shards_on_a_dask_cluster_judge_and_enrich_as_one_pass(
    landed: Landed, judged: QualityResult, dask: Compute, tmp_path: Path
) -> None:
    assert_same(in_shards(landed, landed.claims, dask, tmp_path), judged)
    claims = partly_new(landed.claims)
    assert_same_enrichment(
        enriched_in_shards(landed, claims, landed.members, dask, tmp_path / "enrichment"),
        enriched_in_one_pass(landed, claims, landed.members),
    )
