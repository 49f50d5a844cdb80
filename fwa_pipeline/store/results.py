"""A run's results in the store: rule hits, claim scores and claim statuses, written set-based in
the caller's transaction; and the stored hits (with their claims and scores) read back so an
incremental run rebuilds a subject's case from all its evidence, not just the new hits.

Claim keys travel through a temporary staging table (COPY on PostgreSQL) and every statement
joins it, so a million claims cost a handful of statements, never one per claim.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import pandas as pd
from sqlalchemy import (
    BigInteger,
    Column,
    Connection,
    Engine,
    MetaData,
    String,
    Table,
    Text,
    text,
)

from fwa_pipeline.domain.cases import CLAIM_COLUMNS, SUBJECT, json_safe
from fwa_pipeline.domain.rules import HIT_FRAME_COLUMNS
from fwa_pipeline.domain.scoring import CLAIM_KEY
from fwa_pipeline.store.bulk import copy_frame, read_frame
from fwa_pipeline.store.models import ClaimScore, RuleHit

CLAIM_TABLES = {"medical": "medical_claims", "pharmacy": "pharmacy_claims"}
# Claim columns that name a case subject, per claim table (see domain.cases.SUBJECT_COLUMN).
_SUBJECT_COLUMNS = (
    ("medical", "provider_id", "provider"),
    ("medical", "member_id", "member"),
    ("pharmacy", "member_id", "member"),
    ("pharmacy", "pharmacy_id", "pharmacy"),
    ("pharmacy", "prescriber_id", "prescriber"),
)

# rule_hits as written: evidence already serialised, so COPY hands PostgreSQL JSON text for its
# jsonb column and SQLite stores the text its JSON column reads back (no second encoding).
_RULE_HITS_WIRE = Table(
    RuleHit.__tablename__,
    MetaData(),
    *(
        Column(c.name, Text() if c.name == "evidence" else c.type)
        for c in RuleHit.__table__.columns
        if c.name != "id"
    ),
)
_HIT_WRITE_COLUMNS = [c.name for c in _RULE_HITS_WIRE.columns]
_SCORE_WRITE_COLUMNS = [c.name for c in ClaimScore.__table__.columns]


# --------------------------------------------------------------------------- staging


@contextmanager
def _staged(connection: Connection, frame: pd.DataFrame, columns: list[Column]) -> Iterator[str]:
    """``frame`` in a temporary table of ``columns``; yields its name. PostgreSQL drops it at the
    end of the transaction (an aborted one cannot run a DROP); SQLite, whose temporary tables
    live as long as the pooled connection, drops it on the way out."""
    name = f"_fwa_stage_{secrets.token_hex(6)}"
    table = Table(name, MetaData(), *columns, prefixes=["TEMPORARY"], postgresql_on_commit="DROP")
    table.create(connection)
    postgres = connection.dialect.name == "postgresql"
    try:
        copy_frame(connection, table, frame[[c.name for c in columns]])
        if postgres:
            # Temporary tables get no statistics otherwise; the planner needs them to hash-join.
            connection.exec_driver_sql(f"ANALYZE {name}")
        yield name
    finally:
        if not postgres:
            table.drop(connection)


def _key_columns(*extra: Column) -> list[Column]:
    return [Column("claim_type", String(10)), Column("claim_pk", BigInteger), *extra]


@contextmanager
def _connected(source: Engine | Connection) -> Iterator[Connection]:
    if isinstance(source, Connection):
        yield source
    else:
        with source.begin() as connection:
            yield connection


def _keys(frame: pd.DataFrame) -> pd.DataFrame:
    return frame[CLAIM_KEY].astype({"claim_type": object, "claim_pk": "int64"})


# --------------------------------------------------------------------------- writing


def evidence_json(value: Any) -> str:
    """One hit's evidence as JSON text (NaN and infinities, which jsonb rejects, become null)."""
    evidence = value if isinstance(value, dict) else {}
    try:
        return json.dumps(evidence, allow_nan=False, separators=(",", ":"))
    except (TypeError, ValueError):  # NumPy scalars, dates, NaN: the slow path
        return json.dumps(json_safe(evidence), separators=(",", ":"))


def _require_within(frame: pd.DataFrame, processed: pd.DataFrame, what: str) -> None:
    found = _keys(frame).drop_duplicates().merge(processed, how="left", indicator=True)
    outside = int((found["_merge"] == "left_only").sum())
    if outside:
        raise ValueError(f"{outside:,} claim(s) in {what} are not among the processed claims")


