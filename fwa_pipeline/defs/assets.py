"""The pipeline's assets, one workspace partition at a time. Each is a thin adapter: read its
inputs, call the run's step (``fwa_pipeline.steps``), the domain or the store, and attach metadata
(``dagster/row_count``, ``dagster/column_schema`` and the figures an analyst reads: claims in,
passed and held, hits per rule, cases opened and updated, flagged dollars).

    landed_batches ─► raw_claims ─► validated_claims ─► enriched_claims ─► peer_statistics
                      (4 quality checks)                 ▲     │               │
                                         reference_data ─┘     └──► rule_hits ◄┘
                                                                        │
                                                                        ▼
                                           investigation_cases ◄─ claim_scores
                                             ├─► detection_evaluation
                                             └─► rule_feedback

(``landed_batches`` fixes the run's scope (``steps.scope.RunScope``), which the later assets
read as it was fixed. ``validated_claims`` is the gate's verdict, the claims it holds back:
``enriched_claims`` and ``investigation_cases`` read ``raw_claims`` without them, so a million
claims are not written a second time.)

Nothing is written to the claims store until ``investigation_cases`` (``steps.commit``), which
records hits, scores, held claims, cases and the consumed batches (which makes their claims
processed) in one transaction: a run killed anywhere leaves the store as it was, and its batches
still pending for the next run.
"""

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pandas as pd
from sqlalchemy.orm import Session

from fwa_pipeline.defs.checks import check_results, check_specs
from fwa_pipeline.defs.compute import ComputeResource
from fwa_pipeline.defs.io import COLUMNS
from fwa_pipeline.defs.metadata import claims_metadata, frame_metadata, table_schema
from fwa_pipeline.defs.partitions import WORKSPACES
from fwa_pipeline.defs.resources import StoreResource
from fwa_pipeline.domain.evaluation import precision_recall
from fwa_pipeline.domain.feedback import Verdicts, summary
from fwa_pipeline.domain.quality import KEY_COLUMNS, held_back
from fwa_pipeline.domain.scoring import HIT_COLUMNS, score_claims
from fwa_pipeline.domain.tally import counts
from fwa_pipeline.runs import ledger
from fwa_pipeline.runs.config import PipelineRunConfig
from fwa_pipeline.runs.tags import JOB_ID_TAG
from fwa_pipeline.steps.claim_shards import ClaimShards, shards_dir
from fwa_pipeline.steps.claims import (
    CLAIM_TYPES,
    as_output,
    enrich,
    gated,
    new_counts,
    run_claims,
)
from fwa_pipeline.steps.commit import commit_run
from fwa_pipeline.steps.detection import detect
from fwa_pipeline.steps.frame_files import Frames
from fwa_pipeline.steps.intake import (
    MemberNeeds,
    judge_claim_shards,
    judge_quality,
    read_claim_shards,
    read_claims,
    read_run_members,
)
from fwa_pipeline.steps.peer_history import peer_history_dir
from fwa_pipeline.steps.peer_statistics import (
    InMemory,
    InShards,
    compared_rules,
    stage_statistics,
    update_statistics,
)
from fwa_pipeline.steps.scope import RunScope, fix_scope
from fwa_pipeline.steps.sharded_enrichment import enrich_shards, member_needs
from fwa_pipeline.steps.sharded_rules import split_columns
from fwa_pipeline.store.cases import rule_verdicts
from fwa_pipeline.store.claims import (
    read_labels,
    read_reference,
    read_rule_hit_keys,
    workspace_id,
)
from fwa_pipeline.store.models import InvestigationCase
from fwa_pipeline.store.reference_hash import reference_hashes
from fwa_pipeline.store.runs import RunSupersededError, get_request
from fwa_pipeline.store.workspace_config import current_config


def _workspace_id(store: StoreResource, workspace: str) -> int:
    found = workspace_id(store.engine(), workspace)
    if found is None:
        raise dg.Failure(f"workspace {workspace!r} does not exist in the claims store")
    return found


def _shards_dir(context: dg.AssetExecutionContext, store: StoreResource, asset: str) -> Path:
    """Where this run's tasks write their shards of ``asset``."""
    return shards_dir(store.io_dir(), context.partition_key, asset, context.run.run_id)


