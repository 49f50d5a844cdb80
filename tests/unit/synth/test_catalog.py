"""The generator's tables agree with the shipped reference data and keep clean care clean."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from fwa_pipeline.reference import (
    BENZODIAZEPINE_STEMS,
    RULE_IDS,
    is_benzodiazepine,
    load_default_reference,
)
from fwa_pipeline.synth import catalog
from fwa_pipeline.synth.common import age_on, near_birthday, stratified, weyl_take
from fwa_pipeline.synth.medical import CodeBook, build_templates
from fwa_pipeline.synth.pharmacy import DrugBook


@pytest.fixture(scope="module")
def reference() -> dict[str, pd.DataFrame]:
    return load_default_reference()


def test_reference_tables_have_contract_columns_and_types(reference) -> None:
    cpt, ncci, ndc = reference["cpt_reference"], reference["ncci_edits"], reference["ndc_reference"]
    assert list(cpt.columns) == ["cpt_code", "description", "minutes_per_unit", "mue_limit",
                                 "gender", "min_age", "max_age", "em_level"]  # fmt: skip
    assert list(ncci.columns) == ["column1_code", "column2_code", "modifier_allowed"]
    assert list(ndc.columns) == ["ndc_code", "drug_name", "dea_schedule", "mme_factor",
                                 "strength_per_unit", "max_daily_quantity"]  # fmt: skip
    assert cpt["cpt_code"].is_unique and ndc["ndc_code"].is_unique
    assert ndc["ndc_code"].str.fullmatch(r"[0-9]{11}").all()
    assert ncci["modifier_allowed"].dtype == bool and ncci["modifier_allowed"].any()
    assert not ncci["modifier_allowed"].all()
    assert set(ncci["column1_code"]) | set(ncci["column2_code"]) <= set(cpt["cpt_code"])
    row = cpt.set_index("cpt_code")
    assert row.loc["97110", "minutes_per_unit"] == 15 and row.loc["90837", "minutes_per_unit"] == 60
    assert row.loc["58150", "gender"] == "F" and row.loc["55700", "gender"] == "M"
    assert (row.loc["99381", "min_age"], row.loc["99381", "max_age"]) == (0, 0)
    assert row.loc["G0438", "min_age"] == 65
    established = ["99211", "99212", "99213", "99214", "99215"]
    assert row.loc[established, "em_level"].tolist() == [1, 2, 3, 4, 5]


def test_opioids_carry_cdc_mme_factors(reference) -> None:
    ndc = reference["ndc_reference"]
    factor = {"oxycodone": 1.5, "hydrocodone": 1.0, "morphine": 1.0, "hydromorphone": 5.0,
              "methadone": 4.7, "tapentadol": 0.4, "oxymorphone": 3.0, "tramadol": 0.2,
              "fentanyl": 7.2}  # fmt: skip
    first_word = ndc["drug_name"].str.split().str[0].str.lower()
    for drug, value in factor.items():
        assert (ndc.loc[first_word == drug, "mme_factor"] == value).all(), drug
    codeine = ndc["drug_name"].str.contains("codeine")
    assert (ndc.loc[codeine, "mme_factor"] == 0.15).all()
    assert ndc.loc[ndc["mme_factor"].notna(), "dea_schedule"].between(2, 4).all()


def test_benzodiazepines_by_name(reference) -> None:
    ndc = reference["ndc_reference"]
    benzo = is_benzodiazepine(ndc["drug_name"])
    names = set(ndc.loc[benzo, "drug_name"].str.split().str[0].str.lower())
    assert names == {"alprazolam", "clonazepam", "diazepam", "lorazepam", "temazepam"}
    assert (ndc.loc[benzo, "dea_schedule"] == 4).all()
    assert not is_benzodiazepine(pd.Series(["Carbamazepine 200 mg", "Zolpidem 10 mg", None])).any()
    assert "midazolam" in BENZODIAZEPINE_STEMS


def test_rule_ids_are_the_catalogue() -> None:
    assert len(RULE_IDS) == len(set(RULE_IDS)) == 22
    assert RULE_IDS[0] == "RULE-MED-001" and RULE_IDS[-1] == "RULE-RX-010"


def test_clean_units_stay_within_mue_and_templates_avoid_ncci_pairs(reference) -> None:
    book = CodeBook(reference["cpt_reference"])
    assert (book.units_high <= book.mue).all()
    ncci = reference["ncci_edits"]
    pairs = set(zip(ncci["column1_code"], ncci["column2_code"], strict=True))
    for specialty in catalog.SPECIALTIES:
        for template in specialty.templates:
            codes = set(template.codes)
            assert not any(a in codes and b in codes for a, b in pairs), template.codes


def test_templates_narrow_to_what_their_codes_allow(reference) -> None:
    book = CodeBook(reference["cpt_reference"])
    table = build_templates(book)
    for t in range(len(table.weight)):
        codes = table.slot_code[table.slot_start[t] : table.slot_start[t] + table.slot_count[t]]
        for code in codes[codes >= 0]:
            assert table.min_age[t] >= book.min_age[code] and table.max_age[t] <= book.max_age[code]
            if book.gender[code]:
                assert table.gender[t] == book.gender[code]
                assert table.sensitive[t] or not book.age_limited[code]


def test_clean_drug_use_respects_limits_and_dose(reference) -> None:
    ndc = reference["ndc_reference"].set_index("ndc_code")
    book = DrugBook(reference["ndc_reference"])
    assert set(catalog.DRUG_BY_NDC) == set(ndc.index)
    for use in catalog.DRUG_USES:
        if not use.clean:
            continue
        row = ndc.loc[use.ndc]
        top = max(use.per_day)
        if pd.notna(row["max_daily_quantity"]):
            assert top <= row["max_daily_quantity"], use.ndc
        if pd.notna(row["mme_factor"]):
            assert row["strength_per_unit"] * top * row["mme_factor"] <= 60, use.ndc
    assert (book.refill_numbers(np.array([book["00406055301"]] * 3), np.arange(3)) == 0).all()


def test_age_and_birthday_helpers() -> None:
    dob = np.datetime64("2000-02-29").astype(np.int64)
    days = np.array([np.datetime64(d) for d in ("2021-02-27", "2021-02-28", "2024-02-29")])
    assert age_on(np.full(3, dob), days.astype(np.int64)).tolist() == [20, 20, 24]
    assert near_birthday(np.full(3, dob), days.astype(np.int64), 1).tolist() == [True, True, True]
    far = np.array([np.datetime64("2021-08-30").astype(np.int64)])
    assert not near_birthday(np.array([dob]), far, 30)[0]


def test_low_discrepancy_helpers_hit_their_targets() -> None:
    rng = np.random.default_rng(0)
    groups = np.repeat(np.arange(4), [7, 40, 3, 100])
    values = stratified(groups, 0.2, 0.4, rng)
    for g in range(4):
        v = np.sort(values[groups == g])
        assert v[0] > 0.2 and v[-1] < 0.4 and np.allclose(np.diff(v), np.diff(v)[0])
    ranks = np.arange(200)
    for fraction in (0.05, 0.33, 0.9):
        picked = weyl_take(ranks, np.full(200, fraction), np.full(200, 0.37)).sum()
        assert abs(picked - 200 * fraction) <= 1
