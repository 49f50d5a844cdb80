"""Builders for the pharmacy rule tests: hand-made fills enriched against a small reference, a
runner for one rule with threshold overrides, and a reader for a synthetic batch's CSVs."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pandas as pd
import pytest

from fwa_pipeline.domain.config import PipelineConfig, RuleParams, default_config
from fwa_pipeline.domain.enrich import enrich_pharmacy
from fwa_pipeline.domain.rules import REGISTRY, RuleContext, evaluate
from fwa_pipeline.reference import BENZODIAZEPINE_STEMS
from fwa_pipeline.synth import generate
from tests.unit.domain.rules.batch_files import read_batch_csv

START = dt.date(2024, 1, 1)
STEMS = ["azepam", "azolam"]

NDC = pd.DataFrame(
    [
        # ndc_code, drug_name, dea_schedule, mme_factor, strength_per_unit, max_daily_quantity
        ("00000000001", "Oxycodone HCl 10 mg tablet", 2, 1.5, 10.0, 6.0),
        ("00000000002", "oxycodone hcl 10 mg tablet ", 2, 1.5, 10.0, 6.0),  # another package
        ("00000000003", "Alprazolam 1 mg tablet", 4, None, 1.0, 4.0),
        ("00000000004", "Lisinopril 10 mg tablet", None, None, 10.0, 2.0),
        ("00000000005", "Hydrocodone 10 mg tablet", 2, 1.0, 10.0, None),
        ("00000000006", "Pregabalin 75 mg capsule", 5, None, 75.0, None),
        ("00000000007", "Buprenorphine 2 mg tablet", 3, None, 2.0, None),
        ("00000000008", "Codeine 30 mg tablet", 2, 0.15, None, None),  # strength unknown
    ],
    columns=[
        "ndc_code",
        "drug_name",
        "dea_schedule",
        "mme_factor",
        "strength_per_unit",
        "max_daily_quantity",
    ],
).astype({"dea_schedule": "Int64"})
OXY, OXY_OTHER_PACKAGE, ALPRAZOLAM, LISINOPRIL = NDC["ndc_code"].iloc[:4]
HYDROCODONE, PREGABALIN, BUPRENORPHINE, CODEINE = NDC["ndc_code"].iloc[4:]


def _provider(pid: str, kind: str, excluded: bool = False, date: str | None = None) -> dict:
    return {
        "provider_id": pid,
        "provider_type": kind,
        "specialty": "pharmacy" if kind == "pharmacy" else "family medicine",
        "state": "CA",
        "excluded": excluded,
        "exclusion_date": date,
    }


PROVIDERS = pd.DataFrame(
    [_provider(f"D{i}", "individual") for i in range(1, 9)]
    + [_provider(f"P{i}", "pharmacy") for i in range(1, 13)]
    + [
        _provider("ORG", "organization"),
        _provider("EXCL", "individual", True, "2024-03-01"),
        _provider("EXCL_UNDATED", "individual", True),
    ]
)

MEMBERS = pd.DataFrame(
    [
        {"member_id": f"M{i}", "gender": "F", "date_of_birth": "1960-05-05", "date_of_death": None}
        for i in range(1, 9)
    ]
    + [
        {
            "member_id": "DEAD",
            "gender": "M",
            "date_of_birth": "1950-01-01",
            "date_of_death": "2024-05-01",
        }
    ]
)


def fill(
    claim_id: str,
    day: int,
    *,
    member: str = "M1",
    ndc: str = LISINOPRIL,
    days: float | None = 30,
    quantity: float = 30,
    prescriber: str = "D1",
    pharmacy: str = "P1",
    refill: float | None = 0,
    billed: float = 100.0,
    in_scope: bool = True,
) -> dict[str, Any]:
    """One pharmacy claim, ``day`` days after 2024-01-01."""
    return {
        "claim_id": claim_id,
        "member_id": member,
        "prescriber_id": prescriber,
        "pharmacy_id": pharmacy,
        "fill_date": pd.Timestamp(START) + pd.Timedelta(days=day),
        "ndc_code": ndc,
        "quantity": quantity,
        "days_supply": days,
        "refill_number": refill,
        "amount_billed": billed,
        "amount_paid": billed * 0.8,
        "in_scope": in_scope,
    }


def enriched(fills: list[dict[str, Any]]) -> pd.DataFrame:
    claims = pd.DataFrame(fills).assign(claim_pk=lambda d: range(1, len(d) + 1))
    claims["days_supply"] = claims["days_supply"].astype("Float64")
    claims["refill_number"] = claims["refill_number"].astype("Float64")
    return enrich_pharmacy(claims, MEMBERS, PROVIDERS, NDC, STEMS)


def params(rule_id: str, **thresholds: Any) -> RuleParams:
    base = default_config().rules[rule_id]
    return base.model_copy(update={"thresholds": {**base.thresholds, **thresholds}})


def context(pharmacy: pd.DataFrame) -> RuleContext:
    medical = pd.DataFrame(
        {"claim_pk": pd.Series(dtype="int64"), "in_scope": pd.Series(dtype=bool)}
    )
    return RuleContext(
        medical=medical, pharmacy=pharmacy, ncci=pd.DataFrame(), as_of=dt.date(2025, 1, 1)
    )


def run(rule_id: str, fills: list[dict[str, Any]], **thresholds: Any) -> pd.DataFrame:
    """One rule's raw hits (before the in-scope filter) over the enriched ``fills``."""
    return REGISTRY[rule_id].fn(context(enriched(fills)), params(rule_id, **thresholds))


def run_scoped(rule_id: str, fills: list[dict[str, Any]]) -> pd.DataFrame:
    """One rule through ``evaluate``: hits on in-scope claims only."""
    config = PipelineConfig(rules={rule_id: params(rule_id)})
    return evaluate(context(enriched(fills)), config)


def ids(hits: pd.DataFrame) -> list[str]:
    return sorted(hits["claim_id"])


def evidence(hits: pd.DataFrame, claim_id: str) -> dict[str, Any]:
    return hits.loc[hits["claim_id"] == claim_id, "evidence"].iloc[0]


def severity(hits: pd.DataFrame, claim_id: str) -> float:
    return float(hits.loc[hits["claim_id"] == claim_id, "severity"].iloc[0])


# --- a synthetic batch, read the way the pipeline would type it ---------------------------------


@pytest.fixture(scope="session")
def synth_batch(tmp_path_factory: pytest.TempPathFactory) -> dict[str, pd.DataFrame]:
    """A ~20,000-claim demo batch from the synthetic generator, as typed frames; its pharmacy
    claims carry ``claim_pk`` and are all in scope."""
    directory = tmp_path_factory.mktemp("synth")
    generate(directory, n_claims=20_000, seed=7)
    names = ["members", "providers", "pharmacy_claims", "ndc_reference", "labels"]
    frames = {name: read_batch_csv(directory, name) for name in names}
    claims = frames["pharmacy_claims"]
    frames["pharmacy_claims"] = claims.assign(claim_pk=range(1, len(claims) + 1), in_scope=True)
    return frames


@pytest.fixture(scope="session")
def synth_enriched(synth_batch: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """The synthetic batch's pharmacy claims, enriched as a run enriches them."""
    return enrich_pharmacy(
        synth_batch["pharmacy_claims"],
        synth_batch["members"],
        synth_batch["providers"],
        synth_batch["ndc_reference"],
        BENZODIAZEPINE_STEMS,
    )
