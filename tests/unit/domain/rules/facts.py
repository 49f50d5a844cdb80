"""Checks of a rule's registered facts against what its function does on an enriched frame: the
claim columns it declares it reads are all it reads, none of them is superfluous, and a peer
rule's two phases over shards of the claims find what the rule finds, and its aggregates of
batches merged in sequence are those of all of them at once."""

from __future__ import annotations

from collections.abc import Callable, Collection

import numpy as np
import pandas as pd

from fwa_pipeline.domain.config import RuleParams
from fwa_pipeline.domain.quality import MEDICAL_COLUMNS, PHARMACY_COLUMNS
from fwa_pipeline.domain.rules import REGISTRY, Key, RuleContext

CLAIM_COLUMNS = {"medical": set(MEDICAL_COLUMNS), "pharmacy": set(PHARMACY_COLUMNS)}
DATE_COLUMN = {"medical": "service_date", "pharmacy": "fill_date"}
# Every rule may read these: its hits name the claim, and evaluate reads the scope.
ALWAYS = {"claim_pk", "claim_id", "in_scope"}
# Enriched columns named for the claim column they are looked up by.
PREFIXES = {
    "medical": {"member_": "member_id", "provider_": "provider_id", "cpt_": "cpt_code"},
    "pharmacy": {
        "member_": "member_id",
        "prescriber_": "prescriber_id",
        "pharmacy_": "pharmacy_id",
        "ndc_": "ndc_code",
    },
}
NDC_FLAGS = {"is_opioid", "is_benzodiazepine", "is_controlled"}
# Member attributes: what enrichment adds from the members, which the peer frames go without.
MEMBER_ATTRIBUTE = "member_"


def sources(column: str, claim_type: str) -> set[str]:
    """The claim columns enrichment computes ``column`` from (itself for a claim column)."""
    date = DATE_COLUMN[claim_type]
    if column in CLAIM_COLUMNS[claim_type]:
        return {column}
    if column == "member_days_after_death":
        return {"member_id", date}
    if column == "member_age_bound":
        return {"member_id", date, "cpt_code"}
    if column == "supply_end":
        return {"fill_date", "days_supply"}
    if column in NDC_FLAGS:
        return {"ndc_code"}
    for prefix, key in PREFIXES[claim_type].items():
        if column.startswith(prefix):
            return {key}
    raise AssertionError(f"which {claim_type} claim columns is {column} enriched from?")


def restricted(
    frame: pd.DataFrame, claim_type: str, reads: Collection[str], *, members: bool
) -> pd.DataFrame:
    """``frame`` (enriched) cut to the columns a rule reading the claim columns ``reads`` may
    see: those and what enrichment computes from them alone (without member attributes unless
    ``members``)."""

    def kept(column: str) -> bool:
        if column in ALWAYS:
            return True
        if not members and column.startswith(MEMBER_ATTRIBUTE) and column != "member_id":
            return False
        return sources(column, claim_type) <= set(reads)

    return frame[[c for c in frame.columns if kept(c)]]


def same(left: pd.DataFrame, right: pd.DataFrame) -> bool:
    try:
        pd.testing.assert_frame_equal(left, right, check_exact=True)
    except AssertionError:
        return False
    return True


def check_reads(
    rule_id: str,
    params: RuleParams,
    frame: pd.DataFrame,
    claim_type: str,
    context: Callable[[pd.DataFrame], RuleContext],
) -> None:
    """The rule finds the same on ``frame`` cut to its declared columns as on all of it (a peer
    rule without member attributes, as its peer frame is enriched), and without any one declared
    column it fails or finds something else."""
    facts = REGISTRY[rule_id]
    full = facts.fn(context(frame), params)
    assert not full.empty, f"the batch plants no {rule_id} finding to compare"
    members = facts.key is not Key.PEERS
    cut = facts.fn(context(restricted(frame, claim_type, facts.reads, members=members)), params)
    pd.testing.assert_frame_equal(cut, full, check_exact=True)
    for column in facts.reads:
        fewer = [c for c in facts.reads if c != column]
        try:
            hits = facts.fn(context(restricted(frame, claim_type, fewer, members=members)), params)
        except KeyError:
            continue
        assert not same(hits, full), f"{rule_id} declares {column} but finds the same without it"


