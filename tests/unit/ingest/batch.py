"""A small, valid batch as rows, so each test breaks exactly one thing; and a store inspector."""

from __future__ import annotations

import csv
import io
from typing import Any

from sqlalchemy import Engine, func, insert, select

from fwa_pipeline.npi import make_npis
from fwa_pipeline.store.models import Base, Batch, Workspace

RENDERING, ORGANIZATION, PHARMACY, PRESCRIBER = (
    str(n) for n in make_npis([123456789, 223456789, 323456789, 423456789])
)
# The same identifier part as RENDERING with a wrong check digit.
BAD_CHECK_DIGIT = RENDERING[:9] + str((int(RENDERING[9]) + 1) % 10)

Rows = dict[str, list[dict[str, str]]]


def rows() -> Rows:
    """Every contract file, a few rows each, all valid."""
    return {
        "providers.csv": [
            {
                "provider_id": RENDERING,
                "name": "Dr. Ada Rivera",
                "provider_type": "individual",
                "specialty": "Family Medicine",
                "state": "OH",
                "excluded": "false",
                "exclusion_date": "",
            },
            {
                "provider_id": ORGANIZATION,
                "name": "Lakeside Clinic, Inc.",
                "provider_type": "organization",
                "specialty": "",
                "state": "oh",
                "excluded": "TRUE",
                "exclusion_date": "2023-05-01",
            },
            {
                "provider_id": PHARMACY,
                "name": "Main Street Pharmacy",
                "provider_type": "pharmacy",
                "specialty": "",
                "state": "",
                "excluded": "",
                "exclusion_date": "",
            },
            {
                "provider_id": PRESCRIBER,
                "name": "Dr. Sam Okafor",
                "provider_type": "individual",
                "specialty": "Pain Medicine",
                "state": "PA",
                "excluded": "false",
                "exclusion_date": "",
            },
        ],
        "members.csv": [
            {
                "member_id": "M0001",
                "first_name": "Zelda",
                "last_name": "Quibbleworth",
                "date_of_birth": "1950-03-14",
                "gender": "F",
                "state": "OH",
                "date_of_death": "",
            },
            {
                "member_id": "M0002",
                "first_name": "Xavier",
                "last_name": "Pemberton-Vashti",
                "date_of_birth": "1987-11-02",
                "gender": "m",
                "state": "",
                "date_of_death": "2024-01-09",
            },
        ],
        "cpt_reference.csv": [
            {
                "cpt_code": "99213",
                "description": "Office visit, established patient, low complexity",
                "minutes_per_unit": "20",
                "mue_limit": "1",
                "gender": "",
                "min_age": "",
                "max_age": "",
                "em_level": "3",
            },
            {
                "cpt_code": "G0101",
                "description": "Cervical or vaginal cancer screening",
                "minutes_per_unit": "",
                "mue_limit": "1",
                "gender": "F",
                "min_age": "21",
                "max_age": "",
                "em_level": "",
            },
        ],
        "ncci_edits.csv": [
            {"column1_code": "99213", "column2_code": "G0101", "modifier_allowed": "true"},
        ],
        "ndc_reference.csv": [
            {
                "ndc_code": "00406-0512-01",
                "drug_name": "Oxycodone HCl 5 mg tablet",
                "dea_schedule": "2",
                "mme_factor": "1.5",
                "strength_per_unit": "5",
                "max_daily_quantity": "12",
            },
            {
                "ndc_code": "00093505601",
                "drug_name": "Amoxicillin 500 mg capsule",
                "dea_schedule": "",
                "mme_factor": "",
                "strength_per_unit": "500",
                "max_daily_quantity": "",
            },
        ],
        "medical_claims.csv": [
            {
                "claim_id": "MC-1",
                "member_id": "M0001",
                "provider_id": RENDERING,
                "service_date": "2024-02-01",
                "cpt_code": "99213",
                "modifier": "25",
                "diagnosis_code": "E11.9",
                "units": "1",
                "place_of_service": "11",
                "amount_billed": "125.50",
                "amount_paid": "98.1",
            },
            {
                "claim_id": "MC-2",
                "member_id": "M0002",
                "provider_id": ORGANIZATION,
                "service_date": "2024-02-02",
                "cpt_code": "g0101",
                "modifier": "",
                "diagnosis_code": "z0000",
                "units": "2",
                "place_of_service": "",
                "amount_billed": "80",
                "amount_paid": "",
            },
        ],
        "pharmacy_claims.csv": [
            {
                "claim_id": "RX-1",
                "member_id": "M0001",
                "prescriber_id": PRESCRIBER,
                "pharmacy_id": PHARMACY,
                "fill_date": "2024-02-03",
                "ndc_code": "0406-0512-01",
                "quantity": "60",
                "days_supply": "30",
                "refill_number": "",
                "amount_billed": "45.00",
                "amount_paid": "40.00",
            },
            {
                "claim_id": "RX-2",
                "member_id": "M0002",
                "prescriber_id": PRESCRIBER,
                "pharmacy_id": PHARMACY,
                "fill_date": "2024-02-04",
                "ndc_code": "00093-5056-01",
                "quantity": "20.5",
                "days_supply": "10",
                "refill_number": "1",
                "amount_billed": "12.00",
                "amount_paid": "",
            },
        ],
        "labels.csv": [{"claim_id": "MC-1", "rule_id": "RULE-MED-001"}],
    }


def render(file_rows: list[dict[str, str]], columns: list[str] | None = None) -> bytes:
    """CSV bytes of ``file_rows`` (header from the first row unless ``columns`` is given)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    names = columns or list(file_rows[0])
    writer.writerow(names)
    writer.writerows([row.get(name, "") for name in names] for row in file_rows)
    return out.getvalue().encode()


def files(batch: Rows | None = None) -> dict[str, bytes]:
    return {name: render(file_rows) for name, file_rows in (batch or rows()).items()}


def table_counts(engine: Engine) -> dict[str, int]:
    """Rows per table: an unchanged store compares equal."""
    with engine.connect() as conn:
        return {
            t.name: conn.execute(select(func.count()).select_from(t)).scalar_one()
            for t in Base.metadata.sorted_tables
        }


def workspace_row(engine: Engine, name: str) -> dict[str, Any] | None:
    with engine.connect() as conn:
        row = conn.execute(select(Workspace).where(Workspace.name == name)).mappings().first()
    return None if row is None else dict(row)


def changed(file: str, row: int, column: str, value: str) -> dict[str, bytes]:
    """The valid batch with one cell (``row`` 0-based) of ``file`` set to ``value``."""
    batch = rows()
    batch[file][row][column] = value
    return files(batch)


def empty_batch(engine: Engine) -> int:
    """Workspace 1 ("acme") and a batch of it with no rows yet; returns the batch id."""
    with engine.begin() as conn:
        conn.execute(insert(Workspace).values(id=1, name="acme"))
        return conn.execute(
            insert(Batch).values(workspace_id=1, source="cli").returning(Batch.id)
        ).scalar_one()
