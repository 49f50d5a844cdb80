"""``/api/workspaces/{workspace}/config``: admins set the workspace's configuration, everyone
with the workspace reads it and its history; a job enqueued through the API runs with the stored
version (and its own quality mode), and its run, job and claims name that version."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from fwa_pipeline.store.runs import get_request
from tests.api import test_pipeline_routes as pipeline_tests
from tests.api.conftest import bearer, make_token
from tests.api.test_pipeline_routes import World, daemon
from tests.pipeline.conftest import WORKSPACE

# The pipeline routes' fixtures: a Dagster home, its instance, the app and a landed batch.
dagster_home = pipeline_tests.dagster_home
instance = pipeline_tests.instance
wait_settings = pipeline_tests.wait_settings
world = pipeline_tests.world

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.anyio]

LIGHTER = {"rules": {"RULE-MED-006": {"weight": 3.5}}}


class Config:
    def __init__(self, world: World) -> None:
        engine = world.pipeline.engine
        self.world = world
        self.tokens = {
            "ada": make_token(engine, "admin", WORKSPACE, name="ada"),
            "ines": world.tokens["ines"],
            "vic": world.tokens["vic"],
            "otto": make_token(engine, "admin", "globex", name="otto"),
        }

    async def call(
        self, method: str, path: str = "", who: str = "ada", workspace: str = WORKSPACE, **kw: Any
    ) -> httpx.Response:
        return await self.world.http.request(
            method,
            f"/api/workspaces/{workspace}/config{path}",
            headers=bearer(self.tokens[who]),
            **kw,
        )

    async def put(self, config: dict[str, Any], note: str = "tuning", **kw: Any) -> httpx.Response:
        return await self.call("PUT", json={"config": config, "note": note}, **kw)


@pytest.fixture
def config(world: World) -> Config:
    return Config(world)


async def test_admins_set_versions_and_readers_see_them_with_their_changes(
    config: Config,
) -> None:
    before = await config.call("GET", who="vic")
    assert before.status_code == 200
    assert before.json()["version"] is None  # runs apply the catalogue
    assert before.json()["config"]["rules"]["RULE-MED-006"]["weight"] == 9.0

    first = await config.put(LIGHTER, note="death claims weigh less")
    second = await config.put({"quality": {"mode": "flag_only"}}, note="flag, do not hold")
    again = await config.put({"quality": {"mode": "flag_only"}}, note="same again")

    assert first.status_code == 200, first.text
    assert (first.json()["version"], first.json()["created"]) == (1, True)
    assert (second.json()["version"], again.json()["version"], again.json()["created"]) == (
        2,
        2,
        False,
    )
    current = (await config.call("GET", who="vic")).json()
    assert (current["version"], current["created_by"], current["note"]) == (
        2,
        "ada",
        "flag, do not hold",
    )
    assert current["config"]["quality"]["mode"] == "flag_only"
    assert current["config"]["rules"]["RULE-MED-006"]["weight"] == 9.0  # not carried over

    history = (await config.call("GET", "/history", who="vic")).json()
    assert history["total"] == 2
    assert [v["version"] for v in history["versions"]] == [2, 1]
    assert history["versions"][1]["changes"] == [
        {"path": "rules.RULE-MED-006.weight", "change": "changed", "before": 9.0, "after": 3.5}
    ]
    assert {c["path"] for c in history["versions"][0]["changes"]} == {
        "quality.mode",
        "rules.RULE-MED-006.weight",
    }
    one = await config.call("GET", "/versions/1", who="vic")
    assert one.json()["config"]["rules"]["RULE-MED-006"]["weight"] == 3.5
    missing = await config.call("GET", "/versions/9")
    assert (missing.status_code, missing.json()["detail"]) == (
        404,
        "configuration version not found",
    )


async def test_invalid_configuration_is_refused_naming_the_field(config: Config) -> None:
    typo = await config.put({"rules": {"RULE-NOPE": {"enabled": False}}})
    assert typo.status_code == 422
    # Refused by the request's schema, whose rules are the catalogue's ids.
    assert [e["field"] for e in typo.json()["errors"]] == ["body.config.rules.RULE-NOPE"]

    bad = await config.put({"rules": {"RULE-MED-006": {"weight": -1}}, "quality": {"mode": "x"}})
    assert bad.status_code == 422
    assert sorted(e["field"] for e in bad.json()["errors"]) == [
        "body.config.quality.mode",
        "body.config.rules.RULE-MED-006.weight",
    ]
    for body, field in (
        ({"config": LIGHTER}, "body.note"),
        ({"config": LIGHTER, "note": "   "}, "body.note"),
        ({"config": LIGHTER, "note": "x", "version": 3}, "body.version"),
        ({"config": [1], "note": "x"}, "body.config"),
        ({"config": {}, "note": "x", "based_on": False}, "body.based_on"),
        ({"config": {}, "note": "x", "based_on": "1"}, "body.based_on"),
        # JSON numbers only, as the schema says: not true for a weight.
        (
            {"config": {"rules": {"RULE-MED-006": {"weight": True}}}, "note": "x"},
            "body.config.rules.RULE-MED-006.weight",
        ),
        (
            {"config": {"scoring": {"bands": {"high": "70"}}}, "note": "x"},
            "body.config.scoring.bands.high",
        ),
        # A threshold is named as the catalogue names them: no other text reaches the store.
        (
            {"config": {"rules": {"RULE-MED-011": {"thresholds": {"min\x00z": 1}}}}, "note": "x"},
            "body.config.rules.RULE-MED-011.thresholds.min\x00z.[key]",
        ),
    ):
        response = await config.call("PUT", json=body)
        assert response.status_code == 422, body
        assert [e["field"] for e in response.json()["errors"]] == [field]
    assert (await config.call("GET")).json()["version"] is None  # nothing stored


async def test_only_admins_change_it_and_only_in_their_own_workspaces(config: Config) -> None:
    refused = await config.put(LIGHTER, who="ines")
    assert (refused.status_code, refused.json()["detail"]) == (403, "requires the admin role")
    for method in ("GET", "PUT"):
        foreign = await config.call(method, who="otto", json={"config": {}, "note": "x"})
        assert (foreign.status_code, foreign.json()["detail"]) == (404, "workspace not found")
    unknown = await config.call("GET", workspace="nowhere")
    assert unknown.status_code == 404
    assert (await config.call("GET", "/history", who="otto")).status_code == 404
    anonymous = await config.world.http.get(f"/api/workspaces/{WORKSPACE}/config")
    assert anonymous.status_code == 401
    assert (await config.call("GET")).json()["version"] is None


async def test_a_change_based_on_a_stale_version_is_a_conflict(config: Config) -> None:
    assert (await config.put(LIGHTER)).status_code == 200
    body = {"config": {"scoring": {"multiplier": 8.0}}, "note": "x", "based_on": 0}
    stale = await config.call("PUT", json=body)
    assert stale.status_code == 409
    assert "at version 1, not 0" in stale.json()["detail"]
    fresh = await config.call("PUT", json={**body, "based_on": 1})
    assert fresh.json()["version"] == 2


async def test_enqueue_takes_a_valid_quality_mode(world: World) -> None:
    response = await world.call("POST", "/enqueue", json={"quality_mode": "sometimes"})
    assert response.status_code == 422
    assert [e["field"] for e in response.json()["errors"]] == ["body.quality_mode"]

    response = await world.call("POST", "/enqueue", json={"quality_mode": "flag_only"})
    assert response.status_code == 202
    assert response.json()["quality_mode"] == "flag_only"
    request = get_request(world.pipeline.engine, response.json()["job_id"])
    assert request is not None and request.quality_mode == "flag_only"


async def test_an_api_job_runs_with_the_stored_version_and_claims_trace_to_it(
    config: Config, world: World
) -> None:
    # Version 1 halts on batch one's two invalid claims; the job asks to flag them instead.
    stored = await config.put({**LIGHTER, "quality": {"mode": "halt_on_errors"}})
    assert stored.json()["version"] == 1

    with daemon(world.pipeline):
        response = await world.call("POST", "/run-full", json={"quality_mode": "flag_only"})

    job = response.json()
    assert response.status_code == 200 and job["status"] == "success", job
    assert (job["config_version"], job["quality_mode"]) == (1, "flag_only")
    (run,) = (await world.call("GET", "/runs", "vic")).json()["runs"]
    assert run["config_version"] == 1
    snapshot = (await world.call("GET", f"/runs/{run['run_id']}", "vic")).json()["config_snapshot"]
    assert snapshot["config_version"] == 1
    assert snapshot["override"] == {"quality": {"mode": "flag_only"}}
    assert snapshot["quality"]["mode"] == "flag_only"
    assert snapshot["rules"]["RULE-MED-006"]["weight"] == 3.5
    assert set(snapshot["reference"]) == {"cpt_reference", "ncci_edits", "ndc_reference"}
    assert snapshot["code"]["package"]

    # A later change is not what scored the claim: the claim names its run's version.
    await config.put({"scoring": {"multiplier": 8.0}})
    provenance = await world.http.get(
        "/api/claims/MC-3/provenance",
        params={"workspace": WORKSPACE},
        headers=bearer(world.tokens["vic"]),
    )
    assert provenance.status_code == 200, provenance.text
    assert provenance.json()["run"]["run_id"] == run["run_id"]
    assert provenance.json()["run"]["config_version"] == 1