ASSET = {"partitions_def": WORKSPACES}
GATE_COLUMNS = ["in_scope"]


# --------------------------------------------------------------------------- intake


@dg.asset(
    **ASSET,
    group_name="intake",
    kinds={"sql"},
    description="The batches whose claims the run processes: those landed in the workspace "
    "that no run has consumed yet (every batch with force_reprocess; a batch landing mid-run "
    "waits for the next run), the as-of date and the run's config snapshot (configuration "
    "version, reference data hashes, code version, where it computes), recorded as the run "
    "starts.",
)
def landed_batches(
    context: dg.AssetExecutionContext,
    store: StoreResource,
    pipeline_config: PipelineRunConfig,
    compute: ComputeResource,
) -> dg.Output[Frames]:
    engine = store.engine()
    ws_id = _workspace_id(store, context.partition_key)
    as_of = pipeline_config.as_of_date()
    scope, batches = fix_scope(engine, ws_id, as_of=as_of, force=pipeline_config.force_reprocess)
    stored = current_config(engine, ws_id)
    if pipeline_config.config_version is None and stored is not None:
        # Launchers pin the workspace's version; a run launched by hand (Dagster's launchpad)
        # without one applies the catalogue: say so where the operator looks.
        context.log.warning(
            f"this run applies the catalogue defaults, not the workspace's configuration "
            f"version {stored.version}: it was launched without a config_version"
        )
    # With the reference data as the store holds it now: what the run reads.
    snapshot = {**pipeline_config.snapshot(as_of), "reference": reference_hashes(engine, ws_id)}
    newest = max(scope.batch_ids, default=None)
    ledger.started(
        engine,
        context.instance,
        context.run,
        ws_id,
        batch_id=newest,
        force_reprocess=pipeline_config.force_reprocess,
        # Where it ran is recorded, but left out of the fingerprint: it changes no result.
        config={**snapshot, "compute": compute.describe()},
    )
    job_id = context.run.tags.get(JOB_ID_TAG)
    request = get_request(engine, job_id) if job_id else None
    if request is not None and request.status == "canceled":
        # Canceled while the daemon was creating this run: it ends canceled before reading a
        # claim (an interrupt while the run is canceling is how Dagster ends a run canceled).
        context.instance.report_run_canceling(context.run)
        raise dg.DagsterExecutionInterruptedError("the job was canceled before its run started")
    fingerprint = hashlib.sha256(json.dumps(snapshot, sort_keys=True).encode()).hexdigest()
    return dg.Output(
        scope.frames(batches),
        metadata={
            **frame_metadata(batches),
            "batches": dg.MetadataValue.int(len(batches)),
            "batch_ids": dg.MetadataValue.json(list(scope.batch_ids)),
            "as_of": dg.MetadataValue.text(as_of.isoformat()),
            "force_reprocess": dg.MetadataValue.bool(scope.force),
            "config_sha256": dg.MetadataValue.text(fingerprint),
            "config_version": dg.MetadataValue.text(
                str(pipeline_config.config_version or "none (the catalogue defaults)")
            ),
        },
    )


@dg.asset(
    **ASSET,
    group_name="intake",
    kinds={"sql", "pandas"},
    description="Providers and the CPT, NCCI and NDC references: the shipped defaults with the "
    "workspace's own rows replacing them by key. Member PHI is not part of it.",
)
def reference_data(context: dg.AssetExecutionContext, store: StoreResource) -> dg.Output[Frames]:
    engine = store.engine()
    ws_id = _workspace_id(store, context.partition_key)
    frames = read_reference(engine, ws_id)
    return dg.Output(
        frames,
        metadata={
            **frame_metadata(frames),
            **{name: dg.MetadataValue.int(len(frame)) for name, frame in frames.items()},
        },
    )


