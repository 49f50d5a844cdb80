"""Batch loading on the real PostgreSQL: the COPY path lands what the SQLite path lands, a failure
anywhere in landing leaves no trace, reference files upsert through ON CONFLICT, and member PHI
is nowhere in the database in plaintext."""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Iterator

import pandas as pd
import pytest
from sqlalchemy import Column, Engine, Integer, MetaData, Table, event, select, text, update
from sqlalchemy.exc import DBAPIError, OperationalError

from fwa_pipeline.ingest import BatchRejected, land, load_files
from fwa_pipeline.settings import Settings
from fwa_pipeline.store.bulk import ANALYZE_SHARE, read_frame, vacuum_after_load
from fwa_pipeline.store.models import Base, Workspace
from fwa_pipeline.store.pii import cipher_from_settings, members_frame
from tests.unit.ingest.batch import changed, files, rows, table_counts, workspace_row

pytestmark = pytest.mark.postgres

# Columns that differ between two stores by construction: surrogate keys, landing times,
# encryption tokens (random nonces), JSON text (JSONB orders keys; the summaries compare it).
VOLATILE = {
    "id",
    "landed_at",
    "created_at",
    "first_name",
    "last_name",
    "date_of_birth",
    "date_of_death",
    "files",
}


def contents(engine: Engine, table: str) -> pd.DataFrame:
    columns = [c.name for c in Base.metadata.tables[table].columns if c.name not in VOLATILE]
    frame = read_frame(engine, f"SELECT {', '.join(columns)} FROM {table}")
    return frame.sort_values(columns).reset_index(drop=True)


@pytest.fixture
def statements(pg_engine: Engine) -> Iterator[list[str]]:
    """Every statement SQLAlchemy sends (COPY goes to psycopg directly, beneath it)."""
    sent: list[str] = []

    def record(_conn, _cursor, statement: str, *_args: object) -> None:  # type: ignore[no-untyped-def]
        sent.append(statement)

    event.listen(pg_engine, "before_cursor_execute", record)
    yield sent
    event.remove(pg_engine, "before_cursor_execute", record)


def test_copy_lands_what_the_sqlite_path_lands(
    pg_engine: Engine,
    pg_settings: Settings,
    sqlite_engine: Engine,
    settings: Settings,
    statements: list[str],
) -> None:
    on_pg = load_files(pg_engine, pg_settings, "acme", files())
    on_sqlite = load_files(sqlite_engine, settings, "acme", files())

    assert on_pg.summary() == on_sqlite.summary()
    for table in (
        "workspaces",
        "batches",
        "providers",
        "members",
        "cpt_reference",
        "ncci_edits",
        "ndc_reference",
        "medical_claims",
        "pharmacy_claims",
        "claim_labels",
    ):
        pd.testing.assert_frame_equal(
            contents(pg_engine, table), contents(sqlite_engine, table), obj=table
        )
    # Claims are not inserted row by row through SQLAlchemy: they go through COPY.
    assert not [s for s in statements if "INSERT INTO medical_claims" in s]
    assert not [s for s in statements if "INSERT INTO pharmacy_claims" in s]


def test_failure_while_landing_leaves_no_trace(pg_engine: Engine, pg_settings: Settings) -> None:
    load_files(pg_engine, pg_settings, "acme", files())
    with pg_engine.begin() as conn:
        conn.execute(update(Workspace).values(needs_reprocessing=False))
    before = table_counts(pg_engine)
    workspace_before = workspace_row(pg_engine, "acme")
    indexes_before = indexes(pg_engine)
    # members.csv lands last, after every claim was copied in and the claims' indexes, dropped
    # for a batch this large next to the tables, were rebuilt: make the database refuse it.
    with pg_engine.begin() as conn:
        conn.execute(
            text(
                "CREATE FUNCTION fwa_test_refuse() RETURNS trigger LANGUAGE plpgsql AS "
                "$$ BEGIN RAISE EXCEPTION 'refused by test trigger'; END $$"
            )
        )
        conn.execute(
            text(
                "CREATE TRIGGER fwa_test_refuse BEFORE INSERT ON members "
                "FOR EACH ROW EXECUTE FUNCTION fwa_test_refuse()"
            )
        )
    try:
        batch = rows()
        batch["labels.csv"][0]["claim_id"] = "MC-2"
        for workspace in ("acme", "newcomer"):
            with pytest.raises(DBAPIError, match="refused by test trigger"):
                load_files(pg_engine, pg_settings, workspace, files(batch))
    finally:
        with pg_engine.begin() as conn:
            conn.execute(text("DROP TRIGGER fwa_test_refuse ON members"))
            conn.execute(text("DROP FUNCTION fwa_test_refuse()"))
    assert table_counts(pg_engine) == before
    assert workspace_row(pg_engine, "acme") == workspace_before
    assert workspace_row(pg_engine, "newcomer") is None
    assert indexes(pg_engine) == indexes_before


