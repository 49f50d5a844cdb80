"""A provider measured against its specialty peers by robust z: E/M upcoding, modifier overuse and
billing outliers. Each finding is about the provider and lists the lines it rests on.

Each rule is two phases (``base.PeerPhases``): per provider counts and sums of its lines (in a form
that merges exactly, ``aggregates.PeerAggregates``), then
the comparison of every provider with its peers from those counts, and the hits on its lines."""

from __future__ import annotations

from typing import Any

import pandas as pd

from fwa_pipeline.domain.config import RuleParams
from fwa_pipeline.domain.rules.aggregates import PeerAggregates, cents
from fwa_pipeline.domain.rules.base import Key, PeerPhases, RuleContext, rule
from fwa_pipeline.domain.rules.medical._common import (
    code_set,
    codes,
    medical_hits,
    numeric,
    peer_stats,
    z_severity,
)


def _provider_lines(
    claims: pd.DataFrame, lines: pd.Series, findings: pd.DataFrame, severity: pd.Series
) -> pd.DataFrame:
    """Hits on the ``lines`` (a mask over ``claims``) of the providers in ``findings`` (indexed
    by provider id), each carrying its provider's finding as evidence."""
    rows = claims[lines & claims["provider_id"].isin(findings.index)]
    evidence = findings.reindex(rows["provider_id"]).set_axis(rows.index)
    return medical_hits(
        rows,
        subject="provider",
        severity=severity.reindex(rows["provider_id"]).set_axis(rows.index),
        evidence=evidence,
    )


def _share_outliers(
    providers: pd.DataFrame, eligible: pd.Series, t: dict[str, Any]
) -> tuple[pd.DataFrame, pd.Series]:
    """Providers (indexed by id, with ``share`` and ``specialty``) whose share is above their
    eligible specialty peers' ``peer_percentile`` value and has robust z >= ``min_robust_z``
    among them (in a group of at least ``min_peers``): their evidence and severity."""
    stats = peer_stats(
        providers["share"].where(eligible), providers["specialty"], t["peer_percentile"]
    )
    flagged = (
        (stats["peers"] >= t["min_peers"])
        & (providers["share"] > stats["peer_percentile_value"])
        & (stats["z"] >= t["min_robust_z"])
    )
    findings = providers[flagged].join(stats[flagged])
    findings = findings.assign(peer_percentile=t["peer_percentile"], min_robust_z=t["min_robust_z"])
    return findings, z_severity(findings["z"], t["full_severity_z"])


def _high_level(claims: pd.DataFrame, t: dict[str, Any]) -> tuple[pd.Series, pd.Series]:
    """(E/M level, is at one of ``high_levels``) of each line."""
    level = numeric(claims["cpt_em_level"])
    return level, level.isin([float(v) for v in t["high_levels"]])


def em_aggregates(claims: pd.DataFrame, params: RuleParams) -> PeerAggregates:
    """Per provider with E/M lines: E/M lines, high-level ones, and its members' pairs."""
    level, high = _high_level(claims, params.thresholds)
    em = claims.loc[level.notna(), ["provider_id", "member_id"]].assign(high=high)
    totals = em.groupby("provider_id").agg(em_lines=("high", "size"), high_lines=("high", "sum"))
    return PeerAggregates.of(totals, em)


def em_compare(claims: pd.DataFrame, statistics: pd.DataFrame, params: RuleParams) -> pd.DataFrame:
    """Hits on the high-level lines of the providers whose share of them is a peer outlier."""
    t = params.thresholds
    # Concatenated shards come in any order; the columns in the order the evidence lists them.
    providers = statistics[["specialty", "members", "em_lines", "high_lines"]].sort_index()
    providers["share"] = providers["high_lines"] / providers["em_lines"]
    findings, severity = _share_outliers(providers, providers["members"] >= t["min_members"], t)
    _, high = _high_level(claims, t)
    return _provider_lines(claims, high, findings.assign(min_members=t["min_members"]), severity)


EM_UPCODING = PeerPhases(
    "provider_id",
    em_aggregates,
    em_compare,
    attributes=("specialty",),
    thresholds=("high_levels",),
    reference=("cpt_reference",),  # a code's E/M level
)


@rule(
    "RULE-MED-005",
    key=Key.PEERS,
    reads=("member_id", "provider_id", "cpt_code"),
    phases=EM_UPCODING,
)
def em_upcoding(ctx: RuleContext, params: RuleParams) -> pd.DataFrame:
    """A provider (with office E/M visits for >= ``min_members`` members) whose share of E/M
    lines at ``high_levels`` is a peer outlier within its specialty: hits its high-level lines."""
    return EM_UPCODING.run(ctx.medical, params)


def _modified(claims: pd.DataFrame, t: dict[str, Any]) -> pd.Series:
    """Whether each line carries one of ``modifiers``."""
    modified = codes(claims["modifier"]).isin(code_set(t["modifiers"])).fillna(False)
    return modified.astype(bool)


