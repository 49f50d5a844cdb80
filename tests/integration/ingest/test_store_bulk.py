"""The PostgreSQL COPY paths of store.bulk: awkward text survives COPY in and out, NULL stays
apart from the empty string, upserts go through ON CONFLICT, and read_frame types its result
exactly as on SQLite."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator

import pandas as pd
import pytest
from sqlalchemy import Connection, Engine, event, select, text

from fwa_pipeline.ingest import load_files
from fwa_pipeline.settings import Settings
from fwa_pipeline.store.bulk import (
    copy_frame,
    copy_frames,
    indexes_rebuilt_after,
    read_frame,
    upsert_frame,
)
from fwa_pipeline.store.models import Base, MedicalClaim
from tests.unit.ingest.batch import empty_batch, files

pytestmark = pytest.mark.postgres

AWKWARD = [
    "plain",
    'comma, "quotes"',
    "line\nbreak\r\nand CRLF",
    "back\\slash \\N",
    "\\.",
    "NULL",
    "",
    "ünïcødé ✓",
    None,
]


@pytest.fixture
def batch_id(pg_engine: Engine) -> int:
    return empty_batch(pg_engine)


def test_copy_round_trips_awkward_text(pg_engine: Engine, batch_id: int) -> None:
    n = len(AWKWARD)
    frame = pd.DataFrame(
        {
            "workspace_id": [1] * n,
            "batch_id": [batch_id] * n,
            "claim_id": [f"C{i}" for i in range(n)],
            "member_id": AWKWARD,
            "service_date": pd.to_datetime(["2024-02-29"] * (n - 1) + [None]),
            "units": pd.array([*range(n - 1), None], dtype="Int64"),
            "amount_billed": [0.1 + 0.2] + [1234567890.12] * (n - 2) + [None],
        }
    )
    with pg_engine.begin() as conn:
        assert copy_frame(conn, "medical_claims", frame) == n
    stored = read_frame(pg_engine, "SELECT * FROM medical_claims ORDER BY claim_id")
    assert stored["member_id"].tolist()[:-1] == AWKWARD[:-1]
    assert pd.isna(stored["member_id"].tolist()[-1])
    assert stored["service_date"].tolist()[0] == pd.Timestamp("2024-02-29")
    # Money is numeric(14, 2): the float's noise is rounded away.
    assert stored["amount_billed"].tolist()[:2] == [0.3, 1234567890.12]
    assert stored["units"].tolist()[:3] == [0, 1, 2]


def test_copy_frames_sends_frames_made_one_at_a_time(pg_engine: Engine, batch_id: int) -> None:
    frame = claims(batch_id, 5)
    parts = (frame.iloc[i : i + 2] for i in range(0, 8, 2))  # the last one is empty
    with pg_engine.begin() as conn:
        assert copy_frames(conn, "medical_claims", parts) == 5
    stored = read_frame(pg_engine, "SELECT claim_id FROM medical_claims ORDER BY id")
    assert stored["claim_id"].tolist() == frame["claim_id"].tolist()


def indexes(engine: Engine | Connection, table: str) -> list[tuple[str, str]]:
    sql = text("SELECT indexname, indexdef FROM pg_indexes WHERE tablename = :t ORDER BY 1")
    if isinstance(engine, Connection):
        return [tuple(row) for row in engine.execute(sql, {"t": table})]
    with engine.connect() as conn:
        return indexes(conn, table)


@pytest.fixture
def dropped(pg_engine: Engine) -> Iterator[list[str]]:
    """Every DROP INDEX statement sent."""
    sent: list[str] = []

    def record(_conn, _cursor, statement: str, *_args: object) -> None:  # type: ignore[no-untyped-def]
        if statement.startswith("DROP INDEX"):
            sent.append(statement)

    event.listen(pg_engine, "before_cursor_execute", record)
    yield sent
    event.remove(pg_engine, "before_cursor_execute", record)


def claims(batch_id: int, n: int = 3) -> pd.DataFrame:
    return pd.DataFrame(
        {"workspace_id": 1, "batch_id": batch_id, "claim_id": [f"C{i}" for i in range(n)]}
    )


def test_a_large_copy_rebuilds_the_secondary_indexes(
    pg_engine: Engine, batch_id: int, dropped: list[str]
) -> None:
    before = indexes(pg_engine, "medical_claims")
    secondary = len(before) - 1  # all but the primary key's
    with pg_engine.begin() as conn:
        # The table is empty: its indexes are dropped, the rows copied, the indexes rebuilt.
        with indexes_rebuilt_after(conn, {"medical_claims": 3, "pharmacy_claims": 0}) as rebuilt:
            assert rebuilt == ["medical_claims"]
            assert len(dropped) == secondary
            assert indexes(conn, "medical_claims") == before[-1:]
            copy_frame(conn, "medical_claims", claims(batch_id))
        assert indexes(conn, "medical_claims") == before
    # As many rows as the table holds: dropped again, then rolled back.
    with (
        pytest.raises(RuntimeError),
        pg_engine.begin() as conn,
        indexes_rebuilt_after(conn, {MedicalClaim.__table__: 3}) as rebuilt,
    ):
        assert rebuilt == ["medical_claims"]
        raise RuntimeError
    assert len(dropped) == 2 * secondary
    assert indexes(pg_engine, "medical_claims") == before
    # Fewer rows than the table holds: copied through the indexes.
    with (
        pg_engine.begin() as conn,
        indexes_rebuilt_after(conn, {"medical_claims": 2}) as rebuilt,
    ):
        copy_frame(conn, "medical_claims", claims(batch_id, 2))
    assert rebuilt == []
    assert len(dropped) == 2 * secondary
    assert len(read_frame(pg_engine, "SELECT * FROM medical_claims")) == 5


def test_no_rebuild_while_another_transaction_uses_the_table(
    pg_engine: Engine, batch_id: int, dropped: list[str]
) -> None:
    with pg_engine.connect() as reader:
        # An open transaction that has read the table holds a lock on it until it ends.
        reader.execute(text("SELECT count(*) FROM medical_claims"))
        with (
            pg_engine.begin() as conn,
            indexes_rebuilt_after(conn, {"medical_claims": 3}) as rebuilt,
        ):
            copy_frame(conn, "medical_claims", claims(batch_id))
        reader.rollback()
    assert rebuilt == [] and dropped == []
    assert len(read_frame(pg_engine, "SELECT * FROM medical_claims")) == 3


def test_upsert_through_on_conflict(pg_engine: Engine, batch_id: int) -> None:
    def providers(*rows: tuple[str, str]) -> pd.DataFrame:
        return pd.DataFrame(
            [
                {"workspace_id": 1, "provider_id": npi, "name": name, "provider_type": "individual"}
                for npi, name in rows
            ]
        )

    with pg_engine.begin() as conn:
        upsert_frame(conn, "providers", providers(("1", "One"), ("2", "Two")))
        upsert_frame(conn, "providers", providers(("2", "Two again"), ("3", "Three")))
        # Twice in one transaction: the staging tables do not collide.
        upsert_frame(conn, "providers", providers(("3", "Three again")))
    stored = read_frame(pg_engine, "SELECT provider_id, name FROM providers ORDER BY 1")
    assert stored["name"].tolist() == ["One", "Two again", "Three again"]


def test_read_frame_types_and_values_match_sqlite(
    pg_engine: Engine, pg_settings: Settings, sqlite_engine: Engine, settings: Settings
) -> None:
    load_files(pg_engine, pg_settings, "acme", files())
    load_files(sqlite_engine, settings, "acme", files())
    for table in Base.metadata.sorted_tables:
        sql = f"SELECT * FROM {table.name} ORDER BY 1, 2"
        on_pg, on_sqlite = read_frame(pg_engine, sql), read_frame(sqlite_engine, sql)
        assert on_pg.dtypes.to_dict() == on_sqlite.dtypes.to_dict(), table.name
        volatile = [
            c
            for c in (
                "landed_at",
                "created_at",
                "first_name",
                "last_name",
                "date_of_birth",
                "date_of_death",  # an encryption token (random nonce), like the two above
                "files",
                "warnings",
                "store_id",  # random per store
            )
            if c in on_pg
        ]
        pd.testing.assert_frame_equal(
            on_pg.drop(columns=volatile), on_sqlite.drop(columns=volatile), obj=table.name
        )


def test_read_frame_parameters_are_quoted_by_the_driver(
    pg_engine: Engine, pg_settings: Settings
) -> None:
    load_files(pg_engine, pg_settings, "acme", files())
    sql = (
        "SELECT claim_id FROM medical_claims WHERE claim_id IN :ids AND service_date >= :since "
        "AND claim_id != :other ORDER BY claim_id;"
    )
    params = {
        "ids": ("MC-1", "MC-2", "nope"),
        "since": dt.date(2024, 2, 2),
        "other": "x'); DROP TABLE medical_claims; --",
    }
    assert read_frame(pg_engine, sql, params)["claim_id"].tolist() == ["MC-2"]
    with pg_engine.connect() as conn:
        frame = read_frame(conn, select(MedicalClaim.claim_id, MedicalClaim.units))
    assert sorted(frame["claim_id"]) == ["MC-1", "MC-2"] and frame["units"].dtype == "Int64"


def test_read_frame_timestamps_are_utc_whatever_the_session_zone(
    pg_engine: Engine, pg_settings: Settings
) -> None:
    load_files(pg_engine, pg_settings, "acme", files())
    with pg_engine.connect() as conn:
        utc = read_frame(conn, "SELECT landed_at FROM batches")["landed_at"][0]
        conn.exec_driver_sql("SET TIME ZONE 'Asia/Kolkata'")
        shifted = read_frame(conn, "SELECT landed_at FROM batches")["landed_at"][0]
        conn.exec_driver_sql("RESET TIME ZONE")
    assert utc == shifted and str(utc.tz) == "UTC"
