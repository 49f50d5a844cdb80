"""Builders for the medical rule tests: a small reference world (members, providers, codes, NCCI
pairs), claims with defaults, enrichment into a ``RuleContext``, running one rule with threshold
overrides, and a reader for a synth batch's CSVs."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from fwa_pipeline.domain.config import RuleParams, default_config
from fwa_pipeline.domain.enrich import enrich_medical
from fwa_pipeline.domain.rules import REGISTRY, RuleContext
from fwa_pipeline.synth import generate
from tests.unit.domain.rules.batch_files import read_batch_csv

AS_OF = dt.date(2025, 6, 30)
DAY = "2024-03-01"

MEMBERS = pd.DataFrame(
    [
        # member_id, gender, date_of_birth, date_of_death
        ("F1", "F", "1980-05-01", None),
        ("M1", "M", "1975-07-01", None),
        ("U1", "U", "1990-01-01", None),
        ("CHILD", "F", "2015-01-01", None),
        ("TEEN", "M", "2006-03-01", None),  # 18 on 2024-03-01, 19 on 2025-03-01
        ("DEAD", "M", "1940-01-01", "2024-02-15"),
    ],
    columns=["member_id", "gender", "date_of_birth", "date_of_death"],
)

PROVIDERS = pd.DataFrame(
    [
        # provider_id, specialty, state, excluded, exclusion_date
        ("P1", "Family Medicine", "TX", False, None),
        ("P2", "Family Medicine", "TX", False, None),
        ("PX", "Family Medicine", "TX", True, "2024-03-01"),  # excluded from 2024-03-01
        ("PXN", "Family Medicine", "TX", True, None),  # excluded, date unknown
        ("PR", "Family Medicine", "TX", False, "2020-01-01"),  # reinstated
    ],
    columns=["provider_id", "specialty", "state", "excluded", "exclusion_date"],
).assign(provider_type="individual")

CPT = pd.DataFrame(
    [
        # cpt_code, minutes_per_unit, mue_limit, gender, min_age, max_age, em_level
        ("99211", None, None, None, None, None, 1),
        ("99212", None, None, None, None, None, 2),
        ("99213", None, None, None, None, None, 3),
        ("99214", None, None, None, None, None, 4),
        ("99215", None, None, None, None, None, 5),
        ("97110", 15, 4, None, None, None, None),  # therapeutic exercise, 15 min a unit
        ("90837", 60, None, None, None, None, None),  # psychotherapy, 60 min
        ("59400", None, 1, "F", None, None, None),  # obstetric care
        ("55700", None, 1, "M", None, None, None),  # prostate biopsy
        ("90460", None, None, None, None, 18, None),  # childhood vaccine counselling
        ("G0438", None, 1, None, 65, None, None),  # annual wellness visit
        ("20610", None, None, None, None, None, None),
        ("20605", None, None, None, None, None, None),
        ("93000", None, None, None, None, None, None),
        ("93005", None, None, None, None, None, None),
    ],
    columns=[
        "cpt_code",
        "minutes_per_unit",
        "mue_limit",
        "gender",
        "min_age",
        "max_age",
        "em_level",
    ],
).assign(description="")

NCCI = pd.DataFrame(
    [("20610", "20605", True), ("93000", "93005", False)],
    columns=["column1_code", "column2_code", "modifier_allowed"],
)

# What ``evaluate`` reads of the pharmacy frame when a test has no pharmacy claims.
NO_PHARMACY = pd.DataFrame(
    {"claim_pk": pd.Series(dtype="int64"), "in_scope": pd.Series(dtype=bool)}
)

CLAIM_DEFAULTS: dict[str, Any] = {
    "member_id": "F1",
    "provider_id": "P1",
    "service_date": DAY,
    "cpt_code": "99213",
    "modifier": None,
    "diagnosis_code": "Z00.00",
    "units": 1,
    "place_of_service": "11",
    "amount_billed": 100.0,
    "amount_paid": 80.0,
    "in_scope": True,
}


def claim(claim_id: str, **values: Any) -> dict[str, Any]:
    return {"claim_id": claim_id, **CLAIM_DEFAULTS, **values}


def claims_frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    """Claims typed as the pipeline loads them from the store."""
    frame = pd.DataFrame(rows, columns=["claim_id", *CLAIM_DEFAULTS])
    frame.insert(0, "claim_pk", range(1, len(frame) + 1))
    frame["service_date"] = pd.to_datetime(frame["service_date"])
    frame["units"] = pd.to_numeric(frame["units"]).astype("Int64")
    for column in ("amount_billed", "amount_paid"):
        frame[column] = pd.to_numeric(frame[column]).astype("float64")
    frame["in_scope"] = frame["in_scope"].astype(bool)
    for column in ("member_id", "provider_id", "cpt_code", "modifier"):
        frame[column] = frame[column].astype("str").where(frame[column].notna())
    return frame


def context(
    rows: list[dict[str, Any]],
    *,
    members: pd.DataFrame = MEMBERS,
    providers: pd.DataFrame = PROVIDERS,
    cpt: pd.DataFrame = CPT,
    ncci: pd.DataFrame = NCCI,
) -> RuleContext:
    medical = enrich_medical(claims_frame(rows), members, providers, cpt)
    return RuleContext(medical=medical, pharmacy=NO_PHARMACY, ncci=ncci, as_of=AS_OF)


def params(rule_id: str, **thresholds: Any) -> RuleParams:
    base = default_config().rules[rule_id]
    return base.model_copy(update={"thresholds": {**base.thresholds, **thresholds}})


def run(rule_id: str, ctx: RuleContext, **thresholds: Any) -> pd.DataFrame:
    """One rule's raw hits (before the in-scope filter), indexed by claim id."""
    return REGISTRY[rule_id].fn(ctx, params(rule_id, **thresholds)).set_index("claim_id")


