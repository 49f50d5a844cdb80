"""Every bad-input rule of the data contract, one test each: the batch is rejected with a
message naming file, row (or line) and column, and nothing at all is stored (the ``reject``
fixture checks every table and the workspace row)."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import pytest

from fwa_pipeline.ingest.contract import Column, Kind
from tests.unit.ingest.batch import BAD_CHECK_DIGIT, changed, files, render, rows
from tests.unit.ingest.conftest import Reject

# --------------------------------------------------------------------------- bytes


# One file's bytes edited in place, and the problem the contract names for the edit.
@pytest.mark.parametrize(
    ("file", "old", "new", "expected"),
    [
        pytest.param(
            "providers.csv",
            b"Lakeside",
            b"Lake\xe9side",
            "providers.csv, line 3, column name: not valid UTF-8 text",
            id="not-utf8",
        ),
        pytest.param(
            "medical_claims.csv",
            b"MC-2",
            b"MC\x00-2",
            "medical_claims.csv, line 3, column claim_id: a NUL byte",
            id="nul-byte",
        ),
        pytest.param(
            "pharmacy_claims.csv",
            b"RX-1",
            b"RX\x1b-1",
            "pharmacy_claims.csv, line 2, column claim_id: binary content (control byte 0x1b)",
            id="other-binary-content",
        ),
        pytest.param(
            "medical_claims.csv",
            b"MC-2",
            b"MC\r-2\xff",
            "medical_claims.csv, line 3: not valid UTF-8 text",
            id="bad-utf8-after-a-bare-carriage-return",
        ),
        pytest.param(
            "medical_claims.csv",
            b"MC-2",
            b"MC-2" + b"y" * (200 * 1024) + b"\x1b",
            "medical_claims.csv, line 3: binary content (control byte 0x1b)",
            id="binary-content-after-a-long-cell",
        ),
        pytest.param(
            "providers.csv",
            b"Main Street",
            b"Main, Street",
            "providers.csv, row 3: the row does not have the header's 7 fields",
            id="wrong-number-of-fields",
        ),
    ],
)
def test_bad_bytes_are_located(
    reject: Reject, file: str, old: bytes, new: bytes, expected: str
) -> None:
    batch = files()
    batch[file] = batch[file].replace(old, new)
    assert expected in reject(batch)


def test_binary_file_under_a_contract_name(reject: Reject) -> None:
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("medical_claims.csv", files()["medical_claims.csv"])
    message = reject({**files(), "medical_claims.csv": archive.getvalue()})
    assert "medical_claims.csv, line 1, column #1: binary content (control byte 0x03)" in message


def test_members_encoding_errors_do_not_quote_phi(reject: Reject) -> None:
    batch = files()
    batch["members.csv"] = batch["members.csv"].replace(b"Quibbleworth", b"Quibble\xffworth")
    message = reject(batch)
    assert "members.csv, line 2, column last_name: not valid UTF-8 text" in message
    assert "Quibble" not in message


# --------------------------------------------------------------------------- limits


@pytest.mark.parametrize("kind", ["bytes", "path", "stream"])
def test_over_the_size_limit(reject: Reject, tmp_path: Path, kind: str) -> None:
    batch = rows()
    claim = batch["medical_claims.csv"][0]
    batch["medical_claims.csv"] = [{**claim, "claim_id": f"MC-{i}"} for i in range(16_000)]
    data = render(batch["medical_claims.csv"])
    assert len(data) > 1024 * 1024
    path = tmp_path / "medical_claims.csv"
    path.write_bytes(data)
    source = {"bytes": data, "path": path, "stream": io.BytesIO(data)}[kind]
    message = reject({**files(), "medical_claims.csv": source}, max_upload_mb=1)
    size = f"over {1024 * 1024:,}" if kind == "stream" else f"{len(data):,}"
    assert f"medical_claims.csv: the file is {size} bytes; the limit is 1,048,576 bytes" in message


def test_over_the_row_limit(reject: Reject) -> None:
    message = reject(files(), max_upload_rows=3)
    assert "providers.csv, row 4: the file has 4 data rows; the limit is 3" in message
    assert "members.csv" not in message  # 2 rows: within the limit


def test_over_the_column_limit(reject: Reject) -> None:
    message = reject(files(), max_upload_columns=7)
    # The 8th column of medical_claims.csv is the first one over the limit.
    assert (
        "medical_claims.csv, line 1, column units: the header has 11 columns; the limit is 7"
        in message
    )


# --------------------------------------------------------------------------- structure


def test_required_column_missing(reject: Reject) -> None:
    batch = rows()
    for row in batch["medical_claims.csv"]:
        del row["service_date"]
    message = reject(files(batch))
    assert "medical_claims.csv, line 1, column service_date: required column is missing" in message


def test_duplicate_column_names(reject: Reject) -> None:
    batch = files()
    batch["pharmacy_claims.csv"] = batch["pharmacy_claims.csv"].replace(
        b"refill_number", b" Days_Supply", 1
    )
    message = reject(batch)
    assert (
        "pharmacy_claims.csv, line 1, column days_supply: the column appears 2 times in the header"
        in message
    )


def test_a_column_name_with_a_line_break_is_refused_not_misread(reject: Reject) -> None:
    batch = files()
    batch["medical_claims.csv"] = b'"note\nx",' + batch["medical_claims.csv"]
    message = reject(batch)
    assert "medical_claims.csv, line 1, column #1: a column name holds a line break" in message
    assert "expected an NPI" not in message  # the rows were not read a line out of step


@pytest.mark.parametrize("quote", [b"", b'"'])
@pytest.mark.parametrize("size", [100 * 1024, 200 * 1024])
def test_a_column_name_over_the_field_limit(reject: Reject, quote: bytes, size: int) -> None:
    # 200 KiB is past the csv module's own field limit (128 KiB): refused the same way.
    claims = rows()["medical_claims.csv"]
    data = render(claims, columns=[*claims[0], "notes"])
    data = data.replace(b"notes", quote + b"x" * size + quote, 1)
    message = reject({**files(), "medical_claims.csv": data})
    assert "medical_claims.csv, line 1" in message
    assert "longer than 65,536 bytes, the limit for any field" in message
    assert "xxx" not in message


def test_a_cell_over_the_field_limit(reject: Reject) -> None:
    batch = rows()
    for row in batch["providers.csv"]:
        row["notes"] = "n" * 70_000 if row["name"] == "Lakeside Clinic, Inc." else ""
    message = reject(files(batch))
    assert (
        "providers.csv, row 2, column notes: longer than 65,536 bytes, the limit for any field"
        in message
    )
    assert "nnn" not in message


@pytest.mark.parametrize("quote", ["", '"'])
def test_a_cell_longer_than_the_parser_block_is_named_not_misread(
    reject: Reject, quote: str
) -> None:
    # Over 16 MiB: more than the CSV reader holds in one block.
    batch = rows()
    batch["providers.csv"][1]["specialty"] = quote + "s" * (17 << 20) + quote
    data = render(batch["providers.csv"]).replace(b'"""', b'"').replace(b'""', b"")
    message = reject({**files(), "providers.csv": data})
    assert (
        "providers.csv, row 2, column specialty: longer than 65,536 bytes, the limit for any field"
        in message
    )
    assert "unterminated" not in message


