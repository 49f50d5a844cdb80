"""The claim frames a run passes from step to step, one per claim type: its new claims (flag
``in_scope``) and the history read beside them. What is cut from them (the new claims, their keys,
the flagged ones, those the gate let on) is cut here, without copying a million rows needlessly."""

import pandas as pd

from fwa_pipeline.domain.cases import CLAIM_COLUMNS
from fwa_pipeline.domain.enrich import enrich_medical, enrich_pharmacy
from fwa_pipeline.domain.quality import KEY_COLUMNS, passing
from fwa_pipeline.reference import BENZODIAZEPINE_STEMS
from fwa_pipeline.steps.claim_shards import ClaimShards
from fwa_pipeline.steps.frame_files import Frames
from fwa_pipeline.store.claims import CLAIM_TABLES

CLAIM_TYPES = tuple(CLAIM_TABLES)
SHARDS = "shards"  # an output's frame listing its claims' shard files
DATE_COLUMN = {t.claim_type: t.date for t in CLAIM_TABLES.values()}
STORED_COLUMNS = {t.claim_type: ["claim_pk", *t.columns] for t in CLAIM_TABLES.values()}


def in_scope(frame: pd.DataFrame, columns: list[str] | None = None) -> pd.DataFrame:
    """The new claims of ``frame``, with ``columns`` only when given. The columns are cut before
    the rows, and a frame of new claims only (every full run) is not filtered at all: a row
    filter copies every column of a million-row frame."""
    part = frame if columns is None else frame[columns]
    mask = frame["in_scope"].astype(bool).to_numpy()
    return part if mask.all() else part[mask]


def new_counts(frames: Frames | ClaimShards) -> dict[str, int]:
    """The number of new claims of each claim type."""
    if isinstance(frames, ClaimShards):
        return frames.new_counts()
    return {t: int(frames[t]["in_scope"].sum()) for t in CLAIM_TYPES}


def claim_keys(claims: Frames | ClaimShards) -> pd.DataFrame:
    """``claim_type, claim_pk`` of the new (in-scope) claims of each claim type."""
    if isinstance(claims, ClaimShards):
        return _in_claim_order(claims.new_rows(["claim_pk"]))[KEY_COLUMNS]
    return pd.concat(
        [in_scope(claims[t], ["claim_pk"]).assign(claim_type=t) for t in CLAIM_TYPES],
        ignore_index=True,
    )[KEY_COLUMNS]


def _in_claim_order(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` (with ``claim_type, claim_pk``) in the order one pass gives: by claim type,
    then ``claim_pk``."""
    order = frame["claim_type"].map({t: n for n, t in enumerate(CLAIM_TYPES)})
    return (
        frame.assign(_type=order)
        .sort_values(["_type", "claim_pk"], kind="stable", ignore_index=True)
        .drop(columns="_type")
    )


def run_claims(frames: Frames) -> Frames | ClaimShards:
    """The claims an asset output holds: frames per claim type, or the shard files it lists."""
    if SHARDS in frames:
        return ClaimShards.of_frame(frames[SHARDS])
    return frames


def as_output(claims: Frames | ClaimShards) -> Frames:
    """``claims`` as an asset's output (:func:`run_claims` reads it back)."""
    return {SHARDS: claims.frame()} if isinstance(claims, ClaimShards) else claims


def gated(raw_claims: Frames, held: pd.DataFrame) -> Frames | ClaimShards:
    """The claims the gate let on: per claim type, ``raw_claims`` without the ``held`` ones;
    shard files as they are (their readers leave the held claims out)."""
    claims = run_claims(raw_claims)
    if isinstance(claims, ClaimShards):
        return claims
    return {t: passing(claims[t], held, t) for t in CLAIM_TYPES}


def flagged_claims(claims: Frames | ClaimShards, hits: pd.DataFrame) -> pd.DataFrame:
    """The new claims with a hit (``domain.cases.CLAIM_COLUMNS``): what cases and flagged
    dollars rest on, without copying the unflagged million."""
    if isinstance(claims, ClaimShards):
        columns = [c for c in CLAIM_COLUMNS if c != "claim_type"]
        return _in_claim_order(claims.new_rows(columns, among=hits[KEY_COLUMNS]))
    parts = []
    for t in CLAIM_TYPES:
        new = in_scope(claims[t], list(claims[t].columns.intersection(CLAIM_COLUMNS)))
        hit = new["claim_pk"].isin(hits.loc[hits["claim_type"] == t, "claim_pk"])
        parts.append(new[hit].assign(claim_type=t))
    return pd.concat(parts, ignore_index=True)


def enrich(
    claim_type: str, claims: pd.DataFrame, members: pd.DataFrame | None, reference: Frames
) -> pd.DataFrame:
    """``claims`` of ``claim_type`` enriched with ``members`` (None: without member
    attributes) and the ``reference`` frames."""
    if claim_type == "medical":
        return enrich_medical(claims, members, reference["providers"], reference["cpt_reference"])
    return enrich_pharmacy(
        claims,
        members,
        reference["providers"],
        reference["ndc_reference"],
        BENZODIAZEPINE_STEMS,
    )
