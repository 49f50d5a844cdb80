"""The pipeline end to end on the embedded store (SQLite) with a real Dagster instance: the
quality modes, incremental runs against force_reprocess, idempotence, the run record."""

from __future__ import annotations

import json
from dataclasses import replace

import dagster as dg
import pandas as pd
import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from fwa_pipeline.definitions import build_defs
from fwa_pipeline.defs.jobs import PIPELINE_JOB
from fwa_pipeline.domain.config import default_config
from fwa_pipeline.domain.rules import REGISTRY, Key
from fwa_pipeline.reference import load_default_reference
from fwa_pipeline.runs.config import PipelineRunConfig, run_config
from fwa_pipeline.runs.launch import LaunchResult
from fwa_pipeline.steps import commit
from fwa_pipeline.steps.frame_files import load
from fwa_pipeline.steps.peer_history import peer_history_dir
from fwa_pipeline.steps.peer_statistics import statistics_dir
from fwa_pipeline.store.cases import change_case_status, rule_verdicts
from fwa_pipeline.store.claims import CLAIM_TABLES
from fwa_pipeline.store.models import InvestigationCase
from fwa_pipeline.store.runs import get_run
from tests.pipeline import batch
from tests.pipeline.conftest import WORKSPACE, Pipeline, check_evaluations, materializations

ERRORS = {"MC-5", "MC-6"}  # bad NPI check digit; unknown member
BATCH_ONE_FINDINGS = {
    ("RULE-MED-001", "MC-2"),
    ("RULE-MED-006", "MC-3"),
    ("RULE-MED-009", "MC-4"),
    ("RULE-RX-008", "RX-2"),
}


def test_skip_invalid_holds_invalid_claims_and_scores_the_rest(pipeline: Pipeline) -> None:
    batch_id = pipeline.land(batch.batch_one())
    result = pipeline.run()

    assert result.success and result.status == "success"
    statuses = pipeline.statuses()
    assert {c for c, s in statuses.items() if s == "held"} == ERRORS
    assert {c for c, s in statuses.items() if s == "processed"} == set(statuses) - ERRORS
    assert pipeline.hits() >= BATCH_ONE_FINDINGS
    assert not {claim for _, claim in pipeline.hits()} & ERRORS
    # Every stored hit and score points at the run; the excluded provider opened a critical case.
    assert pipeline.query("SELECT DISTINCT run_id FROM rule_hits") == [(result.run_id,)]
    assert pipeline.query("SELECT DISTINCT run_id FROM claim_scores") == [(result.run_id,)]
    assert pipeline.query("SELECT DISTINCT last_run_id FROM claim_status") == [(result.run_id,)]
    assert sorted(
        pipeline.query(
            "SELECT claim_id, reason FROM held_claims k JOIN claim_status s "
            "ON s.claim_type = k.claim_type AND s.claim_pk = k.claim_pk"
        )
    ) == [
        ("MC-5", "invalid_npi,unknown_provider"),
        ("MC-6", "unknown_member"),
    ]
    assert ("provider", batch.P3, "critical") in pipeline.query(
        "SELECT subject_type, subject_id, risk_level FROM investigation_cases"
    )
    # The batch is consumed and the workspace knows its last run.
    assert pipeline.query("SELECT processed_run_id FROM batches WHERE id = :b", b=batch_id) == [
        (result.run_id,)
    ]
    assert pipeline.query("SELECT last_pipeline_run_id, needs_reprocessing FROM workspaces") == [
        (result.run_id, 0)
    ]


