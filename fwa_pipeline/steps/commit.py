"""The run's commit: everything the run found, in one transaction.

Hits, scores and held claims, the case upserts (one open case per subject, rebuilt from all its
stored evidence; the same evidence opens nothing new), the withdrawal of cases a run over every
claim found no evidence left for, and the consumed batches (which makes their claims processed).
A commit that fails anywhere leaves the store as it was, and the run's batches pending for the
next run. Beside it, the next run's copy of the processed claims (``steps.peer_history``) is
staged, and made current only once the commit has succeeded.
"""

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pandas as pd
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from fwa_pipeline.domain.cases import case_proposals, case_subjects
from fwa_pipeline.domain.config import PipelineConfig
from fwa_pipeline.domain.quality import KEY_COLUMNS
from fwa_pipeline.domain.scoring import ordered_levels
from fwa_pipeline.domain.tally import counts
from fwa_pipeline.runs import ledger
from fwa_pipeline.steps.claim_shards import ClaimShards
from fwa_pipeline.steps.claims import (
    CLAIM_TYPES,
    STORED_COLUMNS,
    claim_keys,
    flagged_claims,
    in_scope,
)
from fwa_pipeline.steps.frame_files import Frames, make_current
from fwa_pipeline.steps.peer_history import cached_processed, stage_run
from fwa_pipeline.steps.peer_statistics import make_statistics_current
from fwa_pipeline.steps.scope import RunScope
from fwa_pipeline.store.cases import (
    open_case_subjects,
    upsert_cases,
    withdraw_unsupported_cases,
)
from fwa_pipeline.store.models import InvestigationCase
from fwa_pipeline.store.results import load_case_inputs, write_run_results
from fwa_pipeline.store.runs import finish_workspace_run


@dataclass(frozen=True)
class CommitSummary:
    """What a commit changed, as the run reports it."""

    opened: int
    updated: int
    unchanged: int
    # Open cases a run over every claim found without evidence.
    withdrawn: int
    # The workspace's cases after the commit.
    cases: int
    # The subjects that deserve a case (not open cases rescored below the case level), by level.
    cases_by_level: dict[str, int]
    flagged_billed: float
    flagged_paid: float
    # Rows written per table (``store.results.write_run_results``).
    written: dict[str, int]
    subjects_rebuilt: int
    # Why the peers' copy or statistics were not kept (None: they were, or the run had none to
    # keep). A cache: losing it costs the next run a read, not this run.
    copy_not_kept: str | None = None

    def stats(self) -> dict[str, Any]:
        """The commit's figures among the run's statistics (``runs.ledger.STATS_KEYS``)."""
        return {
            "cases_opened": self.opened,
            "cases_updated": self.updated,
            "cases_unchanged": self.unchanged,
            "cases_by_level": self.cases_by_level,
            "flagged_billed": self.flagged_billed,
            "flagged_paid": self.flagged_paid,
            "written": self.written,
        }


def commit_run(
    engine: Engine,
    scope: RunScope,
    run_id: str,
    claims_in: Frames | ClaimShards,
    held: pd.DataFrame,
    rule_hits: pd.DataFrame,
    claim_scores: pd.DataFrame,
    config: PipelineConfig,
    peer_directory: Path,
) -> CommitSummary:
    """Commit run ``run_id`` of ``scope``: ``claims_in`` the claims the quality gate let on
    (frames, or shard files), ``held`` those it held back, ``rule_hits`` and ``claim_scores``
    what the rules found, ``peer_directory`` where the peers' copy is kept (a run in shards
    keeps none: the next run reads the processed claims it needs from the store).

    Raises ``store.runs.RunSupersededError`` (nothing committed) when another run of the
    workspace committed after this one fixed its scope."""
    processed = claim_keys(claims_in)
    if isinstance(claims_in, ClaimShards):  # the shard files still hold the held claims
        held_keys = pd.MultiIndex.from_frame(held[KEY_COLUMNS])
        processed = processed[~pd.MultiIndex.from_frame(processed).isin(held_keys)]
    claims = flagged_claims(claims_in, rule_hits)
    subjects = case_subjects(rule_hits, claims, config)
    before = (
        None
        if scope.covers_all or not isinstance(claims_in, dict)
        else cached_processed(peer_directory, scope.last_run_id)
    )
    with engine.connect() as connection:  # rescored whatever their score now
        open_subjects = open_case_subjects(connection, scope.workspace_id)
    with ThreadPoolExecutor(2) as background:
        # The next run's copy of the processed claims is written while the database commits this
        # one (the commit mostly waits on the database): a million rows take ~0.4 s. It becomes
        # current only after the commit; without an earlier copy the next run rebuilds it.
        staged = (
            background.submit(
                stage_run,
                peer_directory,
                run_id,
                before,
                {t: in_scope(claims_in[t], STORED_COLUMNS[t]) for t in CLAIM_TYPES},
            )
            if isinstance(claims_in, dict) and (scope.covers_all or before is not None)
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
            if scope.covers_all
            else None
        )
        with engine.begin() as connection:
            written = write_run_results(
                connection,
                scope.workspace_id,
                run_id,
                scope.batch_ids,
                rule_hits,
                claim_scores,
                processed,
                held,
            )
            if proposed is not None:
                proposals = proposed.result()
            else:  # a subject's case is rebuilt from all its stored evidence, not only the new
                inputs = load_case_inputs(connection, scope.workspace_id, subjects)
                proposals = case_proposals(
                    inputs.hits, inputs.claims, inputs.scores, config, subjects, open_subjects
                )
            with Session(bind=connection) as session:
                upserted = upsert_cases(session, scope.workspace_id, run_id, proposals)
                # Only a run that judged every claim knows a subject has no evidence left.
                withdrawn = (
                    withdraw_unsupported_cases(
                        session,
                        scope.workspace_id,
                        run_id,
                        subjects,
                        ordered_levels(config.scoring.bands)[0],
                    )
                    if scope.covers_all
                    else 0
                )
                session.flush()
                cases = (
                    session.query(InvestigationCase)
                    .filter_by(workspace_id=scope.workspace_id)
                    .count()
                )
            # Raising RunSupersededError here rolls the whole commit back.
            finish_workspace_run(
                connection, scope.workspace_id, run_id, scope.batch_ids, after=scope.last_run_id
            )
            summary = CommitSummary(
                opened=upserted["opened"],
                updated=upserted["updated"],
                unchanged=upserted["unchanged"],
                withdrawn=withdrawn,
                cases=cases,
                cases_by_level=counts(
                    proposals.loc[proposals["qualifies"].astype(bool), "risk_level"]
                ),
                flagged_billed=round(float(claims["amount_billed"].sum()), 2),
                flagged_paid=round(float(claims["amount_paid"].sum()), 2),
                written=written,
                subjects_rebuilt=len(subjects),
            )
            # The run's record takes the commit's figures with the results they describe.
            ledger.committed(connection, run_id, summary.stats())
        failure = staged.exception() if staged is not None else None
        if staged is not None and failure is None:
            try:
                make_current(peer_directory, run_id)
            except OSError as exc:
                failure = exc
        # The peer statistics the run staged: without them the next run recomputes them.
        failure = failure or make_statistics_current(peer_directory, run_id)
    return replace(summary, copy_not_kept=repr(failure) if failure is not None else None)
