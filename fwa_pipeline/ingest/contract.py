"""The data contract (``spec/data-contract.md``) as data: the files a batch may hold, their columns,
types, length bounds, required columns and upsert keys. The parser and the lander read these
tables; nothing else in the ingest package knows a column name.

Two roles differ in what a bad value gets:

* ``claims`` files are append-only. A cell that cannot be parsed into its type rejects the batch;
  a value that parses but breaks a business rule (bad NPI check digit, negative amount, empty
  required cell, out-of-range units...) is stored for the pipeline's quality gate.
* ``reference`` files (and ``labels.csv``) are upserted by key and nothing checks them later, so
  every contract rule (required cells, ranges, NPI check digits) rejects the batch.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

# The longest field (a cell or a column name) any file may hold. Far above every contract value
# (text columns are bounded per column below), far below what the CSV readers hold: Python's
# csv module, which reads the header, refuses fields over 128 Ki characters.
MAX_FIELD_BYTES = 64 * 1024


class Kind(StrEnum):
    TEXT = "text"  # free text: length-limited and checked for formula injection
    CODE = "code"  # a fixed-format code matched by ``pattern``
    NPI = "npi"  # 10 digits; the Luhn check digit is a business rule (see module doc)
    DATE = "date"  # ISO YYYY-MM-DD
    MONEY = "money"  # decimal, at most 2 places
    DECIMAL = "decimal"
    INTEGER = "integer"
    BOOLEAN = "boolean"  # true / false
    CHOICE = "choice"  # one of ``choices``
    NDC = "ndc"  # normalised to 11 digits


class Role(StrEnum):
    CLAIMS = "claims"
    REFERENCE = "reference"


@dataclass(frozen=True)
class Column:
    name: str
    kind: Kind
    required: bool = False
    # TEXT: longest accepted value in characters (required: every text column is bounded).
    max_length: int | None = None
    # CODE: a full-match regex (after ``upper``).
    pattern: str | None = None
    # What a CODE/CHOICE error says the value should look like (CHOICE: default lists them).
    expected: str | None = None
    choices: tuple[str, ...] = ()
    # Codes, states and gender are case-insensitive: upper-cased before matching and storing.
    upper: bool = False
    # Inclusive range of INTEGER/DECIMAL values; enforced for reference files only.
    minimum: float | None = None
    maximum: float | None = None
    # Stored when the cell is empty or the column absent.
    default: object = None
    # Values are never echoed in error messages (PHI and member identifiers).
    sensitive: bool = False

    def __post_init__(self) -> None:
        if self.kind is Kind.TEXT and self.max_length is None:
            raise ValueError(f"text column {self.name} has no max_length")


@dataclass(frozen=True)
class FileSpec:
    name: str
    table: str
    role: Role
    columns: tuple[Column, ...]
    # Columns that identify a row: an empty key cell always rejects the batch (a row without
    # its key can be neither upserted nor traced). Reference files upsert on the key; claims
    # files append, duplicates included, for the quality gate.
    key: tuple[str, ...] = ()
    # No value of this file is ever echoed in an error message.
    phi: bool = False

    @property
    def column_names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns)

    def column(self, name: str) -> Column:
        return next(c for c in self.columns if c.name == name)


# USPS codes for the states, DC and the inhabited territories.
# fmt: off
US_STATES = (
    "AL", "AK", "AZ", "AR", "CA", "CO", "CT", "DE", "DC", "FL", "GA", "HI", "ID", "IL",
    "IN", "IA", "KS", "KY", "LA", "ME", "MD", "MA", "MI", "MN", "MS", "MO", "MT", "NE",
    "NV", "NH", "NJ", "NM", "NY", "NC", "ND", "OH", "OK", "OR", "PA", "RI", "SC", "SD",
    "TN", "TX", "UT", "VT", "VA", "WA", "WV", "WI", "WY", "PR", "VI", "GU", "AS", "MP",
)
# fmt: on

_CPT = r"[0-9]{5}|[A-Z][0-9]{4}"
_CPT_EXPECTED = "5 digits (CPT) or a letter and 4 digits (HCPCS)"


def _text(name: str, max_length: int, *, required: bool = False, sensitive: bool = False) -> Column:
    return Column(name, Kind.TEXT, required=required, max_length=max_length, sensitive=sensitive)


def _cpt(name: str, *, required: bool = False) -> Column:
    return Column(
        name, Kind.CODE, required=required, pattern=_CPT, expected=_CPT_EXPECTED, upper=True
    )


def _state() -> Column:
    return Column(
        "state",
        Kind.CHOICE,
        choices=US_STATES,
        expected="a 2-letter US state or territory code",
        upper=True,
    )


def _npi(name: str, *, required: bool = True) -> Column:
    return Column(name, Kind.NPI, required=required)


def _member_id(*, required: bool = True) -> Column:
    return _text("member_id", 64, required=required, sensitive=True)


def _claims(table: str, *columns: Column) -> FileSpec:
    """A claim file: the claim id and member first, then ``columns``, then what was billed and
    paid; keyed by claim id."""
    return FileSpec(
        f"{table}.csv",
        table,
        Role.CLAIMS,
        (
            _text("claim_id", 64, required=True),
            _member_id(),
            *columns,
            Column("amount_billed", Kind.MONEY, required=True),
            Column("amount_paid", Kind.MONEY),
        ),
        key=("claim_id",),
    )


MEDICAL_CLAIMS = _claims(
    "medical_claims",
    _npi("provider_id"),
    Column("service_date", Kind.DATE, required=True),
    _cpt("cpt_code", required=True),
    Column(
        "modifier",
        Kind.CODE,
        pattern=r"[A-Z0-9]{2}",
        expected="2 letters or digits",
        upper=True,
    ),
    Column(
        "diagnosis_code",
        Kind.CODE,
        pattern=r"[A-Z][0-9][0-9A-Z](?:\.?[0-9A-Z]{1,4})?",
        expected="ICD-10-CM: a letter, a digit, a letter or digit, then an optional dot and "
        "up to 4 more",
        upper=True,
    ),
    Column("units", Kind.INTEGER, required=True, minimum=1),
    Column("place_of_service", Kind.CODE, pattern=r"[0-9]{2}", expected="2 digits"),
)

PHARMACY_CLAIMS = _claims(
    "pharmacy_claims",
    _npi("prescriber_id"),
    _npi("pharmacy_id"),
    Column("fill_date", Kind.DATE, required=True),
    Column("ndc_code", Kind.NDC, required=True),
    Column("quantity", Kind.DECIMAL, required=True),
    Column("days_supply", Kind.INTEGER, required=True, minimum=1, maximum=365),
    Column("refill_number", Kind.INTEGER, minimum=0, maximum=99, default=0),
)

PROVIDERS = FileSpec(
    "providers.csv",
    "providers",
    Role.REFERENCE,
    (
        _npi("provider_id"),
        _text("name", 200, required=True),
        Column(
            "provider_type",
            Kind.CHOICE,
            required=True,
            choices=("individual", "organization", "pharmacy"),
        ),
        _text("specialty", 100),
        _state(),
        Column("excluded", Kind.BOOLEAN, default=False),
        Column("exclusion_date", Kind.DATE),
    ),
    key=("provider_id",),
)

MEMBERS = FileSpec(
    "members.csv",
    "members",
    Role.REFERENCE,
    (
        _member_id(),
        # Stored encrypted (no column width): bounded generously for real names.
        _text("first_name", 100, required=True),
        _text("last_name", 100, required=True),
        Column("date_of_birth", Kind.DATE, required=True),
        Column("gender", Kind.CHOICE, required=True, choices=("F", "M", "U"), upper=True),
        _state(),
        Column("date_of_death", Kind.DATE),
    ),
    key=("member_id",),
    phi=True,
)

CPT_REFERENCE = FileSpec(
    "cpt_reference.csv",
    "cpt_reference",
    Role.REFERENCE,
    (
        _cpt("cpt_code", required=True),
        _text("description", 300),
        Column("minutes_per_unit", Kind.DECIMAL, minimum=0),
        Column("mue_limit", Kind.INTEGER, minimum=1),
        Column("gender", Kind.CHOICE, choices=("F", "M"), upper=True),
        Column("min_age", Kind.INTEGER, minimum=0, maximum=130),
        Column("max_age", Kind.INTEGER, minimum=0, maximum=130),
        Column("em_level", Kind.INTEGER, minimum=1, maximum=5),
    ),
    key=("cpt_code",),
)

NCCI_EDITS = FileSpec(
    "ncci_edits.csv",
    "ncci_edits",
    Role.REFERENCE,
    (
        _cpt("column1_code", required=True),
        _cpt("column2_code", required=True),
        Column("modifier_allowed", Kind.BOOLEAN, default=False),
    ),
    key=("column1_code", "column2_code"),
)

NDC_REFERENCE = FileSpec(
    "ndc_reference.csv",
    "ndc_reference",
    Role.REFERENCE,
    (
        Column("ndc_code", Kind.NDC, required=True),
        _text("drug_name", 200),
        Column("dea_schedule", Kind.INTEGER, minimum=2, maximum=5),
        Column("mme_factor", Kind.DECIMAL, minimum=0),
        Column("strength_per_unit", Kind.DECIMAL, minimum=0),
        Column("max_daily_quantity", Kind.DECIMAL, minimum=0),
    ),
    key=("ndc_code",),
)

# Ground truth shipped with demo batches: which claims plant which scheme.
LABELS = FileSpec(
    "labels.csv",
    "claim_labels",
    Role.REFERENCE,
    (_text("claim_id", 64, required=True), _text("rule_id", 32, required=True)),
    key=("claim_id", "rule_id"),
)

# Landing order: reference data before the claims that point at it, labels last.
FILES: dict[str, FileSpec] = {
    spec.name: spec
    for spec in (
        MEMBERS,
        PROVIDERS,
        CPT_REFERENCE,
        NCCI_EDITS,
        NDC_REFERENCE,
        MEDICAL_CLAIMS,
        PHARMACY_CLAIMS,
        LABELS,
    )
}