def test_empty_file(reject: Reject) -> None:
    message = reject({**files(), "ncci_edits.csv": b""})
    assert "ncci_edits.csv, line 1: the file is empty: a header row is required" in message


@pytest.mark.parametrize("file", ["medical_claims.csv", "ncci_edits.csv"])
@pytest.mark.parametrize("after", [b"", b"\n", b"\r\n\r\n\n"])
def test_header_only_file(reject: Reject, file: str, after: bytes) -> None:
    batch = files()
    batch[file] = batch[file].split(b"\n", 1)[0] + after
    message = reject(batch)
    assert f"{file}: the file has a header but no data rows" in message


def test_header_only_batch_creates_no_workspace(reject: Reject) -> None:
    # The reject fixture checks every table, workspaces and batches included.
    header = files()["medical_claims.csv"].split(b"\n", 1)[0]
    message = reject({"medical_claims.csv": header + b"\n"}, workspace="fresh")
    assert "medical_claims.csv: the file has a header but no data rows" in message


def test_unknown_file_name(reject: Reject) -> None:
    message = reject({**files(), "claims_2024.csv": files()["medical_claims.csv"]})
    assert "claims_2024.csv: not a contract file; a batch holds only members.csv" in message


def test_same_file_twice(reject: Reject) -> None:
    message = reject({**files(), "Medical_Claims.CSV": files()["medical_claims.csv"]})
    assert "Medical_Claims.CSV: medical_claims.csv is given more than once" in message


