"""What a run reads of the store besides its scope: the claims of its batches with the history
its rules need, the quality of its new claims, and the members its claims are enriched with."""

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from sqlalchemy import Engine

from fwa_pipeline.compute.base import Compute
from fwa_pipeline.compute.shards import Shard
from fwa_pipeline.domain.config import PipelineConfig
from fwa_pipeline.domain.enrich import members_needing_age, members_needing_death_date
from fwa_pipeline.domain.quality import QualityResult, assess_quality, quality_report
from fwa_pipeline.steps.claim_shards import ClaimShards, ShardFile, write_shard
from fwa_pipeline.steps.claims import CLAIM_TYPES, DATE_COLUMN, in_scope, new_counts
from fwa_pipeline.steps.frame_files import Frames
from fwa_pipeline.steps.scope import RunScope
from fwa_pipeline.steps.selection import plan_history, touched_ids
from fwa_pipeline.steps.sharded_quality import StoreIds, judge_shards
from fwa_pipeline.store.claims import (
    Source,
    held_claim_ids,
    new_claim_dates,
    read_history,
    read_members,
    read_new_claims,
    reference_ids,
)
from fwa_pipeline.store.crypto import FieldCipher
from fwa_pipeline.store.db import engine_for, url_of

# Above this many members, reading them all beats a huge IN list.
MEMBER_LIST_LIMIT = 50_000


def read_claims(source: Source, scope: RunScope, config: PipelineConfig) -> Frames:
    """Per claim type, the claims of the run's batches (``in_scope``) and the processed history
    the rules' look-back needs for the members and providers they touch (none when the run
    covers every claim: there is no history to read)."""
    frames: Frames = {}
    for claim_type in CLAIM_TYPES:
        new = read_new_claims(source, claim_type, scope.workspace_id, scope.batch_ids)
        windows = (
            None if new.empty else _windows(scope, config, claim_type, new[DATE_COLUMN[claim_type]])
        )
        frames[claim_type] = _with_history(source, scope, config, claim_type, new, windows)
    return frames


def _windows(
    scope: RunScope, config: PipelineConfig, claim_type: str, dates: pd.Series
) -> dict[str, tuple[dt.date, dt.date]] | None:
    """The look-back windows around the new claims' ``dates`` (None: the run reads no
    history)."""
    if scope.covers_all:
        return None
    return plan_history(config, claim_type).date_windows(dates)


def _with_history(
    source: Source,
    scope: RunScope,
    config: PipelineConfig,
    claim_type: str,
    new: pd.DataFrame,
    windows: dict[str, tuple[dt.date, dt.date]] | None,
    shard: Shard | None = None,
) -> pd.DataFrame:
    """``new`` claims flagged ``in_scope`` and, with ``windows``, the history read around them
    (of ``shard``'s members only, when given)."""
    history = new.iloc[0:0]
    if windows is not None:
        history = read_history(
            source,
            claim_type,
            scope.workspace_id,
            scope.batch_ids,
            same_day=plan_history(config, claim_type).same_day,
            windows=windows,
            shard=shard,
        )
    new["in_scope"] = True  # in place: a million-row frame is not copied for a flag
    if history.empty:
        return new
    return pd.concat([new, history.assign(in_scope=False)], ignore_index=True)


@dataclass(frozen=True)
class _ReadShard:
    """One member shard of one claim type's claims, read from the store into its file."""

    url: str
    scope: RunScope
    config: PipelineConfig
    claim_type: str
    shard: Shard
    windows: dict[str, tuple[dt.date, dt.date]] | None
    path: Path

    def run(self) -> ShardFile:
        engine = engine_for(self.url)
        s = self.scope
        new = read_new_claims(
            engine, self.claim_type, s.workspace_id, s.batch_ids, shard=self.shard
        )
        claims = _with_history(
            engine, s, self.config, self.claim_type, new, self.windows, self.shard
        )
        return write_shard(self.path, self.claim_type, self.shard.number, claims)


def _read(task: _ReadShard) -> ShardFile:
    """What ``Compute.map`` runs (a module-level function ships by name)."""
    return task.run()


