"""The pipeline's assets, one workspace partition at a time. Each is a thin adapter: read from the
store or an upstream asset, call the domain, attach metadata (``dagster/row_count``,
``dagster/column_schema`` and the figures an analyst reads: claims in, passed and held, hits per
rule, cases opened and updated, flagged dollars).

    landed_batches ─► raw_claims ─► validated_claims ─► enriched_claims ─► rule_hits ─► claim_scores
                      (4 quality checks)                 ▲ reference_data                   │
                                                         investigation_cases ◄──────────────┘
                                                           └─► detection_evaluation

(``landed_batches`` fixes the run's scope, which the later assets read too. ``validated_claims``
is the gate's verdict, the claims it holds back: ``enriched_claims`` and ``investigation_cases``
read ``raw_claims`` without them, so a million claims are not written a second time.)

Nothing is written to the claims store until ``investigation_cases``, which records hits,
scores, held claims, cases and the consumed batches (which makes their claims processed) in one
transaction: a run killed anywhere leaves the store as it was, and its batches still pending for
the next run.
"""

import datetime as dt
import hashlib
import json
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor

import dagster as dg
import pandas as pd
from sqlalchemy import Table
from sqlalchemy.orm import Session

from fwa_pipeline.defs.checks import check_results, check_specs
from fwa_pipeline.defs.io import COLUMNS, Frames, make_current
from fwa_pipeline.defs.partitions import WORKSPACES
from fwa_pipeline.defs.peers import (
    cached_processed,
    peer_history_dir,
    processed_claims,
    stage_run,
)
from fwa_pipeline.defs.resources import PipelineRunConfig, StoreResource
from fwa_pipeline.defs.selection import (
    peer_columns,
    plan_history,
    split_rules,
    touched_ids,
)
from fwa_pipeline.domain.cases import CLAIM_COLUMNS, case_proposals, case_subjects
from fwa_pipeline.domain.config import PipelineConfig
from fwa_pipeline.domain.enrich import (
    enrich_medical,
    enrich_pharmacy,
    members_needing_age,
    members_needing_death_date,
)
from fwa_pipeline.domain.evaluation import precision_recall
from fwa_pipeline.domain.quality import (
    KEY_COLUMNS,
    QualityResult,
    assess_quality,
    held_back,
    passing,
    quality_report,
)
from fwa_pipeline.domain.rules import RuleContext, evaluate
from fwa_pipeline.domain.scoring import HIT_COLUMNS, ordered_levels, score_claims
from fwa_pipeline.domain.tally import counts
from fwa_pipeline.reference import BENZODIAZEPINE_STEMS
from fwa_pipeline.runs.tags import JOB_ID_TAG
from fwa_pipeline.store.cases import (
    open_case_subjects,
    upsert_cases,
    withdraw_unsupported_cases,
)
from fwa_pipeline.store.claims import (
    CLAIM_TABLES,
    has_processed_batches,
    held_claim_ids,
    last_run_id,
    read_history,
    read_labels,
    read_members,
    read_new_claims,
    read_reference,
    read_rule_hit_keys,
    reference_ids,
    run_batches,
    workspace_id,
)
from fwa_pipeline.store.models import InvestigationCase, utcnow
from fwa_pipeline.store.reference_hash import reference_hashes
from fwa_pipeline.store.results import load_case_inputs, write_run_results
from fwa_pipeline.store.runs import (
    RunSupersededError,
    finish_workspace_run,
    get_request,
    mark_request,
    upsert_run,
)
from fwa_pipeline.store.workspace_config import current_config

CLAIM_TYPES = tuple(CLAIM_TABLES)
DATE_COLUMN = {t.claim_type: t.date for t in CLAIM_TABLES.values()}
STORED_COLUMNS = {t.claim_type: ["claim_pk", *t.columns] for t in CLAIM_TABLES.values()}
MEMBER_LIST_LIMIT = 50_000


# --------------------------------------------------------------------------- metadata helpers


def column_schema(frames: Mapping[str, pd.DataFrame] | pd.DataFrame) -> dg.TableSchema:
    """The columns of a frame, or of each named frame as ``name.column``."""
    named = {"": frames} if isinstance(frames, pd.DataFrame) else frames
    return dg.TableSchema(
        columns=[
            dg.TableColumn(f"{name}.{column}" if name else str(column), str(dtype))
            for name, frame in named.items()
            for column, dtype in frame.dtypes.items()
        ]
    )


