"""The same Alembic migrations build the whole schema on SQLite and PostgreSQL, and go down and
up again cleanly."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import sqlalchemy as sa
from pydantic import SecretStr
from sqlalchemy import Connection, Engine, create_engine, inspect, select, text
from sqlalchemy.orm import Session

from fwa_pipeline.compute.shards import bucket_of
from fwa_pipeline.settings import Settings
from fwa_pipeline.store import migrate
from fwa_pipeline.store.models import Base, InvestigationCase, Member, RuleHit, Workspace
from fwa_pipeline.store.pii import TABLE, cipher_from_settings, get_member, row_key
from tests.conftest import make_key

EXPECTED = set(Base.metadata.tables)


def _add_workspace(conn: Connection) -> None:
    """Workspace 1, written as an older schema still takes it."""
    conn.execute(
        text(
            "INSERT INTO workspaces (id, name, created_at, needs_reprocessing) "
            "VALUES (1, 'w', '2026-01-01', false)"
        )
    )


def _hit(rule_id: str, claim_pk: int, evidence: dict[str, Any]) -> RuleHit:
    """A hit of ``rule_id`` on claim C1 of workspace 1 in run r1, with ``evidence``."""
    return RuleHit(
        workspace_id=1,
        run_id="r1",
        rule_version="1",
        claim_type="medical",
        claim_id="C1",
        subject_type="claim",
        subject_id="C1",
        severity=1.0,
        weight=5.0,
        rule_id=rule_id,
        claim_pk=claim_pk,
        evidence=evidence,
    )


def _add_case(session: Session, rule_id: str, evidence: dict[str, Any]) -> None:
    """Case 1 of workspace 1, explained by ``rule_id`` with ``evidence`` as its claim C1 sample.
    A core insert of these columns only: columns later revisions add are not in the older
    schema."""
    samples = [{"claim_id": "C1", "evidence": evidence}]
    session.execute(
        sa.insert(InvestigationCase).values(
            id=1,
            case_number="CASE-000001",
            workspace_id=1,
            subject_type="provider",
            subject_id="P1",
            risk_score=80.0,
            risk_level="high",
            explanation={"rules": [{"rule_id": rule_id, "samples": samples}]},
            run_id="r1",
            evidence_hash="h",
        )
    )


@pytest.fixture
def engine(empty_store_url: str) -> Iterator[Engine]:
    """An engine on an empty database (SQLite, then PostgreSQL), disposed after the test."""
    engine = create_engine(empty_store_url)
    yield engine
    engine.dispose()


def test_migrations_round_trip(engine: Engine) -> None:
    migrate.upgrade(engine)
    assert set(inspect(engine).get_table_names()) >= EXPECTED
    migrate.downgrade(engine, "base")
    assert set(inspect(engine).get_table_names()) <= {"alembic_version"}
    migrate.upgrade(engine)
    assert set(inspect(engine).get_table_names()) >= EXPECTED
    with engine.connect() as conn:
        assert conn.execute(text("select version_num from alembic_version")).scalar()


@pytest.mark.postgres
def test_the_config_snapshot_is_jsonb_on_postgres(pg_engine: Engine) -> None:
    with pg_engine.connect() as conn:
        kind = conn.execute(
            text(
                "select data_type from information_schema.columns "
                "where table_name='pipeline_runs' and column_name='config_snapshot'"
            )
        ).scalar()
    assert kind == "jsonb"


def test_models_match_migrations(sqlite_engine) -> None:
    """No model change without a migration: autogenerate against head finds nothing to do."""
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    with sqlite_engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    assert diff == []


def test_claim_status_moves_to_batches_and_back(tmp_path: Path) -> None:
    """0002 keeps what the claim rows said: a held claim becomes a held_claims row and a
    processed one reads as processed through its batch; downgrading writes both back."""
    engine = create_engine(f"sqlite:///{tmp_path / 's.db'}")
    claim = (
        "INSERT INTO medical_claims (workspace_id, batch_id, claim_id, status, last_run_id) "
        "VALUES (1, :batch, :claim, :status, :run)"
    )
    try:
        migrate.upgrade(engine, "0001")
        with engine.begin() as conn:
            _add_workspace(conn)
            for batch, run in ((1, "r1"), (2, None)):
                conn.execute(
                    text(
                        "INSERT INTO batches (id, workspace_id, source, landed_at, files, "
                        "warnings, processed_run_id) VALUES (:b, 1, 'cli', '2026-01-01', '{}', "
                        "'[]', :run)"
                    ),
                    {"b": batch, "run": run},
                )
            for batch, name, status, run in (
                (1, "C1", "processed", "r1"),
                (1, "C2", "held", "r1"),
                (2, "C3", "pending", None),
            ):
                conn.execute(
                    text(claim), {"batch": batch, "claim": name, "status": status, "run": run}
                )

        migrate.upgrade(engine)
        with engine.connect() as conn:
            found = conn.execute(
                text(
                    "SELECT claim_id, batch_id, status, last_run_id FROM claim_status "
                    "ORDER BY claim_id"
                )
            ).all()
            assert [tuple(r) for r in found] == [
                ("C1", 1, "processed", "r1"),
                ("C2", 1, "held", "r1"),
                ("C3", 2, "pending", None),
            ]
            assert conn.execute(text("SELECT run_id FROM held_claims")).all() == [("r1",)]

        migrate.downgrade(engine, "0001")
        with engine.connect() as conn:
            found = conn.execute(
                text("SELECT claim_id, status, last_run_id FROM medical_claims ORDER BY claim_id")
            ).all()
        assert [tuple(r) for r in found] == [
            ("C1", "processed", "r1"),
            ("C2", "held", "r1"),
            ("C3", "pending", None),
        ]
    finally:
        engine.dispose()


def test_stored_evidence_loses_member_ages(engine: Engine) -> None:
    """0004 rewrites RULE-MED-008 evidence stored with the member's age (derived from the date
    of birth) as the bound it crossed, in rule hits and in case explanations alike."""
    old = {"member_age": 7.0, "min_age": 18.0, "max_age": None, "cpt_code": "G0438"}
    new = {"age": "below min_age", "min_age": 18.0, "max_age": None, "cpt_code": "G0438"}
    other = {"member_gender": "M", "code_gender": "F", "cpt_code": "59400"}
    migrate.upgrade(engine, "0003")
    with Session(engine) as session, session.begin():
        session.add(Workspace(id=1, name="w"))
        session.flush()
        session.add(_hit("RULE-MED-008", 1, old))
        session.add(_hit("RULE-MED-007", 2, other))
        _add_case(session, "RULE-MED-008", old)

    migrate.upgrade(engine)

    with Session(engine) as session:
        evidence = dict(session.execute(select(RuleHit.rule_id, RuleHit.evidence)).all())
        explanation = session.scalars(select(InvestigationCase.explanation)).one()
    assert evidence == {"RULE-MED-008": new, "RULE-MED-007": other}
    assert explanation["rules"][0]["samples"] == [{"claim_id": "C1", "evidence": new}]


def test_workspace_config_versions_migrate_up_and_down(engine: Engine) -> None:
    """0008 adds the versioned workspace configuration (one row per version, a version number
    once per workspace) and a request's quality mode; going down drops both and keeps the
    requests."""
    from sqlalchemy.exc import IntegrityError

    version = (
        "INSERT INTO workspace_configs (workspace_id, version, document, created_by, created_at,"
        " note) VALUES (1, :v, '{}', 'admin', '2026-01-01', 'why')"
    )
    migrate.upgrade(engine, "0007")
    with engine.begin() as conn:
        _add_workspace(conn)
        conn.execute(
            text(
                "INSERT INTO pipeline_requests (job_id, workspace_id, force_reprocess, "
                "requested_at, status) VALUES ('j1', 1, false, '2026-01-01', 'queued')"
            )
        )
    migrate.upgrade(engine, "0008")
    with engine.begin() as conn:
        conn.execute(text(version), {"v": 1})
        conn.execute(text("UPDATE pipeline_requests SET quality_mode = 'flag_only'"))
    with pytest.raises(IntegrityError), engine.begin() as conn:
        conn.execute(text(version), {"v": 1})  # one version 1 per workspace
    with pytest.raises(IntegrityError), engine.begin() as conn:
        conn.execute(text(version), {"v": 0})

    migrate.downgrade(engine, "0007")
    inspector = inspect(engine)
    assert "workspace_configs" not in inspector.get_table_names()
    columns = {c["name"] for c in inspector.get_columns("pipeline_requests")}
    assert "quality_mode" not in columns
    with engine.connect() as conn:
        assert conn.execute(text("SELECT job_id FROM pipeline_requests")).all() == [("j1",)]


def test_dates_of_death_are_encrypted_and_leave_the_evidence(
    engine: Engine, settings: Settings
) -> None:
    """0007 encrypts the dates of death already stored (under each row's key id; plaintext rows
    of a keyless development store stay plaintext), drops them from stored evidence, refuses
    without the rows' key, and its downgrade gives the dates back."""
    cipher = cipher_from_settings(settings)
    assert cipher is not None
    old = {"service_date": "2024-02-20", "date_of_death": "2024-01-15", "days_after_death": 36}
    new = {"service_date": "2024-02-20", "days_after_death": 36}
    migrate.upgrade(engine, "0006")
    with engine.begin() as conn:
        _add_workspace(conn)
        member = text(
            "INSERT INTO members (workspace_id, member_id, first_name, last_name, "
            "date_of_birth, pii_key_id, gender, date_of_death) "
            "VALUES (1, :id, :first, :last, :born, :kid, 'F', :died)"
        )
        sealed = {
            c: cipher.encrypt(v, table=TABLE, column=c, row_key=row_key(1, "SEALED"))
            for c, v in (
                ("first_name", "Ana"),
                ("last_name", "Diaz"),
                ("date_of_birth", "1940-01-02"),
            )
        }
        conn.execute(
            member,
            {
                "id": "SEALED",
                "first": sealed["first_name"],
                "last": sealed["last_name"],
                "born": sealed["date_of_birth"],
                "kid": cipher.active_key_id,
                "died": dt.date(2024, 1, 15),
            },
        )
        conn.execute(
            member,
            {
                "id": "PLAIN",
                "first": "Ben",
                "last": "Ng",
                "born": "1950-03-04",
                "kid": None,
                "died": dt.date(2024, 3, 1),
            },
        )
        conn.execute(
            member,
            {
                "id": "ALIVE",
                "first": sealed["first_name"],
                "last": sealed["last_name"],
                "born": sealed["date_of_birth"],
                "kid": cipher.active_key_id,
                "died": None,
            },
        )
    with Session(engine) as session, session.begin():
        session.add(_hit("RULE-MED-006", 1, old))
        _add_case(session, "RULE-MED-006", old)

    # Without the key the rows are under, nothing changes.
    other = settings.model_copy(update={"encryption_key": SecretStr(make_key("other"))})
    with pytest.raises(migrate.MigrationRefusedError, match="key id\\(s\\) test1"):
        migrate.upgrade(engine, settings=other)
    with engine.connect() as conn:
        assert conn.execute(text("SELECT version_num FROM alembic_version")).scalar() == "0006"

    migrate.upgrade(engine, settings=settings)

    with engine.connect() as conn:
        stored = dict(conn.execute(select(Member.member_id, Member.date_of_death)).all())
    assert stored["SEALED"].startswith("v1:test1:") and "2024" not in stored["SEALED"]
    assert stored["PLAIN"] == "2024-03-01"  # plaintext like the row's other PHI
    assert stored["ALIVE"] is None
    with Session(engine) as session:
        record = get_member(session, cipher, 1, "SEALED")
        evidence = session.scalars(select(RuleHit.evidence)).one()
        explanation = session.scalars(select(InvestigationCase.explanation)).one()
    assert record is not None and record.date_of_death == dt.date(2024, 1, 15)
    assert evidence == new
    assert explanation["rules"][0]["samples"] == [{"claim_id": "C1", "evidence": new}]

    migrate.downgrade(engine, "0006", settings=settings)
    with engine.connect() as conn:
        back = dict(
            conn.execute(
                select(sa.column("member_id"), sa.column("date_of_death", sa.Date)).select_from(
                    sa.table("members")
                )
            ).all()
        )
    assert back == {"SEALED": dt.date(2024, 1, 15), "PLAIN": dt.date(2024, 3, 1), "ALIVE": None}


