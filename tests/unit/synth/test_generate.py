"""The generated batch: reproducible, contract-conformant, exactly the requested size, with
every catalogue rule planted and labels.csv naming exactly what each rule's test hits."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pandas as pd
import pytest

from fwa_pipeline.npi import valid_npi_mask
from fwa_pipeline.reference import RULE_IDS
from fwa_pipeline.synth import ANCHOR_DATE, generate
from tests.unit.synth.conftest import N_CLAIMS
from tests.unit.synth.oracle import Batch, evaluate, score

FILES = (
    "members.csv",
    "providers.csv",
    "medical_claims.csv",
    "pharmacy_claims.csv",
    "cpt_reference.csv",
    "ncci_edits.csv",
    "ndc_reference.csv",
    "labels.csv",
)
COLUMNS = {
    "medical_claims": ["claim_id", "member_id", "provider_id", "service_date", "cpt_code",
                       "modifier", "diagnosis_code", "units", "place_of_service",
                       "amount_billed", "amount_paid"],
    "pharmacy_claims": ["claim_id", "member_id", "prescriber_id", "pharmacy_id", "fill_date",
                        "ndc_code", "quantity", "days_supply", "refill_number", "amount_billed",
                        "amount_paid"],
    "providers": ["provider_id", "name", "provider_type", "specialty", "state", "excluded",
                  "exclusion_date"],
    "members": ["member_id", "first_name", "last_name", "date_of_birth", "gender", "state",
                "date_of_death"],
    "labels": ["claim_id", "rule_id"],
}  # fmt: skip
MONEY = r"[0-9]+\.[0-9]{2}"


def digests(directory: Path) -> dict[str, str]:
    return {name: hashlib.sha256((directory / name).read_bytes()).hexdigest() for name in FILES}


def read_text(directory: Path, name: str) -> pd.DataFrame:
    return pd.read_csv(directory / f"{name}.csv", dtype=str, keep_default_na=False)


def test_same_seed_same_bytes_other_seed_other_data(tmp_path: Path) -> None:
    first = generate(tmp_path / "a", n_claims=3_000, seed=11)
    second = generate(tmp_path / "b", n_claims=3_000, seed=11)
    other = generate(tmp_path / "c", n_claims=3_000, seed=12)
    assert digests(tmp_path / "a") == digests(tmp_path / "b")
    assert {k: v for k, v in first.items() if k != "out_dir"} == {
        k: v for k, v in second.items() if k != "out_dir"
    }
    changed = {n for n, d in digests(tmp_path / "c").items() if d != digests(tmp_path / "a")[n]}
    assert {"members.csv", "medical_claims.csv", "pharmacy_claims.csv", "labels.csv"} <= changed
    assert other["files"]["medical_claims.csv"] == first["files"]["medical_claims.csv"]


def test_summary_matches_the_files(tmp_path: Path) -> None:
    summary = generate(tmp_path, n_claims=5_000, seed=1)
    for name in FILES:
        rows = len(pd.read_csv(tmp_path / name, dtype=str))
        assert summary["files"][name] == rows, name
    assert summary["files"]["medical_claims.csv"] + summary["files"]["pharmacy_claims.csv"] == 5_000
    labels = read_text(tmp_path, "labels")
    assert (
        summary["planted_claims"]
        == labels["rule_id"].value_counts().reindex(RULE_IDS, fill_value=0).to_dict()
    )
    assert summary["anchor_date"] == ANCHOR_DATE.isoformat() == "2026-06-30"


def test_every_rule_is_planted_with_enough_claims(batch: Batch) -> None:
    counts = batch.labels["rule_id"].value_counts()
    assert set(counts.index) == set(RULE_IDS)
    assert counts.min() >= 20, counts.to_dict()


@pytest.mark.parametrize(
    "variant",
    [
        {},
        {"peers_min_members": True},  # E/M peers limited to providers with >= 30 members
        {"modifier_peers": "all"},  # modifier overuse judged against every provider
        {"carry_over": False},  # early refill measured from the previous fill date only
        {"drug_key": "drug"},  # "same drug" as the same ingredient, not the same NDC
    ],
)
def test_labels_are_exactly_what_each_rule_hits(batch: Batch, variant: dict) -> None:
    """Precision and recall of the spec's rules (an independent reading, oracle.py) against
    labels.csv: clean claims trip no rule by chance, planted ones trip theirs."""
    result = score(evaluate(batch, variant), batch.labels)
    assert set(result) == set(RULE_IDS)
    below = {rule: pr for rule, pr in result.items() if pr[0] < 0.9 or pr[1] < 0.95}
    assert not below, below


def test_files_follow_the_data_contract(batch_dir: Path) -> None:
    frames = {name: read_text(batch_dir, name) for name in COLUMNS}
    for name, columns in COLUMNS.items():
        assert list(frames[name].columns) == columns, name
    medical, pharmacy = frames["medical_claims"], frames["pharmacy_claims"]
    providers, members = frames["providers"], frames["members"]
    anchor = ANCHOR_DATE.isoformat()

    for claims, prefix in ((medical, "M"), (pharmacy, "R")):
        ids = claims["claim_id"]
        assert ids.is_unique and ids.str.fullmatch(prefix + r"[0-9]{8}").all()
        assert ids.is_monotonic_increasing  # zero-padded: text order is generation order
        for column in ("amount_billed", "amount_paid"):
            assert claims[column].str.fullmatch(MONEY).all(), column
        billed = claims["amount_billed"].astype(float)
        assert (billed > 0).all() and (claims["amount_paid"].astype(float) <= billed).all()
        assert claims["member_id"].isin(members["member_id"]).all()
    assert len(medical) + len(pharmacy) == N_CLAIMS

    assert medical["service_date"].between("2024-07-01", anchor).all()
    assert pharmacy["fill_date"].between("2024-07-01", anchor).all()
    assert medical["cpt_code"].str.fullmatch(r"[0-9]{5}|[A-Z][0-9]{4}").all()
    assert medical["modifier"].str.fullmatch(r"|[0-9A-Z]{2}").all()
    assert medical["diagnosis_code"].str.fullmatch(r"[A-Z][0-9A-Z]{2}(\.[0-9A-Z]{1,4})?").all()
    assert medical["place_of_service"].str.fullmatch(r"[0-9]{2}").all()
    assert (medical["units"].astype(int) >= 1).all()
    assert pharmacy["ndc_code"].str.fullmatch(r"[0-9]{11}").all()
    assert (pharmacy["quantity"].astype(float) > 0).all()
    assert pharmacy["days_supply"].astype(int).between(1, 365).all()
    assert pharmacy["refill_number"].astype(int).between(0, 99).all()

    assert providers["provider_id"].is_unique and valid_npi_mask(providers["provider_id"]).all()
    for claims, column in ((medical, "provider_id"), (pharmacy, "prescriber_id"),
                           (pharmacy, "pharmacy_id")):  # fmt: skip
        assert claims[column].isin(providers["provider_id"]).all(), column
    assert providers["provider_type"].isin(["individual", "organization", "pharmacy"]).all()
    assert providers["excluded"].isin(["true", "false"]).all()
    assert ((providers["excluded"] == "true") == (providers["exclusion_date"] != "")).all()
    assert set(providers.loc[providers["provider_type"] == "pharmacy", "provider_id"]) >= set(
        pharmacy["pharmacy_id"]
    )

    assert members["member_id"].is_unique
    assert members["gender"].isin(["F", "M", "U"]).all()
    assert (members["first_name"] != "").all() and (members["last_name"] != "").all()
    assert (members["date_of_birth"] < "2024-07-01").all()
    dead = members["date_of_death"] != ""
    assert members.loc[dead, "date_of_death"].between("2024-07-01", anchor).all()
    assert frames["labels"]["claim_id"].isin(pd.concat([medical, pharmacy])["claim_id"]).all()
    for name in ("cpt_reference", "ncci_edits", "ndc_reference"):
        assert (batch_dir / f"{name}.csv").read_bytes() == (
            Path(__file__).parents[3] / "fwa_pipeline/reference/data" / f"{name}.csv"
        ).read_bytes()


def test_text_cells_never_look_like_formulas(batch_dir: Path) -> None:
    for name in ("members", "providers", "medical_claims", "pharmacy_claims"):
        cells = read_text(batch_dir, name).stack()
        assert not cells.str.match(r"[=+\-@\t\r]").any(), name


def test_quality_defects_are_extra_unlabelled_rows(tmp_path: Path) -> None:
    plain = generate(tmp_path / "plain", n_claims=4_000, seed=5)
    flawed = generate(tmp_path / "flawed", n_claims=4_000, seed=5, quality_defects=True)
    assert (tmp_path / "plain/labels.csv").read_bytes() == (
        tmp_path / "flawed/labels.csv"
    ).read_bytes()
    for name, date_column, npi_column in (
        ("medical_claims", "service_date", "provider_id"),
        ("pharmacy_claims", "fill_date", "prescriber_id"),
    ):
        counts = flawed["quality_defects"][f"{name}.csv"]
        clean, extra = read_text(tmp_path / "plain", name), read_text(tmp_path / "flawed", name)
        assert len(extra) == len(clean) + sum(counts.values())
        assert extra.iloc[: len(clean)].equals(clean)
        added = extra.iloc[len(clean) :]
        members = read_text(tmp_path / "flawed", "members")["member_id"]
        assert (~added["member_id"].isin(members)).sum() == counts["unknown_member"]
        assert (~valid_npi_mask(added[npi_column])).sum() == counts["bad_npi"]
        assert added["amount_billed"].str.startswith("-").sum() == counts["negative_amount"]
        assert (added[date_column] > ANCHOR_DATE.isoformat()).sum() == counts["future_date"]
        assert added["claim_id"].isin(clean["claim_id"]).sum() == counts["duplicate_claim_id"]
    assert plain["quality_defects"] == {}


def test_small_batches_still_work(tmp_path: Path) -> None:
    # 100 claims cannot hold every scheme honestly (they alone need more): still a valid batch.
    tiny = generate(tmp_path / "tiny", n_claims=100, seed=2)
    assert tiny["files"]["medical_claims.csv"] + tiny["files"]["pharmacy_claims.csv"] >= 100
    small = generate(tmp_path / "small", n_claims=1_000, seed=2)
    assert small["files"]["medical_claims.csv"] + small["files"]["pharmacy_claims.csv"] == 1_000
    assert all(count > 0 for count in small["planted_claims"].values())


def test_claims_are_spread_over_two_years_not_piled_on_one_day(batch: Batch) -> None:
    per_month = batch.medical["service_date"].dt.to_period("M").value_counts()
    assert len(per_month) == 24
    assert per_month.max() < 2 * per_month.median()