def table_schema(table: Table) -> dg.TableSchema:
    return dg.TableSchema(columns=[dg.TableColumn(c.name, str(c.type)) for c in table.columns])


def frame_metadata(frames: Mapping[str, pd.DataFrame] | pd.DataFrame) -> dict[str, object]:
    rows = len(frames) if isinstance(frames, pd.DataFrame) else sum(map(len, frames.values()))
    return {
        "dagster/row_count": dg.MetadataValue.int(rows),
        "dagster/column_schema": column_schema(frames),
    }


def in_scope(frame: pd.DataFrame, columns: list[str] | None = None) -> pd.DataFrame:
    """The new claims of ``frame``, with ``columns`` only when given. The columns are cut before
    the rows, and a frame of new claims only (every full run) is not filtered at all: a row
    filter copies every column of a million-row frame."""
    part = frame if columns is None else frame[columns]
    mask = frame["in_scope"].astype(bool).to_numpy()
    return part if mask.all() else part[mask]


def claim_keys(frames: Mapping[str, pd.DataFrame]) -> pd.DataFrame:
    """``claim_type, claim_pk`` of the new (in-scope) claims of each claim type."""
    return pd.concat(
        [in_scope(frames[t], ["claim_pk"]).assign(claim_type=t) for t in CLAIM_TYPES],
        ignore_index=True,
    )[KEY_COLUMNS]


class Scope:
    """What ``landed_batches`` fixed for the run: workspace id, the batches whose claims it
    processes, as-of date, whether any batch was processed before and the workspace's last
    run."""

    def __init__(self, frames: Frames) -> None:
        row = frames["scope"].iloc[0]
        self.workspace_id = int(row["workspace_id"])
        self.as_of = dt.date.fromisoformat(str(row["as_of"]))
        self.fresh = bool(row["fresh"])
        self.last_run_id = str(row["last_run_id"]) or None
        self.batch_ids = [int(b) for b in frames["batches"]["batch_id"]]