def read_claim_shards(
    engine: Engine, scope: RunScope, config: PipelineConfig, directory: Path, compute: Compute
) -> ClaimShards:
    """The claims :func:`read_claims` reads, each member shard read by a task on ``compute``
    into its file in ``directory``: no process reads every claim."""
    url = url_of(engine)
    tasks = []
    for claim_type in CLAIM_TYPES:
        # The windows around every new claim's date, as one pass reads them, whatever the shard
        # (a run over every claim reads no history: no windows to set).
        windows = None
        if not scope.covers_all:
            dates = new_claim_dates(engine, claim_type, scope.workspace_id, scope.batch_ids)
            windows = None if dates.empty else _windows(scope, config, claim_type, dates)
        tasks += [
            _ReadShard(
                url,
                scope,
                config,
                claim_type,
                shard,
                windows,
                directory / f"{claim_type}-{shard.number}.arrow",
            )
            for shard in Shard.all(compute.shards)
        ]
    return ClaimShards(compute.shards, tuple(compute.map(_read, tasks)))


def judge_quality(
    source: Source, scope: RunScope, config: PipelineConfig, frames: Frames
) -> QualityResult:
    """The quality of the run's new claims in ``frames`` (:func:`read_claims`), judged with their
    history and the ids already taken."""
    member_ids, provider_ids = reference_ids(
        source, scope.workspace_id, scope.batch_ids, every_member=scope.covers_all
    )
    assessed = assess_quality(
        frames["medical"],
        frames["pharmacy"],
        member_ids,
        provider_ids,
        config.quality,
        scope.as_of,
        _taken(source, scope),
    )
    return new_claims_quality(assessed.issues, frames)


def judge_claim_shards(
    engine: Engine, scope: RunScope, config: PipelineConfig, shards: ClaimShards, compute: Compute
) -> QualityResult:
    """:func:`judge_quality` of claims kept as ``shards``: each task reads its shard and its
    members' ids itself."""
    ids = StoreIds(
        url_of(engine),
        scope.workspace_id,
        scope.batch_ids,
        every_member=scope.covers_all,
    )
    return judge_shards(shards, ids, config.quality, scope.as_of, compute, _taken(engine, scope))


def _taken(source: Source, scope: RunScope) -> dict[str, list[str]] | None:
    """Per claim type, the ids of the workspace's held claims: no history, but their ids are
    taken (None for a run over every claim: it judges them anew)."""
    if scope.covers_all:
        return None
    return {t: held_claim_ids(source, t, scope.workspace_id) for t in CLAIM_TYPES}


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


@dataclass(frozen=True)
class MemberNeeds:
    """What enrichment needs of the members: who the claims name (None: every member), and
    whose dates of birth (``ages``) and of death (``deaths``) some rule needs, of the new claims
    only."""

    named: frozenset[str] | None
    ages: frozenset[str]
    deaths: frozenset[str]

    @classmethod
    def of(
        cls,
        claims: Frames,
        config: PipelineConfig,
        cpt_reference: pd.DataFrame,
        *,
        every_member: bool = False,
    ) -> "MemberNeeds":
        """The needs of ``claims`` (per claim type, gated); ``every_member``: the run reads every
        member (it covers every claim), so who the claims name is not looked for."""
        return cls(
            None if every_member else frozenset(touched_ids({t: claims[t] for t in CLAIM_TYPES})),
            frozenset(
                members_needing_age(
                    in_scope(claims["medical"], ["member_id", "cpt_code"]), cpt_reference
                )
            ),
            frozenset(
                members_needing_death_date(
                    {t: in_scope(claims[t], ["member_id"]) for t in CLAIM_TYPES},
                    config.enabled_rules(),
                )
            ),
        )

    @classmethod
    def merged(cls, parts: list["MemberNeeds"]) -> "MemberNeeds":
        named = [p.named for p in parts]
        return cls(
            None if None in named else frozenset().union(*named),  # type: ignore[arg-type]
            frozenset().union(*(p.ages for p in parts)),
            frozenset().union(*(p.deaths for p in parts)),
        )


def read_run_members(
    source: Source, cipher: FieldCipher | None, scope: RunScope, needs: MemberNeeds
) -> pd.DataFrame:
    """The members the run's claims are enriched with, dates of birth and death decrypted only
    for the new claims' members some rule needs them of."""
    named = needs.named
    wanted = None if scope.covers_all or named is None or len(named) > MEMBER_LIST_LIMIT else named
    return read_members(
        source,
        cipher,
        scope.workspace_id,
        wanted,
        birth_dates_of=needs.ages,
        death_dates_of=needs.deaths,
    )
