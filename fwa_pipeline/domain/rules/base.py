"""What a rule is: a function from the enriched claims to hit rows, registered under its id with
the facts a run plans by (``RegisteredRule``).

A rule sees every claim it is given (new claims plus the history its look-back needs) and returns
one row per (claim, finding) with the columns of ``HIT_COLUMNS``; ``evaluate`` then keeps the hits
on claims in scope and stamps rule id, version and weight from the run's config.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from enum import StrEnum

import pandas as pd

from fwa_pipeline.domain.config import RuleParams
from fwa_pipeline.domain.rules.aggregates import PeerAggregates

# What a rule function returns. ``evidence`` holds a dict per hit: the values and the threshold
# they crossed (and peer statistics for peer rules).
HIT_COLUMNS = [
    "claim_type",  # medical | pharmacy
    "claim_pk",
    "claim_id",
    "subject_type",  # claim | provider | pharmacy | prescriber | member
    "subject_id",
    "severity",  # in [0, 1]
    "evidence",
]


@dataclass(frozen=True)
class RuleContext:
    """The inputs every rule reads. Frames are the outputs of ``domain.enrich``."""

    medical: pd.DataFrame
    pharmacy: pd.DataFrame
    ncci: pd.DataFrame  # column1_code, column2_code, modifier_allowed
    as_of: dt.date


RuleFn = Callable[[RuleContext, RuleParams], pd.DataFrame]


class Key(StrEnum):
    """What a rule compares a claim with, which bounds the history an incremental run reads for
    it (``steps.selection``)."""

    LINE = "line"  # the claim alone
    MEMBER_DAY = "member_day"  # the member's claims of the same date
    PROVIDER_DAY = "provider_day"  # the provider's (prescriber's, pharmacy's) claims of the date
    MEMBER_WINDOW = "member_window"  # the member's claims within the look-back
    PEERS = "peers"  # every claim within the look-back: a peer group's distribution


# Every rule reads these: its hits name the claim. ``reads`` declares the rest.
CLAIM_IDENTITY = ("claim_pk", "claim_id")

# The claim columns naming a provider (a pharmacy claim names two): a PROVIDER_DAY rule reads
# exactly one, the provider whose days it compares.
PROVIDER_ID_COLUMNS = ("provider_id", "prescriber_id", "pharmacy_id")

# A peer rule's aggregates of a frame of claims (``aggregates.PeerAggregates``), and the hits of
# comparing each subject's statistics with its peers' on a frame of claims.
AggregateFn = Callable[[pd.DataFrame, RuleParams], PeerAggregates]
CompareFn = Callable[[pd.DataFrame, pd.DataFrame, RuleParams], pd.DataFrame]


@dataclass(frozen=True)
class PeerPhases:
    """A peer rule as two phases, so claims can be split into shards by ``subject`` and a run
    can add its new claims to the statistics of the claims before them: ``aggregate`` sums each
    subject's claims in a form that merges exactly (``aggregates.PeerAggregates``), and
    ``compare`` judges every subject against its peers from the finished statistics, turning
    findings into hits on the lines of the claims it is given.

    ``attributes`` are the subject's provider attributes (columns of the providers reference,
    such as ``specialty``) compare reads: they are looked up when comparing, never summed, so a
    reference change needs no recomputation. ``thresholds`` and ``reference`` name what the
    aggregates themselves depend on (threshold keys; reference frames read through enrichment,
    such as a code's E/M level): aggregates kept from a run with other values are stale."""

    subject: str  # the claim column a subject's claims share
    aggregate: AggregateFn
    compare: CompareFn
    attributes: tuple[str, ...] = ()
    thresholds: tuple[str, ...] = ()
    reference: tuple[str, ...] = ()

    def claim_attributes(self, claims: pd.DataFrame) -> pd.DataFrame:
        """Each subject's ``attributes`` as enrichment joined them to ``claims`` (the subject
        ``provider_id``'s ``specialty`` is the claim column ``provider_specialty``)."""
        role = self.subject.removesuffix("_id")
        columns = {f"{role}_{a}": a for a in self.attributes}
        return claims.groupby(self.subject)[list(columns)].first().rename(columns=columns)

    def statistics(self, claims: pd.DataFrame, params: RuleParams) -> pd.DataFrame:
        """The statistics ``compare`` reads, from ``claims`` alone (per subject, indexed by it)."""
        finished = self.aggregate(claims, params).finished()
        if not self.attributes:
            return finished
        return finished.join(self.claim_attributes(claims))

    def run(self, claims: pd.DataFrame, params: RuleParams) -> pd.DataFrame:
        """Both phases over one frame: what the rule finds (nothing on no claims)."""
        if claims.empty:
            return empty_hits()
        return self.compare(claims, self.statistics(claims, params), params)


@dataclass(frozen=True)
class RegisteredRule:
    """A rule function and its facts: its ``key``, the claim columns it ``reads`` besides
    ``CLAIM_IDENTITY`` (a column it reads through enrichment, such as a provider's specialty or
    a code's E/M level, counts as the claim columns enrichment computes it from) and, for a peer
    rule, its two ``phases``."""

    fn: RuleFn
    key: Key
    reads: tuple[str, ...]
    phases: PeerPhases | None = None

    @property
    def shard_column(self) -> str | None:
        """The claim column by which claims can be split into shards the rule runs on apart:
        every claim it compares a claim with shares the claim's value. None for a peer rule
        without phases, which needs every claim at once."""
        if self.key is Key.PEERS:
            return None if self.phases is None else self.phases.subject
        if self.key is Key.PROVIDER_DAY:
            return next(c for c in self.reads if c in PROVIDER_ID_COLUMNS)
        return "member_id"  # the claim alone, or the member's claims


REGISTRY: dict[str, RegisteredRule] = {}


def rule(
    rule_id: str,
    *,
    key: Key | None = None,
    reads: Iterable[str] = (),
    phases: PeerPhases | None = None,
) -> Callable[[RuleFn], RuleFn]:
    """Register a rule under ``rule_id`` with its facts. A rule without a key or without the
    columns it reads is refused: selection plans history and peer frames from them."""
    if not isinstance(key, Key):
        raise TypeError(f"{rule_id} declares no key (one of {', '.join(k.name for k in Key)})")
    if isinstance(reads, str):
        raise TypeError(f"{rule_id} reads must be a sequence of column names, not one string")
    columns = tuple(reads)
    if not columns:
        raise ValueError(f"{rule_id} declares no column it reads")
    if phases is not None and key is not Key.PEERS:
        raise ValueError(f"{rule_id} has peer phases but key {key.name}, not PEERS")
    providers = [c for c in columns if c in PROVIDER_ID_COLUMNS]
    if key is Key.PROVIDER_DAY and len(providers) != 1:
        raise ValueError(
            f"{rule_id} has key PROVIDER_DAY but reads {len(providers)} provider columns, not one"
        )

    def register(fn: RuleFn) -> RuleFn:
        if rule_id in REGISTRY:
            raise ValueError(f"{rule_id} registered twice")
        REGISTRY[rule_id] = RegisteredRule(fn, key, columns, phases)
        return fn

    return register


def registered(rule_id: str) -> RegisteredRule:
    """The rule registered under ``rule_id``; a configured id no rule implements is an error."""
    if rule_id not in REGISTRY:
        raise KeyError(f"{rule_id} is configured but no rule implements it")
    return REGISTRY[rule_id]


def empty_hits() -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series(dtype=object) for c in HIT_COLUMNS})