def test_the_run_record_carries_config_stats_and_quality_report(pipeline: Pipeline) -> None:
    pipeline.land(batch.batch_one())
    overrides = {"rules": {"RULE-MED-006": {"weight": 3.5}}, "scoring": {"multiplier": 9.0}}
    result = pipeline.run(pipeline=overrides)

    row = get_run(pipeline.engine, result.run_id)
    assert row is not None and row.status == "success"
    assert row.started_at is not None and row.completed_at is not None
    assert row.started_at <= row.completed_at
    # The snapshot is exactly the config the run applied, with the reference data it read.
    expected = PipelineRunConfig(pipeline=overrides).snapshot()
    assert {
        k: v for k, v in row.config_snapshot.items() if k not in ("reference", "compute")
    } == expected
    # And where it computed: in process, in one shard, by default.
    assert row.config_snapshot["compute"] == {
        "mode": "local",
        "shards": 1,
        "workers": 1,
        "address": None,
    }
    assert row.config_snapshot["rules"]["RULE-MED-006"]["weight"] == 3.5
    assert row.config_snapshot["quality"]["mode"] == "skip_invalid"
    assert pipeline.query("SELECT weight FROM rule_hits WHERE rule_id = 'RULE-MED-006'") == [(3.5,)]
    assert row.stats["claims_in"] == 9
    assert row.stats["claims_held"] == 2
    assert row.stats["hits_by_rule"]["RULE-MED-006"] == 1
    assert row.stats["cases_opened"] >= 1
    assert row.stats["flagged_billed"] > 0
    # The batch shipped labels: the evaluation ran.
    rules = {r["rule_id"]: r for r in row.stats["precision_recall"]["rules"]}
    assert rules["RULE-MED-006"]["recall"] == 1.0
    report = row.quality_report
    assert (report["total_claims"], report["passed"], report["failed"]) == (9, 7, 2)
    assert report["counts_by_type"]["invalid_npi"] == 1
    assert report["counts_by_type"]["unknown_member"] == 1
    assert {i["claim_id"] for i in report["issues"] if i["severity"] == "error"} == ERRORS


def test_assets_carry_row_counts_schemas_and_analyst_figures(pipeline: Pipeline) -> None:
    pipeline.land(batch.batch_one())
    result = pipeline.run()

    found = materializations(pipeline.instance, result.run_id)
    assert set(found) == {
        "landed_batches",
        "reference_data",
        "raw_claims",
        "validated_claims",
        "enriched_claims",
        "peer_statistics",
        "rule_hits",
        "claim_scores",
        "investigation_cases",
        "detection_evaluation",
        "rule_feedback",
    }
    one = batch.batch_one()
    claims = len(one["medical_claims.csv"]) + len(one["pharmacy_claims.csv"])
    shipped = sum(map(len, load_default_reference().values()))
    # Batch one: 9 claims, of which MC-5 and MC-6 are held back; 6 hits (the findings, and
    # RULE-MED-003 on MC-1 and MC-2) on 5 claims; 3 open cases (two providers, one pharmacy); a
    # row of the evaluation per rule that hit.
    assert {name: metadata["dagster/row_count"] for name, metadata in found.items()} == {
        "landed_batches": 1,
        "reference_data": len(one["providers.csv"]) + shipped,
        "raw_claims": claims,
        "validated_claims": len(ERRORS),
        "enriched_claims": claims - len(ERRORS),
        # One row per compared peer rule and subject (provider, code, pharmacy).
        "peer_statistics": sum(found["peer_statistics"]["subjects_by_rule"].values()),
        "rule_hits": 6,
        "claim_scores": 5,
        "investigation_cases": 3,
        "detection_evaluation": 5,
        # One row per enabled rule.
        "rule_feedback": len(default_config().enabled_rules()),
    }
    for name, metadata in found.items():
        assert metadata["dagster/column_schema"].columns, name
    assert found["raw_claims"]["claims_in"] == 9
    peers = found["peer_statistics"]
    compared = {"RULE-MED-005", "RULE-MED-010", "RULE-MED-011", "RULE-MED-012", "RULE-RX-010"}
    assert set(peers["subjects_by_rule"]) == compared
    assert peers["subjects_by_rule"]["RULE-RX-010"] == 1  # the one pharmacy
    assert set(peers["pairs_by_rule"]) == {"RULE-MED-005", "RULE-MED-011", "RULE-RX-010"}
    # The first run computes every rule's statistics from its claims, and reads no other.
    assert peers["full_recompute"] is True
    assert peers["recomputed"] == dict.fromkeys(compared, "the run covers every claim")
    assert peers["subjects_updated"] == peers["subjects_by_rule"]
    assert set(peers["subjects_carried_over"].values()) == {0}
    assert peers["processed_claims_read"] == 0
    assert found["validated_claims"]["claims_passed"] == 7
    assert found["rule_hits"]["hits_by_rule"]["RULE-RX-008"] == 1
    assert found["investigation_cases"]["cases_opened"] >= 1
    schema = {c.name for c in found["rule_hits"]["dagster/column_schema"].columns}
    assert {"claim_id", "rule_id", "severity", "weight", "evidence"} <= schema


