"""Incremental selection: which history a run reads besides its new claims.

Each rule compares a claim with others along one key, declared where it is registered
(``domain.rules.base.Key``), and its ``lookback_days`` bounds how far in time. Reading "the history
of every entity the new claims touch" would read nearly the whole workspace on every run (a 1%
batch touches most providers), so history is read per key instead:

* ``LINE``: the claim alone (exclusions, death, age/gender edits, quantity limits).
* ``MEMBER_DAY`` / ``PROVIDER_DAY``: claims of the same member (provider) on the same date
  (duplicates, NCCI pairs, MUE, impossible day, duplicate fills).
* ``MEMBER_WINDOW``: the member's claims within the look-back (refill chains, shopping, MME).
* ``PEERS``: every claim of the workspace within the look-back, because a peer statistic needs
  the whole peer group. Peer rules run on a second, narrow frame: the columns they declare they
  read and those enrichment needs, so the per-key history of the other rules stays small.

Claims reusing a new claim's id are always read (the quality gate's duplicate-id check).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import pandas as pd

from fwa_pipeline.domain.config import PipelineConfig, RuleParams
from fwa_pipeline.domain.enrich import ENRICHMENT_READS
from fwa_pipeline.domain.rules import CLAIM_IDENTITY, Key, registered
from fwa_pipeline.store.claims import CLAIM_TABLES

# The provider columns of each claim type (PROVIDER_DAY keys).
PROVIDER_COLUMNS = {"medical": ("provider_id",), "pharmacy": ("prescriber_id", "pharmacy_id")}


@dataclass(frozen=True)
class HistoryPlan:
    """What one claim type's run reads besides its new claims."""

    claim_type: str
    same_day: tuple[str, ...] = ()
    # entity column -> look-back days
    windows: dict[str, int] = field(default_factory=dict)
    # Peer rules of this family (run on the peer frame), the look-back their frame spans and
    # the claim columns it carries besides ``claim_pk``.
    peer_rules: tuple[str, ...] = ()
    peer_lookback_days: int = 0
    peer_columns: tuple[str, ...] = ()

    def date_windows(self, dates: pd.Series) -> dict[str, tuple[dt.date, dt.date]]:
        """Each entity window as dates around the new claims' dates."""
        return {e: _around(dates, days) for e, days in self.windows.items()}

    def peer_window(self, dates: pd.Series) -> tuple[dt.date, dt.date]:
        return _around(dates, self.peer_lookback_days)


def _around(dates: pd.Series, days: int) -> tuple[dt.date, dt.date]:
    valid = pd.to_datetime(dates, errors="coerce").dropna()
    if valid.empty:  # no dated claim: nothing to look around
        return dt.date.max, dt.date.min
    margin = dt.timedelta(days=days)
    return valid.min().date() - margin, valid.max().date() + margin


def family_rules(config: PipelineConfig, claim_type: str) -> dict[str, RuleParams]:
    return {r: p for r, p in config.enabled_rules().items() if p.family == claim_type}


def plan_history(config: PipelineConfig, claim_type: str) -> HistoryPlan:
    """What ``claim_type``'s run reads for its enabled rules, from their registered facts."""
    rules = family_rules(config, claim_type)
    same_day: set[str] = set()
    windows: dict[str, int] = {}
    peers: list[str] = []
    peer_reads: set[str] = set()
    for rule_id, params in rules.items():
        facts = registered(rule_id)
        if facts.key is Key.MEMBER_DAY:
            same_day.add("member_id")
        elif facts.key is Key.PROVIDER_DAY:
            same_day.update(PROVIDER_COLUMNS[claim_type])
        elif facts.key is Key.MEMBER_WINDOW:
            windows["member_id"] = max(windows.get("member_id", 0), params.lookback_days)
        elif facts.key is Key.PEERS:
            peers.append(rule_id)
            peer_reads.update(facts.reads)
        unknown = set(facts.reads).difference(CLAIM_TABLES[claim_type].columns)
        if unknown:
            raise ValueError(
                f"{rule_id} reads {', '.join(sorted(unknown))}: not a {claim_type} claim column"
            )
    if peers:
        peer_reads.update([*CLAIM_IDENTITY, *ENRICHMENT_READS[claim_type]])
    return HistoryPlan(
        claim_type=claim_type,
        same_day=tuple(sorted(same_day)),
        windows=windows,
        peer_rules=tuple(sorted(peers)),
        peer_lookback_days=max((rules[r].lookback_days for r in peers), default=0),
        peer_columns=tuple(c for c in CLAIM_TABLES[claim_type].columns if c in peer_reads),
    )


def split_rules(
    config: PipelineConfig, peer_rules: Iterable[str]
) -> tuple[PipelineConfig, PipelineConfig]:
    """``config`` as two: every rule but ``peer_rules`` enabled, and only ``peer_rules``."""
    peers = set(peer_rules)

    def only(keep: bool) -> PipelineConfig:
        rules = {
            rule_id: params.model_copy(
                update={"enabled": params.enabled and (rule_id in peers) == keep}
            )
            for rule_id, params in config.rules.items()
        }
        return config.model_copy(update={"rules": rules})

    return only(False), only(True)


def touched_ids(frames: Mapping[str, pd.DataFrame]) -> set[str]:
    """Every member id the frames name."""
    ids: set[str] = set()
    for frame in frames.values():
        if "member_id" in frame:
            ids.update(frame["member_id"].dropna().astype(str).unique())
    return ids