def indexes(engine: Engine) -> list[tuple[str, str]]:
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT indexname, indexdef FROM pg_indexes ORDER BY 1")).all()
    return [(name, definition) for name, definition in rows]


def test_rejection_in_the_last_file_leaves_no_trace(
    pg_engine: Engine, pg_settings: Settings
) -> None:
    with pytest.raises(BatchRejected) as caught:
        load_files(pg_engine, pg_settings, "acme", changed("labels.csv", 0, "rule_id", "@x"))
    assert "labels.csv, row 1, column rule_id: starts with =" in str(caught.value)
    counts = table_counts(pg_engine)
    assert counts.pop("store_identity") == 1  # the migration's row
    assert set(counts.values()) == {0}


def test_rejection_in_a_claims_file_rolls_the_landing_back(
    pg_engine: Engine, pg_settings: Settings
) -> None:
    # Claims files are checked while the other files land: a problem in them undoes that.
    load_files(pg_engine, pg_settings, "acme", files())
    before = table_counts(pg_engine)
    indexes_before = indexes(pg_engine)
    for workspace in ("acme", "newcomer"):
        with pytest.raises(BatchRejected) as caught:
            load_files(
                pg_engine,
                pg_settings,
                workspace,
                changed("pharmacy_claims.csv", 0, "amount_billed", "12.345"),
            )
        assert (
            "pharmacy_claims.csv, row 1, column amount_billed: money has more than 2 decimal "
            "places" in str(caught.value)
        )
    assert table_counts(pg_engine) == before
    assert workspace_row(pg_engine, "newcomer") is None
    assert indexes(pg_engine) == indexes_before


def test_reference_files_upsert_on_conflict(pg_engine: Engine, pg_settings: Settings) -> None:
    load_files(pg_engine, pg_settings, "acme", files())
    batch = rows()
    batch["providers.csv"] = [
        {**batch["providers.csv"][0], "name": "Renamed"},
        {**batch["providers.csv"][1], "excluded": "false", "exclusion_date": ""},
        {**batch["providers.csv"][1], "excluded": "true", "exclusion_date": "2024-01-01"},
    ]
    batch["members.csv"] = [{**batch["members.csv"][0], "date_of_death": "2024-06-01"}]
    batch["labels.csv"] = [batch["labels.csv"][0]] * 2
    second = load_files(pg_engine, pg_settings, "acme", files(batch))

    providers = read_frame(pg_engine, "SELECT * FROM providers ORDER BY provider_id")
    assert len(providers) == 4
    assert providers["name"].tolist()[0] == "Renamed"
    assert providers["excluded"].tolist()[1] is True  # the file's last row of the key won
    assert providers["exclusion_date"].tolist()[1] == pd.Timestamp("2024-01-01")
    assert providers["batch_id"].tolist()[:2] == [second.batch_id] * 2
    members = members_frame(pg_engine, cipher_from_settings(pg_settings), second.workspace_id)
    assert members.sort_values("member_id")["date_of_death"].tolist()[0] == dt.date(2024, 6, 1)
    assert len(members) == 2
    labels = read_frame(pg_engine, "SELECT * FROM claim_labels")
    assert len(labels) == 1 and labels["batch_id"].tolist() == [second.batch_id]