def test_rows_stored_before_0013_get_their_members_bucket(engine: Engine) -> None:
    """0013 computes the bucket of every claim and member already stored (a claim without a
    member in bucket 0), then requires it and indexes it; its downgrade drops it again."""
    migrate.upgrade(engine, "0012")
    claims = {"C1": "M1", "C2": "M2", "C3": None, "C4": "M1"}
    with engine.begin() as conn:
        _add_workspace(conn)
        conn.execute(
            text(
                "INSERT INTO batches (id, workspace_id, source, landed_at, files, warnings) "
                "VALUES (1, 1, 'cli', '2026-01-01', '{}', '[]')"
            )
        )
        for table, ids in (("medical_claims", ("C1", "C2", "C3")), ("pharmacy_claims", ("C4",))):
            conn.execute(
                text(
                    f"INSERT INTO {table} (workspace_id, batch_id, claim_id, member_id) "
                    "VALUES (1, 1, :claim, :member)"
                ),
                [{"claim": c, "member": claims[c]} for c in ids],
            )
        conn.execute(
            text(
                "INSERT INTO members (workspace_id, member_id, first_name, last_name, "
                "date_of_birth, gender) VALUES (1, 'M2', 'A', 'B', '1950-01-01', 'F')"
            )
        )

    migrate.upgrade(engine)

    expected = dict(zip(["M1", "M2"], bucket_of(pd.Series(["M1", "M2"])).tolist(), strict=True))
    with engine.connect() as conn:
        stored = {
            claim_id: bucket
            for table in ("medical_claims", "pharmacy_claims")
            for claim_id, bucket in conn.execute(
                text(f"SELECT claim_id, member_bucket FROM {table}")
            ).all()
        }
        member = conn.execute(text("SELECT member_bucket FROM members")).scalar_one()
        # Still answers after SQLite recreated the claim tables under it.
        statuses = conn.execute(text("SELECT count(*) FROM claim_status")).scalar_one()
    assert stored == {"C1": expected["M1"], "C2": expected["M2"], "C3": 0, "C4": expected["M1"]}
    assert member == expected["M2"]
    assert statuses == 4
    inspector = inspect(engine)
    for table in ("medical_claims", "pharmacy_claims"):
        column = next(c for c in inspector.get_columns(table) if c["name"] == "member_bucket")
        assert column["nullable"] is False
        indexes = {i["name"]: i["column_names"] for i in inspector.get_indexes(table)}
        assert indexes[f"ix_{table}_ws_bucket"] == ["workspace_id", "member_bucket"]
    with pytest.raises(sa.exc.IntegrityError), engine.begin() as conn:
        conn.execute(
            text("INSERT INTO medical_claims (workspace_id, batch_id, claim_id) VALUES (1, 1, 'X')")
        )

    migrate.downgrade(engine, "0012")
    inspector = inspect(engine)
    for table in ("medical_claims", "pharmacy_claims", "members"):
        assert "member_bucket" not in {c["name"] for c in inspector.get_columns(table)}
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM claim_status")).scalar_one() == 4