@dg.asset(
    **ASSET,
    group_name="intake",
    kinds={"sql", "pandas", "pandera"},
    check_specs=check_specs("raw_claims"),
    description="The claims of the run's batches (the pending ones; every one with "
    "force_reprocess) plus the processed history the rules' look-back needs for the members "
    "and providers they touch. The quality checks run here, in the compute's shards split by "
    "member; the quality report is stored with the run.",
)
def raw_claims(
    context: dg.AssetExecutionContext,
    store: StoreResource,
    pipeline_config: PipelineRunConfig,
    compute: ComputeResource,
    landed_batches: Frames,
) -> Iterator[dg.Output[Frames] | dg.AssetCheckResult]:
    scope = RunScope.of(landed_batches)
    config = pipeline_config.effective()
    engine = store.engine()
    run_compute = compute.get()
    claims: Frames | ClaimShards
    if run_compute.shards == 1:
        claims = read_claims(engine, scope, config)
        result = judge_quality(engine, scope, config, claims)
    else:
        place = _shards_dir(context, store, "raw_claims")
        claims = read_claim_shards(engine, scope, config, place, run_compute)
        result = judge_claim_shards(engine, scope, config, claims, run_compute)
    ledger.gated(engine, context.run.run_id, scope.workspace_id, result.report)
    new = new_counts(claims)
    total = (
        claims.counts()
        if isinstance(claims, ClaimShards)
        else {t: len(claims[t]) for t in CLAIM_TYPES}
    )
    yield dg.Output(
        {**as_output(claims), "issues": result.issues},
        metadata={
            **claims_metadata(claims),
            "claims_in": dg.MetadataValue.int(sum(new.values())),
            "claims_in_by_type": dg.MetadataValue.json(new),
            "claims_history": dg.MetadataValue.int(sum(total[t] - new[t] for t in CLAIM_TYPES)),
            "quality_issues": dg.MetadataValue.int(len(result.issues)),
            "quality_mode": dg.MetadataValue.text(config.quality.mode.value),
            "force_reprocess": dg.MetadataValue.bool(scope.force),
            "shards": dg.MetadataValue.int(run_compute.shards),
        },
    )
    yield from check_results("raw_claims", result, config.quality)


# --------------------------------------------------------------------------- quality gate


@dg.asset(
    **ASSET,
    group_name="quality",
    kinds={"pandas"},
    description="The quality gate's verdict: the new claims it holds back (under skip_invalid, "
    "those with errors; none under flag_only; under halt_on_errors the blocking checks stop "
    "the run before this asset). The claims that go on are raw_claims without these: they "
    "are not written a second time.",
    # The gate needs the issues and the claims' scope flag (for its counts), not the claims.
    ins={"raw_claims": dg.AssetIn(metadata={COLUMNS: {t: GATE_COLUMNS for t in CLAIM_TYPES}})},
)
def validated_claims(
    context: dg.AssetExecutionContext, pipeline_config: PipelineRunConfig, raw_claims: Frames
) -> dg.Output[Frames]:
    mode = pipeline_config.effective().quality.mode
    # raw_claims kept the new claims' issues only (new_claims_quality): the gate judges those.
    held = held_back(raw_claims["issues"], mode)
    held_by_type = counts(held["claim_type"])
    new = new_counts(run_claims(raw_claims))
    passed = {t: new[t] - held_by_type.get(t, 0) for t in CLAIM_TYPES}
    return dg.Output(
        {"held": held},
        metadata={
            **frame_metadata(held),
            "claims_passed": dg.MetadataValue.int(sum(passed.values())),
            "claims_held": dg.MetadataValue.int(len(held)),
            "passed_by_type": dg.MetadataValue.json(passed),
            "held_by_type": dg.MetadataValue.json(held_by_type),
            "quality_mode": dg.MetadataValue.text(mode.value),
        },
    )


# --------------------------------------------------------------------------- detection