def test_batch_without_claims_file(reject: Reject) -> None:
    batch = files()
    del batch["medical_claims.csv"], batch["pharmacy_claims.csv"]
    message = reject(batch)
    assert (
        "batch: a batch must contain at least one claims file "
        "(medical_claims.csv or pharmacy_claims.csv)" in message
    )


@pytest.mark.parametrize("name", ["", "a b", "-lead", "x" * 65, "../etc"])
def test_bad_workspace_name(reject: Reject, name: str) -> None:
    message = reject(files(), workspace=name)
    assert "batch: the workspace name must be 1-64 letters, digits" in message


# --------------------------------------------------------------------------- text cells


@pytest.mark.parametrize(
    "value", ["=1+1", "+SUM(A1)", "-2+3", "@cmd", "\tx", "\rx", "  =HYPERLINK()"]
)
def test_formula_injection_in_a_text_column(reject: Reject, value: str) -> None:
    batch = files()
    # Row 2's name is a quoted field, so any character may open it.
    quoted = b'"' + value.encode() + b'"'
    batch["providers.csv"] = batch["providers.csv"].replace(b'"Lakeside Clinic, Inc."', quoted)
    message = reject(batch)
    assert (
        "providers.csv, row 2, column name: starts with =, +, -, @, a tab or a carriage "
        "return (formula injection is rejected in text columns)" in message
    )
    assert repr(value) not in message


def test_formula_injection_in_members_does_not_quote_phi(reject: Reject) -> None:
    message = reject(changed("members.csv", 0, "first_name", "=Zelda"))
    assert "members.csv, row 1, column first_name: starts with =" in message
    assert "Zelda" not in message


def test_a_text_column_cannot_be_declared_without_a_bound() -> None:
    with pytest.raises(ValueError, match="text column notes has no max_length"):
        Column("notes", Kind.TEXT)


def test_text_longer_than_its_column(reject: Reject) -> None:
    message = reject(changed("medical_claims.csv", 0, "claim_id", "C" * 65))
    assert "medical_claims.csv, row 1, column claim_id: longer than 64 characters" in message


@pytest.mark.parametrize("column", ["first_name", "last_name"])
def test_member_names_are_bounded_and_not_quoted(reject: Reject, column: str) -> None:
    message = reject(changed("members.csv", 1, column, "Zelda" * 20 + "Q"))
    assert f"members.csv, row 2, column {column}: longer than 100 characters" in message
    assert "Zelda" not in message


def test_a_five_megabyte_name_is_refused_unquoted(reject: Reject) -> None:
    message = reject(changed("members.csv", 0, "first_name", "Zelda" * (1 << 20)))
    assert (
        "members.csv, row 1, column first_name: longer than 65,536 bytes, the limit for any field"
        in message
    )
    assert "Zelda" not in message


# --------------------------------------------------------------------------- typed cells


@pytest.mark.parametrize("value", ["02/01/2024", "2024-2-1", "yesterday", "2024-02-01T10:00"])
def test_not_an_iso_date(reject: Reject, value: str) -> None:
    message = reject(changed("medical_claims.csv", 1, "service_date", value))
    assert (
        f"medical_claims.csv, row 2, column service_date: not an ISO date (YYYY-MM-DD): {value!r}"
        in message
    )


@pytest.mark.parametrize("value", ["2023-02-29", "0000-01-01"])
def test_not_a_calendar_date(reject: Reject, value: str) -> None:
    # Year 0 is no calendar date either, though Arrow's date type would take it.
    message = reject(changed("pharmacy_claims.csv", 0, "fill_date", value))
    assert (
        f"pharmacy_claims.csv, row 1, column fill_date: not a calendar date: {value!r}" in message
    )


def test_a_birth_date_in_year_zero_is_refused_without_quoting_it(reject: Reject) -> None:
    # Stored encrypted, nothing after the loader would see it before a reader failed on it.
    message = reject(changed("members.csv", 0, "date_of_birth", "0000-01-01"))
    assert "members.csv, row 1, column date_of_birth: not a calendar date" in message
    assert "0000" not in message


def test_members_date_errors_do_not_quote_phi(reject: Reject) -> None:
    message = reject(changed("members.csv", 1, "date_of_birth", "11/02/1987"))
    assert "members.csv, row 2, column date_of_birth: not an ISO date (YYYY-MM-DD)" in message
    assert "1987" not in message


