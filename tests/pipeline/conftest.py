"""Fixtures for the Dagster side: a real (temporary) Dagster instance, the store as a resource,
and helpers to land a batch, run the pipeline and read what it left."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
from sqlalchemy import Engine, text

from fwa_pipeline.defs.resources import StoreResource
from fwa_pipeline.ingest import load_directory
from fwa_pipeline.runs.launch import LaunchResult, run_pipeline
from fwa_pipeline.settings import Settings
from tests.pipeline import batch

WORKSPACE = "acme"


@pytest.fixture
def instance() -> Iterator[dg.DagsterInstance]:
    """A real instance with in-memory storage (the SQLite one opens a connection per event,
    several seconds a run on this machine); the integration tests use SQLite and PostgreSQL."""
    with dg.DagsterInstance.ephemeral() as instance:
        yield instance


class Pipeline:
    """One store (SQLite or PostgreSQL) and one Dagster instance, driven like the CLI does."""

    def __init__(
        self, engine: Engine, settings: Settings, instance: dg.DagsterInstance, tmp: Path
    ) -> None:
        self.engine = engine
        self.settings = settings
        self.instance = instance
        self.store = StoreResource.from_settings(settings)
        self._tmp = tmp
        self._batches = 0

    def land(self, rows: batch.Rows, workspace: str = WORKSPACE) -> int:
        self._batches += 1
        return self.land_directory(
            batch.write(rows, self._tmp / f"batch{self._batches}"), workspace
        )

    def land_directory(self, directory: Path, workspace: str = WORKSPACE) -> int:
        return load_directory(self.engine, self.settings, workspace, directory).batch_id

    def run(self, workspace: str = WORKSPACE, **kwargs: Any) -> LaunchResult:
        return run_pipeline(workspace, self.instance, store=self.store, **kwargs)

    def query(self, sql: str, **params: Any) -> list[tuple[Any, ...]]:
        with self.engine.connect() as connection:
            return [tuple(row) for row in connection.execute(text(sql), params)]

    def hits(self) -> set[tuple[str, str]]:
        """(rule id, claim id) of every stored hit."""
        return set(self.query("SELECT rule_id, claim_id FROM rule_hits"))

    def statuses(self, workspace: str = WORKSPACE) -> dict[str, str]:
        rows = self.query(
            "SELECT s.claim_id, s.status FROM claim_status s JOIN workspaces w "
            "ON w.id = s.workspace_id WHERE w.name = :ws",
            ws=workspace,
        )
        return dict(rows)

    def outcome(self, workspace: str = WORKSPACE) -> dict[str, Any]:
        """What runs left in a workspace, without run ids, surrogate ids or timestamps: for
        comparing runs."""

        def rows(sql: str) -> list[tuple[Any, ...]]:
            return sorted(self.query(sql.replace("{ws}", _WORKSPACE_ID), ws=workspace))

        return {
            "statuses": self.statuses(workspace),
            "hits": rows(
                "SELECT rule_id, claim_id, subject_type, subject_id, severity FROM rule_hits "
                "WHERE workspace_id = {ws}"
            ),
            "scores": rows(
                "SELECT claim_id, score, risk_level FROM claim_scores WHERE workspace_id = {ws}"
            ),
            "cases": rows(
                "SELECT subject_type, subject_id, risk_score, risk_level, status FROM "
                "investigation_cases WHERE workspace_id = {ws}"
            ),
            "case_claims": rows(
                "SELECT k.claim_type, k.claim_id FROM case_claims k JOIN investigation_cases c "
                "ON c.id = k.case_id WHERE c.workspace_id = {ws}"
            ),
        }


_WORKSPACE_ID = "(SELECT id FROM workspaces WHERE name = :ws)"


@pytest.fixture
def pipeline(
    sqlite_engine: Engine, settings: Settings, instance: dg.DagsterInstance, tmp_path: Path
) -> Pipeline:
    return Pipeline(sqlite_engine, settings, instance, tmp_path)


@pytest.fixture
def pg_pipeline(
    pg_engine: Engine, pg_settings: Settings, instance: dg.DagsterInstance, tmp_path: Path
) -> Pipeline:
    return Pipeline(pg_engine, pg_settings, instance, tmp_path)


def materializations(instance: dg.DagsterInstance, run_id: str) -> dict[str, dict[str, Any]]:
    """Asset name -> its materialisation metadata (plain values) in run ``run_id``."""
    found: dict[str, dict[str, Any]] = {}
    for entry in instance.all_logs(run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION):
        event = entry.dagster_event
        assert event is not None
        materialization = event.materialization
        found[materialization.asset_key.path[-1]] = {
            k: v.value for k, v in materialization.metadata.items()
        }
    return found


def check_evaluations(instance: dg.DagsterInstance, run_id: str) -> dict[str, Any]:
    """Check name -> its evaluation in run ``run_id``."""
    found = {}
    for entry in instance.all_logs(run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION):
        event = entry.dagster_event
        assert event is not None
        evaluation = event.event_specific_data
        found[evaluation.check_name] = evaluation
    return found