def test_quality_checks_report_counts_and_a_sample(pipeline: Pipeline) -> None:
    pipeline.land(batch.batch_one())
    result = pipeline.run()

    checks = check_evaluations(pipeline.instance, result.run_id)
    assert set(checks) == {"conformance", "referential_integrity", "duplicates", "outliers"}
    conformance = checks["conformance"]
    assert not conformance.passed
    assert conformance.severity == dg.AssetCheckSeverity.WARN  # skip_invalid does not halt
    metadata = {k: v.value for k, v in conformance.metadata.items()}
    assert metadata["by_issue_type"] == {"invalid_npi": 1}
    assert metadata["sample"] == [
        {
            "claim_type": "medical",
            "claim_id": "MC-5",
            "issue_type": "invalid_npi",
            "detail": "provider_id: not an NPI with a valid check digit",
        }
    ]
    integrity = {k: v.value for k, v in checks["referential_integrity"].metadata.items()}
    assert integrity["by_issue_type"] == {"unknown_member": 1, "unknown_provider": 1}
    assert not checks["duplicates"].passed  # MC-2 repeats MC-1
    assert checks["outliers"].passed


def test_halt_on_errors_fails_the_run_before_anything_downstream(pipeline: Pipeline) -> None:
    pipeline.land(batch.batch_one())
    result = pipeline.run(pipeline={"quality": {"mode": "halt_on_errors"}})

    assert not result.success and result.status == "failure"
    checks = check_evaluations(pipeline.instance, result.run_id)
    assert not checks["conformance"].passed
    assert checks["conformance"].severity == dg.AssetCheckSeverity.ERROR
    assert set(materializations(pipeline.instance, result.run_id)) == {
        "landed_batches",
        "reference_data",
        "raw_claims",
    }
    # Nothing was scored or marked: every claim is still pending for the next run.
    assert set(pipeline.statuses().values()) == {"pending"}
    assert pipeline.hits() == set()
    row = get_run(pipeline.engine, result.run_id)
    assert row is not None and row.status == "failure"
    assert row.quality_report["failed"] == 2
    assert pipeline.query("SELECT processed_run_id FROM batches") == [(None,)]


def test_halt_on_errors_passes_a_clean_batch(pipeline: Pipeline) -> None:
    clean = batch.batch_one()
    clean["medical_claims.csv"] = [
        c for c in clean["medical_claims.csv"] if c["claim_id"] not in ERRORS
    ]
    pipeline.land(clean)
    result = pipeline.run(pipeline={"quality": {"mode": "halt_on_errors"}})

    assert result.success
    assert pipeline.hits() >= BATCH_ONE_FINDINGS


def test_flag_only_scores_invalid_claims_too(pipeline: Pipeline) -> None:
    pipeline.land(batch.batch_one())
    result = pipeline.run(pipeline={"quality": {"mode": "flag_only"}})

    assert result.success
    assert set(pipeline.statuses().values()) == {"processed"}
    row = get_run(pipeline.engine, result.run_id)
    assert row is not None and row.quality_report["failed"] == 2  # still reported
    # MC-5's provider NPI is not in the workspace: its rendering provider cannot be excluded,
    # but the claim went through the rules (its score row exists only if it was hit).
    assert pipeline.hits() >= BATCH_ONE_FINDINGS


def test_an_invalid_config_fails_the_run_at_start(pipeline: Pipeline) -> None:
    pipeline.land(batch.batch_one())
    result = pipeline.run(pipeline={"quality": {"mode": "sometimes"}})

    assert not result.success
    assert materializations(pipeline.instance, result.run_id) == {}
    assert set(pipeline.statuses().values()) == {"pending"}
    row = get_run(pipeline.engine, result.run_id)
    assert row is not None and row.status == "failure"
    assert "invalid" in row.config_snapshot


