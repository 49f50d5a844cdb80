"""Enrichment joins references by lookup (the same frame a left join gives, dtypes included) and
turns member dates into what the rules need."""

from __future__ import annotations

from collections.abc import Callable

import pandas as pd
import pytest

from fwa_pipeline.domain.enrich import ENRICHMENT_READS, _lookup, enrich_medical, enrich_pharmacy
from tests.unit.domain.rules.medical import conftest as medical
from tests.unit.domain.rules.pharmacy import conftest as pharmacy


@pytest.fixture
def claims() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "claim_pk": pd.array([3, 1, 2, 4], dtype="Int64"),
            "cpt_code": pd.array(["99215", "99999", None, "99213"], dtype="str"),
            "units": [1, 2, 3, 4],
        },
        index=[10, 11, 12, 13],  # not a RangeIndex: the join's output has one
    )


def reference(codes: list[str]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "cpt_code": pd.Series(codes, dtype=object),
            "em_level": [5, 3][: len(codes)],
            "mue_limit": pd.array([1, None][: len(codes)], dtype="Int64"),
            "excluded": [True, False][: len(codes)],
            "when": pd.to_datetime(["2026-01-01", "2026-02-01"][: len(codes)]),
        }
    )


@pytest.mark.parametrize("codes", [["99215", "99213"], ["99215"]])
def test_lookup_equals_left_join(claims: pd.DataFrame, codes: list[str]) -> None:
    expected = claims.merge(reference(codes), on="cpt_code", how="left")
    pd.testing.assert_frame_equal(_lookup(claims, reference(codes), "cpt_code"), expected)


def test_lookup_with_every_claim_matched_keeps_integer_columns(claims: pd.DataFrame) -> None:
    matched = claims[claims["cpt_code"].isin(["99215", "99213"])]
    out = _lookup(matched, reference(["99215", "99213"]), "cpt_code")
    pd.testing.assert_frame_equal(
        out, matched.merge(reference(["99215", "99213"]), on="cpt_code", how="left")
    )
    assert out["em_level"].dtype == "int64"


def test_duplicate_reference_keys_fall_back_to_the_join(claims: pd.DataFrame) -> None:
    doubled = pd.concat([reference(["99215"]), reference(["99215"])], ignore_index=True)
    out = _lookup(claims, doubled, "cpt_code")
    assert len(out) == len(claims) + 1  # what a join does with a repeated key


def test_member_dates_leave_only_the_values_rules_need() -> None:
    """Enriched frames are written to disk between steps: no date of birth or death, no age;
    the age bound the claim's code crosses and the days after a death instead."""
    members = pd.DataFrame(
        {
            "member_id": ["KID", "DEAD"],
            "gender": ["F", "M"],
            "date_of_birth": pd.to_datetime(["2015-01-01", "1940-01-01"]),
            "date_of_death": pd.to_datetime([None, "2024-02-15"]),
        }
    )
    claims = pd.DataFrame(
        {
            "claim_id": ["C1", "C2", "C3"],
            "member_id": ["KID", "DEAD", "DEAD"],
            "provider_id": ["P1"] * 3,
            "cpt_code": ["G0438", "G0438", "99213"],
            "service_date": pd.to_datetime(["2024-03-01", "2024-02-10", "2024-03-01"]),
        }
    )
    providers = pd.DataFrame(
        {
            "provider_id": ["P1"],
            "provider_type": ["individual"],
            "specialty": ["Family Medicine"],
            "state": ["TX"],
            "excluded": [False],
            "exclusion_date": [None],
        }
    )
    cpt = pd.DataFrame(
        {
            "cpt_code": ["G0438", "99213"],
            "minutes_per_unit": [None, None],
            "mue_limit": [1, None],
            "gender": [None, None],
            "min_age": [65, None],
            "max_age": [None, None],
            "em_level": [None, 3],
        }
    )
    out = enrich_medical(claims, members, providers, cpt).set_index("claim_id")
    phi = {"date_of_birth", "date_of_death", "member_date_of_death", "member_age", "_member_age"}
    assert not phi & set(out.columns)
    assert out["member_age_bound"].tolist() == ["below min_age", None, None]
    # Before the death nothing; after it, the days since (a claim on another code too).
    assert out["member_days_after_death"].tolist() == [pd.NA, pd.NA, 15]


def _without_members(
    claim_type: str,
) -> tuple[pd.DataFrame, Callable[[pd.DataFrame], pd.DataFrame]]:
    """A few claims of ``claim_type`` and how to enrich them without members."""
    if claim_type == "medical":
        lines = [medical.claim("C1"), medical.claim("C2", cpt_code="97110", provider_id="PX")]
        return medical.claims_frame(lines), lambda c: enrich_medical(
            c, None, medical.PROVIDERS, medical.CPT
        )
    fills = [
        pharmacy.fill("R1", 0),
        pharmacy.fill("R2", 3, ndc=pharmacy.OXY, pharmacy="P2", prescriber="EXCL"),
    ]
    return pd.DataFrame(fills).assign(claim_pk=[1, 2]), lambda c: enrich_pharmacy(
        c, None, pharmacy.PROVIDERS, pharmacy.NDC, pharmacy.STEMS
    )


@pytest.mark.parametrize("claim_type", ["medical", "pharmacy"])
def test_enrichment_without_members_reads_only_its_declared_columns(claim_type: str) -> None:
    # The peer frames carry these besides what the peer rules read, and are enriched so.
    claims, enrich = _without_members(claim_type)
    needed = ["claim_pk", *ENRICHMENT_READS[claim_type]]
    full = enrich(claims)
    cut = enrich(claims[needed])
    pd.testing.assert_frame_equal(cut, full[cut.columns])
    assert set(full.columns) - set(cut.columns) <= set(claims.columns)
    for column in ENRICHMENT_READS[claim_type]:
        with pytest.raises(KeyError):
            enrich(claims[[c for c in needed if c != column]])
