"""Valid batches: what lands where, typed and normalised; rows that break business rules are
stored for the quality gate; reference files upsert; extra columns are warnings."""

from __future__ import annotations

import datetime as dt
import io
import json
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner
from sqlalchemy import Engine, select, update

from fwa_pipeline.cli import cli
from fwa_pipeline.ingest import load_directory, load_files
from fwa_pipeline.settings import Settings
from fwa_pipeline.store.bulk import read_frame
from fwa_pipeline.store.models import Batch, Workspace
from fwa_pipeline.store.pii import cipher_from_settings, members_frame
from tests.unit.ingest.batch import (
    BAD_CHECK_DIGIT,
    ORGANIZATION,
    PHARMACY,
    PRESCRIBER,
    RENDERING,
    changed,
    files,
    render,
    rows,
    table_counts,
    workspace_row,
)


def claims(engine: Engine, table: str = "medical_claims") -> pd.DataFrame:
    return read_frame(engine, f"SELECT * FROM {table} ORDER BY id")


def test_valid_batch_lands_every_file(sqlite_engine: Engine, settings: Settings) -> None:
    result = load_files(sqlite_engine, settings, "acme", files(), source="api")

    summary = result.summary()
    expected_files = {name: len(file_rows) for name, file_rows in rows().items()}
    assert summary["files"] == expected_files
    assert summary["rows"] == sum(expected_files.values())
    assert summary["warnings"] == []
    assert summary["workspace"] == "acme"
    counts = table_counts(sqlite_engine)
    assert counts["medical_claims"] == 2
    assert counts["pharmacy_claims"] == 2
    assert counts["providers"] == 4
    assert counts["members"] == 2
    assert counts["cpt_reference"] == 2
    assert counts["ncci_edits"] == 1
    assert counts["ndc_reference"] == 2
    assert counts["claim_labels"] == 1
    assert counts["batches"] == 1

    workspace = workspace_row(sqlite_engine, "acme")
    assert workspace is not None and workspace["needs_reprocessing"] is True
    assert workspace["id"] == summary["workspace_id"]
    with sqlite_engine.connect() as conn:
        batch = conn.execute(select(Batch)).mappings().one()
    assert batch["id"] == summary["batch_id"]
    assert batch["source"] == "api"
    assert batch["files"] == expected_files
    assert batch["warnings"] == []


def test_claims_are_typed_normalised_and_pending(sqlite_engine: Engine, settings: Settings) -> None:
    batch_id = load_files(sqlite_engine, settings, "acme", files()).batch_id
    medical = claims(sqlite_engine)
    assert medical["claim_id"].tolist() == ["MC-1", "MC-2"]
    assert set(read_frame(sqlite_engine, "SELECT status FROM claim_status")["status"]) == {
        "pending"
    }
    assert (medical["batch_id"] == batch_id).all()
    assert medical["service_date"].tolist() == [
        pd.Timestamp("2024-02-01"),
        pd.Timestamp("2024-02-02"),
    ]
    # Codes are upper-cased; empty optional cells are NULL.
    assert medical["cpt_code"].tolist() == ["99213", "G0101"]
    assert medical["diagnosis_code"].tolist() == ["E11.9", "Z0000"]
    assert medical["modifier"].isna().tolist() == [False, True]
    assert medical["units"].tolist() == [1, 2]
    assert medical["amount_billed"].tolist() == [125.5, 80.0]
    assert medical["amount_paid"].isna().tolist() == [False, True]

    pharmacy = claims(sqlite_engine, "pharmacy_claims")
    assert pharmacy["ndc_code"].tolist() == ["00406051201", "00093505601"]
    # refill_number is optional with default 0.
    assert pharmacy["refill_number"].tolist() == [0, 1]
    assert pharmacy["quantity"].tolist() == [60.0, 20.5]


