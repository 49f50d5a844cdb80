"""Case proposals: which subjects (providers, members, pharmacies, prescribers) deserve an
investigation case, with what score, and why.

Subjects. A hit that names an entity (``subject_type`` provider, member, pharmacy or prescriber)
belongs to that entity. A hit that names only its claim belongs to the party answerable for that
kind of finding, ``scoring.case_subject[rule_id]``, read from the claim (provider ->
``provider_id``, member -> ``member_id``, pharmacy -> ``pharmacy_id``, prescriber ->
``prescriber_id``); rules missing from that map fall back to the rendering provider (medical) or
the dispensing pharmacy (pharmacy).

Entity score (documented formula)::

    dollar_points = entity_dollar_weight x max_score x min(1, flagged_billed / entity_dollar_scale)
    risk_score = min(max_score, max_claim_score + dollar_points)

``max_claim_score`` is the highest score among the subject's flagged claims; flagged dollars can
only add to it (by at most ``entity_dollar_weight x max_score``, reached at
``entity_dollar_scale`` billed), so a subject is never rated below its worst claim. Billed rather
than paid dollars, because ``amount_paid`` is optional in the data contract.

A rule in ``critical_overrides`` makes its subject ``critical`` whatever the score. A proposal
exists for a subject whose level reaches ``case_min_level``, or that has an override.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import math
from collections import defaultdict
from collections.abc import Hashable
from typing import Any

import numpy as np
import pandas as pd

from fwa_pipeline.domain.config import PipelineConfig
from fwa_pipeline.domain.scoring import (
    CLAIM_KEY,
    SCORE_DECIMALS,
    capped_contribution,
    ordered_levels,
    risk_level,
)

SUBJECT = ["subject_type", "subject_id"]
SUBJECT_COLUMN = {
    "provider": "provider_id",
    "member": "member_id",
    "pharmacy": "pharmacy_id",
    "prescriber": "prescriber_id",
}
ENTITY_TYPES = tuple(SUBJECT_COLUMN)
# The subject of a claim-level hit whose rule has no case_subject entry.
DEFAULT_CASE_SUBJECT = {"medical": "provider", "pharmacy": "pharmacy"}
CLAIM_COLUMNS = [*CLAIM_KEY, "claim_id", *SUBJECT_COLUMN.values(), "amount_billed", "amount_paid"]
# Evidence samples per rule in an explanation: the hits of highest severity.
EVIDENCE_SAMPLES = 3
PROPOSAL_COLUMNS = [
    "subject_type",
    "subject_id",
    "risk_score",
    "risk_level",
    "override",
    "explanation",
    "flagged_billed",
    "flagged_paid",
    "claims",
    "evidence_hash",
    # The subject deserves a case of its own (case_min_level or an override); False: only its
    # open case is rescored (see case_proposals' open_subjects), none is opened.
    "qualifies",
]
ENTITY_SCORE_FORMULA = (
    "min(max_score, max_claim_score + entity_dollar_weight * max_score * "
    "min(1, flagged_billed / entity_dollar_scale))"
)


_PLAIN = frozenset({str, int, bool, type(None)})


def json_safe(value: Any) -> Any:
    """``value`` with NumPy scalars made Python, NaN/inf made None and dates made ISO strings,
    recursively: what JSON columns (and PostgreSQL's jsonb, which has no NaN) accept."""
    # Most values of an explanation are plain: an exact type test settles them first (a
    # run's explanations hold some hundred thousand values).
    kind = type(value)
    if kind in _PLAIN:
        return value
    if kind is float:
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple | np.ndarray):
        return [json_safe(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if value is pd.NaT or value is pd.NA:
        return None
    if isinstance(value, dt.date):  # datetime and pd.Timestamp too
        return value.isoformat()
    return value


def _require_rows(hits: pd.DataFrame, frame: pd.DataFrame, what: str) -> None:
    keys = hits[CLAIM_KEY].drop_duplicates()
    found = keys.merge(frame[CLAIM_KEY].drop_duplicates(), on=CLAIM_KEY, how="left", indicator=True)
    missing = int((found["_merge"] == "left_only").sum())
    if missing:
        raise ValueError(f"{missing:,} claim(s) with hits have no row in {what}")


def _typed_keys(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.astype({"claim_type": object, "claim_pk": "int64"})


def attribute_hits(
    hits: pd.DataFrame, claims: pd.DataFrame, config: PipelineConfig
) -> pd.DataFrame:
    """``hits`` with ``subject_type``/``subject_id`` replaced by the case subject each belongs to
    (see the module docstring); hits whose subject cannot be named (the claim lacks the id) are
    dropped. Raises ValueError when a hit's claim is not in ``claims``."""
    _require_rows(hits, claims, "claims")
    claims = _typed_keys(claims.reindex(columns=CLAIM_COLUMNS))
    merged = _typed_keys(hits).merge(
        claims.drop(columns=["claim_id"]), on=CLAIM_KEY, how="left", validate="many_to_one"
    )
    entity = merged["subject_type"].isin(ENTITY_TYPES)
    configured = merged["rule_id"].map(config.scoring.case_subject)
    fallback = merged["claim_type"].map(DEFAULT_CASE_SUBJECT)
    subject_type = merged["subject_type"].where(entity, configured.fillna(fallback))
    from_claim = np.select(
        [subject_type == kind for kind in SUBJECT_COLUMN],
        [merged[column] for column in SUBJECT_COLUMN.values()],
        default=None,
    )
    subject_id = pd.Series(
        np.where(entity, merged["subject_id"], from_claim), index=merged.index, dtype=object
    )
    out = merged.assign(subject_type=subject_type, subject_id=subject_id)
    out = out[out["subject_id"].notna() & out["subject_type"].notna()]
    return out.reset_index(drop=True)


def case_subjects(hits: pd.DataFrame, claims: pd.DataFrame, config: PipelineConfig) -> pd.DataFrame:
    """The distinct subjects ``hits`` belong to (``subject_type``, ``subject_id``): the subjects
    whose cases a run must rebuild."""
    attributed = attribute_hits(hits, claims, config)
    return attributed[SUBJECT].drop_duplicates().reset_index(drop=True)


def empty_proposals() -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series(dtype=object) for c in PROPOSAL_COLUMNS})


def case_proposals(
    hits: pd.DataFrame,
    claims: pd.DataFrame,
    claim_scores: pd.DataFrame,
    config: PipelineConfig,
    subjects: pd.DataFrame | None = None,
    open_subjects: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """One row per subject that deserves a case (``PROPOSAL_COLUMNS``), highest score first,
    and per subject of ``open_subjects`` (those with an open case) with a hit whatever its
    score, so that a case whose score fell below ``case_min_level`` is rescored, not left at
    its old one; ``qualifies`` tells the two apart.

    ``hits``: rule hits (``HIT_FRAME_COLUMNS``), all of them for the subjects concerned, not just
    a run's new ones. ``claims``: ``CLAIM_COLUMNS`` of every claim with a hit. ``claim_scores``:
    ``claim_type, claim_pk, score`` of every claim with a hit. ``subjects``: only propose for
    these (``subject_type, subject_id``), e.g. when ``hits`` were loaded as a superset.
    """
    if hits.empty:
        return empty_proposals()
    _require_rows(hits, claim_scores, "claim_scores")
    attributed = attribute_hits(hits, claims, config)
    if subjects is not None:
        attributed = attributed.merge(subjects[SUBJECT].drop_duplicates(), on=SUBJECT)
    if attributed.empty:
        return empty_proposals()
    # One finding per (subject, rule, claim), at its highest severity (with that hit's evidence).
    findings = attributed.sort_values("severity", ascending=False, kind="stable").drop_duplicates(
        [*SUBJECT, "rule_id", *CLAIM_KEY]
    )
    entities = _entity_scores(findings, claim_scores, config)
    qualifies = _qualifies(entities, config)
    kept = qualifies | _among(entities, open_subjects)
    entities = entities[kept].assign(qualifies=qualifies[kept])
    if entities.empty:
        return empty_proposals()
    findings = findings.merge(entities[SUBJECT], on=SUBJECT)
    return _build(entities, findings, config)


def _entity_scores(
    findings: pd.DataFrame, claim_scores: pd.DataFrame, config: PipelineConfig
) -> pd.DataFrame:
    """Per subject: worst claim score, flagged dollars (each claim once), the blended risk score
    and level, and the override rule if any."""
    scoring = config.scoring
    flagged = findings[[*SUBJECT, *CLAIM_KEY, "amount_billed", "amount_paid"]].drop_duplicates(
        [*SUBJECT, *CLAIM_KEY]
    )
    scores = _typed_keys(claim_scores[[*CLAIM_KEY, "score"]]).drop_duplicates(CLAIM_KEY)
    flagged = flagged.merge(scores, on=CLAIM_KEY, how="left")
    entities = (
        flagged.groupby(SUBJECT, sort=False)
        .agg(
            max_claim_score=("score", "max"),
            flagged_billed=("amount_billed", "sum"),
            flagged_paid=("amount_paid", "sum"),
            claim_count=("claim_pk", "size"),
        )
        .reset_index()
    )
    dollars = (entities["flagged_billed"] / scoring.entity_dollar_scale).clip(upper=1.0)
    entities["dollar_points"] = scoring.entity_dollar_weight * scoring.max_score * dollars
    entities["risk_score"] = (
        (entities["max_claim_score"] + entities["dollar_points"])
        .clip(upper=scoring.max_score)
        .round(SCORE_DECIMALS)
    )
    entities["risk_level"] = risk_level(entities["risk_score"], scoring.bands)
    overrides = findings[findings["rule_id"].isin(scoring.critical_overrides)]
    override = overrides.groupby(SUBJECT)["rule_id"].min().rename("override").reset_index()
    entities = entities.merge(override, on=SUBJECT, how="left")
    overridden = entities["override"].notna()
    entities.loc[overridden, "risk_level"] = ordered_levels(scoring.bands)[-1]
    return entities


def _qualifies(entities: pd.DataFrame, config: PipelineConfig) -> pd.Series:
    rank = {level: i for i, level in enumerate(ordered_levels(config.scoring.bands))}
    reaches = entities["risk_level"].map(rank) >= rank[config.scoring.case_min_level]
    return reaches | entities["override"].notna()


def _among(entities: pd.DataFrame, subjects: pd.DataFrame | None) -> pd.Series:
    if subjects is None or subjects.empty:
        return pd.Series(False, index=entities.index)
    wanted = pd.MultiIndex.from_frame(subjects[SUBJECT].astype(str))
    return pd.Series(
        pd.MultiIndex.from_frame(entities[SUBJECT].astype(str)).isin(wanted), index=entities.index
    )


def _evidence_hashes(findings: pd.DataFrame) -> dict[tuple[Hashable, ...], str]:
    """sha256 over the subject's sorted ``rule_id|claim_type|claim_pk`` lines: the same evidence
    gives the same hash whatever order it arrives in."""
    lines = pd.DataFrame(
        {
            "subject_type": findings["subject_type"],
            "subject_id": findings["subject_id"],
            "line": findings["rule_id"].astype(str)
            + "|"
            + findings["claim_type"].astype(str)
            + "|"
            + findings["claim_pk"].astype("int64").astype(str),
        }
    ).sort_values([*SUBJECT, "line"])
    return {
        subject: hashlib.sha256("\n".join(r["line"] for r in rows).encode()).hexdigest()
        for subject, rows in _grouped(lines, ["line"]).items()
    }


def _grouped(
    frame: pd.DataFrame, columns: list[str], keys: list[str] = SUBJECT
) -> dict[tuple[Hashable, ...], list[dict[str, Any]]]:
    """Rows of ``frame`` (in order) as dicts of ``columns`` (Python values), grouped by
    ``keys``: one pass over plain lists, no per-group DataFrame."""
    grouped: dict[tuple[Hashable, ...], list[dict[str, Any]]] = defaultdict(list)
    key_lists = [frame[k].tolist() for k in keys]
    value_lists = [frame[c].tolist() for c in columns]
    for key, values in zip(
        zip(*key_lists, strict=True), zip(*value_lists, strict=True), strict=True
    ):
        grouped[key].append(dict(zip(columns, values, strict=True)))
    return grouped


def _build(entities: pd.DataFrame, findings: pd.DataFrame, config: PipelineConfig) -> pd.DataFrame:
    scoring = config.scoring
    # Per subject and rule: claims hit, highest severity, weight and the points it adds.
    per_rule = (
        findings.groupby([*SUBJECT, "rule_id"], sort=False)
        .agg(
            rule_version=("rule_version", "first"),
            claims=("claim_pk", "size"),
            max_severity=("severity", "max"),
            weight=("weight", "max"),
        )
        .reset_index()
    )
    per_rule["max_claim_points"] = scoring.multiplier * capped_contribution(
        per_rule["rule_id"], per_rule["weight"], per_rule["max_severity"], config
    )
    # Strongest rule first.
    per_rule = per_rule.sort_values(
        [*SUBJECT, "max_claim_points", "rule_id"], ascending=[True, True, False, True]
    )
    # findings are ordered by severity, so each rule's first rows are its strongest evidence.
    samples = _grouped(
        findings.groupby([*SUBJECT, "rule_id"], sort=False).head(EVIDENCE_SAMPLES),
        ["claim_type", "claim_id", "severity", "evidence"],
        keys=[*SUBJECT, "rule_id"],
    )
    rule_rows = _grouped(
        per_rule,
        ["rule_id", "rule_version", "claims", "max_severity", "weight", "max_claim_points"],
    )
    # Plain str/int columns, so the lists need no json_safe pass.
    claim_rows = _grouped(
        _typed_keys(findings.drop_duplicates([*SUBJECT, *CLAIM_KEY]))
        .astype({"claim_id": str})
        .sort_values([*SUBJECT, *CLAIM_KEY]),
        ["claim_type", "claim_pk", "claim_id"],
    )
    hashes = _evidence_hashes(findings)

    rows = []
    for entity in entities.sort_values(
        ["risk_score", *SUBJECT], ascending=[False, True, True]
    ).itertuples(index=False):
        subject = (entity.subject_type, entity.subject_id)
        override = None if pd.isna(entity.override) else entity.override
        explanation = {
            "subject": {"type": entity.subject_type, "id": entity.subject_id},
            "risk_score": entity.risk_score,
            "risk_level": entity.risk_level,
            "override": override,
            "score": {
                "formula": ENTITY_SCORE_FORMULA,
                "max_claim_score": entity.max_claim_score,
                "flagged_billed": entity.flagged_billed,
                "dollar_points": entity.dollar_points,
            },
            "claim_count": entity.claim_count,
            "rules": [
                _rule_item(item, samples[(*subject, item["rule_id"])], config)
                for item in rule_rows[subject]
            ],
        }
        rows.append(
            {
                "subject_type": entity.subject_type,
                "subject_id": entity.subject_id,
                "risk_score": float(entity.risk_score),
                "risk_level": entity.risk_level,
                "override": override,
                "explanation": json_safe(explanation),
                "flagged_billed": round(float(entity.flagged_billed), 2),
                "flagged_paid": round(float(entity.flagged_paid), 2),
                "claims": claim_rows[subject],
                "evidence_hash": hashes[subject],
                "qualifies": bool(entity.qualifies),
            }
        )
    return pd.DataFrame(rows, columns=PROPOSAL_COLUMNS)


def _rule_item(
    item: dict[str, Any], samples: list[dict[str, Any]], config: PipelineConfig
) -> dict[str, Any]:
    params = config.rules.get(item["rule_id"])
    return {
        **item,
        "name": params.name if params else item["rule_id"],
        "cap": params.cap if params else None,
        "thresholds": params.thresholds if params else {},
        "samples": samples,
    }
