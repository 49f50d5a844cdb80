"""The quality checks over a run's claim shards (``steps.claim_shards``), each shard a task on the
run's ``Compute`` that reads its own file.

Most checks judge a line alone. Of those comparing claims, the service and fill keys' duplicates
name the member, so they meet in the member's shard; splitting by member also leaves each task
only its shard's members to look claims up in, which it reads from the store itself. The other
two take more than one round: first each shard's exact amount figures per code and the hashes of
its claim ids; then, only when some hash is in more than one shard, those shards' claims with
such an id and the first ``claim_pk`` of each (the ids themselves: two ids may share a hash);
then every check on each shard, with the ids other shards hold too and the amount limits of all
the lines (``domain.quality.Elsewhere``). The run's process never holds every claim id.

A task returns the issues of its shard's new claims (history was judged when it was new), so
the result is the one a single pass over every claim gives.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection, Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd

from fwa_pipeline.compute.base import Compute
from fwa_pipeline.compute.shards import Shard
from fwa_pipeline.domain.config import QualityConfig
from fwa_pipeline.domain.quality import (
    FIGURES_READ,
    ClaimType,
    Elsewhere,
    QualityResult,
    amount_figures,
    amount_limits,
    claim_issues,
    first_claim_pks,
    merged_figures,
    quality_result,
    shared_first_pks,
)
from fwa_pipeline.steps.claim_shards import ClaimShards, ShardFile
from fwa_pipeline.steps.claims import CLAIM_TYPES
from fwa_pipeline.store.claims import reference_ids
from fwa_pipeline.store.db import engine_for


def _id_hashes(claims: pd.DataFrame) -> np.ndarray:
    return pd.util.hash_array(claims["claim_id"].astype(str).to_numpy(object))


@dataclass(frozen=True)
class _Figures:
    """A shard's amount figures and the distinct hashes of its claim ids."""

    file: ShardFile

    def run(self) -> tuple[np.ndarray, pd.DataFrame]:
        claim_type: ClaimType = self.file.claim_type  # type: ignore[assignment]
        claims = self.file.read(FIGURES_READ[claim_type])
        return np.unique(_id_hashes(claims)), amount_figures(claim_type, claims)


@dataclass(frozen=True)
class _SharedIds:
    """The first ``claim_pk`` of each of a shard's claim ids whose hash is in ``hashes``."""

    file: ShardFile
    hashes: np.ndarray

    def run(self) -> pd.Series:
        claims = self.file.read(["claim_pk", "claim_id"])
        return first_claim_pks(claims[np.isin(_id_hashes(claims), self.hashes)])


@dataclass(frozen=True)
class StoreIds:
    """Where a check task reads its shard's member ids (and every provider id) from."""

    url: str
    workspace_id: int
    batch_ids: tuple[int, ...]
    every_member: bool

    def of(self, shard: Shard) -> tuple[list[str], list[str]]:
        return reference_ids(
            engine_for(self.url),
            self.workspace_id,
            self.batch_ids,
            every_member=self.every_member,
            shard=shard,
        )


@dataclass(frozen=True)
class _Checks:
    """Every check on a shard, with its members' ids and what it needs of the claims elsewhere
    (shared by every check task, per claim type: the ids taken before and what the other
    shards hold); the issues of its new claims."""

    file: ShardFile
    count: int
    ids: StoreIds
    config: QualityConfig
    as_of: dt.date | None

    def run(self, elsewhere: Mapping[str, tuple[Collection[str], Elsewhere]]) -> list[pd.DataFrame]:
        taken, others = elsewhere[self.file.claim_type]
        claims = self.file.read()
        member_ids, provider_ids = self.ids.of(Shard(self.file.number, self.count))
        found = claim_issues(
            self.file.claim_type,  # type: ignore[arg-type]
            claims,
            as_of=self.as_of,
            member_ids=member_ids,
            provider_ids=provider_ids,
            config=self.config,
            taken_claim_ids=taken,
            elsewhere=others,
        )
        new = claims.loc[claims["in_scope"].astype(bool), "claim_pk"]
        return [issues[issues["claim_pk"].isin(new)] for issues in found]


def _run(task: _Figures | _SharedIds) -> object:
    """What ``Compute.map`` runs: one task (a module-level function ships by name)."""
    return task.run()


def _check(
    task: _Checks, elsewhere: Mapping[str, tuple[Collection[str], Elsewhere]]
) -> list[pd.DataFrame]:
    """What ``Compute.map`` runs for the checks (a module-level function ships by name)."""
    return task.run(elsewhere)


def judge_shards(
    shards: ClaimShards,
    ids: StoreIds,
    config: QualityConfig,
    as_of: dt.date | None,
    compute: Compute,
    taken_claim_ids: Mapping[str, Collection[str]] | None = None,
) -> QualityResult:
    """The quality of the new claims of ``shards``, judged with their history in rounds of tasks
    on ``compute``: what ``assess_quality`` of every claim gives for the new ones."""
    files = [f for t in CLAIM_TYPES for f in shards.of(t)]
    figures = compute.map(_run, [_Figures(f) for f in files])
    types = list(dict.fromkeys(f.claim_type for f in files))
    asked: list[tuple[str, _SharedIds]] = []
    for claim_type in types:
        mine = [n for n, f in enumerate(files) if f.claim_type == claim_type]
        hashes, counted = np.unique(
            np.concatenate([figures[n][0] for n in mine]), return_counts=True
        )
        shared = hashes[counted > 1]
        # Only the shards holding one of those ids are asked for them, in one round.
        asked += [
            (claim_type, _SharedIds(files[n], shared))
            for n in mine
            if np.isin(figures[n][0], shared).any()
        ]
    first = compute.map(_run, [task for _, task in asked]) if asked else []
    elsewhere = {
        claim_type: Elsewhere(
            shared_first_pks(
                [pks for (t, _), pks in zip(asked, first, strict=True) if t == claim_type]
            ),
            amount_limits(
                merged_figures(
                    [figures[n][1] for n, f in enumerate(files) if f.claim_type == claim_type]
                ),
                config.outlier_sd,
                config.outlier_min_peers,
            ),
        )
        for claim_type in types
    }
    checks = [_Checks(f, shards.count, ids, config, as_of) for f in files]
    # What the other shards hold is sent to each worker once, not with each task.
    shared = {t: ((taken_claim_ids or {}).get(t, ()), elsewhere[t]) for t in types}
    found = [issues for part in compute.map(_check, checks, shared) for issues in part]
    return quality_result(found, shards.new_counts())  # type: ignore[arg-type]