def test_incremental_run_reads_only_the_history_it_needs(pipeline: Pipeline) -> None:
    pipeline.land(batch.batch_one())
    first = pipeline.run()
    before = pipeline.query("SELECT rule_id, claim_id, run_id FROM rule_hits")
    pipeline.land(batch.batch_two())
    second = pipeline.run()

    assert second.success
    # Findings that need batch one's claims: a third copy of MC-1 and an early refill of RX-1.
    new = {
        (r, c)
        for r, c, run in pipeline.query("SELECT rule_id, claim_id, run_id FROM rule_hits")
        if run == second.run_id
    }
    assert {("RULE-MED-001", "MC-11"), ("RULE-RX-001", "RX-11")} <= new
    assert {c for _, c in new} <= {"MC-11", "MC-12", "RX-11"}
    # Batch one's results are untouched and still credited to the first run.
    assert set(before) <= set(pipeline.query("SELECT rule_id, claim_id, run_id FROM rule_hits"))
    found = materializations(pipeline.instance, second.run_id)
    assert found["raw_claims"]["claims_in"] == 3
    # History: MC-1/MC-2 (same member and day as MC-11), RX-1 (same member), MC-7 (same
    # provider and day as nothing: not read) -- a handful, not the whole workspace.
    assert 0 < found["raw_claims"]["claims_history"] < 7
    assert first.run_id != second.run_id