def test_reference_files_are_typed(sqlite_engine: Engine, settings: Settings) -> None:
    load_files(sqlite_engine, settings, "acme", files())
    providers = read_frame(sqlite_engine, "SELECT * FROM providers ORDER BY provider_id")
    assert providers["provider_id"].tolist() == [RENDERING, ORGANIZATION, PHARMACY, PRESCRIBER]
    # excluded: case-insensitive true/false, empty means false; states upper-cased.
    assert providers["excluded"].tolist() == [False, True, False, False]
    assert providers["state"].tolist()[:2] == ["OH", "OH"]
    assert providers["exclusion_date"].tolist()[1] == pd.Timestamp("2023-05-01")
    cpt = read_frame(sqlite_engine, "SELECT * FROM cpt_reference ORDER BY cpt_code")
    assert cpt["cpt_code"].tolist() == ["99213", "G0101"]
    assert cpt["em_level"].tolist()[0] == 3 and pd.isna(cpt["em_level"].tolist()[1])
    ncci = read_frame(sqlite_engine, "SELECT * FROM ncci_edits")
    assert ncci["modifier_allowed"].tolist() == [True]


def test_members_phi_is_encrypted_and_readable_back(
    sqlite_engine: Engine, settings: Settings
) -> None:
    workspace_id = load_files(sqlite_engine, settings, "acme", files()).workspace_id
    stored = read_frame(sqlite_engine, "SELECT * FROM members ORDER BY member_id")
    for column in ("first_name", "last_name", "date_of_birth"):
        assert stored[column].str.startswith("v1:test1:").all()
    assert "Zelda" not in stored.to_csv() and "1950-03-14" not in stored.to_csv()
    assert stored["gender"].tolist() == ["F", "M"]  # "m" upper-cased
    members = members_frame(sqlite_engine, cipher_from_settings(settings), workspace_id)
    members = members.sort_values("member_id")
    assert members["first_name"].tolist() == ["Zelda", "Xavier"]
    assert members["date_of_birth"].tolist() == [dt.date(1950, 3, 14), dt.date(1987, 11, 2)]


def test_business_rule_breaks_are_stored_for_the_quality_gate(
    sqlite_engine: Engine, settings: Settings
) -> None:
    load_files(sqlite_engine, settings, "acme", files())
    batch = rows()
    claim = batch["medical_claims.csv"][0]
    future = (dt.datetime.now(dt.UTC).date() + dt.timedelta(days=30)).isoformat()
    batch["medical_claims.csv"] = [
        {**claim, "claim_id": "MC-1"},  # duplicate of the earlier batch's claim
        {**claim, "claim_id": "MC-9", "provider_id": BAD_CHECK_DIGIT},
        {**claim, "claim_id": "MC-9", "amount_billed": "-20.00", "units": "-1"},  # duplicate id
        {**claim, "claim_id": "MC-10", "amount_billed": "0", "amount_paid": "-1"},
        {**claim, "claim_id": "MC-11", "service_date": future},
        {**claim, "claim_id": "MC-12", "member_id": "NOBODY", "provider_id": "1000000004"},
        {**claim, "claim_id": "MC-13", "service_date": "", "cpt_code": "", "units": ""},
    ]
    batch["pharmacy_claims.csv"][0].update(days_supply="900", refill_number="-3", quantity="0")
    del batch["members.csv"], batch["providers.csv"]

    load_files(sqlite_engine, settings, "acme", files(batch))

    medical = claims(sqlite_engine)
    landed = medical[medical["batch_id"] == 2].reset_index(drop=True)
    assert len(landed) == 7
    pending = read_frame(sqlite_engine, "SELECT status FROM claim_status WHERE batch_id = 2")
    assert len(pending) >= 7 and set(pending["status"]) == {"pending"}
    assert medical["claim_id"].tolist().count("MC-1") == 2
    assert landed["provider_id"].tolist()[1] == BAD_CHECK_DIGIT
    assert landed["amount_billed"].tolist()[2:4] == [-20.0, 0.0]
    assert landed["units"].tolist()[2] == -1
    assert landed["service_date"].tolist()[4] == pd.Timestamp(future)
    assert landed["member_id"].tolist()[5] == "NOBODY"
    assert landed.loc[6, ["service_date", "cpt_code", "units"]].isna().all()
    pharmacy = claims(sqlite_engine, "pharmacy_claims")
    assert pharmacy.iloc[-2][["days_supply", "refill_number", "quantity"]].tolist() == [900, -3, 0]