@dg.asset(
    **ASSET,
    group_name="detection",
    kinds={"pandas"},
    description="Claims joined to members (the code's age bound the member's age crosses, and "
    "the days from the member's death to a claim after it: the dates are decrypted in memory, "
    "dates of birth only for members with a claim on a code that has an age bound, dates of "
    "death only for members with a claim an enabled after-death rule judges, and neither "
    "dates nor ages are written), providers and the code references; in the compute's shards "
    "split by member.",
)
def enriched_claims(
    context: dg.AssetExecutionContext,
    store: StoreResource,
    pipeline_config: PipelineRunConfig,
    compute: ComputeResource,
    raw_claims: Frames,
    validated_claims: Frames,
    reference_data: Frames,
    landed_batches: Frames,
) -> dg.Output[Frames]:
    config = pipeline_config.effective()
    scope = RunScope.of(landed_batches)
    held = validated_claims["held"]
    claims = gated(raw_claims, held)
    cpt_reference = reference_data["cpt_reference"]
    run_compute = compute.get()
    enriched: Frames | ClaimShards
    if isinstance(claims, ClaimShards):
        needs = member_needs(claims, held, config, cpt_reference, scope.covers_all, run_compute)
        members = read_run_members(store.engine(), store.cipher(), scope, needs)
        place = _shards_dir(context, store, "enriched_claims")
        split_by = split_columns(config)
        enriched = enrich_shards(
            claims, held, members, reference_data, split_by, place, run_compute
        )
    else:
        needs = MemberNeeds.of(claims, config, cpt_reference, every_member=scope.covers_all)
        members = read_run_members(store.engine(), store.cipher(), scope, needs)
        enriched = {t: enrich(t, claims[t], members, reference_data) for t in CLAIM_TYPES}
    return dg.Output(
        as_output(enriched),
        metadata={
            **claims_metadata(enriched),
            "members": dg.MetadataValue.int(len(members)),
            "birth_dates_decrypted": dg.MetadataValue.int(
                int(members["date_of_birth"].notna().sum())
            ),
            "death_dates_decrypted": dg.MetadataValue.int(
                int(members["date_of_death"].notna().sum())
            ),
        },
    )


@dg.asset(
    **ASSET,
    group_name="detection",
    kinds={"pandas"},
    description="The peer rules' statistics over every processed claim and the run's new ones: "
    "per subject (provider, pharmacy, code) counts and sums that merge exactly, and the "
    "distinct subject-member pairs. A run over every claim computes them; an incremental run "
    "adds its new claims to the last committed run's, reading no processed claim (a rule "
    "whose kept statistics are missing or were computed with other thresholds or reference "
    "data is recomputed in full). They become current when the run commits.",
)
def peer_statistics(
    context: dg.AssetExecutionContext,
    store: StoreResource,
    pipeline_config: PipelineRunConfig,
    compute: ComputeResource,
    enriched_claims: Frames,
    reference_data: Frames,
    landed_batches: Frames,
) -> dg.Output[Frames]:
    config = pipeline_config.effective()
    peer_directory = peer_history_dir(store.io_dir(), context.partition_key)
    scope = RunScope.of(landed_batches)
    claims = run_claims(enriched_claims)
    aggregate = (
        InShards(store.engine(), scope, config, claims, reference_data, compute.get())
        if isinstance(claims, ClaimShards)
        else InMemory(store.engine(), peer_directory, scope, config, claims, reference_data)
    )
    update = update_statistics(peer_directory, scope, config, reference_data, aggregate)
    stage_statistics(peer_directory, context.run.run_id, update.statistics)
    frames = update.compared(compared_rules(config), reference_data["providers"])
    found = update.statistics.aggregates
    return dg.Output(
        frames,
        metadata={
            **frame_metadata(frames),
            "subjects_by_rule": dg.MetadataValue.json({r: len(a.totals) for r, a in found.items()}),
            "pairs_by_rule": dg.MetadataValue.json(
                {r: len(a.pairs) for r, a in found.items() if a.pairs is not None}
            ),
            "subjects_updated": dg.MetadataValue.json(update.subjects_updated),
            "subjects_carried_over": dg.MetadataValue.json(update.subjects_carried_over),
            "full_recompute": dg.MetadataValue.bool(bool(update.recomputed)),
            "recomputed": dg.MetadataValue.json(update.recomputed),
            "processed_claims_read": dg.MetadataValue.int(update.processed_claims_read),
        },
    )


