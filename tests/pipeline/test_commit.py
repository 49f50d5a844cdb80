"""A run's commit without Dagster: the steps of ``fwa_pipeline.steps`` called in the assets'
order on the embedded store (SQLite), then ``commit_run`` on what they found."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from sqlalchemy import Engine, text

from fwa_pipeline.compute.base import LocalCompute
from fwa_pipeline.domain.config import PipelineConfig, default_config, resolve_config
from fwa_pipeline.domain.quality import held_back
from fwa_pipeline.domain.scoring import score_claims
from fwa_pipeline.ingest import load_directory
from fwa_pipeline.settings import Settings
from fwa_pipeline.steps import commit
from fwa_pipeline.steps.claims import CLAIM_TYPES, enrich, gated
from fwa_pipeline.steps.commit import commit_run
from fwa_pipeline.steps.detection import detect
from fwa_pipeline.steps.frame_files import Frames, load
from fwa_pipeline.steps.intake import MemberNeeds, judge_quality, read_claims, read_run_members
from fwa_pipeline.steps.peer_statistics import (
    InMemory,
    PeerStatistics,
    compared_rules,
    stage_statistics,
    update_statistics,
)
from fwa_pipeline.steps.scope import RunScope, fix_scope
from fwa_pipeline.store.claims import read_reference, run_batches, workspace_id
from fwa_pipeline.store.pii import cipher_from_settings
from fwa_pipeline.store.runs import RunSupersededError
from tests.pipeline import batch

WORKSPACE = "acme"
AS_OF = dt.date(2024, 6, 30)
CASE_OF_P3 = "SELECT status, risk_score, risk_level FROM investigation_cases WHERE subject_id = :p"
WITHOUT_EXCLUSIONS = {"rules": {"RULE-MED-009": {"enabled": False}}}


@dataclass
class Found:
    """What a run's steps found, ready to commit."""

    scope: RunScope
    claims_in: Frames
    held: pd.DataFrame
    hits: pd.DataFrame
    scores: pd.DataFrame
    config: PipelineConfig
    statistics: PeerStatistics


class Store:
    """The embedded store, its batches landed and its runs' findings computed as the assets
    compute them."""

    def __init__(self, engine: Engine, settings: Settings, tmp: Path) -> None:
        self.engine = engine
        self.settings = settings
        self.peers = tmp / "peers"
        self._tmp = tmp
        self._batches = 0

    def land(self, rows: batch.Rows) -> int:
        self._batches += 1
        directory = batch.write(rows, self._tmp / f"batch{self._batches}")
        return load_directory(self.engine, self.settings, WORKSPACE, directory).batch_id

    def find(self, config: PipelineConfig | None = None, *, force: bool = False) -> Found:
        config = config or default_config()
        ws_id = workspace_id(self.engine, WORKSPACE)
        assert ws_id is not None
        scope, _ = fix_scope(self.engine, ws_id, as_of=AS_OF, force=force)
        raw = read_claims(self.engine, scope, config)
        quality = judge_quality(self.engine, scope, config, raw)
        held = held_back(quality.issues, config.quality.mode)
        claims_in = gated(raw, held)
        assert isinstance(claims_in, dict)
        reference = read_reference(self.engine, ws_id)
        needs = MemberNeeds.of(claims_in, config, reference["cpt_reference"])
        members = read_run_members(self.engine, cipher_from_settings(self.settings), scope, needs)
        enriched = {t: enrich(t, claims_in[t], members, reference) for t in CLAIM_TYPES}
        aggregate = InMemory(self.engine, self.peers, scope, config, enriched, reference)
        update = update_statistics(self.peers, scope, config, reference, aggregate)
        statistics = update.compared(compared_rules(config), reference["providers"])
        hits = detect(
            self.engine, self.peers, scope, config, enriched, reference, statistics, LocalCompute()
        ).hits
        return Found(
            scope, claims_in, held, hits, score_claims(hits, config), config, update.statistics
        )

    def commit(self, found: Found, run_id: str) -> commit.CommitSummary:
        stage_statistics(self.peers, run_id, found.statistics)
        return commit_run(
            self.engine,
            found.scope,
            run_id,
            found.claims_in,
            found.held,
            found.hits,
            found.scores,
            found.config,
            self.peers,
        )

    def query(self, sql: str, **params: Any) -> list[tuple[Any, ...]]:
        with self.engine.connect() as connection:
            return [tuple(row) for row in connection.execute(text(sql), params)]

    def stored(self) -> dict[str, list[tuple[Any, ...]]]:
        """Everything a commit writes, by table."""
        tables = {
            "rule_hits": "SELECT run_id, rule_id, claim_id FROM rule_hits",
            "claim_scores": "SELECT run_id, claim_id, score FROM claim_scores",
            "held_claims": "SELECT claim_type, claim_pk, reason FROM held_claims",
            "cases": "SELECT subject_type, subject_id, risk_level, run_id FROM investigation_cases",
            "batches": "SELECT id, processed_run_id FROM batches",
            "workspaces": "SELECT last_pipeline_run_id, needs_reprocessing FROM workspaces",
        }
        return {name: sorted(self.query(sql)) for name, sql in tables.items()}