def hits_from(
    claims: pd.DataFrame,
    *,
    claim_type: str,
    subject_type: str,
    subject_column: str | None,
    severity: pd.Series | float,
    evidence: pd.DataFrame,
) -> pd.DataFrame:
    """Build hit rows for ``claims`` (rows of an enriched frame). ``evidence`` is aligned with
    ``claims``; each row becomes that hit's evidence dict (NaN/NaT become None)."""
    if claims.empty:
        return empty_hits()
    clean = evidence.astype(object).where(evidence.notna(), None)
    for column in clean.columns:  # dates to ISO strings so evidence is JSON
        if pd.api.types.is_datetime64_any_dtype(evidence[column]):
            clean[column] = evidence[column].dt.strftime("%Y-%m-%d").astype(object)
            clean[column] = clean[column].where(evidence[column].notna(), None)
    subject = claims["claim_id"] if subject_column is None else claims[subject_column].astype(str)
    # Zipping column lists is a few times faster than to_dict(orient="records"), same records.
    names = list(clean.columns)
    columns = [clean[c].tolist() for c in names]
    rows = zip(*columns, strict=True) if names else ([] for _ in range(len(clean)))
    records = [dict(zip(names, row, strict=True)) for row in rows]
    return pd.DataFrame(
        {
            "claim_type": claim_type,
            "claim_pk": claims["claim_pk"].to_numpy(),
            "claim_id": claims["claim_id"].to_numpy(),
            "subject_type": subject_type,
            "subject_id": subject.to_numpy(),
            "severity": severity.to_numpy() if isinstance(severity, pd.Series) else severity,
            "evidence": records,
        }
    )


def robust_z(values: pd.Series, groups: pd.Series | None = None) -> pd.Series:
    """0.6745 (x - median) / MAD, within ``groups`` when given; NaN where MAD is 0."""
    if groups is None:
        median = values.median()
        mad = (values - median).abs().median()
        return 0.6745 * (values - median) / (mad if mad else float("nan"))
    median = values.groupby(groups).transform("median")
    mad = (values - median).abs().groupby(groups).transform("median")
    return 0.6745 * (values - median) / mad.where(mad > 0)
