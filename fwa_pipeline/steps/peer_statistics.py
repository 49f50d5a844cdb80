"""The peer rules' statistics over every processed claim, kept from run to run.

A peer rule compares a subject (provider, pharmacy, code) with all its peers, so its statistics
cover every claim of the workspace. A run over every claim computes them from its claims; an
incremental run adds its new claims' aggregates to those the last run left
(``domain.rules.aggregates``): it reads no processed claim of a subject its batch does not
touch, and its statistics are exactly those a run over every claim computes.

Statistics are staged beside the peers' copy (``steps.peer_history``) under the run's id and made
current only after the run's commit (:func:`make_statistics_current`): they are valid for the
run that made them current while it is the workspace's last, so a run that failed leaves the last
committed run's statistics current. A rule whose kept statistics are missing, from another run,
or computed with other thresholds or reference data (``PeerPhases.thresholds``/``reference``) is
recomputed in full from the processed claims and the new ones.
"""

import hashlib
import json
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import pandas as pd
from sqlalchemy import Engine

from fwa_pipeline.compute.base import Compute
from fwa_pipeline.compute.shards import Shard
from fwa_pipeline.domain.config import PipelineConfig
from fwa_pipeline.domain.enrich import PROVIDER_COLUMNS
from fwa_pipeline.domain.rules import registered
from fwa_pipeline.domain.rules.aggregates import PeerAggregates
from fwa_pipeline.domain.rules.base import PeerPhases
from fwa_pipeline.steps.claim_shards import ClaimShards, ShardFile
from fwa_pipeline.steps.claims import CLAIM_TYPES, in_scope
from fwa_pipeline.steps.frame_files import Frames, load, make_current, stage
from fwa_pipeline.steps.peer_history import enriched_processed, processed_claims
from fwa_pipeline.steps.scope import RunScope
from fwa_pipeline.steps.selection import plan_history
from fwa_pipeline.store.claims import Source, read_processed
from fwa_pipeline.store.db import engine_for, url_of

DIRECTORY = "_peer_statistics"
# The providers reference column of each subject attribute enrichment names.
REFERENCE_COLUMN = {name: column for column, name in PROVIDER_COLUMNS.items()}
FINGERPRINTS = "fingerprints"


def statistics_dir(peer_directory: Path) -> Path:
    """Where the statistics are kept: beside the peers' copy in ``peer_directory``."""
    return peer_directory.with_name(DIRECTORY)


def compared_rules(config: PipelineConfig) -> dict[str, PeerPhases]:
    """The enabled peer rules with phases: those compared from kept statistics."""
    found = {r: registered(r).phases for r in config.enabled_rules()}
    return {r: phases for r, phases in found.items() if phases is not None}


def _frame_digest(frame: pd.DataFrame) -> str:
    """A digest of ``frame``'s rows, whatever their order (the store returns them unordered)."""
    rows = np.sort(pd.util.hash_pandas_object(frame, index=False).to_numpy())
    return hashlib.sha256(json.dumps(list(frame.columns)).encode() + rows.tobytes()).hexdigest()


def fingerprint(
    rule_id: str, phases: PeerPhases, config: PipelineConfig, reference_data: Frames
) -> str:
    """What ``rule_id``'s aggregates depend on besides the claims: its version, the thresholds
    and the reference frames its phases name."""
    params = config.rules[rule_id]
    facts = {
        "version": params.version,
        "thresholds": {k: params.thresholds.get(k) for k in phases.thresholds},
        "reference": {name: _frame_digest(reference_data[name]) for name in phases.reference},
    }
    return hashlib.sha256(json.dumps(facts, sort_keys=True, default=str).encode()).hexdigest()


@dataclass(frozen=True)
class PeerStatistics:
    """Per compared rule: its aggregates and the fingerprint they were computed under."""

    aggregates: dict[str, PeerAggregates]
    fingerprints: dict[str, str]

    def frames(self) -> Frames:
        """As frames to keep (a subject's id is a column: frame files keep no index)."""
        frames: Frames = {
            FINGERPRINTS: pd.DataFrame(
                {
                    "rule_id": list(self.fingerprints),
                    "fingerprint": list(self.fingerprints.values()),
                }
            )
        }
        for rule_id, found in self.aggregates.items():
            frames[f"{rule_id}.totals"] = found.totals.reset_index()
            if found.pairs is not None:
                frames[f"{rule_id}.pairs"] = found.pairs
        return frames

    @classmethod
    def of(cls, frames: Frames) -> "PeerStatistics":
        """The statistics :meth:`frames` encoded."""
        prints = frames[FINGERPRINTS]
        fingerprints = dict(zip(prints["rule_id"], prints["fingerprint"], strict=True))
        aggregates = {}
        for rule_id in fingerprints:
            totals = frames[f"{rule_id}.totals"]
            subject = str(totals.columns[0])
            aggregates[rule_id] = PeerAggregates(
                totals.set_index(subject), frames.get(f"{rule_id}.pairs")
            )
        return cls(aggregates, fingerprints)


