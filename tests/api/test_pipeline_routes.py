"""``/api/pipeline``: jobs, runs, run-full and run-stream against the real PostgreSQL and a Dagster
instance on a temporary ``DAGSTER_HOME`` (the app opens it as in production). Where a job must
run, a thread does what the Dagster daemon would: tick the request sensor, execute the run in
process, tick the ending sensor."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime as dt
import json
import shutil
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dagster as dg
import httpx
import pytest
from dagster import DagsterRunStatus
from dagster._core.workspace.context import WorkspaceProcessContext
from dagster._core.workspace.load_target import ModuleTarget
from sqlalchemy import Engine, text, update

from fwa_api.app import create_app
from fwa_api.pipeline import queries as pipeline_queries
from fwa_api.pipeline import routes as pipeline_routes
from fwa_pipeline.defs.jobs import PIPELINE_JOB
from fwa_pipeline.defs.sensors import pipeline_request_sensor
from fwa_pipeline.runs.ending import sweep
from fwa_pipeline.runs.tags import PARTITION_TAG
from fwa_pipeline.settings import Settings
from fwa_pipeline.store.models import PipelineRequest, utcnow
from fwa_pipeline.store.runs import get_request, get_run, queued_requests
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
            headers={**bearer(self.tokens[who]), **kw.pop("headers", {})},
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


@pytest.fixture
async def capped(world: World, api_settings: Settings, redis_prefix: str) -> AsyncIterator[World]:
    """``world`` served by an app that lets a request wait on a job for 1 s at the most."""
    settings = api_settings.model_copy(update={"pipeline_wait_max_s": 1})
    async with serve(create_app(settings, redis_prefix=redis_prefix)) as http:
        yield dataclasses.replace(world, http=http, settings=settings)


@contextlib.contextmanager
def daemon(pipeline: Pipeline, run_config: dict[str, Any] | None = None) -> Iterator[None]:
    """In a thread: wait for a queued request, turn it into a run as the sensor and the run
    launcher would (with ``run_config`` instead of the request's, if given), execute it in
    process and tick the ending sensor."""
    failures: list[BaseException] = []

    def work() -> None:
        try:
            for _ in range(600):  # bounded wait for the request
                if queued_requests(pipeline.engine):
                    break
                time.sleep(0.1)
            result = tick(pipeline_request_sensor, pipeline)
            assert isinstance(result, dg.SensorResult), result
            request = result.run_requests[0]
            if run_config is not None:
                request = request.with_replaced_attrs(run_config=run_config)
            launch(pipeline, result, request)
            sweep(pipeline.engine, pipeline.instance)
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
    assert status["result"] is None  # not until the job ends
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


@pytest.mark.parametrize("value", [0, 1, "true", "yes"])
async def test_enqueue_takes_only_a_json_boolean_for_force_reprocess(
    world: World, value: object
) -> None:
    response = await world.call("POST", "/enqueue", json={"force_reprocess": value})
    assert response.status_code == 422
    assert "force_reprocess" in response.text
    assert queued_requests(world.pipeline.engine) == []


# --------------------------------------------------------------------------- run-full, runs


async def test_run_full_times_out_with_the_job_to_poll(world: World) -> None:
    response = await world.call("POST", "/run-full", params={"timeout_s": 0.3})

    assert response.status_code == 202
    body = response.json()
    assert body["status"] == "queued"
    assert get_request(world.pipeline.engine, body["job_id"]) is not None


async def test_run_full_waits_at_most_the_configured_cap(capped: World) -> None:
    response = await capped.call("POST", "/run-full", params={"timeout_s": 3600})
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
    row = get_run(world.pipeline.engine, run_id)
    assert row is not None
    assert job["result"] == {
        "status": "success",
        "claims_processed": 9,
        "hits": row.stats["written"]["hits"],
        "cases_opened": row.stats["cases_opened"],
        "cases_updated": 0,
        "failure_reason": None,
    }
    assert job["result"]["hits"] > 0 and job["result"]["cases_opened"] > 0

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
    assert body["progress"]["done"] == body["progress"]["planned"] and body["errors"] == []
    assert body["progress"]["planned"][0] == "landed_batches"

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


async def test_run_stream_ends_with_a_timeout_event(capped: World) -> None:
    response = await capped.call("POST", "/run-stream")
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
    read_job = pipeline_queries.find_job

    def counted(*args: Any) -> Any:
        polls.append(args[-1])
        return read_job(*args)

    monkeypatch.setattr(pipeline_queries, "find_job", counted)
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


# --------------------------------------------------------------------------- results


async def test_a_failed_job_has_a_result_with_its_reason(world: World) -> None:
    halting = {
        "resources": {
            "pipeline_config": {"config": {"pipeline": {"quality": {"mode": "halt_on_errors"}}}}
        }
    }
    with daemon(world.pipeline, halting):
        response = await world.call("POST", "/run-full")

    job = response.json()
    assert job["status"] == "failure"
    # Nothing was recorded: the quality gate stopped the run before the results.
    assert job["result"] == {
        "status": "failure",
        "claims_processed": 0,
        "hits": 0,
        "cases_opened": 0,
        "cases_updated": 0,
        "failure_reason": job["errors"][0],
    }
    assert job["result"]["failure_reason"].startswith("raw_claims: 2 blocking asset checks")
    # The run's own record says the same, and where it stopped.
    run = (await world.call("GET", f"/runs/{job['dagster_run_id']}")).json()
    assert (run["status"], run["errors"]) == ("failure", job["errors"])
    assert "raw_claims" not in run["progress"]["done"]
    assert run["progress"]["done"] == run["progress"]["planned"][: len(run["progress"]["done"])]


# --------------------------------------------------------------------------- cancel


async def test_a_queued_job_is_canceled_before_it_launches(world: World) -> None:
    job_id = await world.enqueue()

    response = await world.call("POST", f"/jobs/{job_id}/cancel")

    assert response.status_code == 200, response.text
    job = response.json()
    assert (job["status"], job["dagster_run_id"]) == ("canceled", None)
    assert job["result"]["status"] == "canceled"
    assert job["result"]["failure_reason"] == "the job was canceled"
    assert queued_requests(world.pipeline.engine) == []
    # The sensor has nothing to launch.
    assert isinstance(tick(pipeline_request_sensor, world.pipeline), dg.SkipReason)
    again = await world.call("POST", f"/jobs/{job_id}/cancel")
    assert (again.status_code, again.json()["detail"]) == (
        409,
        "the job has ended: there is nothing to cancel",
    )


async def test_a_job_whose_run_waits_in_the_run_queue_is_canceled_with_its_run(
    world: World,
) -> None:
    job_id = await world.enqueue()
    # The run the daemon makes of the sensor's run request, before a run worker takes it.
    result = tick(pipeline_request_sensor, world.pipeline)
    assert isinstance(result, dg.SensorResult)
    (request,) = result.run_requests
    run = world.pipeline.instance.add_run(
        dg.DagsterRun(
            job_name=PIPELINE_JOB,
            run_id=str(uuid.uuid4()),
            run_config=request.run_config,
            tags={**request.tags, PARTITION_TAG: WORKSPACE},
            status=DagsterRunStatus.NOT_STARTED,
        )
    )

    response = await world.call("POST", f"/jobs/{job_id}/cancel")

    assert response.status_code == 200, response.text
    assert (response.json()["status"], response.json()["dagster_run_id"]) == (
        "canceled",
        run.run_id,
    )
    assert world.pipeline.instance.get_run_by_id(run.run_id).status == DagsterRunStatus.CANCELED
    row = get_run(world.pipeline.engine, run.run_id)
    assert row is not None and row.status == "canceled"
    assert get_request(world.pipeline.engine, job_id).status == "canceled"


@contextlib.contextmanager
def code_server(instance: dg.DagsterInstance) -> Iterator[tuple[Any, Any, Any]]:
    """The project's code location served by a code server process, as the daemon loads it:
    (the workspace, its code location, the pipeline job as the server knows it)."""
    target = ModuleTarget(
        module_name="fwa_pipeline.definitions",
        attribute=None,
        working_directory=str(ROOT),
        location_name="fwa",
    )
    with WorkspaceProcessContext(instance, target) as workspace:
        location = workspace.create_request_context().get_code_location("fwa")
        (repository,) = location.get_repositories().values()
        yield workspace, location, repository.get_full_job(PIPELINE_JOB)


async def test_a_running_job_is_terminated_and_ends_canceled(
    world: World, instance: dg.DagsterInstance, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The run executes in a run worker process the code server starts, as the daemon has it
    run; the API terminates it through the instance's run launcher."""
    settings = world.settings
    for name, value in {
        "FWA_ENVIRONMENT": settings.environment.value,
        "FWA_DATABASE_URL": settings.database_url.get_secret_value(),
        "FWA_DATA_DIR": str(settings.data_dir),
        "FWA_ENCRYPTION_KEY": settings.encryption_key.get_secret_value(),
    }.items():
        monkeypatch.setenv(name, value)  # the run worker reads its store from the environment
    job_id = await world.enqueue()
    result = tick(pipeline_request_sensor, world.pipeline)
    assert isinstance(result, dg.SensorResult)
    (request,) = result.run_requests
    for add in result.dynamic_partitions_requests or []:
        instance.add_dynamic_partitions(add.partitions_def_name, list(add.partition_keys))

    with code_server(instance) as (workspace, location, job), world.pipeline.engine.begin() as lock:
        # Holds the run at its first read of the claims, however fast the machine.
        lock.execute(text("LOCK TABLE medical_claims IN ACCESS EXCLUSIVE MODE"))
        plan = location.get_execution_plan(
            job, request.run_config, step_keys_to_execute=None, known_state=None, instance=instance
        )
        run = instance.create_run(
            job_name=PIPELINE_JOB,
            run_id=None,
            run_config=request.run_config,
            resolved_op_selection=None,
            step_keys_to_execute=None,
            status=DagsterRunStatus.NOT_STARTED,
            op_selection=None,
            root_run_id=None,
            parent_run_id=None,
            tags={**request.tags, PARTITION_TAG: WORKSPACE},
            job_snapshot=job.job_snapshot,
            execution_plan_snapshot=plan.execution_plan_snapshot,
            parent_job_snapshot=job.parent_job_snapshot,
            remote_job_origin=job.get_remote_origin(),
            job_code_origin=job.get_python_origin(),
            asset_selection=None,
            asset_check_selection=None,
            asset_graph=location.get_repository(job.repository_handle.repository_name).asset_graph,
        )
        instance.launch_run(run.run_id, workspace.create_request_context())
        # Canceled once it waits on the lock: the step reading the claims has started.
        await until(lambda: "raw_claims" in started_steps(instance, run.run_id))

        response = await world.call("POST", f"/jobs/{job_id}/cancel")

        # 202 while the run worker stops; 200 if it stopped before the job was read again.
        answer = (response.status_code, response.json()["status"])
        assert answer in {(202, "canceling"), (200, "canceled")}, response.text
        await until(lambda: instance.get_run_by_id(run.run_id).is_finished)

    assert instance.get_run_by_id(run.run_id).status == DagsterRunStatus.CANCELED
    sweep(world.pipeline.engine, instance)
    row = get_run(world.pipeline.engine, run.run_id)
    assert row is not None and row.status == "canceled"
    job_now = (await world.call("GET", f"/jobs/{job_id}")).json()
    assert job_now["errors"] and job_now["errors"][0].endswith(": interrupted")
    assert (job_now["status"], job_now["result"]["status"]) == ("canceled", "canceled")
    assert world.pipeline.query("SELECT count(*) FROM rule_hits") == [(0,)]


def started_steps(instance: dg.DagsterInstance, run_id: str) -> set[str]:
    events = instance.all_logs(run_id, of_type=dg.DagsterEventType.STEP_START)
    return {event.step_key for event in events if event.step_key}


async def until(condition: Callable[[], bool], limit_s: float = 180) -> None:
    """Wait for ``condition``, a bounded number of times."""
    for _ in range(int(limit_s / 0.2)):
        if condition():
            return
        await asyncio.sleep(0.2)
    raise AssertionError("the condition never held")


async def test_a_job_canceled_while_the_daemon_creates_its_run_ends_canceled(
    world: World,
) -> None:
    job_id = await world.enqueue()
    result = tick(pipeline_request_sensor, world.pipeline)  # the sensor has read the request
    assert isinstance(result, dg.SensorResult)

    response = await world.call("POST", f"/jobs/{job_id}/cancel")
    assert (response.status_code, response.json()["status"]) == (200, "canceled")
    launch(world.pipeline, result)  # the run the daemon made of the tick's request
    sweep(world.pipeline.engine, world.pipeline.instance)

    job = (await world.call("GET", f"/jobs/{job_id}")).json()
    assert job["status"] == "canceled" and job["dagster_run_id"] is not None
    assert job["errors"] == ["landed_batches: interrupted"]
    assert job["result"]["status"] == "canceled" and job["result"]["claims_processed"] == 0
    row = get_run(world.pipeline.engine, job["dagster_run_id"])
    assert row is not None and row.status == "canceled"
    # It stopped before reading a claim: the batch waits for the next run.
    assert world.pipeline.query("SELECT processed_run_id FROM batches") == [(None,)]
    assert get_request(world.pipeline.engine, job_id).status == "canceled"


async def test_a_finished_job_cannot_be_canceled(world: World) -> None:
    with daemon(world.pipeline):
        job = (await world.call("POST", "/run-full")).json()
    assert job["status"] == "success"

    response = await world.call("POST", f"/jobs/{job['job_id']}/cancel")

    assert response.status_code == 409
    polled = await world.call("GET", f"/jobs/{job['job_id']}")
    assert polled.json()["status"] == "success"


async def test_canceling_needs_the_investigator_role_and_the_jobs_workspace(world: World) -> None:
    ours = await world.enqueue()
    theirs = await world.enqueue("gus", workspace="globex")

    viewer = await world.call("POST", f"/jobs/{ours}/cancel", "vic")
    assert (viewer.status_code, viewer.json()["detail"]) == (
        403,
        "requires the investigator role",
    )
    for job_id in (theirs, str(uuid.uuid4())):
        response = await world.call("POST", f"/jobs/{job_id}/cancel")
        assert (response.status_code, response.json()["detail"]) == (404, "job not found")
    assert {queued[0] for queued in queued_requests(world.pipeline.engine)} == {ours, theirs}


# --------------------------------------------------------------------------- idempotency


async def test_a_retry_with_the_same_idempotency_key_returns_the_first_job(world: World) -> None:
    key = {"Idempotency-Key": "retry-7f3a"}
    first = await world.call("POST", "/enqueue", json={"force_reprocess": True}, headers=key)
    again = await world.call("POST", "/enqueue", json={"force_reprocess": True}, headers=key)

    assert first.status_code == 202 and again.status_code == 200
    assert again.json() == first.json()
    assert len(queued_requests(world.pipeline.engine)) == 1
    # Another body under the key is refused; nothing is queued.
    other = await world.call("POST", "/enqueue", json={"force_reprocess": False}, headers=key)
    assert (other.status_code, other.json()["detail"]) == (
        409,
        "Idempotency-Key: this key was used with a different request body",
    )
    # Without a key, or in another workspace, the same request is a new job.
    assert (await world.call("POST", "/enqueue", json={"force_reprocess": True})).status_code == 202
    theirs = await world.call("POST", "/enqueue", "gus", "globex", headers=key)
    assert theirs.status_code == 202 and theirs.json()["job_id"] != first.json()["job_id"]
    assert len(queued_requests(world.pipeline.engine)) == 3


async def test_a_retry_of_a_job_that_moved_on_shows_its_status(world: World) -> None:
    key = {"Idempotency-Key": "retry-cancel"}
    first = (await world.call("POST", "/enqueue", headers=key)).json()
    await world.call("POST", f"/jobs/{first['job_id']}/cancel")

    again = await world.call("POST", "/enqueue", headers=key)

    assert again.status_code == 200
    assert again.json() == {**first, "status": "canceled"}


async def test_concurrent_retries_make_one_job(world: World) -> None:
    key = {"Idempotency-Key": "burst"}
    responses = await asyncio.gather(
        *(world.call("POST", "/enqueue", headers=key) for _ in range(6))
    )

    assert sorted(r.status_code for r in responses) == [200] * 5 + [202]
    assert len({r.json()["job_id"] for r in responses}) == 1
    assert len(queued_requests(world.pipeline.engine)) == 1


async def test_an_idempotency_key_is_released_after_the_retention_window(world: World) -> None:
    key = {"Idempotency-Key": "daily"}
    first = (await world.call("POST", "/enqueue", headers=key)).json()
    hours = world.settings.pipeline_idempotency_hours
    with world.pipeline.engine.begin() as connection:
        connection.execute(
            update(PipelineRequest)
            .where(PipelineRequest.job_id == first["job_id"])
            .values(requested_at=utcnow() - dt.timedelta(hours=hours, minutes=1))
        )

    later = await world.call("POST", "/enqueue", json={"force_reprocess": True}, headers=key)

    assert later.status_code == 202 and later.json()["job_id"] != first["job_id"]
    again = await world.call("POST", "/enqueue", json={"force_reprocess": True}, headers=key)
    assert (again.status_code, again.json()["job_id"]) == (200, later.json()["job_id"])


@pytest.mark.parametrize("key", ["", "has space", "x" * 201, "caf\u00e9".encode()])
async def test_a_malformed_idempotency_key_is_refused(world: World, key: str | bytes) -> None:
    response = await world.call("POST", "/enqueue", headers={"Idempotency-Key": key})

    assert response.status_code == 422
    assert "Idempotency-Key" in response.text
    assert queued_requests(world.pipeline.engine) == []
