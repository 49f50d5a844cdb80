"""Enrichment: join claims to members, providers and the code references, so rules read plain
columns. Member dates are PHI and never leave here (enriched frames are written to disk between
steps): a date of birth becomes the age bound of the claim's code that the member's age crosses
(``member_age_bound``), a date of death the days from it to a claim dated after it
(``member_days_after_death``), and both dates are dropped.

``members`` None enriches without member columns (the peer history: peer rules read no member
attribute, and a million ages would be computed for nothing).

Input claim frames carry the store's columns (``claim_pk`` is the surrogate ``id``) with dates as
``datetime64`` and an ``in_scope`` flag (new claims vs. look-back history).
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping, Sequence

import numpy as np
import pandas as pd
import pyarrow.compute as pc

from fwa_pipeline.domain.arrow import strings

MEMBER_COLUMNS = {"gender": "member_gender"}
BELOW, ABOVE = "below min_age", "above max_age"
AGE = "_member_age"  # only ever inside this module's functions
# The rules reading the days after a member's death, by the claim type they judge.
AFTER_DEATH_RULES = {"medical": "RULE-MED-006", "pharmacy": "RULE-RX-008"}
PROVIDER_COLUMNS = {
    "provider_type": "type",
    "specialty": "specialty",
    "state": "state",
    "excluded": "excluded",
    "exclusion_date": "exclusion_date",
}
CPT_COLUMNS = ["minutes_per_unit", "mue_limit", "gender", "min_age", "max_age", "em_level"]
NDC_COLUMNS = ["drug_name", "dea_schedule", "mme_factor", "strength_per_unit", "max_daily_quantity"]
# The claim columns enrichment reads without members, by claim type: a frame cut to some rules'
# columns (the peer frames of ``steps.selection``) keeps these too, so it can be enriched.
ENRICHMENT_READS = {
    "medical": ("provider_id", "cpt_code"),
    "pharmacy": ("prescriber_id", "pharmacy_id", "ndc_code", "fill_date", "days_supply"),
}


def members_needing_age(medical: pd.DataFrame, cpt_reference: pd.DataFrame) -> set[str]:
    """The members whose age some claim needs: those of medical claims on a code with an age
    bound (RULE-MED-008, the only rule reading ``member_age_bound``). Only their dates of birth
    are decrypted (HIPAA's minimum necessary); every other claim's age is unknown."""
    bounded = cpt_reference.loc[
        cpt_reference["min_age"].notna() | cpt_reference["max_age"].notna(), "cpt_code"
    ]
    needing = medical.loc[medical["cpt_code"].isin(bounded), "member_id"].dropna()
    return set(needing.astype(str).unique())


def members_needing_death_date(
    claims: Mapping[str, pd.DataFrame], enabled: Collection[str]
) -> set[str]:
    """The members whose date of death some rule needs: those of ``claims`` (the new claims, by
    type) of a type whose after-death rule is ``enabled``. Only their dates of death are
    decrypted; every other claim's ``member_days_after_death`` is unknown."""
    needing: set[str] = set()
    for claim_type, rule_id in AFTER_DEATH_RULES.items():
        if rule_id in enabled:
            needing.update(claims[claim_type]["member_id"].dropna().astype(str).unique())
    return needing


def age_on(date_of_birth: pd.Series, on: pd.Series) -> pd.Series:
    """Whole years between two datetime Series (NaN where either is missing)."""
    years = on.dt.year - date_of_birth.dt.year
    before_birthday = (on.dt.month * 100 + on.dt.day) < (
        date_of_birth.dt.month * 100 + date_of_birth.dt.day
    )
    return (years - before_birthday.astype("Int64")).astype("Int64")


def age_bound(age: pd.Series, min_age: pd.Series, max_age: pd.Series) -> pd.Series:
    """Per claim, the bound ``age`` crosses: ``BELOW`` min_age, ``ABOVE`` max_age, or None (a
    missing age or bound crosses nothing)."""
    age, low, high = (
        pd.to_numeric(s, errors="coerce").astype("float64") for s in (age, min_age, max_age)
    )
    # NaN comparisons are false, so a missing age or bound cannot cross.
    crossed = np.select([age < low, age > high], [BELOW, ABOVE], default="")
    return pd.Series(crossed, index=age.index, dtype=object).replace("", None)


def days_after(death: pd.Series, on: pd.Series) -> pd.Series:
    """Whole days from the date of death to ``on`` where ``on`` is after it, else missing."""
    days = (on - death).dt.days
    return days.where(days > 0).astype("Int64")


def _lookup(claims: pd.DataFrame, reference: pd.DataFrame, on: str) -> pd.DataFrame:
    """``claims.merge(reference, on=on, how="left")`` where ``reference`` has one row per key:
    an Arrow hash lookup and one take per column, several times faster than the join on a
    million claims. (Duplicate keys or clashing columns take the join itself.)"""
    added = reference.columns.drop(on)
    if not reference[on].is_unique or claims.columns.intersection(added).size:
        return claims.merge(reference, on=on, how="left")
    position = (
        pc.index_in(strings(claims[on]), value_set=strings(reference[on]))
        .fill_null(-1)
        .to_numpy(zero_copy_only=False)
    )
    # Missing where no row matches, with the join's dtypes (ints become floats only then).
    columns = {
        name: pd.api.extensions.take(reference[name].array, position, allow_fill=True)
        for name in added
    }
    out = pd.concat([claims.reset_index(drop=True), pd.DataFrame(columns)], axis=1)
    if claims[on].dtype != reference[on].dtype:  # as the join does with keys of two dtypes
        out[on] = out[on].astype(object)
    return out


def _members(members: pd.DataFrame) -> pd.DataFrame:
    out = members[["member_id", "gender", "date_of_death", "date_of_birth"]].copy()
    out["date_of_death"] = pd.to_datetime(out["date_of_death"])
    out["date_of_birth"] = pd.to_datetime(out["date_of_birth"])
    return out.rename(columns=MEMBER_COLUMNS).assign(member_known=True)


def _providers(providers: pd.DataFrame, prefix: str) -> pd.DataFrame:
    out = providers[["provider_id", *PROVIDER_COLUMNS]].rename(
        columns={k: f"{prefix}_{v}" for k, v in PROVIDER_COLUMNS.items()}
    )
    out[f"{prefix}_exclusion_date"] = pd.to_datetime(out[f"{prefix}_exclusion_date"])
    out[f"{prefix}_excluded"] = out[f"{prefix}_excluded"].astype(bool)
    return out.rename(columns={"provider_id": f"{prefix}_id"}).assign(**{f"{prefix}_known": True})


def _with_members(
    claims: pd.DataFrame, members: pd.DataFrame | None, date_column: str, *, age: bool
) -> pd.DataFrame:
    """The claims with their members' columns and, with ``age``, the member's age on the
    claim's date as ``AGE`` (for the caller to turn into an age bound and drop)."""
    if members is None:  # no member columns at all: a rule reading one fails loudly
        return claims
    out = _lookup(claims, _members(members), "member_id")
    out["member_known"] = out["member_known"].fillna(False).astype(bool)
    out["member_days_after_death"] = days_after(out.pop("date_of_death"), out[date_column])
    born = out.pop("date_of_birth")
    if age:
        out[AGE] = age_on(born, out[date_column])
    return out


def enrich_medical(
    claims: pd.DataFrame,
    members: pd.DataFrame | None,
    providers: pd.DataFrame,
    cpt_reference: pd.DataFrame,
) -> pd.DataFrame:
    out = _with_members(claims, members, "service_date", age=True)
    out = _lookup(out, _providers(providers, "provider"), "provider_id")
    out["provider_known"] = out["provider_known"].fillna(False).astype(bool)
    out["provider_excluded"] = out["provider_excluded"].fillna(False).astype(bool)
    cpt = cpt_reference[["cpt_code", *CPT_COLUMNS]].rename(
        columns={c: f"cpt_{c}" for c in CPT_COLUMNS}
    )
    out = _lookup(out, cpt, "cpt_code")
    if AGE in out:
        out["member_age_bound"] = age_bound(out.pop(AGE), out["cpt_min_age"], out["cpt_max_age"])
    return out


def benzodiazepine_mask(drug_names: pd.Series, stems: Sequence[str]) -> pd.Series:
    pattern = "|".join(re.escape(stem.lower()) for stem in stems)
    return drug_names.fillna("").str.lower().str.contains(pattern, regex=True)


def enrich_pharmacy(
    claims: pd.DataFrame,
    members: pd.DataFrame | None,
    providers: pd.DataFrame,
    ndc_reference: pd.DataFrame,
    benzodiazepine_stems: Sequence[str],
) -> pd.DataFrame:
    out = _with_members(claims, members, "fill_date", age=False)  # no pharmacy rule reads one
    for role in ("prescriber", "pharmacy"):
        out = _lookup(out, _providers(providers, role), f"{role}_id")
        out[f"{role}_known"] = out[f"{role}_known"].fillna(False).astype(bool)
        out[f"{role}_excluded"] = out[f"{role}_excluded"].fillna(False).astype(bool)
    ndc = ndc_reference[["ndc_code", *NDC_COLUMNS]].rename(
        columns={c: f"ndc_{c}" for c in NDC_COLUMNS}
    )
    # Matched once per reference drug rather than once per fill.
    ndc["_benzodiazepine"] = benzodiazepine_mask(ndc["ndc_drug_name"], benzodiazepine_stems)
    out = _lookup(out, ndc, "ndc_code")
    benzodiazepine = out.pop("_benzodiazepine")
    out["is_opioid"] = out["ndc_mme_factor"].notna()
    out["is_benzodiazepine"] = benzodiazepine.fillna(False).astype(bool)
    out["is_controlled"] = out["ndc_dea_schedule"].between(2, 5).fillna(False).astype(bool)
    out["supply_end"] = out["fill_date"] + pd.to_timedelta(
        out["days_supply"].astype("float").fillna(0).to_numpy(np.float64), unit="D"
    )
    return out
