"""What ``fwa export`` and the demo summary read: a workspace's rule hits (one row per rule and
claim, with evidence and the run that found it), claim scores and cases."""

from __future__ import annotations

import json

import pandas as pd
from sqlalchemy import Connection, Engine, func, select

from fwa_pipeline.store.bulk import read_frame
from fwa_pipeline.store.models import CaseClaim, ClaimScore, InvestigationCase, RuleHit

Source = Engine | Connection


def rule_hits(source: Source, workspace: int) -> pd.DataFrame:
    h = RuleHit
    return read_frame(
        source,
        select(
            h.claim_id,
            h.claim_type,
            h.rule_id,
            h.rule_version,
            h.severity,
            h.weight,
            h.subject_type,
            h.subject_id,
            h.evidence,
            h.run_id,
        )
        .where(h.workspace_id == workspace)
        .order_by(h.rule_id, h.claim_type, h.claim_id, h.id),
    )


def scores(source: Source, workspace: int) -> pd.DataFrame:
    s = ClaimScore
    return read_frame(
        source,
        select(s.claim_id, s.claim_type, s.score, s.risk_level, s.hit_count, s.run_id)
        .where(s.workspace_id == workspace)
        .order_by(s.score.desc(), s.claim_type, s.claim_id),
    )


def cases(source: Source, workspace: int) -> pd.DataFrame:
    c = InvestigationCase
    linked = (
        select(func.count())
        .where(CaseClaim.case_id == c.id)
        .correlate(c)
        .scalar_subquery()
        .label("claims")
    )
    return read_frame(
        source,
        select(
            c.case_number,
            c.subject_type,
            c.subject_id,
            c.risk_score,
            c.risk_level,
            c.status,
            c.assignee,
            c.flagged_billed,
            c.flagged_paid,
            linked,
            c.run_id,
            c.created_at,
            c.updated_at,
            c.explanation,
        )
        .where(c.workspace_id == workspace)
        .order_by(c.risk_score.desc(), c.case_number),
    )


def cases_by_level(source: Source, workspace: int) -> dict[str, int]:
    """Cases not closed, per risk level."""
    c = InvestigationCase
    frame = read_frame(
        source,
        select(c.risk_level, func.count().label("n"))
        .where(c.workspace_id == workspace, c.status != "closed")
        .group_by(c.risk_level),
    )
    return {str(level): int(n) for level, n in zip(frame["risk_level"], frame["n"], strict=True)}


EXPORTS = {"rule-hits": rule_hits, "scores": scores, "cases": cases}


# Columns stored as JSON text (SQLite) or jsonb (PostgreSQL): objects in a JSON export.
JSON_COLUMNS = ("evidence", "explanation")


def to_csv(frame: pd.DataFrame) -> str:
    return frame.to_csv(index=False, date_format="%Y-%m-%dT%H:%M:%S%z")


def to_json(frame: pd.DataFrame) -> str:
    records = json.loads(frame.to_json(orient="records", date_format="iso"))
    for record in records:
        for column in JSON_COLUMNS:
            if isinstance(record.get(column), str):
                record[column] = json.loads(record[column])
    return json.dumps(records, indent=2) + "\n"