@dg.asset(
    **ASSET,
    group_name="detection",
    kinds={"pandas"},
    description="Every enabled rule of the catalogue over the enriched claims; one row per "
    "rule and claim hit, with severity, weight and evidence (values and the thresholds they "
    "crossed). The peer rules compare the new claims from peer_statistics; a peer rule "
    "without phases runs, in incremental runs, on the new claims together with every "
    "processed claim in its look-back, read from the last run's copy. The rules run in the "
    "compute's shards, split by what each rule compares (member, provider, peer subject).",
)
def rule_hits(
    context: dg.AssetExecutionContext,
    store: StoreResource,
    pipeline_config: PipelineRunConfig,
    compute: ComputeResource,
    enriched_claims: Frames,
    reference_data: Frames,
    landed_batches: Frames,
    peer_statistics: Frames,
) -> dg.Output[pd.DataFrame]:
    config = pipeline_config.effective()
    found = detect(
        store.engine(),
        peer_history_dir(store.io_dir(), context.partition_key),
        RunScope.of(landed_batches),
        config,
        run_claims(enriched_claims),
        reference_data,
        peer_statistics,
        compute.get(),
    )
    hits = found.hits
    versions = {r: p.version for r, p in config.enabled_rules().items()}
    return dg.Output(
        hits,
        metadata={
            **frame_metadata(hits),
            "hits": dg.MetadataValue.int(len(hits)),
            "hits_by_rule": dg.MetadataValue.json(counts(hits["rule_id"])),
            "claims_flagged": dg.MetadataValue.int(len(hits[KEY_COLUMNS].drop_duplicates())),
            "rule_versions": dg.MetadataValue.json(versions),
            "peer_claims": dg.MetadataValue.int(found.peer_claims),
        },
    )


@dg.asset(
    **ASSET,
    group_name="detection",
    kinds={"pandas"},
    description="A score (0-100) and risk level per claim with hits: the capped, weighted sum "
    "of its rules' severities (scoring config in the run's snapshot).",
    # The hits without their evidence: a million evidence dicts are not decoded to be ignored.
    ins={"rule_hits": dg.AssetIn(metadata={COLUMNS: HIT_COLUMNS})},
)
def claim_scores(
    context: dg.AssetExecutionContext, pipeline_config: PipelineRunConfig, rule_hits: pd.DataFrame
) -> dg.Output[pd.DataFrame]:
    scores = score_claims(rule_hits, pipeline_config.effective())
    return dg.Output(
        scores,
        metadata={
            **frame_metadata(scores),
            "claims_scored": dg.MetadataValue.int(len(scores)),
            "scores_by_level": dg.MetadataValue.json(counts(scores["risk_level"])),
            "max_score": dg.MetadataValue.float(
                float(scores["score"].max()) if len(scores) else 0.0
            ),
        },
    )


# --------------------------------------------------------------------------- cases


@dg.asset(
    **ASSET,
    group_name="cases",
    kinds={"sql"},
    description="Commits the run: hits, scores and held claims, case upserts (one open case "
    "per subject, rebuilt from all its stored evidence; the same evidence opens nothing new) "
    "and the consumed batches (their claims become processed), in one transaction.",
)
def investigation_cases(
    context: dg.AssetExecutionContext,
    store: StoreResource,
    pipeline_config: PipelineRunConfig,
    landed_batches: Frames,
    raw_claims: Frames,
    validated_claims: Frames,
    rule_hits: pd.DataFrame,
    claim_scores: pd.DataFrame,
) -> dg.MaterializeResult:
    try:
        summary = commit_run(
            store.engine(),
            RunScope.of(landed_batches),
            context.run.run_id,
            gated(raw_claims, validated_claims["held"]),
            validated_claims["held"],
            rule_hits,
            claim_scores,
            pipeline_config.effective(),
            peer_history_dir(store.io_dir(), context.partition_key),
        )
    except RunSupersededError as superseded:
        raise dg.Failure(str(superseded)) from superseded
    if summary.copy_not_kept is not None:
        context.log.warning(
            f"peer history or statistics not kept (the next run rebuilds them): "
            f"{summary.copy_not_kept}"
        )
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": dg.MetadataValue.int(summary.cases),
            "dagster/column_schema": table_schema(InvestigationCase.__table__),  # type: ignore[arg-type]
            "cases_opened": dg.MetadataValue.int(summary.opened),
            "cases_updated": dg.MetadataValue.int(summary.updated),
            "cases_unchanged": dg.MetadataValue.int(summary.unchanged),
            "cases_without_evidence": dg.MetadataValue.int(summary.withdrawn),
            "cases_by_level": dg.MetadataValue.json(summary.cases_by_level),
            "flagged_billed": dg.MetadataValue.float(summary.flagged_billed),
            "flagged_paid": dg.MetadataValue.float(summary.flagged_paid),
            "written": dg.MetadataValue.json(summary.written),
            "subjects_rebuilt": dg.MetadataValue.int(summary.subjects_rebuilt),
        }
    )


