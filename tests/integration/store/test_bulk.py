"""Bulk I/O on both engines: frames copied in and read back typed, upserts by primary key,
parameters quoted. The PostgreSQL-only COPY paths are in
``tests/integration/ingest/test_store_bulk.py``."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator

import pandas as pd
import pytest
from sqlalchemy import Engine, select

from fwa_pipeline.store.bulk import copy_frame, copy_frames, read_frame, upsert_frame
from fwa_pipeline.store.models import MedicalClaim, Provider
from tests.unit.ingest.batch import empty_batch


@pytest.fixture
def batch_id(store_engine: Engine) -> int:
    return empty_batch(store_engine)


def claims_frame(batch_id: int) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "workspace_id": [1, 1, 1],
            "batch_id": [batch_id] * 3,
            "claim_id": ["A", 'B, "quoted"\nline', "C"],
            "member_id": ["M1", None, ""],
            "service_date": pd.to_datetime(["2024-01-02", None, "2023-12-31"]),
            "units": pd.array([1, None, 3], dtype="Int64"),
            "amount_billed": [10.5, None, 0.01],
        }
    )


def test_copy_frame_appends_typed_rows(store_engine: Engine, batch_id: int) -> None:
    with store_engine.begin() as conn:
        assert copy_frame(conn, "medical_claims", claims_frame(batch_id)) == 3
        assert copy_frame(conn, MedicalClaim.__table__, claims_frame(batch_id).iloc[:0]) == 0
    stored = read_frame(store_engine, "SELECT * FROM medical_claims ORDER BY id")
    assert stored["id"].tolist() == [1, 2, 3]
    assert stored["claim_id"].tolist() == ["A", 'B, "quoted"\nline', "C"]
    assert stored["member_id"].tolist()[2] == ""
    assert pd.isna(stored["member_id"].tolist()[1])
    assert stored["service_date"].tolist()[0] == pd.Timestamp("2024-01-02")
    assert pd.isna(stored["service_date"].tolist()[1])
    assert stored["units"].tolist()[::2] == [1, 3] and pd.isna(stored["units"].tolist()[1])
    assert stored["amount_billed"].tolist()[::2] == [10.5, 0.01]


def test_copy_frame_is_part_of_the_callers_transaction(store_engine: Engine, batch_id: int) -> None:
    with pytest.raises(RuntimeError), store_engine.begin() as conn:
        copy_frame(conn, "medical_claims", claims_frame(batch_id))
        raise RuntimeError("later failure")
    assert read_frame(store_engine, "SELECT count(*) AS n FROM medical_claims")["n"][0] == 0


def test_copy_frames_appends_frames_made_one_at_a_time(store_engine: Engine, batch_id: int) -> None:
    frame = claims_frame(batch_id)
    made: list[int] = []

    def frames() -> Iterator[pd.DataFrame]:
        for part in (frame.iloc[:2], frame.iloc[:0], frame.iloc[2:]):
            made.append(len(part))
            yield part

    with store_engine.begin() as conn:
        assert copy_frames(conn, "medical_claims", frames()) == 3
        assert copy_frames(conn, "medical_claims", []) == 0
    assert made == [2, 0, 1]
    stored = read_frame(store_engine, "SELECT claim_id FROM medical_claims ORDER BY id")
    assert stored["claim_id"].tolist() == frame["claim_id"].tolist()


def provider(npi: str, name: str, **extra: object) -> dict[str, object]:
    return {
        "workspace_id": 1,
        "provider_id": npi,
        "name": name,
        "provider_type": "individual",
    } | extra


def test_upsert_frame_replaces_by_primary_key(store_engine: Engine, batch_id: int) -> None:
    with store_engine.begin() as conn:
        first = pd.DataFrame(
            [provider("1", "One", specialty="Cardiology"), provider("2", "Two", specialty="X")]
        )
        assert upsert_frame(conn, "providers", first) == 2
        # Columns absent from the frame keep their value on replaced rows.
        upsert_frame(
            conn,
            Provider.__table__,
            pd.DataFrame([provider("2", "Two again"), provider("3", "Three")]),
        )
    stored = read_frame(store_engine, "SELECT * FROM providers ORDER BY provider_id")
    assert stored["name"].tolist() == ["One", "Two again", "Three"]
    assert stored["specialty"].tolist()[:2] == ["Cardiology", "X"]
    assert stored["excluded"].tolist() == [False, False, False]  # the model default


def test_read_frame_types_follow_the_database_types(store_engine: Engine, batch_id: int) -> None:
    with store_engine.begin() as conn:
        copy_frame(conn, "medical_claims", claims_frame(batch_id))
    frame = read_frame(
        store_engine,
        "SELECT m.claim_id, m.service_date, m.units, m.amount_billed, b.landed_at, "
        "w.needs_reprocessing, b.files, m.units * 2 AS doubled "
        "FROM medical_claims m JOIN batches b ON b.id = m.batch_id "
        "JOIN workspaces w ON w.id = m.workspace_id ORDER BY m.id;",
    )
    assert frame.dtypes.astype(str).to_dict() == {
        "claim_id": "str",
        "service_date": "datetime64[us]",
        "units": "Int64",
        "amount_billed": "float64",
        "landed_at": "datetime64[us, UTC]",
        "needs_reprocessing": "boolean",
        "files": "str",
        # An expression: SQLite declares no type; typed from the values returned.
        "doubled": "Int64",
    }
    assert frame["landed_at"].iloc[0].date() == dt.datetime.now(dt.UTC).date()


def test_read_frame_parameters(store_engine: Engine, batch_id: int) -> None:
    with store_engine.begin() as conn:
        copy_frame(conn, "medical_claims", claims_frame(batch_id))
    sql = (
        "SELECT claim_id FROM medical_claims WHERE claim_id IN :ids AND service_date >= :since "
        "AND claim_id != :other ORDER BY claim_id"
    )
    params = {"ids": ["A", "C", "x"], "since": dt.date(2023, 1, 1), "other": "O'Brien; --"}
    assert read_frame(store_engine, sql, params)["claim_id"].tolist() == ["A", "C"]
    statement = select(MedicalClaim.claim_id, MedicalClaim.units).where(
        MedicalClaim.claim_id == "C"
    )
    with store_engine.connect() as conn:
        selected = read_frame(conn, statement)
    assert selected.to_dict("list") == {"claim_id": ["C"], "units": [3]}


def test_read_frame_of_no_rows_keeps_the_types(store_engine: Engine, batch_id: int) -> None:
    frame = read_frame(store_engine, "SELECT claim_id, service_date, units FROM medical_claims")
    assert frame.empty
    assert frame.dtypes.astype(str).tolist() == ["str", "datetime64[us]", "Int64"]
