"""``/api/pipeline``: jobs, runs, run-full and run-stream against the real PostgreSQL and a Dagster
instance on a temporary ``DAGSTER_HOME`` (the app opens it as in production). Where a job must
run, a thread does what the Dagster daemon would: tick the request sensor, execute the run in
process, mirror it."""

from __future__ import annotations

import contextlib
import json
import shutil
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dagster as dg
import httpx
import pytest
from sqlalchemy import Engine

from fwa_api.app import create_app
from fwa_api.routes import pipeline as pipeline_routes
from fwa_pipeline.defs.run_mirror import reconcile
from fwa_pipeline.defs.sensors import pipeline_request_sensor
from fwa_pipeline.settings import Settings
from fwa_pipeline.store.runs import get_request, queued_requests
from tests.agents.fake_llm import ServerThread
from tests.api.conftest import bearer, make_token, make_workspace, serve
from tests.pipeline import batch
from tests.pipeline.conftest import WORKSPACE, Pipeline
from tests.pipeline.test_automation import launch, tick

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.anyio]

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class World:
    http: httpx.AsyncClient
    pipeline: Pipeline
    tokens: dict[str, str]
    settings: Settings

    async def call(
        self, method: str, path: str, who: str = "ines", workspace: str = WORKSPACE, **kw: Any
    ) -> httpx.Response:
        return await self.http.request(
            method,
            f"/api/pipeline{path}",
            params={"workspace": workspace, **kw.pop("params", {})},
            headers=bearer(self.tokens[who]),
            **kw,
        )

    async def enqueue(self, who: str = "ines", workspace: str = WORKSPACE) -> str:
        response = await self.call("POST", "/enqueue", who, workspace)
        assert response.status_code == 202, response.text
        return str(response.json()["job_id"])


@pytest.fixture
def dagster_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "dagster_home"  # a copy of the repository's embedded default
    home.mkdir()
    shutil.copy(ROOT / "dagster_home" / "dagster.yaml", home / "dagster.yaml")
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    return home


@pytest.fixture
def instance(dagster_home: Path) -> Iterator[dg.DagsterInstance]:
    """The test's own handle on the instance the app opens (the daemon's, as it were)."""
    with dg.DagsterInstance.get() as instance:
        yield instance


@pytest.fixture
def wait_settings(api_settings: Settings) -> Settings:
    return api_settings.model_copy(update={"pipeline_wait_max_s": 120})