@pytest.mark.parametrize("value", ["$12.00", "12,00", "twelve", "1e3", "0x10"])
def test_money_not_a_number(reject: Reject, value: str) -> None:
    message = reject(changed("medical_claims.csv", 0, "amount_billed", value))
    assert (
        "medical_claims.csv, row 1, column amount_billed: not a number (money is digits with at "
        f"most 2 decimal places, no currency sign): {value!r}" in message
    )


@pytest.mark.parametrize("value", ["1.5", "two", "0x10"])
def test_integer_expected(reject: Reject, value: str) -> None:
    message = reject(changed("medical_claims.csv", 1, "units", value))
    assert f"medical_claims.csv, row 2, column units: not an integer: {value!r}" in message


def test_problems_are_listed_in_reading_order_whichever_check_found_them(
    reject: Reject,
) -> None:
    batch = rows()
    medical = batch["medical_claims.csv"]
    medical[0]["amount_billed"] = "abc"  # row 1: money is checked after integers
    medical[1]["units"] = "x"  # row 2: integers
    batch["pharmacy_claims.csv"][0]["fill_date"] = "2024-13-45"
    message = reject(files(batch))
    places = [line.split(", column")[0] for line in message.splitlines()[1:]]
    assert places == [
        "  - medical_claims.csv, row 1",
        "  - medical_claims.csv, row 2",
        "  - pharmacy_claims.csv, row 1",
    ]


@pytest.mark.parametrize(
    "value",
    ["0406051201", "00406-512-1", "406-0512-01", "00406-0512-001", "00406 0512 01", "NDC123"],
)
def test_ndc_not_in_an_accepted_form(reject: Reject, value: str) -> None:
    message = reject(changed("pharmacy_claims.csv", 1, "ndc_code", value))
    assert (
        "pharmacy_claims.csv, row 2, column ndc_code: expected an NDC: 11 digits, or 10 digits "
        f"with dashes in 4-4-2, 5-3-2 or 5-4-1 form: {value!r}" in message
    )


def test_gender_not_allowed_and_not_quoted(reject: Reject) -> None:
    message = reject(changed("members.csv", 0, "gender", "female"))
    assert "members.csv, row 1, column gender: expected one of F, M, U" in message
    assert "female" not in message


@pytest.mark.parametrize(
    ("file", "column", "value", "expected"),
    [
        ("medical_claims.csv", "cpt_code", "9921", "5 digits (CPT) or a letter and 4 digits"),
        ("medical_claims.csv", "cpt_code", "99213A", "5 digits (CPT) or a letter and 4 digits"),
        ("medical_claims.csv", "modifier", "2", "2 letters or digits"),
        ("medical_claims.csv", "diagnosis_code", "11.9", "ICD-10-CM: a letter, a digit"),
        ("medical_claims.csv", "diagnosis_code", "E11.12345", "ICD-10-CM: a letter, a digit"),
        ("medical_claims.csv", "place_of_service", "1A", "2 digits"),
        ("providers.csv", "state", "XX", "a 2-letter US state or territory code"),
        ("cpt_reference.csv", "cpt_code", "ABCDE", "5 digits (CPT) or a letter and 4 digits"),
        ("ncci_edits.csv", "column2_code", "G01", "5 digits (CPT) or a letter and 4 digits"),
    ],
)
def test_malformed_code(reject: Reject, file: str, column: str, value: str, expected: str) -> None:
    message = reject(changed(file, 0, column, value))
    assert f"{file}, row 1, column {column}: expected {expected}" in message
    assert repr(value) in message


@pytest.mark.parametrize(
    ("file", "column"),
    [
        ("medical_claims.csv", "provider_id"),
        ("pharmacy_claims.csv", "prescriber_id"),
        ("pharmacy_claims.csv", "pharmacy_id"),
        ("providers.csv", "provider_id"),
    ],
)
def test_npi_not_ten_digits(reject: Reject, file: str, column: str) -> None:
    message = reject(changed(file, 0, column, "123456789"))
    assert f"{file}, row 1, column {column}: expected an NPI: 10 digits: '123456789'" in message