def kept_statistics(directory: Path, last_run_id: str | None) -> PeerStatistics | None:
    """The statistics ``last_run_id`` made current, if it did; else None."""
    found = load(directory) if last_run_id else None
    if found is None or found[0] != last_run_id or not isinstance(found[1], dict):
        return None
    return PeerStatistics.of(found[1])


@dataclass(frozen=True)
class StatisticsUpdate:
    """A run's statistics and how it came by them."""

    statistics: PeerStatistics
    # Rules recomputed from every claim, and why (a run over every claim recomputes all).
    recomputed: dict[str, str]
    # Per rule, the subjects the new claims touched and those kept as the last run left them.
    subjects_updated: dict[str, int]
    subjects_carried_over: dict[str, int]
    # Processed claims read to recompute rules (none when every rule was carried over).
    processed_claims_read: int

    def compared(self, phases: dict[str, PeerPhases], providers: pd.DataFrame) -> Frames:
        """Per rule, what its compare reads: the finished statistics with the subjects'
        attributes from the providers reference (a subject's id as a column)."""
        frames = {}
        for rule_id, found in self.statistics.aggregates.items():
            statistics = found.finished()
            attributes = phases[rule_id].attributes
            if attributes:
                known = providers.drop_duplicates("provider_id").set_index("provider_id")
                columns = {REFERENCE_COLUMN[a]: a for a in attributes}
                found_attributes = known[list(columns)].rename(columns=columns)
                statistics = statistics.join(found_attributes.reindex(statistics.index))
            frames[rule_id] = statistics.reset_index()
        return frames


class Aggregation(Protocol):
    """How a run aggregates its claims for the compared rules: each rule of ``rules`` over the
    run's new claims, and those of ``recomputed`` over every processed claim too. Returns the
    aggregates and the processed claims read."""

    def __call__(
        self, rules: Mapping[str, PeerPhases], recomputed: Collection[str]
    ) -> tuple[dict[str, PeerAggregates], int]: ...


@dataclass(frozen=True)
class InMemory:
    """The aggregation of enriched claims held by this process; processed claims come from the
    peers' copy in ``peer_directory`` (or the store)."""

    source: Source
    peer_directory: Path
    scope: RunScope
    config: PipelineConfig
    enriched_claims: Frames
    reference_data: Frames

    def __call__(
        self, rules: Mapping[str, PeerPhases], recomputed: Collection[str]
    ) -> tuple[dict[str, PeerAggregates], int]:
        family = {r: self.config.rules[r].family for r in rules}
        new = {t: in_scope(self.enriched_claims[t]) for t in CLAIM_TYPES}
        claims, read = dict(new), 0  # per family, what recomputed rules aggregate
        wanted = {family[r] for r in recomputed} if not self.scope.covers_all else set()
        if wanted:
            processed = processed_claims(
                self.source, self.peer_directory, self.scope.workspace_id, self.scope.last_run_id
            )
            for t in wanted:
                plan = plan_history(self.config, t)
                history = enriched_processed(t, processed[t], plan, self.reference_data)
                claims[t] = pd.concat([new[t][history.columns], history], ignore_index=True)
                read += len(history)
        # A rule carried over aggregates the new claims only: the kept aggregates are added.
        found = {
            r: phases.aggregate(
                (claims if r in recomputed else new)[family[r]], self.config.rules[r]
            )
            for r, phases in rules.items()
        }
        return found, read


@dataclass(frozen=True)
class _ShardAggregates:
    """One enriched shard's aggregates for ``rules``: of its new claims, and for ``recomputed``
    of its members' processed claims too, read from the store (``url``)."""

    file: ShardFile
    count: int
    url: str
    scope: RunScope
    config: PipelineConfig
    rules: Mapping[str, PeerPhases]
    recomputed: frozenset[str]

    def run(self, reference_data: Frames) -> tuple[dict[str, PeerAggregates], int]:
        t = self.file.claim_type
        new = in_scope(self.file.read())
        claims, read = new, 0
        if self.recomputed and not self.scope.covers_all:
            processed = read_processed(
                engine_for(self.url),
                t,
                self.scope.workspace_id,
                shard=Shard(self.file.number, self.count),
            )
            history = enriched_processed(t, processed, plan_history(self.config, t), reference_data)
            claims = pd.concat([new[history.columns], history], ignore_index=True)
            read = len(history)
        found = {
            r: phases.aggregate(claims if r in self.recomputed else new, self.config.rules[r])
            for r, phases in self.rules.items()
        }
        return found, read