SHARDS = 4


def check_phases(
    rule_id: str,
    params: RuleParams,
    frame: pd.DataFrame,
    context: Callable[[pd.DataFrame], RuleContext],
) -> None:
    """The rule's statistics of ``SHARDS`` shards of ``frame`` (hashed by its subject),
    concatenated, then compared, give exactly its hits on the whole frame; and compared on each
    shard, its hits on that shard's lines."""
    facts = REGISTRY[rule_id]
    assert facts.key is Key.PEERS and facts.phases is not None
    phases = facts.phases
    full = facts.fn(context(frame), params)
    assert not full.empty, f"the batch plants no {rule_id} finding to compare"
    shard = pd.util.hash_pandas_object(frame[phases.subject], index=False).to_numpy() % SHARDS
    shards = [frame[shard == i] for i in range(SHARDS)]
    assert all(not part.empty for part in shards)
    statistics = pd.concat([phases.statistics(part, params) for part in shards])
    assert len(statistics) == len(phases.statistics(frame, params))

    pd.testing.assert_frame_equal(phases.compare(frame, statistics, params), full, check_exact=True)
    hits = [phases.compare(part, statistics, params) for part in shards]
    # Concatenated as evaluate does, leaving out shards without hits.
    per_shard = pd.concat([h for h in hits if not h.empty], ignore_index=True)
    order = np.argsort(per_shard["claim_pk"].to_numpy(), kind="stable")
    expected = full.sort_values("claim_pk", kind="stable", ignore_index=True)
    pd.testing.assert_frame_equal(
        per_shard.iloc[order].reset_index(drop=True), expected, check_exact=True
    )


def check_increments(
    rule_id: str,
    params: RuleParams,
    frame: pd.DataFrame,
    context: Callable[[pd.DataFrame], RuleContext],
) -> None:
    """The rule's aggregates of ``frame`` in one pass are exactly those of batches of it merged
    in sequence, as runs add their new claims to the last run's: a first batch, one touching
    only some subjects, and the rest (repeating subjects' members already seen); and the hits
    compared from the merged statistics are the rule's own."""
    facts = REGISTRY[rule_id]
    assert facts.key is Key.PEERS and facts.phases is not None
    phases = facts.phases
    subject = frame[phases.subject]
    order = np.random.default_rng(7).permutation(len(frame))
    first = np.zeros(len(frame), dtype=bool)
    first[order[: len(frame) // 2]] = True
    some = subject.isin(subject[~first].dropna().unique()[::3]).to_numpy() & ~first
    batches = [frame[first], frame[some], frame[~first & ~some]]
    touched = batches[1][phases.subject].nunique()
    assert 0 < touched < subject.nunique(), "the second batch touches only some subjects"

    one_pass = phases.aggregate(frame, params)
    stored = phases.aggregate(batches[0], params)
    for delta in batches[1:]:
        aggregated = phases.aggregate(delta, params)
        if stored.pairs is not None:
            assert aggregated.pairs is not None
            seen = aggregated.pairs.merge(stored.pairs)
            assert len(seen) or delta is batches[1], "the last batch repeats pairs already seen"
        stored = stored.merged(aggregated)

    pd.testing.assert_frame_equal(stored.totals, one_pass.totals, check_exact=True)
    if one_pass.pairs is None:
        assert stored.pairs is None
    else:
        assert stored.pairs is not None
        pd.testing.assert_frame_equal(stored.pairs, one_pass.pairs, check_exact=True)
    statistics = stored.finished()
    if phases.attributes:
        statistics = statistics.join(phases.claim_attributes(frame))
    full = facts.fn(context(frame), params)
    hits = phases.compare(frame, statistics, params)
    pd.testing.assert_frame_equal(hits, full, check_exact=True)