def test_negative_numbers_pass_the_formula_check_in_numeric_columns(
    sqlite_engine: Engine, settings: Settings
) -> None:
    load_files(
        sqlite_engine, settings, "acme", changed("medical_claims.csv", 0, "amount_paid", "-5.25")
    )
    assert claims(sqlite_engine)["amount_paid"].tolist()[0] == -5.25


@pytest.mark.parametrize(
    ("given", "stored"),
    [
        ("00406051201", "00406051201"),
        ("00406-0512-01", "00406051201"),  # 5-4-2, only dashed
        ("0406-0512-01", "00406051201"),  # 4-4-2
        ("00406-512-01", "00406051201"),  # 5-3-2
        ("00406-0512-1", "00406051201"),  # 5-4-1
        (" 0406-0512-01 ", "00406051201"),
    ],
)
def test_ndc_forms_are_normalised_to_11_digits(
    sqlite_engine: Engine, settings: Settings, given: str, stored: str
) -> None:
    batch = rows()
    batch["pharmacy_claims.csv"][0]["ndc_code"] = given
    batch["ndc_reference.csv"][0]["ndc_code"] = given
    load_files(sqlite_engine, settings, "acme", files(batch))
    assert claims(sqlite_engine, "pharmacy_claims")["ndc_code"].tolist()[0] == stored
    assert (
        stored
        in read_frame(sqlite_engine, "SELECT ndc_code FROM ndc_reference")["ndc_code"].tolist()
    )


def test_csv_dialect_details_are_accepted(sqlite_engine: Engine, settings: Settings) -> None:
    """Header names in any case with spaces, a BOM, CRLF line ends, quoted commas and line
    breaks in text, whitespace around values, and blank lines."""
    batch = files()
    providers = batch["providers.csv"].replace(b"provider_type", b" Provider_Type ")
    providers = providers.replace(b"Dr. Ada Rivera", b'"Dr. Ada\nRivera, MD"')
    providers = providers.replace(b"Family Medicine", b"  Family Medicine  ")
    batch["providers.csv"] = b"\xef\xbb\xbf" + providers.replace(b"\n1", b"\r\n1") + b"\r\n\r\n"
    result = load_files(sqlite_engine, settings, "acme", batch)
    assert result.files["providers.csv"] == 4
    providers_frame = read_frame(sqlite_engine, "SELECT * FROM providers ORDER BY provider_id")
    assert providers_frame["name"].tolist()[0] == "Dr. Ada\nRivera, MD"
    assert providers_frame["specialty"].tolist()[0] == "Family Medicine"
    assert providers_frame["provider_type"].tolist()[0] == "individual"


def test_optional_columns_may_be_absent(sqlite_engine: Engine, settings: Settings) -> None:
    batch = rows()
    required = [
        "claim_id",
        "member_id",
        "provider_id",
        "service_date",
        "cpt_code",
        "units",
        "amount_billed",
    ]
    medical = render(batch["medical_claims.csv"], columns=required)
    pharmacy_columns = [c for c in batch["pharmacy_claims.csv"][0] if c != "refill_number"]
    pharmacy = render(batch["pharmacy_claims.csv"], columns=pharmacy_columns)
    load_files(
        sqlite_engine,
        settings,
        "acme",
        {"medical_claims.csv": medical, "pharmacy_claims.csv": pharmacy},
    )
    stored = claims(sqlite_engine)
    assert (
        stored[["modifier", "diagnosis_code", "place_of_service", "amount_paid"]].isna().all().all()
    )
    assert claims(sqlite_engine, "pharmacy_claims")["refill_number"].tolist() == [0, 0]


