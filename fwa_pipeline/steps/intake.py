"""What a run reads of the store besides its scope: the claims of its batches with the history
its rules need, the quality of its new claims, and the members its claims are enriched with."""

import pandas as pd

from fwa_pipeline.compute.base import Compute
from fwa_pipeline.domain.config import PipelineConfig
from fwa_pipeline.domain.enrich import members_needing_age, members_needing_death_date
from fwa_pipeline.domain.quality import QualityResult, quality_report
from fwa_pipeline.steps.claims import CLAIM_TYPES, DATE_COLUMN, in_scope, new_counts
from fwa_pipeline.steps.frame_files import Frames
from fwa_pipeline.steps.scope import RunScope
from fwa_pipeline.steps.selection import plan_history, touched_ids
from fwa_pipeline.steps.sharded_quality import assess_quality_sharded
from fwa_pipeline.store.claims import (
    Source,
    held_claim_ids,
    read_history,
    read_members,
    read_new_claims,
    reference_ids,
)
from fwa_pipeline.store.crypto import FieldCipher

# Above this many members, reading them all beats a huge IN list.
MEMBER_LIST_LIMIT = 50_000


def read_claims(source: Source, scope: RunScope, config: PipelineConfig) -> Frames:
    """Per claim type, the claims of the run's batches (``in_scope``) and the processed history
    the rules' look-back needs for the members and providers they touch (none when the run
    covers every claim: there is no history to read)."""
    frames: Frames = {}
    for claim_type in CLAIM_TYPES:
        new = read_new_claims(source, claim_type, scope.workspace_id, scope.batch_ids)
        history = new.iloc[0:0]
        if not scope.covers_all and not new.empty:
            plan = plan_history(config, claim_type)
            history = read_history(
                source,
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
    return frames


def judge_quality(
    source: Source, scope: RunScope, config: PipelineConfig, frames: Frames, compute: Compute
) -> QualityResult:
    """The quality of the run's new claims in ``frames`` (:func:`read_claims`), judged with their
    history and the ids already taken, in the shards of ``compute``."""
    member_ids, provider_ids = reference_ids(
        source, scope.workspace_id, scope.batch_ids, every_member=scope.covers_all
    )
    # Held claims are no history, but their ids are taken (a reprocess judges them anew).
    taken = (
        None
        if scope.covers_all
        else {t: held_claim_ids(source, t, scope.workspace_id) for t in CLAIM_TYPES}
    )
    assessed = assess_quality_sharded(
        frames["medical"],
        frames["pharmacy"],
        member_ids,
        provider_ids,
        config.quality,
        scope.as_of,
        compute,
        taken,
    )
    return new_claims_quality(assessed.issues, frames)


def new_claims_quality(issues: pd.DataFrame, frames: Frames) -> QualityResult:
    """The quality result of the run's new claims: history was judged when it was new, so the
    run reports and gates its new claims only."""
    # Issues are few and claims many: filter by key membership rather than merge a million keys.
    new = pd.Series(False, index=issues.index)
    for t in CLAIM_TYPES:
        keys = in_scope(frames[t], ["claim_pk"])["claim_pk"]
        new |= (issues["claim_type"] == t) & issues["claim_pk"].isin(keys)
    issues = issues[new].reset_index(drop=True)
    return QualityResult(issues=issues, report=quality_report(issues, new_counts(frames)))  # type: ignore[arg-type]


def read_run_members(
    source: Source,
    cipher: FieldCipher | None,
    scope: RunScope,
    config: PipelineConfig,
    claims: Frames,
    cpt_reference: pd.DataFrame,
) -> pd.DataFrame:
    """The members ``claims`` are enriched with, dates of birth and death decrypted only for
    the new claims' members some rule needs them of."""
    wanted = None if scope.covers_all else touched_ids({t: claims[t] for t in CLAIM_TYPES})
    if wanted is not None and len(wanted) > MEMBER_LIST_LIMIT:
        wanted = None
    ages = members_needing_age(
        in_scope(claims["medical"], ["member_id", "cpt_code"]), cpt_reference
    )
    deaths = members_needing_death_date(
        {t: in_scope(claims[t], ["member_id"]) for t in CLAIM_TYPES}, config.enabled_rules()
    )
    return read_members(
        source, cipher, scope.workspace_id, wanted, birth_dates_of=ages, death_dates_of=deaths
    )