def test_a_rule_declared_a_peer_rule_reading_every_column_finds_the_same(
    pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The widest facts a rule can declare: its incremental run compares the new claims with
    # every claim of its look-back, each column of them, and finds what a reprocess finds.
    every_column = replace(
        REGISTRY["RULE-MED-001"], key=Key.PEERS, reads=CLAIM_TABLES["medical"].columns
    )
    monkeypatch.setitem(REGISTRY, "RULE-MED-001", every_column)
    pipeline.land(batch.batch_one())
    pipeline.run()
    pipeline.land(batch.batch_two())

    second = pipeline.run()

    assert second.success
    incremental = pipeline.outcome()
    # The third copy of MC-1 is found on the peer frame, from batch one's claims.
    assert ("RULE-MED-001", "MC-11") in pipeline.hits()
    assert pipeline.run(force_reprocess=True).success
    assert pipeline.outcome() == incremental


def kept_peer_statistics(pipeline: Pipeline) -> tuple[str, dict[str, pd.DataFrame]]:
    """The run that made the current peer statistics current, and them."""
    found = load(statistics_dir(peer_history_dir(pipeline.store.io_dir(), WORKSPACE)))
    assert found is not None and isinstance(found[1], dict)
    return found  # type: ignore[return-value]


def assert_same_statistics(one: dict[str, pd.DataFrame], other: dict[str, pd.DataFrame]) -> None:
    assert set(one) == set(other)
    for name, frame in one.items():
        pd.testing.assert_frame_equal(frame, other[name], check_exact=True, obj=name)


def test_force_reprocess_gives_the_incremental_result(pipeline: Pipeline) -> None:
    pipeline.land(batch.batch_one())
    pipeline.run()
    pipeline.land(batch.batch_two())
    second = pipeline.run()
    incremental = pipeline.outcome()
    _, incremental_statistics = kept_peer_statistics(pipeline)
    cases_before = pipeline.query("SELECT id, case_number FROM investigation_cases")
    # The incremental run added batch two's claims to batch one's statistics, reading no
    # processed claim; the subjects batch two does not touch were kept as they were.
    peers = materializations(pipeline.instance, second.run_id)["peer_statistics"]
    assert peers["full_recompute"] is False and peers["recomputed"] == {}
    assert peers["processed_claims_read"] == 0
    assert 0 < sum(peers["subjects_updated"].values()) < sum(peers["subjects_by_rule"].values())
    assert sum(peers["subjects_carried_over"].values()) > 0

    forced = pipeline.run(force_reprocess=True)

    assert forced.success
    assert pipeline.outcome() == incremental
    # The statistics themselves: exactly those of one pass over every claim.
    version, forced_statistics = kept_peer_statistics(pipeline)
    assert version == forced.run_id
    assert_same_statistics(incremental_statistics, forced_statistics)
    # Every claim now points at the forced run; no case was opened twice.
    assert pipeline.query("SELECT DISTINCT last_run_id FROM claim_status") == [(forced.run_id,)]
    assert pipeline.query("SELECT id, case_number FROM investigation_cases") == cases_before
    row = get_run(pipeline.engine, forced.run_id)
    assert row is not None and row.force_reprocess and row.stats["claims_in"] == 12


def test_a_run_with_nothing_new_changes_nothing(pipeline: Pipeline) -> None:
    pipeline.land(batch.batch_one())
    pipeline.run()
    before = pipeline.outcome()

    again = pipeline.run()

    assert again.success
    assert pipeline.outcome() == before
    assert materializations(pipeline.instance, again.run_id)["raw_claims"]["claims_in"] == 0


def test_the_same_batch_twice_opens_no_new_cases(pipeline: Pipeline) -> None:
    pipeline.land(batch.batch_one())
    pipeline.run()
    cases = pipeline.query("SELECT case_number, subject_type, subject_id FROM investigation_cases")

    pipeline.land(batch.batch_one())
    result = pipeline.run()

    assert result.success
    assert (
        pipeline.query("SELECT case_number, subject_type, subject_id FROM investigation_cases")
        == cases
    )
    # The copies reuse the claim ids: the gate holds them back.
    assert (
        materializations(pipeline.instance, result.run_id)["investigation_cases"]["cases_opened"]
        == 0
    )
    assert pipeline.query(
        "SELECT count(*) FROM claim_status WHERE claim_type = 'medical' AND status = 'held'"
    ) == [(2 + 7,)]


@pytest.mark.parametrize("mode", ["skip_invalid", "flag_only"])
def test_quality_mode_is_recorded_with_the_run(pipeline: Pipeline, mode: str) -> None:
    pipeline.land(batch.batch_one())
    result = pipeline.run(pipeline={"quality": {"mode": mode}})

    row = get_run(pipeline.engine, result.run_id)
    assert row is not None and row.config_snapshot["quality"]["mode"] == mode
    run = pipeline.instance.get_run_by_id(result.run_id)
    assert run is not None
    assert run.run_config["resources"]["pipeline_config"]["config"]["pipeline"] == {
        "quality": {"mode": mode}
    }


def test_a_failed_commit_keeps_the_peer_copy_of_the_last_committed_run(
    pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    pipeline.land(batch.batch_one())
    first = pipeline.run()
    assert first.success
    directory = peer_history_dir(pipeline.store.io_dir(), WORKSPACE)
    assert load(directory) is not None and load(directory)[0] == first.run_id  # type: ignore[index]
    pipeline.land(batch.batch_two())

    def fail(*args: object, **kwargs: object) -> None:
        raise RuntimeError("the database went away mid-commit")

    # The last statement of the commit's transaction: everything before it is rolled back.
    monkeypatch.setattr("fwa_pipeline.steps.commit.finish_workspace_run", fail)
    failed = pipeline.run()

    assert not failed.success
    # The copy and the peer statistics staged beside the commit never became current: the
    # next run reads the ones that match what the store holds.
    version, _ = load(directory)  # type: ignore[misc]
    assert version == first.run_id
    assert kept_peer_statistics(pipeline)[0] == first.run_id
    monkeypatch.undo()
    again = pipeline.run()
    assert again.success
    assert load(directory)[0] == again.run_id  # type: ignore[index]
    assert [p.name for p in directory.iterdir() if p.is_dir()] == [again.run_id]
    assert kept_peer_statistics(pipeline)[0] == again.run_id
    kept = statistics_dir(directory)
    assert [p.name for p in kept.iterdir() if p.is_dir()] == [again.run_id]
    # Carried over from the first run's statistics, not recomputed.
    assert materializations(pipeline.instance, again.run_id)["peer_statistics"]["recomputed"] == {}


def test_a_changed_threshold_recomputes_that_rules_statistics_in_full(
    pipeline: Pipeline,
) -> None:
    pipeline.land(batch.batch_one())
    assert pipeline.run().success
    pipeline.land(batch.batch_two())
    other_modifiers = {"rules": {"RULE-MED-010": {"thresholds": {"modifiers": ["25"]}}}}

    changed = pipeline.run(pipeline=other_modifiers)

    assert changed.success
    peers = materializations(pipeline.instance, changed.run_id)["peer_statistics"]
    assert peers["full_recompute"] is True
    assert peers["recomputed"] == {
        "RULE-MED-010": "its version, thresholds or reference data changed"
    }
    assert peers["processed_claims_read"] > 0  # batch one's claims, for that rule only
    _, incremental = kept_peer_statistics(pipeline)
    assert pipeline.run(force_reprocess=True, pipeline=other_modifiers).success
    assert_same_statistics(incremental, kept_peer_statistics(pipeline)[1])


def step_failures(pipeline: Pipeline, run_id: str) -> list[str]:
    return [
        entry.dagster_event.step_failure_data.error.message
        for entry in pipeline.instance.all_logs(run_id, of_type=dg.DagsterEventType.STEP_FAILURE)
        if entry.dagster_event
        and entry.dagster_event.step_failure_data
        and entry.dagster_event.step_failure_data.error
    ]


def assert_copy_matches_the_store(pipeline: Pipeline) -> None:
    """The peers' copy is the last run's and holds exactly the processed claims, once each."""
    version, copy = load(peer_history_dir(pipeline.store.io_dir(), WORKSPACE))  # type: ignore[misc]
    (last,) = pipeline.query("SELECT last_pipeline_run_id FROM workspaces")[0]
    assert version == last
    for claim_type in ("medical", "pharmacy"):
        processed = pipeline.query(
            "SELECT claim_pk FROM claim_status WHERE claim_type = :t AND status = 'processed'",
            t=claim_type,
        )
        assert copy[claim_type]["claim_pk"].is_unique
        assert set(copy[claim_type]["claim_pk"]) == {pk for (pk,) in processed}


def processed_batch_one(pipeline: Pipeline) -> None:
    pipeline.land(batch.batch_one())
    assert pipeline.run().success


def assert_the_next_batch_runs(pipeline: Pipeline) -> None:
    pipeline.land({"medical_claims.csv": [batch.medical("MC-31", "M3", batch.P2, "2024-03-03")]})
    assert pipeline.run().success
    assert_copy_matches_the_store(pipeline)


def test_of_two_overlapping_runs_the_later_commit_is_refused(
    pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    processed_batch_one(pipeline)
    pipeline.land(batch.batch_two())
    write = commit.write_run_results
    overtaking: list[LaunchResult] = []
    started = False

    def overtaken(*args: object, **kwargs: object) -> object:
        # While run A writes, a batch lands and run B takes it and A's batch, and commits.
        nonlocal started
        if not started:
            started = True
            pipeline.land(
                {"medical_claims.csv": [batch.medical("MC-21", "M3", batch.P2, "2024-03-02")]}
            )
            overtaking.append(pipeline.run())
        return write(*args, **kwargs)

    monkeypatch.setattr(commit, "write_run_results", overtaken)
    first = pipeline.run()
    monkeypatch.undo()

    (second,) = overtaking
    assert second.success and not first.success
    assert any(
        "another run of this workspace committed" in m
        for m in step_failures(pipeline, first.run_id)
    )
    assert pipeline.query("SELECT last_pipeline_run_id FROM workspaces") == [(second.run_id,)]
    # The batches A took are B's: A's commit left nothing.
    consumed = [
        run for (run,) in pipeline.query("SELECT processed_run_id FROM batches ORDER BY id")
    ]
    assert consumed[1:] == [second.run_id, second.run_id]
    assert_copy_matches_the_store(pipeline)
    assert_the_next_batch_runs(pipeline)


def test_part_of_the_graph_materialised_after_a_later_run_commits_nothing(
    pipeline: Pipeline,
) -> None:
    processed_batch_one(pipeline)
    pipeline.land(batch.batch_two())
    latest = pipeline.run()
    assert latest.success
    before = pipeline.outcome()

    # rule_hits and what follows it, on the frames (and so the batches) of the run before.
    job = build_defs(resource_overrides={"store": pipeline.store}).resolve_job_def(PIPELINE_JOB)
    partial = job.execute_in_process(
        instance=pipeline.instance,
        partition_key=WORKSPACE,
        run_config=run_config(),
        asset_selection=[
            dg.AssetKey("rule_hits"),
            dg.AssetKey("claim_scores"),
            dg.AssetKey("investigation_cases"),
        ],
        raise_on_error=False,
    )

    assert not partial.success
    assert any(
        "another run of this workspace committed" in m
        for m in step_failures(pipeline, partial.run_id)
    )
    assert pipeline.outcome() == before
    assert pipeline.query("SELECT last_pipeline_run_id FROM workspaces") == [(latest.run_id,)]
    assert_the_next_batch_runs(pipeline)


def test_a_full_run_rescoring_a_case_without_evidence_keeps_it_open_at_zero(
    pipeline: Pipeline,
) -> None:
    processed_batch_one(pipeline)
    case_of_p3 = (
        "SELECT id, status, risk_score, risk_level FROM investigation_cases WHERE subject_id = :p"
    )
    ((case_id, _, _, _),) = pipeline.query(case_of_p3, p=batch.P3)
    without_exclusions = {"rules": {"RULE-MED-009": {"enabled": False}}}

    rescored = pipeline.run(force_reprocess=True, pipeline=without_exclusions)

    assert rescored.success
    # The excluded provider's only evidence is gone: the case stays, open, at the lowest level.
    assert pipeline.query(case_of_p3, p=batch.P3) == [(case_id, "open", 0.0, "low")]
    (detail,) = [
        d
        for (d,) in pipeline.query(
            "SELECT detail FROM case_events WHERE case_id = :c AND action = 'rescored'", c=case_id
        )
    ]
    detail = json.loads(detail) if isinstance(detail, str) else detail
    assert detail["no_current_evidence"] and detail["from"]["risk_level"] == "critical"
    assert (
        materializations(pipeline.instance, rescored.run_id)["investigation_cases"][
            "cases_without_evidence"
        ]
        == 1
    )
    # The same run again changes nothing; the evidence back rescores the same case.
    again = pipeline.run(force_reprocess=True, pipeline=without_exclusions)
    assert (
        materializations(pipeline.instance, again.run_id)["investigation_cases"][
            "cases_without_evidence"
        ]
        == 0
    )
    assert pipeline.run(force_reprocess=True).success
    assert pipeline.query(case_of_p3, p=batch.P3) == [(case_id, "open", 100.0, "critical")]


def test_a_run_rescores_an_open_case_whose_score_fell_below_the_case_level(
    pipeline: Pipeline,
) -> None:
    processed_batch_one(pipeline)
    cases = "SELECT id, risk_level, run_id FROM investigation_cases WHERE status = 'open'"
    before = pipeline.query(cases)
    assert before
    # A tenth of the points, and only critical opens a case: every subject still has its hits,
    # but only an override reaches the case level.
    lower = {"scoring": {"multiplier": 1.0, "case_min_level": "critical"}}

    rescored = pipeline.run(force_reprocess=True, pipeline=lower)

    assert rescored.success
    after = pipeline.query(cases + " ORDER BY id")
    assert [case_id for case_id, _, _ in after] == sorted(case_id for case_id, _, _ in before)
    assert {run_id for _, _, run_id in after} == {rescored.run_id}
    levels = [level for _, level, _ in after]
    assert "low" in levels and set(levels) <= {"low", "critical"}  # critical: an override
    upserted = materializations(pipeline.instance, rescored.run_id)["investigation_cases"]
    assert (upserted["cases_opened"], upserted["cases_updated"]) == (0, len(before))


def run_on_a_full_disk(
    pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch, make_current: str
) -> LaunchResult:
    """Batch two's run after batch one's, with ``make_current`` (the dotted path of a cache's
    publishing function) failing for want of disk space."""
    processed_batch_one(pipeline)
    pipeline.land(batch.batch_two())

    def full_disk(*args: object, **kwargs: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(make_current, full_disk)
    committed = pipeline.run()
    monkeypatch.undo()
    return committed


def test_a_peer_copy_that_cannot_be_made_current_fails_nothing(
    pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    committed = run_on_a_full_disk(pipeline, monkeypatch, "fwa_pipeline.steps.commit.make_current")

    # The run committed, so it succeeded; the next one rebuilds the copy from the store.
    assert committed.success
    assert pipeline.query("SELECT last_pipeline_run_id FROM workspaces") == [(committed.run_id,)]
    assert_the_next_batch_runs(pipeline)


def test_peer_statistics_that_cannot_be_made_current_are_recomputed_by_the_next_run(
    pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    committed = run_on_a_full_disk(
        pipeline, monkeypatch, "fwa_pipeline.steps.peer_statistics.make_current"
    )

    # The run committed, so it succeeded; its statistics never became current.
    assert committed.success
    assert kept_peer_statistics(pipeline)[0] != committed.run_id
    pipeline.land({"medical_claims.csv": [batch.medical("MC-31", "M3", batch.P2, "2024-03-03")]})
    after = pipeline.run()
    assert after.success
    peers = materializations(pipeline.instance, after.run_id)["peer_statistics"]
    assert set(peers["recomputed"].values()) == {"no statistics of the last committed run"}
    assert peers["processed_claims_read"] > 0
    assert kept_peer_statistics(pipeline)[0] == after.run_id


def test_a_held_claims_id_is_taken_for_later_batches_as_for_a_reprocess(
    pipeline: Pipeline,
) -> None:
    processed_batch_one(pipeline)  # MC-5 is held: its provider's NPI is invalid
    pipeline.land({"medical_claims.csv": [batch.medical("MC-5", "M1", batch.P1, "2024-03-04")]})
    held = (
        "SELECT s.claim_id, k.reason FROM held_claims k JOIN claim_status s "
        "ON s.claim_type = k.claim_type AND s.claim_pk = k.claim_pk ORDER BY s.claim_pk"
    )

    assert pipeline.run().success
    incremental = pipeline.query(held)
    assert pipeline.run(force_reprocess=True).success

    # The claim id is unique within the workspace (data contract): the resubmission is a
    # duplicate in both kinds of run.
    assert incremental == pipeline.query(held)
    assert [row for row in incremental if row[0] == "MC-5"] == [
        ("MC-5", "invalid_npi,unknown_provider"),
        ("MC-5", "duplicate_claim_id"),
    ]


def test_each_run_records_what_investigators_verdicts_say_of_the_rules(pipeline: Pipeline) -> None:
    pipeline.land(batch.batch_one())
    first = materializations(pipeline.instance, pipeline.run().run_id)["rule_feedback"]
    assert first["rules_with_verdicts"] == 0
    nothing = first["feedback"]["RULE-MED-001"]
    assert (nothing["closed_cases"], nothing["precision"], nothing["proposed_weight"]) == (
        0,
        None,
        None,
    )
    with Session(pipeline.engine) as session:
        cases = session.scalars(select(InvestigationCase).order_by(InvestigationCase.id)).all()
        change_case_status(session, cases[0], "closed", "alice", disposition="confirmed_fraud")
        change_case_status(session, cases[1], "closed", "alice", disposition="no_issue")
        session.commit()
        cited = rule_verdicts(session, cases[0].workspace_id)

    found = materializations(pipeline.instance, pipeline.run().run_id)["rule_feedback"]
    assert found["rules_with_verdicts"] == len(cited) > 0
    for rule_id, verdicts in cited.items():
        assert found["feedback"][rule_id]["confirmed"] == verdicts.confirmed
        assert found["feedback"][rule_id]["no_issue"] == verdicts.no_issue
        # A number per rule with a verdict, which the UI plots from run to run.
        assert found[f"precision {rule_id}"] == found["feedback"][rule_id]["precision"]
