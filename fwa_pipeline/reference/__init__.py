"""The project's shipped default reference data and the facts about it that rules rely on.

``data/`` holds ``cpt_reference.csv``, ``ncci_edits.csv`` and ``ndc_reference.csv`` in exactly the
data contract's columns. The codes are real CPT/HCPCS codes with short plain-language descriptions;
MUE limits, age/gender edits and NCCI pairs are plausible demo values in the spirit of the CMS
tables, not copies of them. NDCs are format-valid 11-digit (5-4-2) demo codes; opioid MME factors
follow the CDC 2022 guideline (codeine 0.15, hydrocodone 1, hydromorphone 5, methadone 4.7,
morphine 1, oxycodone 1.5, oxymorphone 3, tapentadol 0.4, tramadol 0.2). Fentanyl patches carry
their mcg/hr rate as ``strength_per_unit`` and the CMS patch factor 7.2, which already folds in the
72-hour wear time so that ``strength x quantity / days_supply x mme_factor`` holds for them too.

The contract has no drug-class column, so benzodiazepines are recognised by generic-name stem:
see :data:`BENZODIAZEPINE_STEMS` and :func:`is_benzodiazepine`.
"""

from __future__ import annotations

from importlib import resources
from importlib.resources.abc import Traversable

import pandas as pd

# The rule catalogue's ids (spec: rules.md). The synthetic generator plants every one of them.
RULE_IDS: tuple[str, ...] = (
    *(f"RULE-MED-{i:03d}" for i in range(1, 13)),
    *(f"RULE-RX-{i:03d}" for i in range(1, 11)),
)

# Generic names of the benzodiazepines on the US market (all DEA schedule IV). A drug is a
# benzodiazepine when its lower-cased drug_name contains one of these; the names are distinct
# enough that no other generic contains one (carbamazepine, for one, does not).
BENZODIAZEPINE_STEMS: tuple[str, ...] = (
    "alprazolam",
    "chlordiazepoxide",
    "clobazam",
    "clonazepam",
    "clorazepate",
    "diazepam",
    "estazolam",
    "flurazepam",
    "lorazepam",
    "midazolam",
    "oxazepam",
    "quazepam",
    "temazepam",
    "triazolam",
)

_BENZO_PATTERN = "|".join(BENZODIAZEPINE_STEMS)

REFERENCE_FILES: tuple[str, ...] = ("cpt_reference", "ncci_edits", "ndc_reference")

# Codes are text (leading zeros, HCPCS letters); numeric columns are nullable because blank means
# "not applicable" in the contract.
_DTYPES: dict[str, dict[str, str]] = {
    "cpt_reference": {
        "cpt_code": "string",
        "description": "string",
        "minutes_per_unit": "Float64",
        "mue_limit": "Int64",
        "gender": "string",
        "min_age": "Int64",
        "max_age": "Int64",
        "em_level": "Int64",
    },
    "ncci_edits": {
        "column1_code": "string",
        "column2_code": "string",
        "modifier_allowed": "string",
    },
    "ndc_reference": {
        "ndc_code": "string",
        "drug_name": "string",
        "dea_schedule": "Int64",
        "mme_factor": "Float64",
        "strength_per_unit": "Float64",
        "max_daily_quantity": "Float64",
    },
}


def default_reference_path(name: str) -> Traversable:
    """The shipped CSV for ``name`` (one of :data:`REFERENCE_FILES`)."""
    if name not in REFERENCE_FILES:
        raise KeyError(f"unknown reference file {name!r}")
    return resources.files(__package__).joinpath("data", f"{name}.csv")


def load_default_reference() -> dict[str, pd.DataFrame]:
    """The shipped reference tables keyed by file stem, with contract dtypes (nullable numbers,
    text codes, boolean ``modifier_allowed``)."""
    tables: dict[str, pd.DataFrame] = {}
    for name in REFERENCE_FILES:
        with default_reference_path(name).open("r", encoding="utf-8") as handle:
            frame = pd.read_csv(handle, dtype=_DTYPES[name], keep_default_na=False, na_values=[""])
        if name == "ncci_edits":
            frame["modifier_allowed"] = (
                frame["modifier_allowed"].str.lower().eq("true").astype(bool)
            )
        tables[name] = frame
    return tables


def is_benzodiazepine(drug_names: pd.Series) -> pd.Series:
    """True where a drug name names a benzodiazepine (missing names are not)."""
    return (
        drug_names.astype("string")
        .str.lower()
        .str.contains(_BENZO_PATTERN, regex=True)
        .fillna(False)
        .astype(bool)
    )
