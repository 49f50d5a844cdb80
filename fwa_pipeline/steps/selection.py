"""Incremental selection: which history a run reads besides its new claims.

Each rule compares a claim with others along one key, and its ``lookback_days`` bounds how far
in time. Reading "the history of every entity the new claims touch" would read nearly the whole
workspace on every run (a 1% batch touches most providers), so history is read per key instead:

* ``LINE``: the claim alone (exclusions, death, age/gender edits, quantity limits).
* ``MEMBER_DAY`` / ``PROVIDER_DAY``: claims of the same member (provider) on the same date
  (duplicates, NCCI pairs, MUE, impossible day, duplicate fills).
* ``MEMBER_WINDOW``: the member's claims within the look-back (refill chains, shopping, MME).
* ``PEERS``: every claim of the workspace within the look-back, because a peer statistic needs
  the whole peer group. Peer rules run on a second, narrow frame (only the columns they read),
  so the per-key history of the other rules stays small.

A rule this table does not know is treated as a peer rule reading every column: correct, only
slower. Claims reusing a new claim's id are always read (the quality gate's duplicate-id check).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum

import pandas as pd

from fwa_pipeline.domain.config import PipelineConfig, RuleParams
from fwa_pipeline.store.claims import CLAIM_TABLES


class Scope(StrEnum):
    LINE = "line"
    MEMBER_DAY = "member_day"
    PROVIDER_DAY = "provider_day"
    MEMBER_WINDOW = "member_window"
    PEERS = "peers"


RULE_SCOPES: dict[str, Scope] = {
    "RULE-MED-001": Scope.MEMBER_DAY,
    "RULE-MED-002": Scope.MEMBER_DAY,
    "RULE-MED-003": Scope.MEMBER_DAY,
    "RULE-MED-004": Scope.PROVIDER_DAY,
    "RULE-MED-005": Scope.PEERS,
    "RULE-MED-006": Scope.LINE,
    "RULE-MED-007": Scope.LINE,
    "RULE-MED-008": Scope.LINE,
    "RULE-MED-009": Scope.LINE,
    "RULE-MED-010": Scope.PEERS,
    "RULE-MED-011": Scope.PEERS,
    "RULE-MED-012": Scope.PEERS,
    "RULE-RX-001": Scope.MEMBER_WINDOW,
    "RULE-RX-002": Scope.MEMBER_WINDOW,
    "RULE-RX-003": Scope.MEMBER_WINDOW,
    "RULE-RX-004": Scope.MEMBER_WINDOW,
    "RULE-RX-005": Scope.LINE,
    "RULE-RX-006": Scope.LINE,
    "RULE-RX-007": Scope.LINE,
    "RULE-RX-008": Scope.LINE,
    "RULE-RX-009": Scope.MEMBER_DAY,
    "RULE-RX-010": Scope.PEERS,
}

# The provider columns of each claim type (PROVIDER_DAY keys).
PROVIDER_COLUMNS = {"medical": ("provider_id",), "pharmacy": ("prescriber_id", "pharmacy_id")}
# What the known peer rules and enrichment read of a claim (besides ``claim_pk``).
PEER_COLUMNS = {
    "medical": (
        "claim_id",
        "member_id",
        "provider_id",
        "service_date",
        "cpt_code",
        "modifier",
        "units",
        "amount_billed",
    ),
    "pharmacy": (
        "claim_id",
        "member_id",
        "prescriber_id",
        "pharmacy_id",
        "fill_date",
        "ndc_code",
        "quantity",
        "days_supply",
        "amount_billed",
    ),
}


def scope_of(rule_id: str) -> Scope:
    return RULE_SCOPES.get(rule_id, Scope.PEERS)


@dataclass(frozen=True)
class HistoryPlan:
    """What one claim type's run reads besides its new claims."""

    claim_type: str
    same_day: tuple[str, ...] = ()
    # entity column -> look-back days
    windows: dict[str, int] = field(default_factory=dict)
    # Peer rules of this family (run on the peer frame) and the look-back their frame spans.
    peer_rules: tuple[str, ...] = ()
    peer_lookback_days: int = 0
    # None: the peer frame carries every column (a rule this module does not know).
    peer_columns: tuple[str, ...] | None = None

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
    rules = family_rules(config, claim_type)
    same_day: set[str] = set()
    windows: dict[str, int] = {}
    peers: list[str] = []
    for rule_id, params in rules.items():
        scope = scope_of(rule_id)
        if scope is Scope.MEMBER_DAY:
            same_day.add("member_id")
        elif scope is Scope.PROVIDER_DAY:
            same_day.update(PROVIDER_COLUMNS[claim_type])
        elif scope is Scope.MEMBER_WINDOW:
            windows["member_id"] = max(windows.get("member_id", 0), params.lookback_days)
        elif scope is Scope.PEERS:
            peers.append(rule_id)
    unknown = any(r not in RULE_SCOPES for r in peers)
    return HistoryPlan(
        claim_type=claim_type,
        same_day=tuple(sorted(same_day)),
        windows=windows,
        peer_rules=tuple(sorted(peers)),
        peer_lookback_days=max((rules[r].lookback_days for r in peers), default=0),
        peer_columns=None if unknown else PEER_COLUMNS[claim_type],
    )


def peer_columns(plan: HistoryPlan) -> tuple[str, ...]:
    return plan.peer_columns or CLAIM_TABLES[plan.claim_type].columns


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