def hit_ids(hits: pd.DataFrame) -> list[str]:
    return sorted(hits.index)


def peer_members(count: int) -> pd.DataFrame:
    """``count`` adult members N000, N001, ... for peer tests."""
    return pd.DataFrame(
        {
            "member_id": [f"N{i:03d}" for i in range(count)],
            "gender": "F",
            "date_of_birth": "1970-01-01",
            "date_of_death": None,
        }
    )


def peer_providers(specs: dict[str, tuple[str, str]]) -> pd.DataFrame:
    """Providers from ``{provider_id: (specialty, state)}``."""
    return pd.DataFrame(
        {
            "provider_id": list(specs),
            "specialty": [s for s, _ in specs.values()],
            "state": [s for _, s in specs.values()],
            "excluded": False,
            "exclusion_date": None,
            "provider_type": "individual",
        }
    )


# --- synth batch and its reader ---------------------------------------------------------------

SYNTH_CLAIMS = 20_000
# Some seeds plant clean providers past a peer rule's threshold (see the family's report);
# this one does not.
SYNTH_SEED = 5


@pytest.fixture(scope="session")
def batch(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A generated demo batch's directory."""
    directory: Path = tmp_path_factory.mktemp("medical-synth")
    generate(directory, SYNTH_CLAIMS, SYNTH_SEED)
    return directory


def batch_context(directory: Path) -> RuleContext:
    claims = read_batch_csv(directory, "medical_claims")
    claims.insert(0, "claim_pk", range(1, len(claims) + 1))
    claims["units"] = claims["units"].astype("Int64")
    claims["in_scope"] = True
    medical = enrich_medical(
        claims,
        read_batch_csv(directory, "members"),
        read_batch_csv(directory, "providers"),
        read_batch_csv(directory, "cpt_reference"),
    )
    return RuleContext(
        medical=medical,
        pharmacy=NO_PHARMACY,
        ncci=read_batch_csv(directory, "ncci_edits"),
        as_of=AS_OF,
    )
