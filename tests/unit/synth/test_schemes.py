"""Each planted scheme has the property its label claims, and clean claims stay clear of it:
a few direct checks that read like the rule, next to the oracle's full comparison."""

from __future__ import annotations

import numpy as np
import pandas as pd

from tests.unit.synth.oracle import Batch


def labelled(batch: Batch, rule: str) -> set[str]:
    return set(batch.labels.loc[batch.labels["rule_id"] == rule, "claim_id"])


def with_members(batch: Batch, claims: pd.DataFrame) -> pd.DataFrame:
    return claims.merge(
        batch.members.rename(columns={"gender": "member_gender"}), on="member_id", how="left"
    )


def test_services_after_death_are_labelled_and_only_those(batch: Batch) -> None:
    medical = with_members(batch, batch.medical)
    after = set(medical.loc[medical["service_date"] > medical["date_of_death"], "claim_id"])
    assert after == labelled(batch, "RULE-MED-006")
    pharmacy = with_members(batch, batch.pharmacy)
    after = set(pharmacy.loc[pharmacy["fill_date"] > pharmacy["date_of_death"], "claim_id"])
    assert after == labelled(batch, "RULE-RX-008")


def test_gender_codes_billed_to_the_other_gender(batch: Batch) -> None:
    medical = with_members(batch, batch.medical)
    hit = medical[medical["claim_id"].isin(labelled(batch, "RULE-MED-007"))]
    assert hit["gender"].isin(["F", "M"]).all()
    assert (hit["gender"] != hit["member_gender"]).all()
    assert hit["member_gender"].isin(["F", "M"]).all()


def test_amount_outliers_and_no_clean_line_above_three_sd(batch: Batch) -> None:
    medical = batch.medical
    stats = medical.groupby("cpt_code")["amount"].agg(["mean", "std"])
    limit = medical["cpt_code"].map(stats["mean"] + 3 * stats["std"])
    outlier = medical["amount"] > limit
    planted = medical["claim_id"].isin(labelled(batch, "RULE-MED-012"))
    assert outlier[planted].all()
    assert not outlier[~planted].any()


def test_impossible_days_exceed_24_hours_and_clean_days_stay_short(batch: Batch) -> None:
    medical = batch.medical
    minutes = (
        (medical["minutes_per_unit"].fillna(0) * medical["units"])
        .groupby([medical["provider_id"], medical["service_date"]])
        .transform("sum")
    )
    planted = medical["claim_id"].isin(labelled(batch, "RULE-MED-004"))
    assert planted.any() and (minutes[planted] > 24 * 60).all()
    assert minutes[~planted].max() <= 8 * 60


def test_early_refills_come_before_the_schedule_threshold(batch: Batch) -> None:
    fills = batch.pharmacy.sort_values(["member_id", "ndc_code", "fill_date", "claim_id"])
    previous = fills.groupby(["member_id", "ndc_code"]).shift()
    elapsed = (fills["fill_date"] - previous["fill_date"]).dt.days / previous["days_supply"]
    schedule = fills["dea_schedule"]
    threshold = np.where(schedule == 2, 0.9, np.where(schedule.between(3, 5), 0.85, 0.75))
    early = fills["claim_id"].isin(labelled(batch, "RULE-RX-001"))
    assert (elapsed[early] < threshold[early.to_numpy()]).all()
    # Clean refills wait for the whole supply (duplicates are same-day copies, not refills).
    copies = fills["claim_id"].isin(labelled(batch, "RULE-RX-009"))
    assert (elapsed[~early & ~copies].dropna() >= 1.0).all()


def test_duplicates_repeat_an_earlier_claim(batch: Batch) -> None:
    medical = batch.medical
    key = ["member_id", "provider_id", "service_date", "cpt_code", "units", "amount_billed"]
    first = medical.sort_values("claim_id").groupby(key)["claim_id"].transform("first")
    copies = labelled(batch, "RULE-MED-001")
    is_copy = medical["claim_id"].isin(copies)
    assert (first[is_copy] < medical.loc[is_copy, "claim_id"]).all()
    assert set(medical.loc[medical["claim_id"] != first, "claim_id"]) == copies


def test_units_over_mue_and_clean_units_within_it(batch: Batch) -> None:
    medical = batch.medical
    group = ["member_id", "provider_id", "cpt_code", "service_date"]
    over = medical.groupby(group)["units"].transform("sum") > medical["mue_limit"]
    assert set(medical.loc[over, "claim_id"]) == labelled(batch, "RULE-MED-003")


def test_clean_opioid_doses_stay_below_90_mme(batch: Batch) -> None:
    fills = batch.pharmacy[batch.pharmacy["mme_factor"].notna()]
    mme = (
        fills["strength_per_unit"] * fills["quantity"] / fills["days_supply"] * fills["mme_factor"]
    )
    planted = fills["claim_id"].isin(batch.labels["claim_id"])
    # Near misses (unlabelled) reach 90 MME for a week at most.
    week = fills["days_supply"] <= 7
    assert (mme[~planted & ~week] < 90).all()
    assert (mme[fills["claim_id"].isin(labelled(batch, "RULE-RX-003"))] >= 90).all()