def test_extra_columns_are_dropped_with_a_warning(
    sqlite_engine: Engine, settings: Settings
) -> None:
    batch = rows()
    for row in batch["medical_claims.csv"]:
        row["notes"] = "=not even checked"
        row["Adjuster"] = "x"
    result = load_files(sqlite_engine, settings, "acme", files(batch))
    warning = "medical_claims.csv: columns 'notes', 'adjuster' not in the data contract; not stored"
    assert result.summary()["warnings"] == [warning]
    with sqlite_engine.connect() as conn:
        assert conn.execute(select(Batch.warnings)).scalar_one() == [warning]
    assert "notes" not in claims(sqlite_engine).columns


def test_a_long_unknown_column_name_is_cut_in_the_warning(
    sqlite_engine: Engine, settings: Settings
) -> None:
    # Warnings are stored with the batch and served: they quote no more of a name than errors
    # quote of a value.
    batch = rows()
    for row in batch["medical_claims.csv"]:
        row["n" * 5000] = ""
    result = load_files(sqlite_engine, settings, "acme", files(batch))
    cut = "n" * 40 + "..."
    assert result.warnings == [
        f"medical_claims.csv: column '{cut}' not in the data contract; not stored"
    ]


def test_reference_rows_upsert_by_key(sqlite_engine: Engine, settings: Settings) -> None:
    load_files(sqlite_engine, settings, "acme", files())
    load_files(sqlite_engine, settings, "other", files())  # another workspace is untouched
    batch = rows()
    batch["providers.csv"] = [
        {**batch["providers.csv"][0], "name": "Dr. Ada Rivera-Stone", "specialty": ""}
    ]
    batch["members.csv"] = [{**batch["members.csv"][1], "state": "NY"}]
    batch["cpt_reference.csv"][0]["mue_limit"] = "4"
    batch["ncci_edits.csv"][0]["modifier_allowed"] = "false"
    batch["ndc_reference.csv"] = [
        {**batch["ndc_reference.csv"][0], "ndc_code": "00406051201", "drug_name": "Oxycodone 5 mg"}
    ]
    batch["labels.csv"].append({"claim_id": "MC-2", "rule_id": "RULE-MED-002"})
    second = load_files(sqlite_engine, settings, "acme", files(batch))

    sql = "SELECT * FROM providers WHERE workspace_id = :ws ORDER BY provider_id"
    providers = read_frame(sqlite_engine, sql, {"ws": second.workspace_id})
    assert len(providers) == 4
    first = providers.iloc[0]
    assert first["name"] == "Dr. Ada Rivera-Stone"
    assert pd.isna(first["specialty"])  # the whole row is replaced
    assert first["batch_id"] == second.batch_id
    assert providers.iloc[1]["batch_id"] != second.batch_id
    other = read_frame(sqlite_engine, sql, {"ws": second.workspace_id + 1})
    assert other.iloc[0]["name"] == "Dr. Ada Rivera"

    def one(sql: str) -> pd.DataFrame:
        return read_frame(sqlite_engine, sql, {"ws": second.workspace_id})

    members = one("SELECT * FROM members WHERE workspace_id = :ws ORDER BY member_id")
    assert members["state"].tolist()[1] == "NY" and len(members) == 2
    cpt = one("SELECT * FROM cpt_reference WHERE workspace_id = :ws ORDER BY cpt_code")
    assert cpt["mue_limit"].tolist() == [4, 1]
    ncci = one("SELECT * FROM ncci_edits WHERE workspace_id = :ws")
    assert ncci["modifier_allowed"].tolist() == [False]
    ndc = one("SELECT * FROM ndc_reference WHERE workspace_id = :ws ORDER BY ndc_code")
    assert ndc["drug_name"].tolist() == ["Amoxicillin 500 mg capsule", "Oxycodone 5 mg"]
    labels = one("SELECT * FROM claim_labels WHERE workspace_id = :ws ORDER BY claim_id")
    assert labels["rule_id"].tolist() == ["RULE-MED-001", "RULE-MED-002"]
    assert labels["batch_id"].tolist() == [second.batch_id, second.batch_id]
    # Claims append: both batches' claims are there.
    assert len(one("SELECT * FROM medical_claims WHERE workspace_id = :ws")) == 4


