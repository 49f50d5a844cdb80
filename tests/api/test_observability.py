"""Request ids, JSON logs, error responses and Prometheus metrics, through the real app."""

from __future__ import annotations

import datetime as dt
import logging
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import dagster as dg
import httpx
import pytest
from fastapi import APIRouter, Request
from prometheus_client.parser import text_string_to_metric_families
from pydantic import SecretStr
from sqlalchemy import Engine, text

from fwa_api.app import create_app
from fwa_api.middleware.route_templates import UNMATCHED
from fwa_api.services import services
from fwa_pipeline.defs.jobs import PIPELINE_JOB
from fwa_pipeline.runs.ending import sweep
from fwa_pipeline.runs.tags import PARTITION_TAG
from fwa_pipeline.settings import Settings
from fwa_pipeline.store.db import session_scope
from fwa_pipeline.store.models import InvestigationCase
from tests.api.conftest import (
    SHARED_REDIS,
    app_log,
    bearer,
    free_port,
    json_lines,
    make_token,
    make_workspace,
    serve,
)
from tests.pipeline import batch
from tests.pipeline.conftest import WORKSPACE, Pipeline

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.anyio]

SECRET_DETAIL = "member M-555 at /srv/secret/path"


def item_routes() -> APIRouter:
    """Mounted as /api/items with an inner /notes router: templates must carry both prefixes."""
    items = APIRouter()
    notes = APIRouter(prefix="/notes")

    @items.get("/{item_id}")
    async def get_item(item_id: int) -> dict[str, int]:
        logging.getLogger("tests.route").info("looking up an item")
        return {"item_id": item_id}

    @items.get("/{item_id}/boom")
    async def boom(item_id: int) -> None:
        raise RuntimeError(SECRET_DETAIL)

    @items.get("/{item_id}/sync-boom")
    def sync_boom(item_id: int) -> None:
        raise KeyError(SECRET_DETAIL)

    @items.get("/{item_id}/stored-as-text")
    def stored_as_text(request: Request, item_id: int) -> None:
        # Text PostgreSQL rejects (a NUL) reaching the database past every input check.
        with services(request).engine.connect() as connection:
            connection.execute(
                text("SELECT CAST(:value AS text)"), {"value": SECRET_DETAIL + "\x00"}
            )

    @notes.get("/{note_id}")
    async def get_note(note_id: str) -> dict[str, str]:
        return {"note_id": note_id}

    items.include_router(notes)
    return items


@pytest.fixture
async def http(
    api_settings: Settings, pg_engine: Engine, redis_prefix: str
) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(api_settings, redis_prefix=redis_prefix)
    app.include_router(item_routes(), prefix="/api/items")
    async with serve(app) as client:
        yield client


# --------------------------------------------------------------------------- request id


@pytest.mark.parametrize("incoming", ["abc-123", "a.B_c-9", "x" * 64])
async def test_a_well_formed_request_id_is_kept(http: httpx.AsyncClient, incoming: str) -> None:
    response = await http.get("/api/health", headers={"X-Request-ID": incoming})
    assert response.headers["X-Request-ID"] == incoming


@pytest.mark.parametrize("incoming", [None, "", "has space", "x" * 65, "semi;colon", "é".encode()])
async def test_otherwise_a_uuid4_is_generated(
    http: httpx.AsyncClient, incoming: str | bytes | None
) -> None:
    headers = {} if incoming is None else {"X-Request-ID": incoming}
    response = await http.get("/api/health", headers=headers)
    generated = response.headers["X-Request-ID"]
    assert generated != incoming
    assert uuid.UUID(generated).version == 4


# --------------------------------------------------------------------------- logs


async def test_the_request_id_reaches_every_log_line_of_the_request(
    http: httpx.AsyncClient, pg_engine: Engine
) -> None:
    make_workspace(pg_engine, "north")
    token = make_token(pg_engine, "viewer", "north", name="dana")
    with app_log() as log:
        await http.get("/api/items/41", headers={"X-Request-ID": "trace-41"})
        await http.get("/api/workspaces", headers={**bearer(token), "X-Request-ID": "trace-ws"})
    lines = json_lines(log.getvalue())
    route_line = next(line for line in lines if line["logger"] == "tests.route")
    assert route_line["request_id"] == "trace-41"
    assert {"timestamp", "level", "logger", "message"} <= set(route_line)
    dt.datetime.fromisoformat(route_line["timestamp"])
    access = [line for line in lines if line["logger"] == "fwa_api.access"]
    assert [line["request_id"] for line in access] == ["trace-41", "trace-ws"]
    item, workspaces = access
    assert item["method"] == "GET"
    assert item["route"] == "/api/items/{item_id}"
    assert item["status"] == 200
    assert item["duration_ms"] >= 0
    assert "41" not in item["message"]  # the template, never the raw path
    assert "actor" not in item
    assert workspaces["actor"] == "dana"
    assert all(token not in str(line) for line in lines)