@pytest.fixture
async def world(
    wait_settings: Settings,
    pg_engine: Engine,
    redis_prefix: str,
    instance: dg.DagsterInstance,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> AsyncIterator[World]:
    monkeypatch.setattr(pipeline_routes, "POLL_S", 0.2)
    pipeline = Pipeline(pg_engine, wait_settings, instance, tmp_path)
    pipeline.land(batch.batch_one())
    make_workspace(pg_engine, "globex")
    tokens = {
        "ines": make_token(pg_engine, "investigator", WORKSPACE),
        "vic": make_token(pg_engine, "viewer", WORKSPACE),
        "gus": make_token(pg_engine, "investigator", "globex"),
    }
    async with serve(create_app(wait_settings, redis_prefix=redis_prefix)) as http:
        yield World(http, pipeline, tokens, wait_settings)


@contextlib.contextmanager
def daemon(pipeline: Pipeline) -> Iterator[None]:
    """In a thread: wait for a queued request, turn it into a run as the sensor and the run
    launcher would, execute it in process and mirror it."""
    failures: list[BaseException] = []

    def work() -> None:
        try:
            for _ in range(600):  # bounded wait for the request
                if queued_requests(pipeline.engine):
                    break
                time.sleep(0.1)
            result = tick(pipeline_request_sensor, pipeline)
            assert isinstance(result, dg.SensorResult), result
            launch(pipeline, result)
            reconcile(pipeline.engine, pipeline.instance)
        except BaseException as exc:
            failures.append(exc)

    thread = threading.Thread(target=work, daemon=True)
    thread.start()
    try:
        yield
    finally:
        thread.join(300)
    assert not thread.is_alive() and not failures, failures


def sse(text: str) -> list[dict[str, Any]]:
    return [json.loads(line[5:]) for line in text.splitlines() if line.startswith("data:")]


# --------------------------------------------------------------------------- jobs


async def test_enqueue_answers_with_a_queued_job_at_once(world: World) -> None:
    response = await world.call("POST", "/enqueue", json={"force_reprocess": True})

    assert response.status_code == 202
    body = response.json()
    assert body["status"] == "queued" and body["force_reprocess"] is True
    request = get_request(world.pipeline.engine, body["job_id"])
    assert request is not None and request.status == "queued" and request.force_reprocess
    assert request.requested_by is not None and request.requested_by.startswith("investigator-")

    job = await world.call("GET", f"/jobs/{body['job_id']}", "vic")  # viewers may read it
    assert job.status_code == 200
    status = job.json()
    assert (status["job_id"], status["status"], status["phase"]) == (body["job_id"], "queued", None)
    assert status["progress"] == {"done": 0, "total": 0} and status["claims_processed"] == 0
    assert status["dagster_run_id"] is None and status["errors"] == []
    assert (await world.call("POST", "/enqueue")).status_code == 202  # the body is optional


async def test_unknown_and_foreign_jobs_are_not_found(world: World) -> None:
    theirs = await world.enqueue("gus", workspace="globex")
    for job_id in (theirs, str(uuid.uuid4())):
        response = await world.call("GET", f"/jobs/{job_id}")
        assert (response.status_code, response.json()["detail"]) == (404, "job not found")
    response = await world.call("GET", f"/jobs/{theirs}", workspace="globex")
    assert (response.status_code, response.json()["detail"]) == (404, "workspace not found")
    assert (await world.call("GET", "/jobs/not-a-uuid")).status_code == 422


@pytest.mark.parametrize("path", ["/enqueue", "/run-full", "/run-stream"])
async def test_starting_a_job_needs_the_investigator_role(world: World, path: str) -> None:
    response = await world.call("POST", path, "vic")
    assert (response.status_code, response.json()["detail"]) == (
        403,
        "requires the investigator role",
    )
    assert queued_requests(world.pipeline.engine) == []


async def test_enqueue_refuses_unknown_fields(world: World) -> None:
    response = await world.call("POST", "/enqueue", json={"force": True})
    assert response.status_code == 422


# --------------------------------------------------------------------------- run-full, runs


async def test_run_full_times_out_with_the_job_to_poll(world: World) -> None:
    response = await world.call("POST", "/run-full", params={"timeout_s": 0.3})

    assert response.status_code == 202
    body = response.json()
    assert body["status"] == "queued"
    assert get_request(world.pipeline.engine, body["job_id"]) is not None


async def test_run_full_waits_at_most_the_configured_cap(
    world: World, api_settings: Settings, redis_prefix: str
) -> None:
    capped = api_settings.model_copy(update={"pipeline_wait_max_s": 1})
    async with serve(create_app(capped, redis_prefix=redis_prefix)) as http:
        response = await http.post(
            "/api/pipeline/run-full",
            params={"workspace": WORKSPACE, "timeout_s": 3600},
            headers=bearer(world.tokens["ines"]),
        )
    assert response.status_code == 202 and response.json()["status"] == "queued"


async def test_run_full_runs_the_job_and_its_run_is_listed(world: World) -> None:
    with daemon(world.pipeline):
        response = await world.call("POST", "/run-full", json={"force_reprocess": False})

    assert response.status_code == 200, response.text
    job = response.json()
    assert (job["status"], job["phase"], job["errors"]) == ("success", "done", [])
    assert job["progress"]["done"] == job["progress"]["total"] > 0
    assert job["claims_processed"] == 9
    assert job["started_at"] is not None and job["completed_at"] is not None
    run_id = job["dagster_run_id"]
    polled = await world.call("GET", f"/jobs/{job['job_id']}")
    assert polled.json() == job

    listed = await world.call("GET", "/runs", "vic")
    assert listed.status_code == 200
    runs = listed.json()
    assert (runs["total"], runs["limit"], runs["offset"]) == (1, 50, 0)
    (run,) = runs["runs"]
    assert (run["run_id"], run["status"], run["force_reprocess"]) == (run_id, "success", False)
    assert run["stats"]["claims_in"] == 9 and "config_snapshot" not in run
    page = await world.call("GET", "/runs", params={"limit": 1, "offset": 1})
    assert page.json()["runs"] == [] and page.json()["total"] == 1

    detail = await world.call("GET", f"/runs/{run_id}", "vic")
    assert detail.status_code == 200
    body = detail.json()
    assert body["config_snapshot"]["quality"]["mode"] == "skip_invalid"
    assert "RULE-MED-001" in json.dumps(body["config_snapshot"])
    assert body["quality_report"]["total_claims"] == 9 and body["stats"] == run["stats"]

    for who, workspace in (("gus", "globex"), ("ines", WORKSPACE)):
        missing = run_id if who == "gus" else "no-such-run"
        response = await world.call("GET", f"/runs/{missing}", who, workspace=workspace)
        assert (response.status_code, response.json()["detail"]) == (404, "run not found")
    assert (await world.call("GET", "/runs", "gus", workspace="globex")).json()["total"] == 0


# --------------------------------------------------------------------------- run-stream


async def test_run_stream_reports_progress_until_the_job_ends(world: World) -> None:
    with daemon(world.pipeline):
        response = await world.call("POST", "/run-stream")

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    events = sse(response.text)
    # The "daemon" may have picked the request up before the first poll.
    assert events[0]["type"] == "progress" and events[0]["status"] in ("queued", "launched")
    assert {e["job_id"] for e in events} == {events[0]["job_id"]}
    assert all(e["done"] is False for e in events[:-1])
    last = events[-1]
    assert (last["type"], last["done"], last["status"], last["phase"]) == (
        "end",
        True,
        "success",
        "done",
    )
    assert last["claims_processed"] == 9
    states = [
        (e["status"], e["phase"], tuple(e["progress"].values()), e["claims_processed"])
        for e in events
    ]
    assert len(states) == len(set(states))  # an event only when something changed


async def test_run_stream_ends_with_a_timeout_event(
    world: World, api_settings: Settings, redis_prefix: str
) -> None:
    capped = api_settings.model_copy(update={"pipeline_wait_max_s": 1})
    async with serve(create_app(capped, redis_prefix=redis_prefix)) as http:
        response = await http.post(
            "/api/pipeline/run-stream",
            params={"workspace": WORKSPACE},
            headers=bearer(world.tokens["ines"]),
        )
    events = sse(response.text)
    assert events[-1]["type"] == "timeout" and events[-1]["done"] is True
    assert events[-1]["status"] == "queued"


def test_a_client_that_disconnects_stops_the_polling(
    wait_settings: Settings,
    pg_engine: Engine,
    dagster_home: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Over a real socket (the in-process transport cannot disconnect mid-stream)."""
    make_workspace(pg_engine, WORKSPACE)
    token = make_token(pg_engine, "investigator", WORKSPACE)
    polls: list[str] = []
    read_job = pipeline_routes._job

    def counted(*args: Any) -> Any:
        polls.append(args[-1])
        return read_job(*args)

    monkeypatch.setattr(pipeline_routes, "_job", counted)
    monkeypatch.setattr(pipeline_routes, "POLL_S", 0.05)
    server = ServerThread(create_app(wait_settings), lifespan="on").start()
    try:
        with (
            httpx.Client(base_url=server.url, timeout=30) as client,
            client.stream(
                "POST",
                "/api/pipeline/run-stream",
                params={"workspace": WORKSPACE},
                headers=bearer(token),
            ) as response,
        ):
            assert response.status_code == 200
            for line in response.iter_lines():
                if line.startswith("data:"):
                    break  # leave after the first event
        seen = len(polls)
        for _ in range(100):  # a bounded wait for the polling to stop
            time.sleep(0.1)
            if len(polls) == seen:
                break
            seen = len(polls)
        time.sleep(1)  # twenty poll intervals: none may follow
        assert len(polls) == seen
    finally:
        server.stop()
