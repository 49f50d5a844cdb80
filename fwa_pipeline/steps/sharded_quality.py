"""The quality checks over claims split into shards by member, each shard a task on the run's
``Compute``.

Most checks judge a line alone. Of those comparing claims, the service and fill keys' duplicates
name the member, so they meet in the member's shard; splitting by member also leaves each task
only its shard's member ids to look claims up in. The other two run in two rounds: first each
shard's claim ids with the first ``claim_pk`` of each, and its exact amount figures per code;
then every check on each shard, with the ids other shards hold too and the amount limits of all
the lines (``domain.quality.Elsewhere``). With one shard, ``assess_quality`` runs once on the
whole frames.

Issues come back in the order one pass gives: any shard count, here or on a cluster, gives the
same result.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection, Mapping
from dataclasses import dataclass

import pandas as pd

from fwa_pipeline.compute.base import Compute
from fwa_pipeline.compute.shards import shard_of, split
from fwa_pipeline.domain.config import QualityConfig
from fwa_pipeline.domain.quality import (
    FIGURES_READ,
    ClaimType,
    Elsewhere,
    QualityResult,
    amount_figures,
    amount_limits,
    assess_quality,
    check_shape,
    claim_issues,
    first_claim_pks,
    merged_figures,
    quality_result,
    shared_first_pks,
)

SHARD_COLUMN = "member_id"


@dataclass(frozen=True)
class _Figures:
    """A shard's claim ids with their first ``claim_pk``, and its amount figures (from the
    columns these read only: the claims travel whole once, to their checks)."""

    claim_type: ClaimType
    claims: pd.DataFrame

    def run(self) -> tuple[pd.Series, pd.DataFrame]:
        return first_claim_pks(self.claims), amount_figures(self.claim_type, self.claims)


@dataclass(frozen=True)
class _Checks:
    """Every check on a shard, with its members' ids and what it needs of the other shards."""

    claim_type: ClaimType
    claims: pd.DataFrame
    member_ids: list[str]
    provider_ids: Collection[str]
    config: QualityConfig
    as_of: dt.date | None
    taken_claim_ids: Collection[str]
    elsewhere: Elsewhere

    def run(self) -> list[pd.DataFrame]:
        return claim_issues(
            self.claim_type,
            self.claims,
            as_of=self.as_of,
            member_ids=self.member_ids,
            provider_ids=self.provider_ids,
            config=self.config,
            taken_claim_ids=self.taken_claim_ids,
            elsewhere=self.elsewhere,
        )


def _run(task: _Figures | _Checks) -> object:
    """What ``Compute.map`` runs: one task (a module-level function ships by name)."""
    return task.run()


def assess_quality_sharded(
    medical: pd.DataFrame,
    pharmacy: pd.DataFrame,
    member_ids: Collection[str],
    provider_ids: Collection[str],
    config: QualityConfig,
    as_of: dt.date | None,
    compute: Compute,
    taken_claim_ids: Mapping[ClaimType, Collection[str]] | None = None,
) -> QualityResult:
    """``assess_quality`` of the same arguments, run in ``compute.shards`` shards on
    ``compute``."""
    if compute.shards == 1:
        return assess_quality(
            medical, pharmacy, member_ids, provider_ids, config, as_of, taken_claim_ids
        )
    frames: dict[ClaimType, pd.DataFrame] = {"medical": medical, "pharmacy": pharmacy}
    for claim_type, frame in frames.items():
        check_shape(claim_type, frame)
    shards = [
        (claim_type, number, part)
        for claim_type, frame in frames.items()
        for number, part in enumerate(split(frame, SHARD_COLUMN, compute.shards))
        if not part.empty
    ]
    figures = compute.map(_run, [_Figures(t, part[FIGURES_READ[t]]) for t, _, part in shards])
    by_type: dict[ClaimType, list[tuple[pd.Series, pd.DataFrame]]] = {}
    for (claim_type, _, _), found in zip(shards, figures, strict=True):
        by_type.setdefault(claim_type, []).append(found)
    elsewhere = {
        claim_type: Elsewhere(
            shared_first_pks([ids for ids, _ in parts]),
            amount_limits(
                merged_figures([f for _, f in parts]), config.outlier_sd, config.outlier_min_peers
            ),
        )
        for claim_type, parts in by_type.items()
    }
    members = pd.Series(list(member_ids), dtype=object)
    owner = shard_of(members, compute.shards)
    checks = [
        _Checks(
            t,
            part,
            members[owner == number].tolist(),
            provider_ids,
            config,
            as_of,
            (taken_claim_ids or {}).get(t, ()),
            elsewhere[t],
        )
        for t, number, part in shards
    ]
    found = [issues for part in compute.map(_run, checks) for issues in part]
    return quality_result(found, {t: len(frame) for t, frame in frames.items()})