def write_run_results(
    connection: Connection,
    workspace_id: int,
    run_id: str,
    hits: pd.DataFrame,
    scores: pd.DataFrame,
    processed: pd.DataFrame,
    held: pd.DataFrame,
) -> dict[str, int]:
    """Record a run's outcome in the caller's transaction.

    Earlier hits and scores of every processed and held claim are deleted (a reprocess replaces
    them); ``hits`` (``HIT_FRAME_COLUMNS``) and ``scores`` (``SCORE_COLUMNS``; only claims with a
    score or a hit are kept) are inserted; processed claims get status ``processed``, held ones
    ``held``, all of them ``last_run_id = run_id``. Hits and scores must be on processed claims.
    Returns counts of rows written.
    """
    processed_keys, held_keys = _keys(processed), _keys(held)
    claims = pd.concat(
        [processed_keys.assign(status="processed"), held_keys.assign(status="held")],
        ignore_index=True,
    )
    if claims.duplicated(CLAIM_KEY).any():
        raise ValueError("a claim is listed twice among the processed and held claims")
    _require_within(hits, processed_keys, "hits")
    _require_within(scores, processed_keys, "scores")
    params = {"ws": workspace_id, "run": run_id}
    with _staged(connection, claims, _key_columns(Column("status", String(12)))) as stage:
        for table in (RuleHit.__tablename__, ClaimScore.__tablename__):
            connection.execute(
                text(
                    f"DELETE FROM {table} WHERE workspace_id = :ws "
                    f"AND (claim_type, claim_pk) IN (SELECT claim_type, claim_pk FROM {stage})"
                ),
                params,
            )
        updated = 0
        for claim_type, table in CLAIM_TABLES.items():
            result = connection.execute(
                text(
                    f"UPDATE {table} SET status = s.status, last_run_id = :run FROM {stage} s "
                    f"WHERE s.claim_type = :claim_type AND {table}.id = s.claim_pk "
                    f"AND {table}.workspace_id = :ws"
                ),
                {**params, "claim_type": claim_type},
            )
            updated += result.rowcount
    if updated != len(claims):
        # Raising rolls the caller's transaction back: nothing half-recorded.
        raise ValueError(
            f"{len(claims) - updated:,} processed or held claim(s) are not in workspace "
            f"{workspace_id}"
        )
    written_hits = copy_frame(connection, _RULE_HITS_WIRE, _hit_rows(hits, workspace_id, run_id))
    kept = scores[(scores["score"] > 0) | (scores["hit_count"] > 0)]
    kept = kept.assign(workspace_id=workspace_id, run_id=run_id, claim_pk=_keys(kept)["claim_pk"])
    written_scores = copy_frame(connection, ClaimScore.__tablename__, kept[_SCORE_WRITE_COLUMNS])
    if connection.dialect.name == "postgresql":
        # Bulk changes leave the planner's statistics behind until autovacuum catches up; the
        # reads that follow (load_hits joins these tables) would plan nested loops over
        # "empty" tables.
        for table in (RuleHit.__tablename__, ClaimScore.__tablename__, *CLAIM_TABLES.values()):
            connection.exec_driver_sql(f"ANALYZE {table}")
    return {
        "processed": len(processed_keys),
        "held": len(held_keys),
        "hits": written_hits,
        "scores": written_scores,
    }


def _hit_rows(hits: pd.DataFrame, workspace_id: int, run_id: str) -> pd.DataFrame:
    rows = hits.assign(
        workspace_id=workspace_id,
        run_id=run_id,
        claim_pk=hits["claim_pk"].astype("int64"),
        subject_id=hits["subject_id"].astype(str),
        evidence=[evidence_json(e) for e in hits["evidence"]],
    )
    return rows[_HIT_WRITE_COLUMNS]


# --------------------------------------------------------------------------- reading


def _hits_select(sources: list[str]) -> str:
    """Stored hits whose ids any of the ``sources`` queries return."""
    columns = ", ".join(f"h.{c}" for c in HIT_FRAME_COLUMNS)
    union = "\n UNION ".join(sources)
    return (
        f"SELECT {columns} FROM rule_hits h WHERE h.id IN ({union}) "
        "ORDER BY h.claim_type, h.claim_pk, h.rule_id, h.id"
    )


def _subject_sources(subjects_table: str) -> list[str]:
    """Hit ids that may belong to the staged subjects: hits naming them, and claim-level hits on
    claims that name them in the column the case subject would be read from."""
    sources = [
        f"SELECT h.id FROM rule_hits h JOIN {subjects_table} s "
        "ON s.subject_type = h.subject_type AND s.subject_id = h.subject_id "
        "WHERE h.workspace_id = :ws"
    ]
    for claim_type, column, subject_type in _SUBJECT_COLUMNS:
        sources.append(
            f"SELECT h.id FROM rule_hits h JOIN {CLAIM_TABLES[claim_type]} c ON c.id = h.claim_pk "
            f"JOIN {subjects_table} s ON s.subject_type = '{subject_type}' "
            f"AND s.subject_id = c.{column} "
            f"WHERE h.workspace_id = :ws AND h.claim_type = '{claim_type}' "
            "AND h.subject_type = 'claim'"
        )
    return sources