@pytest.fixture
def store(sqlite_engine: Engine, settings: Settings, tmp_path: Path) -> Store:
    return Store(sqlite_engine, settings, tmp_path)


def test_a_commit_records_what_the_run_found_and_consumes_its_batches(store: Store) -> None:
    batch_id = store.land(batch.batch_one())
    found = store.find()

    summary = store.commit(found, "run-1")

    stored = store.stored()
    # MC-5 (bad NPI) and MC-6 (unknown member) are held; the seven others are processed.
    assert summary.written == {
        "processed": 7,
        "held": 2,
        "hits": len(found.hits),
        "scores": len(found.scores),
    }
    assert {run for run, _, _ in stored["rule_hits"]} == {"run-1"}
    assert {(rule, claim) for _, rule, claim in stored["rule_hits"]} >= {
        ("RULE-MED-001", "MC-2"),
        ("RULE-MED-009", "MC-4"),
        ("RULE-RX-008", "RX-2"),
    }
    assert len(stored["claim_scores"]) == len(found.scores)
    assert [reason for _, _, reason in stored["held_claims"]] == [
        "invalid_npi,unknown_provider",
        "unknown_member",
    ]
    assert ("provider", batch.P3, "critical", "run-1") in stored["cases"]
    assert (summary.opened, summary.cases) == (len(stored["cases"]), len(stored["cases"]))
    assert (summary.updated, summary.unchanged, summary.withdrawn) == (0, 0, 0)
    assert summary.cases_by_level["critical"] >= 1
    assert summary.subjects_rebuilt >= summary.opened
    assert summary.flagged_billed > 0 and summary.flagged_paid > 0
    assert stored["batches"] == [(batch_id, "run-1")]
    assert stored["workspaces"] == [("run-1", 0)]
    # The peers' copy is the committed run's.
    assert summary.copy_not_kept is None
    assert load(store.peers)[0] == "run-1"  # type: ignore[index]


def test_a_superseded_commit_rolls_everything_back(store: Store) -> None:
    store.land(batch.batch_one())
    found = store.find()
    # Another run took the same batches and committed first.
    store.commit(found, "run-b")
    before = store.stored()

    with pytest.raises(RunSupersededError, match="another run of this workspace committed"):
        store.commit(found, "run-a")

    # Its hits, scores, held claims, cases and consumed batches were all rolled back, and its
    # staged copy of the peers never became current.
    assert store.stored() == before
    assert load(store.peers)[0] == "run-b"  # type: ignore[index]


def test_a_reprocess_withdraws_the_cases_left_without_evidence(store: Store) -> None:
    store.land(batch.batch_one())
    store.commit(store.find(), "run-1")
    assert store.query(CASE_OF_P3, p=batch.P3) == [("open", 100.0, "critical")]

    summary = store.commit(store.find(resolve_config(WITHOUT_EXCLUSIONS), force=True), "run-2")

    # The excluded provider's only evidence is gone: its case stays open, at the lowest level.
    assert summary.withdrawn == 1
    assert store.query(CASE_OF_P3, p=batch.P3) == [("open", 0.0, "low")]


def test_an_incremental_commit_withdraws_nothing(store: Store) -> None:
    store.land(batch.batch_one())
    store.commit(store.find(), "run-1")
    store.land(batch.batch_two())

    # It judged the new claims only: the cases it found no new evidence for keep theirs.
    summary = store.commit(store.find(resolve_config(WITHOUT_EXCLUSIONS)), "run-2")

    assert summary.withdrawn == 0
    assert store.query(CASE_OF_P3, p=batch.P3) == [("open", 100.0, "critical")]


def test_a_peer_copy_that_cannot_be_made_current_is_reported_and_fails_nothing(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    store.land(batch.batch_one())

    def full_disk(*args: object, **kwargs: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(commit, "make_current", full_disk)
    summary = store.commit(store.find(), "run-1")

    assert summary.copy_not_kept is not None and "No space left" in summary.copy_not_kept
    assert store.stored()["workspaces"] == [("run-1", 0)]
    assert load(store.peers) is None


def test_the_scope_sees_the_last_commit(store: Store) -> None:
    store.land(batch.batch_one())
    first = store.find()
    assert (first.scope.fresh, first.scope.last_run_id, first.scope.covers_all) == (
        True,
        None,
        True,
    )
    store.commit(first, "run-1")
    batch_id = store.land(batch.batch_two())

    second = store.find().scope

    assert (second.fresh, second.last_run_id, second.covers_all) == (False, "run-1", False)
    assert second.batch_ids == (batch_id,)


def test_a_run_committing_while_the_scope_is_fixed_supersedes_it(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    store.land(batch.batch_one())
    other = store.find()

    def overtaken(*args: object, **kwargs: object) -> pd.DataFrame:
        # Another run commits after this one read the workspace's last run, as it chooses
        # its batches.
        store.commit(other, "run-b")
        return run_batches(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr("fwa_pipeline.steps.scope.run_batches", overtaken)
    found = store.find()
    monkeypatch.undo()
    before = store.stored()

    with pytest.raises(RunSupersededError):
        store.commit(found, "run-a")

    assert store.stored() == before