async def test_a_500_leaks_nothing_and_logs_the_traceback_with_the_request_id(
    http: httpx.AsyncClient,
) -> None:
    for path, error in (
        ("/api/items/1/boom", "RuntimeError"),
        ("/api/items/1/sync-boom", "KeyError"),
    ):
        with app_log() as log:
            response = await http.get(path, headers={"X-Request-ID": "boom-1"})
        assert response.status_code == 500
        assert response.json() == {"detail": "internal error", "request_id": "boom-1"}
        assert "secret" not in response.text and "Traceback" not in response.text
        assert response.headers["X-Request-ID"] == "boom-1"
        assert response.headers["X-Content-Type-Options"] == "nosniff"
        logged = [line for line in json_lines(log.getvalue()) if line.get("exception")]
        assert len(logged) == 1
        assert logged[0]["request_id"] == "boom-1"
        assert logged[0]["level"] == "ERROR"
        assert "Traceback" in logged[0]["exception"] and error in logged[0]["exception"]


async def test_a_value_the_database_rejects_is_a_422_that_echoes_nothing(
    http: httpx.AsyncClient,
) -> None:
    with app_log() as log:
        response = await http.get("/api/items/1/stored-as-text", headers={"X-Request-ID": "nul-1"})
    assert response.status_code == 422
    assert response.json()["request_id"] == "nul-1"
    assert "not valid" in response.json()["detail"]
    assert "secret" not in response.text
    logged = json_lines(log.getvalue())
    warning = next(line for line in logged if line["level"] == "WARNING")
    assert warning["message"].endswith("DataError")
    assert "secret" not in log.getvalue() and "Traceback" not in log.getvalue()


async def test_validation_errors_name_the_field_without_echoing_the_input(
    http: httpx.AsyncClient,
) -> None:
    response = await http.get("/api/items/not-a-number-M-777")
    assert response.status_code == 422
    body = response.json()
    assert body["detail"] == "invalid request"
    assert [e["field"] for e in body["errors"]] == ["path.item_id"]
    assert body["errors"][0]["type"] == "int_parsing"
    assert "M-777" not in response.text


