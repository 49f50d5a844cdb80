"""The rules over claims split into shards, each shard a task on the run's ``Compute``.

A rule other than a peer rule compares a claim only with claims sharing one column's value
(``RegisteredRule.shard_column``): its member's for LINE and MEMBER_* rules, its provider's for
PROVIDER_DAY rules. Such rules run through ``evaluate`` on each shard of their family's claims
split by that column. A peer rule compares a subject with every other one, so it runs in two
rounds: its statistics per shard of claims split by its subject, concatenated (those of all the
claims), then its comparison on each shard, with every shard's statistics. A peer rule without
phases runs on its family's whole frame, in one task. With one shard, ``evaluate`` runs once on
the whole frames. A run compares its new claims from statistics it already holds
(``steps.peer_statistics``) in the comparison round alone (:func:`compare_sharded`).

Hits come back in ``HIT_ORDER``: any shard count, here or on a cluster, gives the same frame.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from functools import cache
from typing import Any, Protocol

import pandas as pd

from fwa_pipeline.compute.base import Compute
from fwa_pipeline.compute.shards import split
from fwa_pipeline.domain.config import PipelineConfig
from fwa_pipeline.domain.rules import (
    RuleContext,
    combined,
    evaluate,
    in_scope_hits,
    registered,
    stamped,
)
from fwa_pipeline.domain.rules.base import PeerPhases
from fwa_pipeline.steps.claims import CLAIM_TYPES, in_scope
from fwa_pipeline.steps.selection import split_rules


class _Task(Protocol):
    def run(self) -> Any: ...


def _run(task: _Task) -> Any:
    """What ``Compute.map`` runs: one task of any kind (a module-level function ships by name)."""
    return task.run()


@dataclass(frozen=True)
class _Rules:
    """``config``'s enabled rules over a context holding one shard of one family's claims."""

    ctx: RuleContext
    config: PipelineConfig

    def run(self) -> pd.DataFrame:
        return evaluate(self.ctx, self.config)


@dataclass(frozen=True)
class _Statistics:
    """The statistics of peer rules sharing a subject (rule id -> its phases) over one shard of
    claims split by it."""

    claims: pd.DataFrame
    rules: Mapping[str, PeerPhases]
    config: PipelineConfig

    def run(self) -> dict[str, pd.DataFrame]:
        return {
            r: phases.statistics(self.claims, self.config.rules[r])
            for r, phases in self.rules.items()
        }


@dataclass(frozen=True)
class _Compare:
    """Peer rules' hits on one shard of ``family``'s claims, from every shard's ``statistics``
    (rule id -> phases, statistics), on claims in scope."""

    family: str
    claims: pd.DataFrame
    rules: Mapping[str, tuple[PeerPhases, pd.DataFrame]]
    config: PipelineConfig

    def run(self) -> pd.DataFrame:
        hits = [
            stamped(phases.compare(self.claims, statistics, self.config.rules[r]), r, self.config)
            for r, (phases, statistics) in self.rules.items()
        ]
        return in_scope_hits(combined(hits), {self.family: self.claims})


def evaluate_sharded(ctx: RuleContext, config: PipelineConfig, compute: Compute) -> pd.DataFrame:
    """``evaluate(ctx, config)``, run in ``compute.shards`` shards on ``compute``."""
    if compute.shards == 1:
        return evaluate(ctx, config)
    # The rules by family and the column their claims split by (None: not split), the peer
    # rules with phases by family and subject.
    plain: dict[tuple[str, str | None], list[str]] = {}
    peer: dict[tuple[str, str], dict[str, PeerPhases]] = {}
    for rule_id, params in config.enabled_rules().items():
        facts = registered(rule_id)
        if facts.phases is None:
            plain.setdefault((params.family, facts.shard_column), []).append(rule_id)
        else:
            peer.setdefault((params.family, facts.phases.subject), {})[rule_id] = facts.phases

    @cache  # provider-day and provider peer rules split the medical claims alike
    def shards_of(family: str, column: str | None) -> list[pd.DataFrame]:
        """The non-empty shards of ``family``'s claims split by ``column`` (None: whole)."""
        frame: pd.DataFrame = getattr(ctx, family)
        parts = [frame] if column is None else split(frame, column, compute.shards)
        return [part for part in parts if not part.empty]

    rules: list[_Task] = [
        _Rules(_one_family(ctx, family, shard), split_rules(config, rule_ids)[1])
        for (family, column), rule_ids in plain.items()
        for shard in shards_of(family, column)
    ]
    peers = [
        (family, phases, shards)
        for (family, subject), phases in peer.items()
        if (shards := shards_of(family, subject))
    ]
    statistics = [
        _Statistics(shard, phases, config) for _, phases, shards in peers for shard in shards
    ]
    # One round for the rules and the peer statistics, a second for the peer comparisons.
    found = compute.map(_run, [*rules, *statistics])
    hits, per_shard = found[: len(rules)], iter(found[len(rules) :])
    together: dict[str, pd.DataFrame] = {}
    for _, phases, shards in peers:
        parts = [next(per_shard) for _ in shards]
        together |= {r: _concatenated([part[r] for part in parts]) for r in phases}
    claims = {t: getattr(ctx, t) for t in CLAIM_TYPES}
    compared = split_rules(config, together)[1]
    return combined([*hits, compare_sharded(claims, together, compared, compute)])


def compare_sharded(
    claims: Mapping[str, pd.DataFrame],
    statistics: Mapping[str, pd.DataFrame],
    config: PipelineConfig,
    compute: Compute,
) -> pd.DataFrame:
    """The hits of ``config``'s enabled peer rules with phases on the new claims of ``claims``
    (per claim type), each compared from its ``statistics`` (rule id -> statistics indexed by
    subject), in ``compute.shards`` shards of the claims split by subject."""
    peer: dict[tuple[str, str], dict[str, tuple[PeerPhases, pd.DataFrame]]] = {}
    for rule_id, params in config.enabled_rules().items():
        phases = registered(rule_id).phases
        if phases is not None:
            group = peer.setdefault((params.family, phases.subject), {})
            group[rule_id] = (phases, statistics[rule_id])
    tasks: list[_Task] = []
    for (family, subject), rules in peer.items():
        new = in_scope(claims[family])
        parts = [new] if compute.shards == 1 else split(new, subject, compute.shards)
        tasks += [_Compare(family, part, rules, config) for part in parts if not part.empty]
    return combined(compute.map(_run, tasks))


def _one_family(ctx: RuleContext, family: str, claims: pd.DataFrame) -> RuleContext:
    """``ctx`` with ``claims`` as ``family``'s frame and no claim of the other families (so a
    task ships one shard only)."""
    frames = {t: claims if t == family else getattr(ctx, t).iloc[:0] for t in CLAIM_TYPES}
    return replace(ctx, **frames)


def _concatenated(statistics: list[pd.DataFrame]) -> pd.DataFrame:
    """Every shard's statistics of one rule as one frame (a shard without any, say without an
    E/M line, adds nothing; it would turn the columns' types into ``object``)."""
    found = [s for s in statistics if not s.empty]
    return pd.concat(found) if found else statistics[0]