# --------------------------------------------------------------------------- evaluation


@dg.asset(
    **ASSET,
    group_name="evaluation",
    kinds={"pandas"},
    deps=[investigation_cases],
    output_required=False,
    description="Detection quality against the labels a batch shipped (labels.csv): per-rule "
    "precision and recall of the workspace's current hits. Not materialised without labels.",
)
def detection_evaluation(
    context: dg.AssetExecutionContext, store: StoreResource
) -> Iterator[dg.MaterializeResult]:
    engine = store.engine()
    ws_id = _workspace_id(store, context.partition_key)
    labels = read_labels(engine, ws_id)
    if labels.empty:
        context.log.info("no labels in this workspace: nothing to evaluate")
        return
    table = precision_recall(read_rule_hit_keys(engine, ws_id), labels)
    found = table["true_positives"].sum()
    overall = {
        "precision": float(found / table["hits"].sum()) if table["hits"].sum() else None,
        "recall": float(found / table["labelled"].sum()) if table["labelled"].sum() else None,
    }
    yield dg.MaterializeResult(
        metadata={
            **frame_metadata(table),
            "precision_recall": dg.MetadataValue.json(
                {
                    "overall": overall,
                    "rules": table.astype(object)
                    .where(table.notna(), None)
                    .to_dict(orient="records"),
                }
            ),
            "labelled_claims": dg.MetadataValue.int(labels["claim_id"].nunique()),
        }
    )


@dg.asset(
    **ASSET,
    group_name="evaluation",
    kinds={"sql"},
    deps=[investigation_cases],
    description="What investigators' verdicts say of each enabled rule: the workspace's closed "
    "cases citing it by disposition (confirmed, no issue, inconclusive), the observed "
    "precision with its 95% Wilson interval, and the weight that precision proposes (data for "
    "an admin to review, never applied by itself). Each run records them, so their history "
    "is this asset's.",
)
def rule_feedback(
    context: dg.AssetExecutionContext, store: StoreResource, pipeline_config: PipelineRunConfig
) -> dg.MaterializeResult:
    ws_id = _workspace_id(store, context.partition_key)
    with Session(store.engine()) as session:
        verdicts = rule_verdicts(session, ws_id)
    feedback = {
        rule_id: summary(verdicts.get(rule_id, Verdicts()), params.weight, params.cap)
        for rule_id, params in pipeline_config.effective().enabled_rules().items()
    }
    # One numeric entry per rule with a precision: the UI plots each over the runs.
    precisions = {
        f"precision {rule_id}": dg.MetadataValue.float(found["precision"])
        for rule_id, found in feedback.items()
        if found["precision"] is not None
    }
    table = pd.DataFrame.from_dict(feedback, orient="index").rename_axis("rule_id")
    return dg.MaterializeResult(
        metadata={
            **frame_metadata(table.reset_index()),
            "feedback": dg.MetadataValue.json(feedback),
            "rules_with_verdicts": dg.MetadataValue.int(
                sum(1 for found in feedback.values() if found["closed_cases"])
            ),
            **precisions,
        }
    )


ASSETS = [
    landed_batches,
    reference_data,
    raw_claims,
    validated_claims,
    enriched_claims,
    peer_statistics,
    rule_hits,
    claim_scores,
    investigation_cases,
    detection_evaluation,
    rule_feedback,
]
