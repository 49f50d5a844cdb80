"""The rules and providers routes on the real PostgreSQL and Redis."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from sqlalchemy import Engine

from fwa_pipeline.domain.config import default_config
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