def _workspace_id(store: StoreResource, workspace: str) -> int:
    found = workspace_id(store.engine(), workspace)
    if found is None:
        raise dg.Failure(f"workspace {workspace!r} does not exist in the claims store")
    return found


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
    "version, reference data hashes, code version), recorded as the run starts.",
)
def landed_batches(
    context: dg.AssetExecutionContext, store: StoreResource, pipeline_config: PipelineRunConfig
) -> dg.Output[Frames]:
    engine = store.engine()
    ws_id = _workspace_id(store, context.partition_key)
    batches = run_batches(engine, ws_id, force=pipeline_config.force_reprocess)
    as_of = pipeline_config.as_of_date()
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
    newest = int(batches["batch_id"].max()) if not batches.empty else None
    with engine.begin() as connection:
        upsert_run(
            connection,
            context.run.run_id,
            ws_id,
            status="running",
            job_name=context.job_def.name,
            started_at=utcnow(),
            batch_id=newest,
            force_reprocess=pipeline_config.force_reprocess,
            config_snapshot=snapshot,
        )
        job_id = context.run.tags.get(JOB_ID_TAG)
        if job_id:
            mark_request(connection, job_id, status="launched", dagster_run_id=context.run.run_id)
    request = get_request(engine, job_id) if job_id else None
    if request is not None and request.status == "canceled":
        # Canceled while the daemon was creating this run: it ends canceled before reading a
        # claim (an interrupt while the run is canceling is how Dagster ends a run canceled).
        context.instance.report_run_canceling(context.run)
        raise dg.DagsterExecutionInterruptedError("the job was canceled before its run started")
    scope = pd.DataFrame(
        [
            {
                "workspace_id": ws_id,
                "as_of": as_of.isoformat(),
                # No batch processed yet: the run's hits will be all the workspace has.
                "fresh": not has_processed_batches(engine, ws_id),
                "last_run_id": last_run_id(engine, ws_id) or "",
            }
        ]
    )
    frames = {"batches": batches, "scope": scope}
    fingerprint = hashlib.sha256(json.dumps(snapshot, sort_keys=True).encode()).hexdigest()
    return dg.Output(
        frames,
        metadata={
            **frame_metadata(batches),
            "batches": dg.MetadataValue.int(len(batches)),
            "batch_ids": dg.MetadataValue.json([int(b) for b in batches["batch_id"]]),
            "as_of": dg.MetadataValue.text(as_of.isoformat()),
            "force_reprocess": dg.MetadataValue.bool(pipeline_config.force_reprocess),
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
    "and providers they touch. The quality checks run here; the quality report is stored with "
    "the run.",
)
def raw_claims(
    context: dg.AssetExecutionContext,
    store: StoreResource,
    pipeline_config: PipelineRunConfig,
    landed_batches: Frames,
) -> Iterator[dg.Output[Frames] | dg.AssetCheckResult]:
    scope = Scope(landed_batches)
    config = pipeline_config.effective()
    force = pipeline_config.force_reprocess
    # Every claim is new (a reprocess, or nothing processed yet): there is no history to read.
    everything = force or scope.fresh
    engine = store.engine()
    frames: Frames = {}
    for claim_type in CLAIM_TYPES:
        new = read_new_claims(engine, claim_type, scope.workspace_id, scope.batch_ids)
        history = new.iloc[0:0]
        if not everything and not new.empty:
            plan = plan_history(config, claim_type)
            history = read_history(
                engine,
                claim_type,
                scope.workspace_id,
                scope.batch_ids,
                same_day=plan.same_day,
                windows=plan.date_windows(new[DATE_COLUMN[claim_type]]),
            )
        new["in_scope"] = True  # in place: a million-row frame is not copied for a flag
        frames[claim_type] = (
            pd.concat([new, history.assign(in_scope=False)], ignore_index=True)
            if not history.empty
            else new
        )

    member_ids, provider_ids = reference_ids(
        engine, scope.workspace_id, scope.batch_ids, every_member=everything
    )
    # Held claims are no history, but their ids are taken (a reprocess judges them anew).
    taken = (
        None
        if everything
        else {t: held_claim_ids(engine, t, scope.workspace_id) for t in CLAIM_TYPES}
    )
    assessed = assess_quality(
        frames["medical"],
        frames["pharmacy"],
        member_ids,
        provider_ids,
        config.quality,
        scope.as_of,
        taken,
    )
    result = new_claims_quality(assessed.issues, frames)
    frames["issues"] = result.issues
    with engine.begin() as connection:
        upsert_run(connection, context.run.run_id, scope.workspace_id, quality_report=result.report)
    new_counts = {t: int(frames[t]["in_scope"].sum()) for t in CLAIM_TYPES}
    yield dg.Output(
        frames,
        metadata={
            **frame_metadata({t: frames[t] for t in CLAIM_TYPES}),
            "claims_in": dg.MetadataValue.int(sum(new_counts.values())),
            "claims_in_by_type": dg.MetadataValue.json(new_counts),
            "claims_history": dg.MetadataValue.int(
                sum(len(frames[t]) - new_counts[t] for t in CLAIM_TYPES)
            ),
            "quality_issues": dg.MetadataValue.int(len(result.issues)),
            "quality_mode": dg.MetadataValue.text(config.quality.mode.value),
            "force_reprocess": dg.MetadataValue.bool(force),
        },
    )
    yield from check_results("raw_claims", result, config.quality)


def new_claims_quality(issues: pd.DataFrame, frames: Frames) -> QualityResult:
    """The quality result of the run's new claims: history was judged when it was new, so the
    run reports and gates its new claims only."""
    # Issues are few and claims many: filter by key membership rather than merge a million keys.
    new = pd.Series(False, index=issues.index)
    for t in CLAIM_TYPES:
        keys = in_scope(frames[t], ["claim_pk"])["claim_pk"]
        new |= (issues["claim_type"] == t) & issues["claim_pk"].isin(keys)
    issues = issues[new].reset_index(drop=True)
    totals = {t: int(frames[t]["in_scope"].sum()) for t in CLAIM_TYPES}
    return QualityResult(issues=issues, report=quality_report(issues, totals))  # type: ignore[arg-type]


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
    passed = {t: int(raw_claims[t]["in_scope"].sum()) - held_by_type.get(t, 0) for t in CLAIM_TYPES}
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


def gated(raw_claims: Frames, validated_claims: Frames) -> Frames:
    """Per claim type, the claims the gate let on (``raw_claims`` without those
    ``validated_claims`` holds back), and the held claims as ``held``."""
    held = validated_claims["held"]
    return {**{t: passing(raw_claims[t], held, t) for t in CLAIM_TYPES}, "held": held}


# --------------------------------------------------------------------------- detection


@dg.asset(
    **ASSET,
    group_name="detection",
    kinds={"pandas"},
    description="Claims joined to members (the code's age bound the member's age crosses, and "
    "the days from the member's death to a claim after it: the dates are decrypted in memory, "
    "dates of birth only for members with a claim on a code that has an age bound, dates of "
    "death only for members with a claim an enabled after-death rule judges, and neither "
    "dates nor ages are written), providers and the code references.",
)
def enriched_claims(
    context: dg.AssetExecutionContext,
    store: StoreResource,
    pipeline_config: PipelineRunConfig,
    raw_claims: Frames,
    validated_claims: Frames,
    reference_data: Frames,
    landed_batches: Frames,
) -> dg.Output[Frames]:
    claims = gated(raw_claims, validated_claims)
    scope = Scope(landed_batches)
    everything = pipeline_config.force_reprocess or scope.fresh
    wanted = None if everything else touched_ids({t: claims[t] for t in CLAIM_TYPES})
    if wanted is not None and len(wanted) > MEMBER_LIST_LIMIT:
        wanted = None  # most members: reading them all beats a huge IN list
    ages = members_needing_age(
        in_scope(claims["medical"], ["member_id", "cpt_code"]),
        reference_data["cpt_reference"],
    )
    deaths = members_needing_death_date(
        {t: in_scope(claims[t], ["member_id"]) for t in CLAIM_TYPES},
        pipeline_config.effective().enabled_rules(),
    )
    members = read_members(
        store.engine(),
        store.cipher(),
        scope.workspace_id,
        wanted,
        birth_dates_of=ages,
        death_dates_of=deaths,
    )
    frames = {t: enrich(t, claims[t], members, reference_data) for t in CLAIM_TYPES}
    return dg.Output(
        frames,
        metadata={
            **frame_metadata(frames),
            "members": dg.MetadataValue.int(len(members)),
            "birth_dates_decrypted": dg.MetadataValue.int(
                int(members["date_of_birth"].notna().sum())
            ),
            "death_dates_decrypted": dg.MetadataValue.int(
                int(members["date_of_death"].notna().sum())
            ),
        },
    )


# The members of history enriched for a rule selection does not know (defs.selection).
NO_MEMBERS = pd.DataFrame(
    {
        "member_id": pd.Series(dtype=str),
        "gender": pd.Series(dtype=str),
        "date_of_birth": pd.Series(dtype="datetime64[us]"),
        "date_of_death": pd.Series(dtype="datetime64[us]"),
    }
)


def peer_frames(
    context: dg.AssetExecutionContext,
    store: StoreResource,
    config: PipelineConfig,
    enriched_claims: Frames,
    reference_data: Frames,
    scope: Scope,
) -> Frames:
    """Per claim type: the run's enriched new claims and the processed claims within the peer
    rules' look-back of their dates (the columns peer rules read), enriched here. The history
    comes from the last run's copy (``defs.peers``), so it never passes through the IO manager:
    a million narrow rows written and read back cost more than the peer rules themselves."""
    plans = {t: plan_history(config, t) for t in CLAIM_TYPES}
    new = {t: in_scope(enriched_claims[t]) for t in CLAIM_TYPES}
    wanted = [t for t in CLAIM_TYPES if plans[t].peer_rules and not new[t].empty]
    processed = (
        processed_claims(
            store.engine(),
            peer_history_dir(store.io_dir(), context.partition_key),
            scope.workspace_id,
            scope.last_run_id,
        )
        if wanted
        else {}
    )
    frames: Frames = {}
    for t in CLAIM_TYPES:
        frames[t] = new[t]
        if t not in wanted:
            continue
        start, end = plans[t].peer_window(new[t][DATE_COLUMN[t]])
        dates = processed[t][DATE_COLUMN[t]]
        window = (dates >= pd.Timestamp(start)) & (dates <= pd.Timestamp(end))
        columns = ["claim_pk", *peer_columns(plans[t])]
        recent = processed[t].loc[window, columns].assign(in_scope=False)
        if recent.empty:
            continue
        # Peer rules read no member attribute: the history is enriched without members. A rule
        # selection does not know runs here reading every column: it gets them, empty.
        members = None if plans[t].peer_columns is not None else NO_MEMBERS
        history = enrich(t, recent, members, reference_data)
        frames[t] = pd.concat([new[t][history.columns], history], ignore_index=True)
    return frames


def enrich(
    claim_type: str, claims: pd.DataFrame, members: pd.DataFrame | None, reference: Frames
) -> pd.DataFrame:
    if claim_type == "medical":
        return enrich_medical(claims, members, reference["providers"], reference["cpt_reference"])
    return enrich_pharmacy(
        claims,
        members,
        reference["providers"],
        reference["ndc_reference"],
        BENZODIAZEPINE_STEMS,
    )


@dg.asset(
    **ASSET,
    group_name="detection",
    kinds={"pandas"},
    description="Every enabled rule of the catalogue over the enriched claims; one row per "
    "rule and claim hit, with severity, weight and evidence (values and the thresholds they "
    "crossed). In incremental runs the peer rules run on the new claims together with every "
    "processed claim in their look-back, read from the last run's copy.",
)
def rule_hits(
    context: dg.AssetExecutionContext,
    store: StoreResource,
    pipeline_config: PipelineRunConfig,
    enriched_claims: Frames,
    reference_data: Frames,
    landed_batches: Frames,
) -> dg.Output[pd.DataFrame]:
    config = pipeline_config.effective()
    scope = Scope(landed_batches)
    ncci = reference_data["ncci_edits"]

    def run(frames: Frames, rules_config: PipelineConfig) -> pd.DataFrame:
        return evaluate(
            RuleContext(frames["medical"], frames["pharmacy"], ncci, scope.as_of), rules_config
        )

    peer_rows = 0
    if pipeline_config.force_reprocess or scope.fresh:
        hits = run(enriched_claims, config)
    else:
        peer_rules = [r for t in CLAIM_TYPES for r in plan_history(config, t).peer_rules]
        own, peers_only = split_rules(config, peer_rules)
        peers = peer_frames(context, store, config, enriched_claims, reference_data, scope)
        peer_rows = sum(int((~peers[t]["in_scope"]).sum()) for t in CLAIM_TYPES)
        hits = pd.concat([run(enriched_claims, own), run(peers, peers_only)], ignore_index=True)
    versions = {r: p.version for r, p in config.enabled_rules().items()}
    return dg.Output(
        hits,
        metadata={
            **frame_metadata(hits),
            "hits": dg.MetadataValue.int(len(hits)),
            "hits_by_rule": dg.MetadataValue.json(counts(hits["rule_id"])),
            "claims_flagged": dg.MetadataValue.int(len(hits[KEY_COLUMNS].drop_duplicates())),
            "rule_versions": dg.MetadataValue.json(versions),
            "peer_claims": dg.MetadataValue.int(peer_rows),
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
    claims_in = gated(raw_claims, validated_claims)
    scope = Scope(landed_batches)
    config = pipeline_config.effective()
    processed = claim_keys(claims_in)
    claims = flagged_claims(claims_in, rule_hits)
    subjects = case_subjects(rule_hits, claims, config)
    covers_all = pipeline_config.force_reprocess or scope.fresh
    directory = peer_history_dir(store.io_dir(), context.partition_key)
    before = None if covers_all else cached_processed(directory, scope.last_run_id)
    with store.engine().connect() as connection:  # rescored whatever their score now
        open_subjects = open_case_subjects(connection, scope.workspace_id)
    with ThreadPoolExecutor(2) as background:
        # The next run's copy of the processed claims is written while PostgreSQL commits this
        # one (the commit mostly waits on the database): a million rows take ~0.4 s. It becomes
        # current only after the commit; without an earlier copy the next run rebuilds it.
        staged = (
            background.submit(
                stage_run,
                directory,
                context.run.run_id,
                before,
                {t: in_scope(claims_in[t], STORED_COLUMNS[t]) for t in CLAIM_TYPES},
            )
            if covers_all or before is not None
            else None
        )
        # A run that covers every claim builds its cases from its own hits, so it does that while
        # the hits are written (half a second of a million claims' run), on copies: the writer
        # reads the same frames, and pandas is not thread-safe. The copies are small: claims
        # with hits only.
        proposed = (
            background.submit(
                case_proposals,
                rule_hits.copy(),
                claims.copy(),
                claim_scores.copy(),
                config,
                subjects.copy(),
                open_subjects,
            )
            if covers_all
            else None
        )
        with store.engine().begin() as connection:
            written = write_run_results(
                connection,
                scope.workspace_id,
                context.run.run_id,
                scope.batch_ids,
                rule_hits,
                claim_scores,
                processed,
                claims_in["held"],
            )
            if proposed is not None:
                proposals = proposed.result()
            else:  # a subject's case is rebuilt from all its stored evidence, not only the new
                inputs = load_case_inputs(connection, scope.workspace_id, subjects)
                proposals = case_proposals(
                    inputs.hits, inputs.claims, inputs.scores, config, subjects, open_subjects
                )
            with Session(bind=connection) as session:
                upserted = upsert_cases(session, scope.workspace_id, context.run.run_id, proposals)
                # Only a run that judged every claim knows a subject has no evidence left.
                withdrawn = (
                    withdraw_unsupported_cases(
                        session,
                        scope.workspace_id,
                        context.run.run_id,
                        subjects,
                        ordered_levels(config.scoring.bands)[0],
                    )
                    if covers_all
                    else 0
                )
                session.flush()
                open_cases = (
                    session.query(InvestigationCase)
                    .filter_by(workspace_id=scope.workspace_id)
                    .count()
                )
            try:
                finish_workspace_run(
                    connection,
                    scope.workspace_id,
                    context.run.run_id,
                    scope.batch_ids,
                    after=scope.last_run_id,
                )
            except RunSupersededError as superseded:  # rolls the whole commit back
                raise dg.Failure(str(superseded)) from superseded
        # The copy is a cache: a failure to write it, or to make it current once the run has
        # committed, costs the next run a read, not this run.
        failure = staged.exception() if staged is not None else None
        if staged is not None and failure is None:
            try:
                make_current(directory, context.run.run_id)
            except OSError as exc:
                failure = exc
        if failure is not None:
            context.log.warning(f"peer history copy not kept: {failure!r}")
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": dg.MetadataValue.int(open_cases),
            "dagster/column_schema": table_schema(InvestigationCase.__table__),  # type: ignore[arg-type]
            "cases_opened": dg.MetadataValue.int(upserted["opened"]),
            "cases_updated": dg.MetadataValue.int(upserted["updated"]),
            "cases_unchanged": dg.MetadataValue.int(upserted["unchanged"]),
            "cases_without_evidence": dg.MetadataValue.int(withdrawn),
            # The subjects that deserve a case (not open cases rescored below the case level).
            "cases_by_level": dg.MetadataValue.json(
                counts(proposals.loc[proposals["qualifies"].astype(bool), "risk_level"])
            ),
            "flagged_billed": dg.MetadataValue.float(
                round(float(claims["amount_billed"].sum()), 2)
            ),
            "flagged_paid": dg.MetadataValue.float(round(float(claims["amount_paid"].sum()), 2)),
            "written": dg.MetadataValue.json(written),
            "subjects_rebuilt": dg.MetadataValue.int(len(subjects)),
        }
    )


def flagged_claims(frames: Frames, hits: pd.DataFrame) -> pd.DataFrame:
    """The new claims with a hit (``domain.cases.CLAIM_COLUMNS``): what cases and flagged
    dollars rest on, without copying the unflagged million."""
    parts = []
    for t in CLAIM_TYPES:
        new = in_scope(frames[t], list(frames[t].columns.intersection(CLAIM_COLUMNS)))
        hit = new["claim_pk"].isin(hits.loc[hits["claim_type"] == t, "claim_pk"])
        parts.append(new[hit].assign(claim_type=t))
    return pd.concat(parts, ignore_index=True)


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


ASSETS = [
    landed_batches,
    reference_data,
    raw_claims,
    validated_claims,
    enriched_claims,
    rule_hits,
    claim_scores,
    investigation_cases,
    detection_evaluation,
]