async def test_a_database_outage_on_a_route_is_503(
    api_settings: Settings, pg_engine: Engine, redis_prefix: str
) -> None:
    make_workspace(pg_engine, "north")
    token = make_token(pg_engine, "viewer", "north")
    down = SecretStr(f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/nowhere")
    app = create_app(api_settings.model_copy(update={"database_url": down}), redis_prefix="x:")
    async with serve(app) as client:
        response = await client.get("/api/workspaces", headers=bearer(token))
    assert response.status_code == 503
    assert response.json()["detail"] == "database unavailable"
    assert "nowhere" not in response.text


# --------------------------------------------------------------------------- metrics


def scrape(text: str) -> dict[str, list[Any]]:
    families: dict[str, list[Any]] = {}
    for family in text_string_to_metric_families(text):
        families.setdefault(family.name, []).extend(family.samples)
    return families


async def test_metrics_parse_and_label_paths_with_full_route_templates(
    http: httpx.AsyncClient,
) -> None:
    for path in ("/api/items/1", "/api/items/2", "/api/items/3/boom", "/api/items/notes/n-9"):
        await http.get(path)
    await http.get("/no/such/path/12345")
    await http.post("/api/items/1")  # 405: still the template
    response = await http.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    families = scrape(response.text)
    counts = {
        (s.labels["method"], s.labels["path"], s.labels["status_code"]): s.value
        for s in families["http_requests"]
        if s.name == "http_requests_total"
    }
    assert counts[("GET", "/api/items/{item_id}", "200")] == 2
    assert counts[("GET", "/api/items/{item_id}/boom", "500")] == 1
    assert counts[("GET", "/api/items/notes/{note_id}", "200")] == 1
    assert counts[("GET", UNMATCHED, "404")] == 1
    assert counts[("POST", "/api/items/{item_id}", "405")] == 1
    paths = {path for _, path, _ in counts}
    assert not any(any(ch.isdigit() for ch in path) for path in paths)  # no raw ids
    durations = [s for s in families["http_request_duration_seconds"] if s.name.endswith("_count")]
    assert {s.labels["path"] for s in durations} >= {"/api/items/{item_id}", UNMATCHED}
    for name in ("agent_chat_requests", "agent_chat_duration_seconds", "rate_limit_backend_errors"):
        assert name in families


async def test_active_cases_come_from_the_database(
    http: httpx.AsyncClient, pg_engine: Engine
) -> None:
    north = make_workspace(pg_engine, "north")
    with session_scope(pg_engine) as session:
        for number, (level, status) in enumerate(
            [("high", "open"), ("high", "under_review"), ("high", "closed"), ("critical", "open")]
        ):
            session.add(
                InvestigationCase(
                    case_number=f"CASE-{number:06d}",
                    workspace_id=north,
                    subject_type="provider",
                    subject_id=f"P{number}",
                    risk_score=80.0,
                    risk_level=level,
                    status=status,
                    run_id="r1",
                    evidence_hash=f"h{number}",
                )
            )
    families = scrape((await http.get("/metrics")).text)
    active = {s.labels["risk_level"]: s.value for s in families["active_cases_by_risk_level"]}
    assert active == {"low": 0, "medium": 0, "high": 2, "critical": 1}


def run_series(families: dict[str, list[Any]], family: str, sample: str) -> dict[Any, float]:
    return {tuple(sorted(s.labels.items())): s.value for s in families[family] if s.name == sample}


async def test_run_metrics_come_from_real_runs_and_counters_only_rise(
    settings: Settings, sqlite_engine: Engine, redis_prefix: str, tmp_path: Path
) -> None:
    """Real runs on SQLite, scraped through the app: finished runs are counters by final
    status, queued and running ones a gauge, and claims processed what the runs wrote."""
    app_settings = settings.model_copy(
        update={"redis_url": SecretStr(SHARED_REDIS), "rate_limit_per_minute": 1000}
    )

    async def scrape_app() -> dict[str, list[Any]]:
        # A new app each time: its store collector reads the database afresh.
        async with serve(create_app(app_settings, redis_prefix=redis_prefix)) as client:
            return scrape((await client.get("/metrics")).text)

    with dg.DagsterInstance.ephemeral() as instance:
        pipeline = Pipeline(sqlite_engine, app_settings, instance, tmp_path)
        pipeline.land(batch.batch_one())
        assert pipeline.run().status == "success"
        assert pipeline.run(pipeline={"quality": {"mode": "sometimes"}}).status == "failure"
        waiting = instance.add_run(
            dg.DagsterRun(
                job_name=PIPELINE_JOB,
                run_id=str(uuid.uuid4()),
                tags={PARTITION_TAG: WORKSPACE},
                status=dg.DagsterRunStatus.NOT_STARTED,  # created, not yet taken up
            )
        )
        sweep(sqlite_engine, instance)
        before = await scrape_app()

        instance.report_run_canceled(waiting)
        sweep(sqlite_engine, instance)
        after = await scrape_app()

    ws = ("workspace", WORKSPACE)
    finished = {
        "success": 1.0,
        "failure": 1.0,
        "canceled": 0.0,
    }
    runs = run_series(before, "pipeline_runs", "pipeline_runs_total")
    assert runs == {(("status", s), ws): n for s, n in finished.items()}
    active = run_series(before, "pipeline_runs_active", "pipeline_runs_active")
    assert active == {(("status", "queued"), ws): 1.0, (("status", "running"), ws): 0.0}
    # The successful run scored the batch's nine claims; the failed one wrote nothing.
    claims = run_series(before, "pipeline_claims_processed", "pipeline_claims_processed_total")
    assert claims == {(ws,): 9.0}
    durations = run_series(before, "pipeline_duration_seconds", "pipeline_duration_seconds_count")
    assert durations == {(ws,): 2.0}

    later = run_series(after, "pipeline_runs", "pipeline_runs_total")
    assert later == {**runs, (("status", "canceled"), ws): 1.0}
    assert all(later[key] >= count for key, count in runs.items())  # a counter never falls
    assert (
        run_series(after, "pipeline_runs_active", "pipeline_runs_active")[
            (("status", "queued"), ws)
        ]
        == 0.0
    )
    assert run_series(after, "pipeline_claims_processed", "pipeline_claims_processed_total") == {
        (ws,): 9.0
    }


async def test_metrics_still_answer_when_the_database_is_down(
    api_settings: Settings, redis_prefix: str
) -> None:
    down = SecretStr(f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/nowhere")
    app = create_app(api_settings.model_copy(update={"database_url": down}), redis_prefix="x:")
    async with serve(app) as client:
        response = await client.get("/metrics")
    assert response.status_code == 200
    families = scrape(response.text)
    assert "http_requests" in families
    assert "active_cases_by_risk_level" not in families


async def test_probes_are_access_logged_only_when_they_fail(
    http: httpx.AsyncClient, api_settings: Settings, redis_prefix: str
) -> None:
    with app_log() as log:
        assert (await http.get("/api/health")).status_code == 200
        assert (await http.get("/metrics")).status_code == 200
    assert not [line for line in json_lines(log.getvalue()) if line["logger"] == "fwa_api.access"]
    down = SecretStr(f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/nowhere")
    app = create_app(api_settings.model_copy(update={"database_url": down}), redis_prefix="x:")
    async with serve(app) as client:
        with app_log() as log:
            assert (await client.get("/api/health")).status_code == 503
    access = [line for line in json_lines(log.getvalue()) if line["logger"] == "fwa_api.access"]
    assert [(a["route"], a["status"]) for a in access] == [("/api/health", 503)]
