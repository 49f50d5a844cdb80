"""The rules over a run's enriched claim shards (``steps.claim_shards``), each task on the run's
``Compute`` reading the claims it needs from the shards' files.

A rule other than a peer rule compares a claim only with claims sharing one column's value
(``RegisteredRule.shard_column``): its member's for LINE and MEMBER_* rules, so they run on each
member shard's file as it is; its provider's for PROVIDER_DAY rules, so each of their tasks reads,
from every member shard's file, the rows of its own shard of that column (the enriched files
store its bucket). A peer rule with phases compares a run's new claims with statistics the run
already holds (``steps.peer_statistics``), in tasks split by its subject alike
(:func:`compare_shards`). A peer rule without phases reads its family's every file, in one task.

Hits come back in ``HIT_ORDER``: any shard count, here or on a cluster, gives the same frame.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import pandas as pd

from fwa_pipeline.compute.base import Compute
from fwa_pipeline.compute.shards import Shard
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
from fwa_pipeline.steps.claim_shards import MEMBER, ClaimShards, ShardFile, read_rows
from fwa_pipeline.steps.claims import CLAIM_TYPES, in_scope
from fwa_pipeline.steps.selection import split_rules

# What a task reads of the files: all of one shard (None), or a column's shard of every file.
Where = tuple[str, Shard] | None
# Peer rules with phases sharing a family and a subject: rule id -> phases, statistics.
PeerGroup = Mapping[str, tuple[PeerPhases, pd.DataFrame]]


class _Task(Protocol):
    def run(self) -> Any: ...


def _run(task: _Task) -> Any:
    """What ``Compute.map`` runs: one task of any kind (a module-level function ships by name)."""
    return task.run()


@dataclass(frozen=True)
class _Rules:
    """``config``'s enabled rules, all of ``family``, over the claims ``files`` hold
    (``where``: only the rows of that shard of a column)."""

    family: str
    files: tuple[ShardFile, ...]
    where: Where
    ncci: pd.DataFrame
    as_of: dt.date
    config: PipelineConfig

    def run(self) -> pd.DataFrame:
        claims = read_rows(self.files, self.where)
        # The other family has no claim here: its frame is empty (``evaluate`` reads its scope).
        none = pd.DataFrame(
            {"claim_pk": pd.Series(dtype="int64"), "in_scope": pd.Series(dtype=bool)}
        )
        frames = {t: claims if t == self.family else none for t in CLAIM_TYPES}
        ctx = RuleContext(frames["medical"], frames["pharmacy"], self.ncci, self.as_of)
        return evaluate(ctx, self.config)


@dataclass(frozen=True)
class _Compare:
    """The hits of the peer rules of ``family`` comparing ``subject`` on the new claims in
    ``files`` (``where``: one shard of the subject), from every subject's statistics (the
    groups every comparison task shares: (family, subject) -> rule id -> phases, statistics)."""

    family: str
    subject: str
    files: tuple[ShardFile, ...]
    where: Where
    config: PipelineConfig

    def run(self, groups: Mapping[tuple[str, str], PeerGroup]) -> pd.DataFrame:
        rules = groups[(self.family, self.subject)]
        return _compared(self.family, read_rows(self.files, self.where), rules, self.config)


def _compare(task: _Compare, groups: Mapping[tuple[str, str], PeerGroup]) -> pd.DataFrame:
    """What ``Compute.map`` runs for a comparison (a module-level function ships by name)."""
    return task.run(groups)


def _compared(
    family: str, claims: pd.DataFrame, rules: PeerGroup, config: PipelineConfig
) -> pd.DataFrame:
    """``rules``' hits on the new claims of ``claims`` (of ``family``)."""
    new = in_scope(claims)
    hits = [
        stamped(phases.compare(new, statistics, config.rules[r]), r, config)
        for r, (phases, statistics) in rules.items()
    ]
    return in_scope_hits(combined(hits), {family: new})


def _peer_groups(
    config: PipelineConfig, statistics: Mapping[str, pd.DataFrame]
) -> dict[tuple[str, str], PeerGroup]:
    """``config``'s enabled peer rules with phases by family and subject, each with its
    ``statistics``."""
    groups: dict[tuple[str, str], dict[str, tuple[PeerPhases, pd.DataFrame]]] = {}
    for rule_id, params in config.enabled_rules().items():
        phases = registered(rule_id).phases
        if phases is not None:
            group = groups.setdefault((params.family, phases.subject), {})
            group[rule_id] = (phases, statistics[rule_id])
    return groups  # type: ignore[return-value]


def compare(
    claims: Mapping[str, pd.DataFrame],
    statistics: Mapping[str, pd.DataFrame],
    config: PipelineConfig,
) -> pd.DataFrame:
    """The hits of ``config``'s enabled peer rules with phases on the new claims of ``claims``
    (per claim type, in this process), each compared from its ``statistics`` (rule id ->
    statistics indexed by subject)."""
    groups = _peer_groups(config, statistics)
    return combined(
        _compared(family, claims[family], rules, config) for (family, _), rules in groups.items()
    )


def _parts(
    shards: ClaimShards, family: str, column: str | None
) -> list[tuple[tuple[ShardFile, ...], Where]]:
    """What each task of ``family`` split by ``column`` reads: a member shard's file, a
    column's shard of every file, or (None) every file."""
    files = tuple(shards.of(family))
    if not files:
        return []
    if column is None:
        return [(files, None)]
    if column == MEMBER:
        return [((f,), None) for f in files]
    return [(files, (column, shard)) for shard in Shard.all(shards.count)]


def evaluate_shards(
    shards: ClaimShards,
    ncci: pd.DataFrame,
    as_of: dt.date,
    config: PipelineConfig,
    compute: Compute,
) -> pd.DataFrame:
    """``evaluate`` of ``config``'s enabled rules (peer rules with phases excepted: see
    :func:`compare_shards`) over the claims of ``shards``, on ``compute``."""
    groups: dict[tuple[str, str | None], list[str]] = {}
    for rule_id, params in config.enabled_rules().items():
        facts = registered(rule_id)
        if facts.phases is not None:
            raise ValueError(f"{rule_id} compares from statistics: run it through compare_shards")
        groups.setdefault((params.family, facts.shard_column), []).append(rule_id)
    tasks = [
        _Rules(family, files, where, ncci, as_of, split_rules(config, rule_ids)[1])
        for (family, column), rule_ids in groups.items()
        for files, where in _parts(shards, family, column)
    ]
    return combined(compute.map(_run, tasks))


def compare_shards(
    shards: ClaimShards,
    statistics: Mapping[str, pd.DataFrame],
    config: PipelineConfig,
    compute: Compute,
) -> pd.DataFrame:
    """:func:`compare` on the new claims of ``shards``, in tasks split by subject."""
    groups = _peer_groups(config, statistics)
    tasks = [
        _Compare(family, subject, files, where, config)
        for family, subject in groups
        for files, where in _parts(shards, family, subject)
    ]
    # The statistics are sent to each worker once, not with each of their tasks.
    return combined(compute.map(_compare, tasks, groups))


def split_columns(config: PipelineConfig) -> dict[str, tuple[str, ...]]:
    """Per claim type, the columns other than the member its enabled rules split claims by:
    those whose bucket the enriched shards store."""
    found: dict[str, set[str]] = {}
    for rule_id, params in config.enabled_rules().items():
        column = registered(rule_id).shard_column
        if column is not None and column != MEMBER:
            found.setdefault(params.family, set()).add(column)
    return {t: tuple(sorted(columns)) for t, columns in found.items()}