def test_no_plaintext_phi_anywhere_after_loading_members(
    pg_engine: Engine, pg_settings: Settings
) -> None:
    load_files(pg_engine, pg_settings, "acme", files())
    phi = [
        value
        for member in rows()["members.csv"]
        for value in (
            member["first_name"],
            member["last_name"],
            member["date_of_birth"],
            member["date_of_death"],
        )
        if value
    ]
    assert "2024-01-09" in phi  # a date of death is PHI like the date of birth
    with pg_engine.connect() as conn:
        text_columns = conn.execute(
            text(
                "SELECT table_name, column_name FROM information_schema.columns "
                "WHERE table_schema = 'public' AND data_type IN "
                "('text', 'character varying', 'character', 'json', 'jsonb', 'date')"
            )
        ).all()
        assert ("members", "first_name") in text_columns
        found = [
            (table, column, value)
            for table, column in text_columns
            for value in phi
            if conn.execute(
                text(f'SELECT count(*) FROM "{table}" WHERE "{column}"::text LIKE :pattern'),
                {"pattern": f"%{value}%"},
            ).scalar_one()
        ]
    assert found == []
    with pg_engine.connect() as conn:
        key_ids = conn.execute(text("SELECT DISTINCT pii_key_id FROM members")).scalars().all()
    assert key_ids == ["test1"]


def test_workspaces_are_kept_apart(pg_engine: Engine, pg_settings: Settings) -> None:
    first = load_files(pg_engine, pg_settings, "acme", files())
    second = load_files(pg_engine, pg_settings, "globex", files())
    assert first.workspace_id != second.workspace_id
    with pg_engine.connect() as conn:
        per_workspace = conn.execute(
            select(Workspace.name, Workspace.needs_reprocessing).order_by(Workspace.name)
        ).all()
    assert per_workspace == [("acme", True), ("globex", True)]
    counts = read_frame(
        pg_engine,
        "SELECT workspace_id, count(*) AS n FROM providers GROUP BY workspace_id "
        "ORDER BY workspace_id",
    )
    assert counts["n"].tolist() == [4, 4]


def planner_view(engine: Engine, table: str) -> tuple[float, int]:
    """(reltuples, relallvisible): the rows the planner counts, the pages VACUUM marked visible."""
    with engine.connect() as conn:
        row = conn.execute(
            text("SELECT reltuples, relallvisible FROM pg_class WHERE relname = :t"), {"t": table}
        ).one()
    return float(row[0]), int(row[1])


def test_a_load_that_grows_a_table_leaves_it_vacuumed_and_analysed(
    pg_engine: Engine, pg_settings: Settings
) -> None:
    landed = load_files(pg_engine, pg_settings, "acme", files())
    medical = landed.files["medical_claims.csv"]

    # The next run plans with the batch counted and reads pages already marked all-visible.
    counted, visible = planner_view(pg_engine, "medical_claims")
    assert counted == medical and visible >= 1
    assert planner_view(pg_engine, "members")[0] == landed.files["members.csv"]


def test_only_a_table_grown_by_a_fifth_is_vacuumed(pg_engine: Engine) -> None:
    scratch = Table("vacuum_scratch", MetaData(), Column("n", Integer))
    with pg_engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE vacuum_scratch AS SELECT generate_series(1, 1000) AS n")
        conn.exec_driver_sql("ANALYZE vacuum_scratch")
    try:
        share = int(1000 * ANALYZE_SHARE)
        assert vacuum_after_load(pg_engine, {scratch: share - 1}) == []
        assert planner_view(pg_engine, "vacuum_scratch") == (1000.0, 0)  # untouched
        assert vacuum_after_load(pg_engine, {scratch: share}) == ["vacuum_scratch"]
        assert planner_view(pg_engine, "vacuum_scratch")[1] >= 1
    finally:
        with pg_engine.begin() as conn:
            conn.exec_driver_sql("DROP TABLE vacuum_scratch")


def test_a_failed_vacuum_after_landing_keeps_the_batch(
    pg_engine: Engine,
    pg_settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    def vacuum_fails(*_args: object) -> list[str]:
        raise OperationalError("VACUUM (ANALYZE, SKIP_LOCKED) medical_claims", {}, OSError("gone"))

    monkeypatch.setattr(land, "vacuum_after_load", vacuum_fails)
    with caplog.at_level(logging.WARNING, logger=land.log.name):
        landed = load_files(pg_engine, pg_settings, "acme", files())

    assert table_counts(pg_engine)["medical_claims"] == landed.files["medical_claims.csv"]
    assert "VACUUM ANALYZE after landing failed" in caplog.text
