"""A run's results in the store: rule hits, claim scores and held claims, written set-based in
the caller's transaction; and the stored hits (with their claims and scores) read back so an
incremental run rebuilds a subject's case from all its evidence, not just the new hits.

Claim keys travel through a temporary staging table (COPY on PostgreSQL) and every statement
joins it, so a million claims cost a handful of statements, never one per claim.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator, Sequence
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
    Select,
    String,
    Table,
    delete,
    func,
    select,
    text,
)

from fwa_pipeline.domain.cases import CLAIM_COLUMNS, SUBJECT, json_safe
from fwa_pipeline.domain.rules import HIT_FRAME_COLUMNS
from fwa_pipeline.domain.scoring import CLAIM_KEY
from fwa_pipeline.store.bulk import copy_frame, read_frame, statistics_stale, wire_table
from fwa_pipeline.store.claims import CLAIM_TABLES
from fwa_pipeline.store.models import ClaimScore, HeldClaim, RuleHit

# Claim columns that name a case subject, per claim table (see domain.cases.SUBJECT_COLUMN).
_SUBJECT_COLUMNS = (
    ("medical", "provider_id", "provider"),
    ("medical", "member_id", "member"),
    ("pharmacy", "member_id", "member"),
    ("pharmacy", "pharmacy_id", "pharmacy"),
    ("pharmacy", "prescriber_id", "prescriber"),
)

# rule_hits as written: evidence already serialised.
_RULE_HITS_WIRE = wire_table(RuleHit.__table__, ["evidence"], omit=["id"])  # type: ignore[arg-type]
_HIT_WRITE_COLUMNS = [c.name for c in _RULE_HITS_WIRE.columns]
_SCORE_WRITE_COLUMNS = [c.name for c in ClaimScore.__table__.columns]
_HELD_WRITE_COLUMNS = [c.name for c in HeldClaim.__table__.columns]


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
def _transaction_of(source: Engine | Connection) -> Iterator[Connection]:
    """The caller's connection, in its transaction, or a transaction of its own on the engine:
    the staged key tables live and die in it."""
    if isinstance(source, Connection):
        yield source
    else:
        with source.begin() as connection:
            yield connection


def _keys(frame: pd.DataFrame) -> pd.DataFrame:
    return frame[CLAIM_KEY].astype({"claim_type": object, "claim_pk": "int64"})


# --------------------------------------------------------------------------- writing


def evidence_json(value: Any) -> str:
    """A hit's evidence (or a case's explanation or history detail) as JSON text; NaN and
    infinities, which jsonb rejects, become null."""
    evidence = value if isinstance(value, dict) else {}
    try:
        return json.dumps(evidence, allow_nan=False, separators=(",", ":"))
    except (TypeError, ValueError):  # NumPy scalars, dates, NaN: the slow path
        return json.dumps(json_safe(evidence), separators=(",", ":"))


def _batch_claims(claim_type: str, workspace_id: int, batch_ids: Sequence[int]) -> Select:
    """The ids of the claims of ``batch_ids``."""
    table = CLAIM_TABLES[claim_type].table
    return select(table.c.id).where(
        table.c.workspace_id == workspace_id, table.c.batch_id.in_(list(batch_ids))
    )


def _pks(frame: pd.DataFrame, claim_type: str) -> pd.Series:
    return frame.loc[frame["claim_type"] == claim_type, "claim_pk"].astype("int64")


def _check_claims(
    connection: Connection,
    workspace_id: int,
    batch_ids: Sequence[int],
    processed: pd.DataFrame,
    held: pd.DataFrame,
    results: dict[str, pd.DataFrame],
) -> None:
    """``processed`` and ``held`` list the claims of ``batch_ids`` once each, and ``results``
    (hits, scores) rest on processed claims. Checked per claim type on integer keys, which is
    cheap for a million claims where merging the key frames was not."""
    for claim_type in CLAIM_TABLES:
        mine = _pks(processed, claim_type)
        listed = pd.concat([mine, _pks(held, claim_type)], ignore_index=True)
        if not listed.is_unique:
            raise ValueError("a claim is listed twice among the processed and held claims")
        for what, frame in results.items():
            found = _pks(frame, claim_type)
            outside = found[~found.isin(mine)].nunique()
            if outside:
                raise ValueError(
                    f"{outside:,} claim(s) in {what} are not among the processed claims"
                )
        in_batches = _batch_claims(claim_type, workspace_id, batch_ids).subquery()
        stored = connection.execute(select(func.count()).select_from(in_batches)).scalar_one()
        if stored != len(listed):
            raise ValueError(
                f"{len(listed):,} {claim_type} claim(s) processed or held, but batches "
                f"{list(batch_ids)} of workspace {workspace_id} hold {stored:,}"
            )


def write_run_results(
    connection: Connection,
    workspace_id: int,
    run_id: str,
    batch_ids: Sequence[int],
    hits: pd.DataFrame,
    scores: pd.DataFrame,
    processed: pd.DataFrame,
    held: pd.DataFrame,
) -> dict[str, int]:
    """Record a run's outcome over the claims of its batches in the caller's transaction.

    ``processed`` and ``held`` (``claim_type, claim_pk``; held also ``reason``) must together
    be exactly the claims of ``batch_ids``. Earlier hits, scores and held marks of those claims
    are deleted (a reprocess replaces them); ``hits`` (``HIT_FRAME_COLUMNS``) and ``scores``
    (``SCORE_COLUMNS``; only claims with a score or a hit are kept) are inserted, and the held
    claims recorded. Hits and scores must be on processed claims. Marking the batches consumed
    (which makes their claims processed) is ``store.runs.finish_workspace_run``'s, in the same
    transaction. Returns counts of rows written.
    """
    # Raising rolls the caller's transaction back: nothing half-recorded.
    _check_claims(
        connection, workspace_id, batch_ids, processed, held, {"hits": hits, "scores": scores}
    )
    held_keys = _keys(held)
    for claim_type in CLAIM_TABLES:
        for model in (RuleHit, ClaimScore, HeldClaim):
            connection.execute(
                delete(model).where(
                    model.workspace_id == workspace_id,
                    model.claim_type == claim_type,
                    model.claim_pk.in_(_batch_claims(claim_type, workspace_id, batch_ids)),
                )
            )
    written_held = copy_frame(
        connection,
        HeldClaim.__tablename__,
        held.assign(workspace_id=workspace_id, run_id=run_id, claim_pk=held_keys["claim_pk"])[
            _HELD_WRITE_COLUMNS
        ],
    )
    written_hits = copy_frame(connection, _RULE_HITS_WIRE, _hit_rows(hits, workspace_id, run_id))
    kept = scores[(scores["score"] > 0) | (scores["hit_count"] > 0)]
    kept = kept.assign(workspace_id=workspace_id, run_id=run_id, claim_pk=_keys(kept)["claim_pk"])
    written_scores = copy_frame(connection, ClaimScore.__tablename__, kept[_SCORE_WRITE_COLUMNS])
    changed: dict[str, int | None] = {
        RuleHit.__tablename__: written_hits,
        ClaimScore.__tablename__: written_scores,
        HeldClaim.__tablename__: written_held,
        # Unchanged by the run, but batches landed since their last ANALYZE: the next run's
        # history reads join them.
        **{spec.table.name: None for spec in CLAIM_TABLES.values()},
    }
    for table, written in changed.items():
        _analyze_if_changed(connection, table, written)
    return {
        "processed": len(processed),
        "held": len(held_keys),
        "hits": written_hits,
        "scores": written_scores,
    }


def _analyze_if_changed(connection: Connection, table: str, written: int | None) -> None:
    """ANALYZE ``table`` on PostgreSQL when a large share of it changed: the ``written`` rows of
    a table the run writes, or, for a table it only reads (``written`` None), the rows changed
    since its last ANALYZE. Bulk changes leave the planner's statistics behind until autovacuum
    catches up, and the joins that follow (history, load_hits) would plan nested loops over
    "empty" tables. A small batch changes nothing the planner cares about and skips it (ANALYZE
    of a claims table costs about half a second); autovacuum's own analyses follow the rest.

    A table the run writes is judged by its own writes only: the rows the previous run wrote
    are counted in ``n_mod_since_analyze`` after that run's ANALYZE (statistics are reported at
    commit, after the ANALYZE inside the transaction), so they would trigger one more ANALYZE
    on every following run."""
    if connection.dialect.name != "postgresql":
        return
    # reltuples: the row count at the last ANALYZE (-1: never analysed).
    estimate, modified = connection.execute(
        text(
            "SELECT c.reltuples, COALESCE(s.n_mod_since_analyze, 0) FROM pg_class c "
            "LEFT JOIN pg_stat_user_tables s ON s.relid = c.oid "
            "WHERE c.oid = CAST(:table AS regclass)"
        ),
        {"table": table},
    ).one()
    changed = int(modified) if written is None else written
    if statistics_stale(changed, float(estimate)):
        connection.exec_driver_sql(f"ANALYZE {table}")


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
            f"SELECT h.id FROM rule_hits h JOIN {CLAIM_TABLES[claim_type].table.name} c "
            "ON c.id = h.claim_pk "
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
    with _transaction_of(source) as connection:
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
        with _index_probes_preferred(connection):
            frame = read_frame(connection, _hits_select(sources), {"ws": workspace_id})
    return _decode_hits(frame)


@contextmanager
def _index_probes_preferred(connection: Connection) -> Iterator[None]:
    """On PostgreSQL, plan with a random page read priced near a sequential one (the hits'
    claims are cached): at the default, the planner scans a million claims per subject
    column to join a few thousand claim-level hits, rather than probe their primary keys
    (0.35 s against 0.15 s for a 1% batch on a million claims)."""
    if connection.dialect.name != "postgresql":
        yield
        return
    connection.exec_driver_sql("SET LOCAL random_page_cost = 1.1")
    yield  # a failed read aborts the transaction, which ends the SET LOCAL too
    connection.exec_driver_sql("RESET random_page_cost")


@dataclass(frozen=True)
class CaseInputs:
    """What ``domain.cases.case_proposals`` needs, read from the store."""

    hits: pd.DataFrame  # HIT_FRAME_COLUMNS
    claims: pd.DataFrame  # domain.cases.CLAIM_COLUMNS
    scores: pd.DataFrame  # claim_type, claim_pk, score


def _claims_select(keys_table: str) -> str:
    selects = []
    for claim_type, spec in CLAIM_TABLES.items():
        own = {column for kind, column, _ in _SUBJECT_COLUMNS if kind == claim_type}
        ids = ", ".join(
            f"c.{column}" if column in own else f"CAST(NULL AS VARCHAR(64)) AS {column}"
            for column in ("member_id", "provider_id", "pharmacy_id", "prescriber_id")
        )
        selects.append(
            f"SELECT '{claim_type}' AS claim_type, c.id AS claim_pk, c.claim_id, {ids}, "
            f"c.amount_billed, c.amount_paid FROM {spec.table.name} c JOIN {keys_table} k "
            f"ON k.claim_type = '{claim_type}' AND k.claim_pk = c.id WHERE c.workspace_id = :ws"
        )
    return " UNION ALL ".join(selects)


def load_case_inputs(
    source: Engine | Connection, workspace_id: int, subjects: pd.DataFrame
) -> CaseInputs:
    """Every stored hit that may belong to ``subjects`` (see :func:`load_hits`), with the
    claims and scores those hits rest on: a subject's case rebuilt from all its evidence."""
    with _transaction_of(source) as connection:
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