@pytest.mark.parametrize(
    ("file", "row", "column", "value", "problem"),
    [
        pytest.param(
            "pharmacy_claims.csv",
            1,
            "amount_paid",
            "10.125",
            "money has more than 2 decimal places: '10.125'",
            id="money with more than two decimals",
        ),
        pytest.param(
            "medical_claims.csv",
            0,
            "amount_billed",
            "1234567890123",
            "too large (at most 12 digits before the point)",
            id="money too large for the store",
        ),
        pytest.param(
            "pharmacy_claims.csv",
            0,
            "quantity",
            "sixty",
            "not a number: 'sixty'",
            id="decimal not a number",
        ),
        pytest.param(
            "pharmacy_claims.csv",
            0,
            "days_supply",
            "12345678901",
            "too large (at most 9 digits)",
            id="integer too large",
        ),
        pytest.param(
            "providers.csv",
            0,
            "excluded",
            "yes",
            "expected true or false: 'yes'",
            id="boolean not true or false",
        ),
        pytest.param(
            "providers.csv",
            2,
            "provider_type",
            "doctor",
            "expected one of individual, organization, pharmacy: 'doctor'",
            id="provider type not allowed",
        ),
        pytest.param(
            "providers.csv",
            0,
            "provider_id",
            BAD_CHECK_DIGIT,
            f"the NPI check digit is wrong: {BAD_CHECK_DIGIT!r}",
            id="provider NPI with a wrong check digit",
        ),
    ],
)
def test_a_bad_value_is_named_by_file_row_and_column(
    reject: Reject, file: str, row: int, column: str, value: str, problem: str
) -> None:
    message = reject(changed(file, row, column, value))
    assert f"{file}, row {row + 1}, column {column}: {problem}" in message


# --------------------------------------------------------------------------- keys, required


@pytest.mark.parametrize(
    ("file", "column", "value"),
    [
        ("medical_claims.csv", "claim_id", "  "),
        ("pharmacy_claims.csv", "claim_id", "  "),
        ("labels.csv", "claim_id", "  "),
        ("providers.csv", "provider_id", ""),
        ("providers.csv", "name", ""),
        ("members.csv", "member_id", ""),
        ("members.csv", "gender", ""),
        ("cpt_reference.csv", "cpt_code", ""),
        ("ncci_edits.csv", "column1_code", ""),
        ("ndc_reference.csv", "ndc_code", ""),
        ("labels.csv", "rule_id", ""),
    ],
)
def test_required_value_empty(reject: Reject, file: str, column: str, value: str) -> None:
    message = reject(changed(file, 0, column, value))
    assert f"{file}, row 1, column {column}: required value is empty" in message


@pytest.mark.parametrize(
    ("file", "column", "value", "rule"),
    [
        ("cpt_reference.csv", "em_level", "7", "must be between 1 and 5"),
        ("cpt_reference.csv", "mue_limit", "0", "must be at least 1"),
        ("ndc_reference.csv", "dea_schedule", "1", "must be between 2 and 5"),
        ("ndc_reference.csv", "mme_factor", "-1.5", "must be at least 0"),
    ],
)
def test_reference_value_out_of_range(
    reject: Reject, file: str, column: str, value: str, rule: str
) -> None:
    message = reject(changed(file, 0, column, value))
    assert f"{file}, row 1, column {column}: {rule}: {value!r}" in message


# --------------------------------------------------------------------------- reporting


def test_every_problem_of_every_file_is_listed_with_capped_rows(reject: Reject) -> None:
    batch = rows()
    claim = batch["medical_claims.csv"][0]
    batch["medical_claims.csv"] = [
        {**claim, "claim_id": f"MC-{i}", "service_date": "01/02/2024"} for i in range(30)
    ]
    batch["providers.csv"][3]["state"] = "ZZ"
    message = reject(files(batch))
    assert (
        "medical_claims.csv, rows 1, 2, 3, 4, 5 and 25 more, column service_date: "
        "not an ISO date (YYYY-MM-DD): '01/02/2024'" in message
    )
    assert "providers.csv, row 4, column state" in message
    assert message.splitlines()[0].startswith("batch rejected, nothing was stored: 2 problems")


def test_problem_list_is_capped(reject: Reject) -> None:
    batch = rows()
    claim = batch["medical_claims.csv"][0]
    bad = {c: "=x" for c in ("claim_id", "member_id")} | {
        c: "?" for c in claim if c not in ("claim_id", "member_id")
    }
    batch["medical_claims.csv"] = [bad]
    batch["pharmacy_claims.csv"] = [dict.fromkeys(batch["pharmacy_claims.csv"][0], "?")]
    batch["providers.csv"] = [dict.fromkeys(batch["providers.csv"][0], "?")]
    message = reject(files(batch))
    lines = message.splitlines()
    assert len(lines) == 1 + 20 + 1
    assert lines[-1].startswith("  - and ") and lines[-1].endswith(" more problems")