def _decode_hits(frame: pd.DataFrame) -> pd.DataFrame:
    frame = frame.astype({"claim_pk": "int64"})
    frame["evidence"] = [json.loads(e) if isinstance(e, str) else {} for e in frame["evidence"]]
    return frame[HIT_FRAME_COLUMNS]


def load_hits(
    source: Engine | Connection,
    workspace_id: int,
    *,
    subjects: pd.DataFrame | None = None,
    claims: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Stored hits (``HIT_FRAME_COLUMNS``, evidence decoded) of a workspace:

    * ``subjects`` (``subject_type, subject_id``): every hit that can belong to them, that is a
      superset (a claim-level hit on a provider's claim is loaded for a member subject of the same
      claim too); pass the same subjects to ``case_proposals(..., subjects=...)``.
    * ``claims`` (``claim_type, claim_pk``): every hit on those claims.

    Both together: the union. Pass a Connection to read inside a transaction (and see its
    writes).
    """
    if subjects is None and claims is None:
        raise ValueError("load_hits needs subjects, claims or both")
    with _connected(source) as connection:
        return _load_hits(connection, workspace_id, subjects, claims)


def _load_hits(
    connection: Connection,
    workspace_id: int,
    subjects: pd.DataFrame | None,
    claims: pd.DataFrame | None,
) -> pd.DataFrame:
    subject_columns = [Column("subject_type", String(16)), Column("subject_id", String(64))]
    empty_subjects = pd.DataFrame({"subject_type": [], "subject_id": []}, dtype=object)
    subjects = empty_subjects if subjects is None else subjects[SUBJECT].drop_duplicates()
    claims = _keys(claims if claims is not None else pd.DataFrame(columns=CLAIM_KEY))
    with (
        _staged(connection, subjects.astype(str), subject_columns) as subject_table,
        _staged(connection, claims.drop_duplicates(), _key_columns()) as claim_table,
    ):
        sources = [
            *_subject_sources(subject_table),
            f"SELECT h.id FROM rule_hits h JOIN {claim_table} k "
            "ON k.claim_type = h.claim_type AND k.claim_pk = h.claim_pk "
            "WHERE h.workspace_id = :ws",
        ]
        frame = read_frame(connection, _hits_select(sources), {"ws": workspace_id})
    return _decode_hits(frame)


@dataclass(frozen=True)
class CaseInputs:
    """What ``domain.cases.case_proposals`` needs, read from the store."""

    hits: pd.DataFrame  # HIT_FRAME_COLUMNS
    claims: pd.DataFrame  # domain.cases.CLAIM_COLUMNS
    scores: pd.DataFrame  # claim_type, claim_pk, score


def _claims_select(keys_table: str) -> str:
    selects = []
    for claim_type, table in CLAIM_TABLES.items():
        own = {column for kind, column, _ in _SUBJECT_COLUMNS if kind == claim_type}
        ids = ", ".join(
            f"c.{column}" if column in own else f"CAST(NULL AS VARCHAR(64)) AS {column}"
            for column in ("member_id", "provider_id", "pharmacy_id", "prescriber_id")
        )
        selects.append(
            f"SELECT '{claim_type}' AS claim_type, c.id AS claim_pk, c.claim_id, {ids}, "
            f"c.amount_billed, c.amount_paid FROM {table} c JOIN {keys_table} k "
            f"ON k.claim_type = '{claim_type}' AND k.claim_pk = c.id WHERE c.workspace_id = :ws"
        )
    return " UNION ALL ".join(selects)


def load_case_inputs(
    source: Engine | Connection, workspace_id: int, subjects: pd.DataFrame
) -> CaseInputs:
    """Every stored hit that may belong to ``subjects`` (see :func:`load_hits`), with the
    claims and scores those hits rest on: a subject's case rebuilt from all its evidence."""
    with _connected(source) as connection:
        hits = _load_hits(connection, workspace_id, subjects, None)
        keys = hits[CLAIM_KEY].drop_duplicates()
        with _staged(connection, keys, _key_columns()) as keys_table:
            params = {"ws": workspace_id}
            claims = read_frame(connection, _claims_select(keys_table), params)
            scores = read_frame(
                connection,
                f"SELECT s.claim_type, s.claim_pk, s.score FROM claim_scores s JOIN {keys_table} k "
                "ON k.claim_type = s.claim_type AND k.claim_pk = s.claim_pk "
                "WHERE s.workspace_id = :ws",
                params,
            )
    return CaseInputs(
        hits=hits,
        claims=claims.astype({"claim_pk": "int64"})[CLAIM_COLUMNS],
        scores=scores.astype({"claim_pk": "int64"}),
    )