def modifier_aggregates(claims: pd.DataFrame, params: RuleParams) -> PeerAggregates:
    """Per provider: lines and lines carrying one of ``modifiers``."""
    totals = (
        claims[["provider_id"]]
        .assign(modified=_modified(claims, params.thresholds))
        .groupby("provider_id")
        .agg(lines=("modified", "size"), modifier_lines=("modified", "sum"))
    )
    return PeerAggregates.of(totals)


def modifier_compare(
    claims: pd.DataFrame, statistics: pd.DataFrame, params: RuleParams
) -> pd.DataFrame:
    """Hits on the modifier lines of the providers whose share of them is a peer outlier."""
    t = params.thresholds
    providers = statistics[["specialty", "lines", "modifier_lines"]].sort_index()
    providers["share"] = providers["modifier_lines"] / providers["lines"]
    findings, severity = _share_outliers(providers, providers["lines"] >= t["min_lines"], t)
    modified = _modified(claims, t)
    return _provider_lines(claims, modified, findings.assign(min_lines=t["min_lines"]), severity)


MODIFIER_OVERUSE = PeerPhases(
    "provider_id",
    modifier_aggregates,
    modifier_compare,
    attributes=("specialty",),
    thresholds=("modifiers",),
)


@rule(
    "RULE-MED-010",
    key=Key.PEERS,
    reads=("provider_id", "modifier"),
    phases=MODIFIER_OVERUSE,
)
def modifier_overuse(ctx: RuleContext, params: RuleParams) -> pd.DataFrame:
    """A provider (with >= ``min_lines`` lines) whose share of lines carrying one of
    ``modifiers`` is a peer outlier within its specialty: hits those modifier lines."""
    return MODIFIER_OVERUSE.run(ctx.medical, params)


BILLING_METRICS = ("billed_per_member", "services_per_member")


def _specialty_state_stats(
    values: pd.Series, specialty: pd.Series, state: pd.Series, min_state_peers: int
) -> pd.DataFrame:
    """Peer statistics of ``values`` among the provider's specialty and state when that group
    has at least ``min_state_peers`` providers, else among its whole specialty (every state)."""
    with_state = specialty.str.cat(state, sep=" / ")
    local = peer_stats(values, with_state)
    national = peer_stats(values, specialty)
    use_state = local["peers"] >= min_state_peers
    return local.where(use_state, national).assign(
        peer_group=with_state.where(use_state, specialty)
    )


def billing_aggregates(claims: pd.DataFrame, params: RuleParams) -> PeerAggregates:
    """Per provider: lines, billed cents, and its members' pairs."""
    lines = claims[["provider_id", "member_id"]]
    totals = (
        lines.assign(billed_cents=cents(numeric(claims["amount_billed"])))
        .groupby("provider_id")
        .agg(lines=("billed_cents", "size"), billed_cents=("billed_cents", "sum"))
    )
    return PeerAggregates.of(totals, lines)


def billing_compare(
    claims: pd.DataFrame, statistics: pd.DataFrame, params: RuleParams
) -> pd.DataFrame:
    """Hits on every line of the providers whose billing per member is a peer outlier."""
    t = params.thresholds
    providers = statistics[["specialty", "state", "members", "lines"]].sort_index()
    # A provider none of whose lines names a member has no per-member figures.
    members = providers["members"].where(providers["members"] > 0)
    providers["billed"] = statistics["billed_cents"] / 100
    providers["billed_per_member"] = providers["billed"] / members
    providers["services_per_member"] = providers["lines"] / members
    specialty = providers["specialty"].astype("string")
    state = providers["state"].astype("string")
    stats = {
        m: _specialty_state_stats(providers[m], specialty, state, t["min_state_peers"])
        for m in BILLING_METRICS
    }
    # Both metrics are defined for the same providers, so they share peer group and size.
    providers[["peer_group", "peers"]] = stats[BILLING_METRICS[0]][["peer_group", "peers"]]
    providers = providers.join(
        [s.drop(columns=["peer_group", "peers"]).add_prefix(f"{m}_") for m, s in stats.items()]
    )
    z = providers[[f"{m}_z" for m in BILLING_METRICS]].max(axis=1)
    flagged = (providers["peers"] >= t["min_peers"]) & (z >= t["min_robust_z"])
    findings = providers[flagged].assign(min_robust_z=t["min_robust_z"])
    lines = pd.Series(True, index=claims.index)
    return _provider_lines(claims, lines, findings, z_severity(z[flagged], t["full_severity_z"]))


BILLING_OUTLIER = PeerPhases(
    "provider_id", billing_aggregates, billing_compare, attributes=("specialty", "state")
)


@rule(
    "RULE-MED-011",
    key=Key.PEERS,
    reads=("member_id", "provider_id", "amount_billed"),
    phases=BILLING_OUTLIER,
)
def billing_outlier(ctx: RuleContext, params: RuleParams) -> pd.DataFrame:
    """A provider whose billed amount per member or lines (services) per member has robust
    z >= ``min_robust_z`` among its peers (specialty, and state when that group is large enough;
    at least ``min_peers``): hits every line of the provider."""
    return BILLING_OUTLIER.run(ctx.medical, params)
