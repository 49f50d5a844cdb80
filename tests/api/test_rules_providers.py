"""The rules and providers routes on the real PostgreSQL and Redis."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from sqlalchemy import Engine, select

from fwa_pipeline.domain.config import default_config
from fwa_pipeline.store.db import session_scope
from fwa_pipeline.store.models import CaseClaim, InvestigationCase, MedicalClaim
from tests.agents.harness import ACME_NPI, FOREIGN_CASE, GLOBEX_NPI
from tests.api.seeded import World, seed_world

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.anyio]

ACME = {"workspace": "acme"}


@pytest.fixture
def world(pg_engine: Engine) -> World:
    return seed_world(pg_engine)


async def get(api: httpx.AsyncClient, world: World, path: str, **params: Any) -> httpx.Response:
    return await api.get(path, params={**ACME, **params}, headers=world.headers["viewer"])


async def test_the_catalogue_with_parameters_in_effect_and_hit_counts(
    api: httpx.AsyncClient, world: World
) -> None:
    response = await get(api, world, "/api/rules")
    assert response.status_code == 200
    page = response.json()
    catalogue = default_config().rules
    assert (page["total"], len(page["items"])) == (len(catalogue), len(catalogue))
    assert [r["rule_id"] for r in page["items"]] == sorted(catalogue)
    # The parameters run-1 scored with (its snapshot), not the shipped defaults.
    assert page["parameters_run_id"] == "run-1"
    rule = next(r for r in page["items"] if r["rule_id"] == "RULE-MED-004")
    assert (rule["name"], rule["weight"], rule["hits"], rule["claims_hit"]) == (
        "Impossible day",
        9.5,
        3,
        3,
    )
    assert rule["thresholds"] == world.snapshot["rules"]["RULE-MED-004"]["thresholds"]
    assert {r["hits"] for r in page["items"] if r["rule_id"] != "RULE-MED-004"} == {0}


async def test_rules_filter_and_pages(api: httpx.AsyncClient, world: World) -> None:
    triggered = (await get(api, world, "/api/rules", triggered_only="true")).json()
    assert (triggered["total"], [r["rule_id"] for r in triggered["items"]]) == (
        1,
        ["RULE-MED-004"],
    )
    everything = sorted(default_config().rules)
    tail = (await get(api, world, "/api/rules", limit=5, offset=20)).json()
    assert (tail["total"], [r["rule_id"] for r in tail["items"]]) == (22, everything[20:])
    bad = await get(api, world, "/api/rules", limit=0)
    assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == "query.limit"


async def test_one_rule(api: httpx.AsyncClient, world: World) -> None:
    response = await get(api, world, "/api/rules/rule-med-004")
    assert response.status_code == 200
    assert (response.json()["rule_id"], response.json()["hits"]) == ("RULE-MED-004", 3)
    missing = await get(api, world, "/api/rules/RULE-MED-999")
    assert (missing.status_code, missing.json()["detail"]) == (404, "rule not found")


async def test_a_workspace_without_runs_shows_the_shipped_parameters(
    api: httpx.AsyncClient, world: World
) -> None:
    response = await api.get(
        "/api/rules/RULE-MED-004", params={"workspace": "globex"}, headers=world.headers["globex"]
    )
    rule = response.json()
    assert rule["weight"] == default_config().rules["RULE-MED-004"].weight
    assert rule["hits"] == 3  # globex's own hits


async def test_a_provider_with_its_rule_hits_and_cases(
    api: httpx.AsyncClient, world: World
) -> None:
    response = await get(api, world, f"/api/providers/{ACME_NPI}")
    assert response.status_code == 200
    provider = response.json()
    assert (provider["npi"], provider["name"], provider["provider_type"]) == (
        ACME_NPI,
        "Acme Clinic",
        "clinic",
    )
    assert provider["medical_claims"] == {"count": 3, "amount_paid": 1200.0}
    assert provider["pharmacy_claims"] == {"as_pharmacy": 0, "as_prescriber": 0}
    assert provider["rule_hits"] == [{"rule_id": "RULE-MED-004", "hits": 3}]
    assert [c["case_id"] for c in provider["cases"]] == ["CASE-000001"]


async def test_another_workspaces_provider_is_404_like_a_missing_one(
    api: httpx.AsyncClient, world: World
) -> None:
    foreign = await get(api, world, f"/api/providers/{GLOBEX_NPI}")
    missing = await get(api, world, "/api/providers/1999999999")
    for response in (foreign, missing):
        assert (response.status_code, response.json()["detail"]) == (404, "provider not found")
        assert "Globex" not in response.text and FOREIGN_CASE not in response.text
    malformed = await get(api, world, "/api/providers/12345")
    assert malformed.status_code == 422 and malformed.json()["errors"][0]["field"] == "path.npi"


# --------------------------------------------------------------------------- feedback

NO_FEEDBACK = {
    "closed_cases": 0,
    "confirmed": 0,
    "no_issue": 0,
    "inconclusive": 0,
    "precision": None,
    "precision_interval": None,
    "proposed_weight": None,
}


def cases_on_acme_claim(engine: Engine, workspace_id: int, count: int) -> list[str]:
    """``count`` open cases on members F0.., each linked to ACME-CLM-0 (which RULE-MED-004
    hit), numbered CASE-000101 on."""
    with session_scope(engine) as session:
        claim = session.scalars(
            select(MedicalClaim).where(MedicalClaim.claim_id == "ACME-CLM-0")
        ).one()
        numbers = []
        for n in range(count):
            case = InvestigationCase(
                case_number=f"CASE-{101 + n:06d}",
                workspace_id=workspace_id,
                subject_type="member",
                subject_id=f"F{n}",
                risk_score=50.0,
                risk_level="medium",
                run_id="run-1",
                evidence_hash=f"F{n}",
            )
            session.add(case)
            session.flush()
            session.add(
                CaseClaim(
                    case_id=case.id,
                    claim_type="medical",
                    claim_pk=claim.id,
                    claim_id=claim.claim_id,
                )
            )
            numbers.append(case.case_number)
        return numbers


async def test_rule_feedback_counts_the_verdicts_of_closed_cases_citing_it(
    api: httpx.AsyncClient, world: World, pg_engine: Engine
) -> None:
    before = (await get(api, world, "/api/rules/RULE-MED-004")).json()
    assert before["feedback"] == NO_FEEDBACK

    # CASE-000001 and nine more cases on the same claims: 8 confirmed, 2 no issue, 1
    # inconclusive; CASE-000002 (no claims) cites no rule, and one still open counts nothing.
    numbers = ["CASE-000001", *cases_on_acme_claim(pg_engine, world.acme, 10)]
    dispositions = (["confirmed_fraud"] * 5 + ["confirmed_waste_abuse"] * 3 + ["no_issue"] * 2) + [
        "insufficient_evidence"
    ]
    for number, disposition in zip(numbers, dispositions, strict=True):
        response = await api.post(
            f"/api/cases/{number}/status",
            params=ACME,
            headers=world.headers["investigator"],
            json={"status": "closed", "disposition": disposition},
        )
        assert response.status_code == 200, response.text
    await api.post(
        "/api/cases/CASE-000002/status",
        params=ACME,
        headers=world.headers["investigator"],
        json={"status": "closed", "disposition": "no_issue"},
    )

    expected = {
        "closed_cases": 11,
        "confirmed": 8,
        "no_issue": 2,
        "inconclusive": 1,
        "precision": 0.8,
        "precision_interval": [0.4902, 0.9433],
        # run-1's weight 9.5 x 0.4902 / 0.5 = 9.31, within the rule's cap in effect, 8.
        "proposed_weight": 8.0,
    }
    one = (await get(api, world, "/api/rules/RULE-MED-004")).json()
    assert one["feedback"] == expected
    assert one["weight"] == 9.5  # proposed, not applied
    listed = (await get(api, world, "/api/rules")).json()["items"]
    by_rule = {r["rule_id"]: r["feedback"] for r in listed}
    assert by_rule["RULE-MED-004"] == expected
    assert {rule for rule, feedback in by_rule.items() if feedback != NO_FEEDBACK} == {
        "RULE-MED-004"
    }
    # Another workspace's verdicts are its own.
    globex = await api.get(
        "/api/rules/RULE-MED-004", params={"workspace": "globex"}, headers=world.headers["globex"]
    )
    assert globex.json()["feedback"] == NO_FEEDBACK


async def test_feedback_proposes_no_weight_from_too_few_verdicts(
    api: httpx.AsyncClient, world: World
) -> None:
    response = await api.post(
        "/api/cases/CASE-000001/status",
        params=ACME,
        headers=world.headers["investigator"],
        json={"status": "closed", "disposition": "confirmed_fraud", "amount_recovered": 300},
    )
    assert response.status_code == 200, response.text
    feedback = (await get(api, world, "/api/rules/RULE-MED-004")).json()["feedback"]
    assert feedback == {
        **NO_FEEDBACK,
        "closed_cases": 1,
        "confirmed": 1,
        "precision": 1.0,
        "precision_interval": [0.2065, 1.0],
    }
