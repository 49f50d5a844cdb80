"""A synthetic batch's CSV files read as text, then typed: dates, numbers, ``true``/``false``
flags (what the rule tests over a generated batch start from)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

DATES = {
    "members": ["date_of_birth", "date_of_death"],
    "providers": ["exclusion_date"],
    "medical_claims": ["service_date"],
    "pharmacy_claims": ["fill_date"],
}
NUMBERS = {
    "cpt_reference": ["minutes_per_unit", "mue_limit", "min_age", "max_age", "em_level"],
    "medical_claims": ["units", "amount_billed", "amount_paid"],
    "pharmacy_claims": ["quantity", "days_supply", "refill_number", "amount_billed", "amount_paid"],
    "ndc_reference": ["dea_schedule", "mme_factor", "strength_per_unit", "max_daily_quantity"],
}
BOOLEANS = {"providers": ["excluded"], "ncci_edits": ["modifier_allowed"]}


def read_batch_csv(directory: Path, name: str) -> pd.DataFrame:
    """``name``.csv of the batch in ``directory``, typed."""
    frame = pd.read_csv(directory / f"{name}.csv", dtype=str, keep_default_na=False)
    frame = frame.replace("", None)
    for column in DATES.get(name, []):
        frame[column] = pd.to_datetime(frame[column])
    for column in NUMBERS.get(name, []):
        frame[column] = pd.to_numeric(frame[column]).astype("float64")
    for column in BOOLEANS.get(name, []):
        frame[column] = frame[column].fillna("false").str.lower().eq("true")
    return frame