def _aggregate(
    task: _ShardAggregates, reference_data: Frames
) -> tuple[dict[str, PeerAggregates], int]:
    """What ``Compute.map`` runs (a module-level function ships by name)."""
    return task.run(reference_data)


@dataclass(frozen=True)
class InShards:
    """The aggregation of enriched claims kept as ``shards``, a task per shard on ``compute``:
    a member's claims are in one shard, so the shards' aggregates merge exactly."""

    engine: Engine
    scope: RunScope
    config: PipelineConfig
    shards: ClaimShards
    reference_data: Frames
    compute: Compute

    def __call__(
        self, rules: Mapping[str, PeerPhases], recomputed: Collection[str]
    ) -> tuple[dict[str, PeerAggregates], int]:
        url = url_of(self.engine)
        tasks = []
        for t in CLAIM_TYPES:
            mine = {r: p for r, p in rules.items() if self.config.rules[r].family == t}
            if not mine:
                continue
            again = frozenset(r for r in recomputed if r in mine)
            # Empty shards too: each gives the rule's aggregates their columns.
            files = [f for f in self.shards.files if f.claim_type == t]
            tasks += [
                _ShardAggregates(
                    f,
                    self.shards.count,
                    url,
                    self.scope,
                    self.config,
                    mine,
                    again,
                )
                for f in files
            ]
        parts = self.compute.map(_aggregate, tasks, self.reference_data)
        found = {r: PeerAggregates.total([p[r] for p, _ in parts if r in p]) for r in rules}
        return found, sum(read for _, read in parts)


def update_statistics(
    peer_directory: Path,
    scope: RunScope,
    config: PipelineConfig,
    reference_data: Frames,
    aggregate: Aggregation,
) -> StatisticsUpdate:
    """The compared rules' statistics after the run of ``scope`` (``peer_directory``: where the
    peers' copy is kept), its claims aggregated by ``aggregate``."""
    rules = compared_rules(config)
    prints = {r: fingerprint(r, p, config, reference_data) for r, p in rules.items()}
    kept = (
        None
        if scope.covers_all
        else kept_statistics(statistics_dir(peer_directory), scope.last_run_id)
    )
    recomputed = {r: _why_recompute(r, prints[r], scope, kept) for r in rules}
    recomputed = {r: why for r, why in recomputed.items() if why is not None}
    found, read = aggregate(rules, set(recomputed))
    aggregates: dict[str, PeerAggregates] = {}
    updated: dict[str, int] = {}
    for rule_id in rules:
        if rule_id in recomputed:
            aggregates[rule_id] = found[rule_id]
        else:
            assert kept is not None  # a rule is carried over from kept statistics only
            aggregates[rule_id] = kept.aggregates[rule_id].merged(found[rule_id])
        updated[rule_id] = len(found[rule_id].totals)
    return StatisticsUpdate(
        PeerStatistics(aggregates, prints),
        recomputed,
        updated,
        {r: len(a.totals) - updated[r] for r, a in aggregates.items()},
        read,
    )


def _why_recompute(
    rule_id: str, fingerprint: str, scope: RunScope, kept: PeerStatistics | None
) -> str | None:
    """Why ``rule_id``'s statistics are computed from every claim (None: the kept ones serve)."""
    if scope.covers_all:
        return "the run covers every claim"
    if kept is None:
        return "no statistics of the last committed run"
    if rule_id not in kept.fingerprints:
        return "the last committed run kept none for the rule"
    if kept.fingerprints[rule_id] != fingerprint:
        return "its version, thresholds or reference data changed"
    return None


def stage_statistics(peer_directory: Path, run_id: str, statistics: PeerStatistics) -> None:
    """Stage run ``run_id``'s statistics for its commit to make current."""
    stage(statistics_dir(peer_directory), run_id, statistics.frames())


def make_statistics_current(peer_directory: Path, run_id: str) -> OSError | None:
    """Make the statistics run ``run_id`` staged current, once its commit has succeeded (a run
    that staged none leaves the last ones, which no longer match and are recomputed). Returns
    the error that kept them from becoming current: the next run then recomputes them."""
    directory = statistics_dir(peer_directory)
    if not (directory / run_id).is_dir():
        return None
    try:
        make_current(directory, run_id)
    except OSError as exc:
        return exc
    return None