def test_repeated_key_within_a_file_keeps_the_last_row(
    sqlite_engine: Engine, settings: Settings
) -> None:
    batch = rows()
    first = batch["providers.csv"][0]
    batch["providers.csv"] += [{**first, "name": "Second"}, {**first, "name": "Third"}]
    result = load_files(sqlite_engine, settings, "acme", files(batch))
    assert result.files["providers.csv"] == 4
    assert result.warnings == [
        "providers.csv: 2 rows repeat a provider_id given later in the file; the last row of "
        "each key was kept"
    ]
    names = read_frame(sqlite_engine, "SELECT name FROM providers")["name"].tolist()
    assert "Third" in names and "Second" not in names and "Dr. Ada Rivera" not in names


def test_loading_marks_the_workspace_for_reprocessing(
    sqlite_engine: Engine, settings: Settings
) -> None:
    load_files(sqlite_engine, settings, "acme", files())
    with sqlite_engine.begin() as conn:
        conn.execute(update(Workspace).values(needs_reprocessing=False))
    batch = rows()
    del batch["pharmacy_claims.csv"]
    result = load_files(sqlite_engine, settings, "acme", files(batch))
    row = workspace_row(sqlite_engine, "acme")
    assert row is not None and row["needs_reprocessing"] is True
    assert row["id"] == result.workspace_id and result.batch_id == 2
    assert table_counts(sqlite_engine)["workspaces"] == 1


def test_sources_may_be_streams_paths_or_bytes(
    sqlite_engine: Engine, settings: Settings, tmp_path: Path
) -> None:
    given = files()
    (tmp_path / "members.csv").write_bytes(given["members.csv"])
    sources = {
        "uploads/MEDICAL_CLAIMS.csv": io.BytesIO(given["medical_claims.csv"]),
        "members.csv": tmp_path / "members.csv",
        "providers.csv": given["providers.csv"],
    }
    result = load_files(sqlite_engine, settings, "acme", sources)
    assert result.files == {"members.csv": 2, "providers.csv": 4, "medical_claims.csv": 2}


def test_plaintext_phi_without_a_key_in_development(
    sqlite_engine: Engine, settings: Settings
) -> None:
    development = settings.model_copy(update={"encryption_key": type(settings.encryption_key)("")})
    load_files(sqlite_engine, development, "acme", files())
    stored = read_frame(sqlite_engine, "SELECT * FROM members ORDER BY member_id")
    assert stored["first_name"].tolist() == ["Zelda", "Xavier"]
    assert stored["pii_key_id"].isna().all()


def test_load_directory_ignores_hidden_files(
    sqlite_engine: Engine, settings: Settings, tmp_path: Path
) -> None:
    directory = tmp_path / "batch"
    directory.mkdir()
    for name, data in files().items():
        (directory / name).write_bytes(data)
    (directory / ".DS_Store").write_bytes(b"\x00\x01")
    (directory / "archive").mkdir()
    result = load_directory(sqlite_engine, settings, "acme", directory)
    assert result.source == "cli"
    assert set(result.files) == set(files())


def test_cli_load(settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    directory = tmp_path / "batch"
    directory.mkdir()
    for name, data in files().items():
        (directory / name).write_bytes(data)
    monkeypatch.setenv("FWA_DATABASE_URL", settings.database_url.get_secret_value())
    monkeypatch.setenv("FWA_ENCRYPTION_KEY", settings.encryption_key.get_secret_value())
    monkeypatch.setenv("FWA_ENVIRONMENT", "test")
    runner = CliRunner()

    loaded = runner.invoke(cli, ["load", "--workspace", "acme", str(directory)])
    assert loaded.exit_code == 0, loaded.output
    assert json.loads(loaded.stdout)["files"]["medical_claims.csv"] == 2

    (directory / "medical_claims.csv").write_bytes(
        changed("medical_claims.csv", 0, "units", "1.5")["medical_claims.csv"]
    )
    rejected = runner.invoke(cli, ["load", "--workspace", "acme", str(directory)])
    assert rejected.exit_code == 2
    assert "medical_claims.csv, row 1, column units: not an integer: '1.5'" in rejected.stderr
