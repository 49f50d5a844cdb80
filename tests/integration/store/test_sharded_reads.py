"""A run's reads by shard, on both engines: each row stored with its member's bucket, and for
every read the shards of a count together give exactly the unsharded read, each row in the shard
of its member."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest
from sqlalchemy import Engine, select, update

from fwa_pipeline.compute.shards import Shard, bucket_of, shard_of
from fwa_pipeline.ingest import load_directory
from fwa_pipeline.settings import Settings
from fwa_pipeline.store.claims import (
    read_history,
    read_members,
    read_new_claims,
    read_processed,
    reference_ids,
)
from fwa_pipeline.store.db import session_scope
from fwa_pipeline.store.models import Batch, MedicalClaim, Member, PharmacyClaim
from fwa_pipeline.store.pii import cipher_from_settings
from fwa_pipeline.synth import generate
from tests.conftest import settings_for

SHARDS = Shard.all(4)
WINDOW = (dt.date(2020, 1, 1), dt.date(2026, 12, 31))
# Per claim type: the history keys a run asks for (the entity of the same day, the windowed one).
HISTORY = {"medical": ("provider_id", "member_id"), "pharmacy": ("prescriber_id", "member_id")}


@pytest.fixture(scope="module")
def batches(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Two synthetic batches: the second repeats the first's claim ids and some of its members,
    so that its claims have history in the first."""
    root = tmp_path_factory.mktemp("sharded_reads")
    generate(root / "old", n_claims=1200, seed=3)
    generate(root / "new", n_claims=1200, seed=4)
    return root / "old", root / "new"


@pytest.fixture
def settings(store_engine: Engine, tmp_path: Path) -> Settings:
    return settings_for(str(store_engine.url), tmp_path)


@pytest.fixture
def landed(store_engine: Engine, settings: Settings, batches: tuple[Path, Path]) -> tuple[int, int]:
    """The workspace and the new batch's id, the old batch landed and processed before it."""
    old = load_directory(store_engine, settings, "ws", batches[0])
    with store_engine.begin() as connection:
        connection.execute(
            update(Batch).where(Batch.id == old.batch_id).values(processed_run_id="r1")
        )
    new = load_directory(store_engine, settings, "ws", batches[1])
    return new.workspace_id, new.batch_id


def _assert_sharded_reads_add_up(read: Callable[[Shard | None], pd.DataFrame]) -> None:
    """``read(shard)`` (None: unsharded) gives the same rows over the four shards as unsharded,
    each in the shard of its member."""
    whole = read(None)
    assert len(whole) > 0
    parts = []
    for shard in SHARDS:
        part = read(shard)
        assert (shard_of(part["member_id"], shard.count) == shard.number).all()
        parts.append(part)
    together = pd.concat(parts, ignore_index=True)
    key = list(whole.columns[:1])
    pd.testing.assert_frame_equal(
        together.sort_values(key, ignore_index=True),
        whole.sort_values(key, ignore_index=True),
        check_dtype=False,  # an empty shard's columns come untyped
    )


def test_landed_rows_keep_their_members_bucket(
    store_engine: Engine, landed: tuple[int, int]
) -> None:
    with store_engine.connect() as connection:
        for model in (MedicalClaim, PharmacyClaim, Member):
            rows = pd.DataFrame(
                connection.execute(select(model.member_id, model.member_bucket)).all(),
                columns=["member_id", "member_bucket"],
            )
            assert len(rows) > 0
            assert rows["member_bucket"].tolist() == bucket_of(rows["member_id"]).tolist()


@pytest.mark.parametrize("claim_type", ["medical", "pharmacy"])
def test_claim_reads_by_shard_add_up_to_the_unsharded_read(
    store_engine: Engine, landed: tuple[int, int], claim_type: str
) -> None:
    workspace, batch = landed
    same_day, windowed = HISTORY[claim_type]

    _assert_sharded_reads_add_up(
        lambda shard: read_new_claims(store_engine, claim_type, workspace, [batch], shard=shard)
    )
    _assert_sharded_reads_add_up(
        lambda shard: read_processed(store_engine, claim_type, workspace, shard=shard)
    )
    _assert_sharded_reads_add_up(
        lambda shard: read_history(
            store_engine,
            claim_type,
            workspace,
            [batch],
            same_day=[same_day],
            windows={windowed: WINDOW},
            shard=shard,
        )
    )


def test_a_shards_history_is_related_to_the_new_claims_of_every_shard(
    store_engine: Engine, landed: tuple[int, int]
) -> None:
    """History is narrowed to the shard's members, never its touching new claims: a history
    claim sharing only its id with a new claim of another shard is still read."""
    workspace, batch = landed
    new = read_new_claims(store_engine, "medical", workspace, [batch])
    shard = SHARDS[0]
    history = read_history(store_engine, "medical", workspace, [batch], shard=shard)
    others = new[shard_of(new["member_id"], shard.count) != shard.number]
    assert history["claim_id"].isin(others["claim_id"]).any()


def test_member_reads_by_shard_add_up_to_the_unsharded_read(
    store_engine: Engine, landed: tuple[int, int], settings: Settings
) -> None:
    workspace, batch = landed
    cipher = cipher_from_settings(settings)
    some = set(read_new_claims(store_engine, "medical", workspace, [batch])["member_id"][:40])

    _assert_sharded_reads_add_up(
        lambda shard: read_members(store_engine, cipher, workspace, shard=shard)
    )
    _assert_sharded_reads_add_up(
        lambda shard: read_members(store_engine, cipher, workspace, some, shard=shard)
    )
    for every in (True, False):
        _assert_sharded_reads_add_up(
            lambda shard, every=every: pd.DataFrame(
                {
                    "member_id": reference_ids(
                        store_engine, workspace, [batch], every_member=every, shard=shard
                    )[0]
                }
            )
        )
    # Providers are not sharded.
    _, providers = reference_ids(store_engine, workspace, [batch], every_member=False)
    assert len(providers) > 0
    for shard in SHARDS:
        found = reference_ids(store_engine, workspace, [batch], every_member=False, shard=shard)
        assert found[1] == providers


def test_an_insert_without_a_bucket_gets_its_members(store_engine: Engine) -> None:
    """Rows inserted through SQLAlchemy, not a bulk load, get theirs from the model."""
    with session_scope(store_engine) as session:
        session.add_all(
            [
                MedicalClaim(workspace_id=1, batch_id=1, claim_id="C1", member_id="M-77"),
                MedicalClaim(workspace_id=1, batch_id=1, claim_id="C2", member_id=None),
                Member(
                    workspace_id=1,
                    member_id="M-77",
                    first_name="A",
                    last_name="B",
                    date_of_birth="1950-01-01",
                    gender="F",
                ),
            ]
        )
    expected = int(bucket_of(pd.Series(["M-77"]))[0])
    with store_engine.connect() as connection:
        claims = dict(
            connection.execute(select(MedicalClaim.claim_id, MedicalClaim.member_bucket)).all()
        )
        member = connection.execute(select(Member.member_bucket)).scalar_one()
    assert claims == {"C1": expected, "C2": 0}
    assert member == expected
